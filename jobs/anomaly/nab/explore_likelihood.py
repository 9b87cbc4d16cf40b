"""Exploration for issue 21 (not patrol's detector): raw anomaly scores in
Python, passed through a port of Numenta's anomaly likelihood (the tail
probability of the recent mean raw score against its long-run normal fit,
sharp rises only, then NAB's log scale), plus the "spatial" rule of NAB's
numenta detector (a value outside the range seen so far, by more than a
tolerance). Writes NAB results files for nab_score.py, so candidate ideas
are ranked by the official scoring before any is built in Rust.

    python3 explore_likelihood.py NAB_DIR OUT_DIR [DETECTOR ...]
    python3 nab_score.py --nab-dir NAB_DIR --results-dir OUT_DIR --detector zSpatialLL

Figures: docs/PERFORMANCE.md, "NAB official score".
"""
import collections
import csv
import glob
import math
import os
import sys

NAB = sys.argv[1]
OUT = sys.argv[2]

def series_files():
    for path in sorted(glob.glob(f'{NAB}/data/*/*.csv')):
        cat = path.split('/')[-2]
        yield cat, os.path.basename(path), path

def read(path):
    ts, vals = [], []
    with open(path) as f:
        r = csv.reader(f); next(r)
        for row in r:
            ts.append(row[0]); vals.append(float(row[1]))
    return ts, vals

class Likelihood:
    """Numenta's AnomalyLikelihood (learning period, historic window, short average, filter)."""
    def __init__(self, learning=288, estimation=100, window=8640, avg=10, reestimate=100):
        self.learning, self.estimation, self.window, self.avg, self.reest = learning, estimation, window, avg, reestimate
        self.hist = collections.deque(maxlen=window)   # raw scores
        self.recent = collections.deque(maxlen=avg)
        self.n = 0; self.params = None; self.prev_tail = 1.0; self.since = 0
        self.avgs = collections.deque(maxlen=window)
    def update(self, raw):
        self.n += 1
        self.recent.append(raw)
        a = sum(self.recent) / len(self.recent)
        self.avgs.append(a)
        if self.n < self.learning + self.estimation:
            return 0.5
        if self.params is None or self.since >= self.reest:
            data = list(self.avgs)[-(self.window):]
            # skip the learning period's averages at first, like numenta
            m = sum(data) / len(data)
            v = sum((x - m) ** 2 for x in data) / len(data)
            m = max(m, 0.03); v = max(v, 0.0003)
            self.params = (m, math.sqrt(v)); self.since = 0
        self.since += 1
        m, s = self.params
        x = a if a >= m else 2 * m - a
        z = (x - m) / s
        tail = 0.5 * math.erfc(z / 1.4142)
        # keep sharp increases only
        red, yellow = 1e-5, 1e-3
        if tail <= red and self.prev_tail <= red:
            out = yellow
        else:
            out = tail
        self.prev_tail = tail
        return 1.0 - out

def log_likelihood(l):
    return math.log(1.0000000001 - l) / math.log(1.0 - 0.9999999999)

def markov_surprise(vals, bins=30):
    """raw = 1 - P(bin_t | bin_{t-1}), bins from running min/max (with slack)."""
    lo, hi = None, None
    counts = collections.defaultdict(lambda: collections.Counter())
    prev = None; out = []
    for v in vals:
        if lo is None: lo, hi = v, v
        span = (hi - lo) or 1.0
        b = int((v - lo) / span * (bins - 1)) if lo <= v <= hi else (-1 if v < lo else bins)
        if prev is None:
            out.append(0.0)
        else:
            c = counts[prev]; tot = sum(c.values())
            p = c[b] / tot if tot else 0.0
            out.append(1.0 - p)
            c[b] += 1
        lo, hi = min(lo, v), max(hi, v)
        prev = max(0, min(bins - 1, b))
    return out

def rolling_z(vals, w):
    dq = collections.deque(maxlen=w); s = s2 = 0.0; out = []
    for v in vals:
        if len(dq) >= 10:
            n = len(dq); m = s / n; var = max(s2 / n - m * m, 1e-12)
            out.append(abs(v - m) / math.sqrt(var))
        else:
            out.append(0.0)
        if len(dq) == w:
            old = dq[0]; s -= old; s2 -= old * old
        dq.append(v); s += v; s2 += v * v
    return out

def spatial(vals, tolerance=0.05):
    """1 when the value leaves the range seen so far by more than tolerance of the range."""
    lo = hi = None; out = []
    for i, v in enumerate(vals):
        hit = 0.0
        if lo is not None and i > 0:
            span = hi - lo
            if span > 0 and (v > hi + tolerance * span or v < lo - tolerance * span):
                hit = 1.0
        lo = v if lo is None else min(lo, v); hi = v if hi is None else max(hi, v)
        out.append(hit)
    return out

DETECTORS = {}
def detector(name):
    def wrap(f): DETECTORS[name] = f; return f
    return wrap

@detector('markovLL')
def _(vals):
    raw = markov_surprise(vals)
    L = Likelihood(); return [log_likelihood(L.update(r)) for r in raw]

@detector('zLL')
def _(vals):
    raw = [min(1.0, z / 8.0) for z in rolling_z(vals, 288)]
    L = Likelihood(); return [log_likelihood(L.update(r)) for r in raw]

@detector('markovSpatialLL')
def _(vals):
    raw = markov_surprise(vals); sp = spatial(vals)
    L = Likelihood(); out = []
    for r, s in zip(raw, sp):
        ll = log_likelihood(L.update(r))
        out.append(max(ll, s))
    return out

@detector('spatialOnly')
def _(vals):
    return spatial(vals)

@detector('zSpatialLL')
def _(vals):
    raw = [min(1.0, z / 8.0) for z in rolling_z(vals, 288)]; sp = spatial(vals)
    L = Likelihood(); return [max(log_likelihood(L.update(r)), s) for r, s in zip(raw, sp)]

def markov_n(bins):
    def f(vals):
        raw = markov_surprise(vals, bins); sp = spatial(vals)
        L = Likelihood(); return [max(log_likelihood(L.update(r)), s) for r, s in zip(raw, sp)]
    return f
for b in (10, 20, 50, 80):
    DETECTORS[f'markov{b}SpatialLL'] = markov_n(b)

@detector('mixSpatialLL')
def _(vals):
    m = markov_surprise(vals); z = [min(1.0, x / 8.0) for x in rolling_z(vals, 288)]; sp = spatial(vals)
    L = Likelihood(); return [max(log_likelihood(L.update(0.5 * a + 0.5 * b)), s) for a, b, s in zip(m, z, sp)]

def z_spatial(w, scale=8.0, tol=0.05, avg=10):
    def f(vals):
        raw = [min(1.0, z / scale) for z in rolling_z(vals, w)]; sp = spatial(vals, tol)
        L = Likelihood(avg=avg); return [max(log_likelihood(L.update(r)), s) for r, s in zip(raw, sp)]
    return f
for w in (100, 576, 2016):
    DETECTORS[f'z{w}SpatialLL'] = z_spatial(w)
DETECTORS['z288s4SpatialLL'] = z_spatial(288, scale=4.0)
DETECTORS['z288s16SpatialLL'] = z_spatial(288, scale=16.0)
DETECTORS['z288tol0SpatialLL'] = z_spatial(288, tol=0.0)
DETECTORS['z288tol10SpatialLL'] = z_spatial(288, tol=0.10)
DETECTORS['z288avg5SpatialLL'] = z_spatial(288, avg=5)
DETECTORS['z288avg1SpatialLL'] = z_spatial(288, avg=1)

def main():
    names = sys.argv[3:] or list(DETECTORS)
    for cat, name, path in series_files():
        ts, vals = read(path)
        for det in names:
            scores = DETECTORS[det](vals)
            d = f'{OUT}/{det}/{cat}'; os.makedirs(d, exist_ok=True)
            with open(f'{d}/{det}_{name}', 'w') as f:
                f.write('timestamp,value,anomaly_score,label\n')
                for t, v, s in zip(ts, vals, scores):
                    f.write(f'{t},{v},{s},0\n')
main()
