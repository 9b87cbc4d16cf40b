#!/usr/bin/env python3
"""NAB (Numenta Anomaly Benchmark) scoring, ported to the Python standard library.

A line-by-line port of numenta/NAB (commit ea702d7) nab/sweeper.py (window
scoring and the threshold sweep), nab/optimizer.py (corpus-wide threshold
optimisation), nab/scorer.py (scoring at a fixed threshold) and
Runner.normalize in nab/runner.py. See README.md for the rules and for the
validation against NAB's published results.
"""

import argparse
import csv
import json
import math
import os
import sys
from collections import namedtuple
from datetime import datetime

PROBATIONARY_PERCENT = 0.15  # Runner.probationaryPercent
PROBATION_CAP_ROWS = 5000  # the cap in Sweeper._getProbationaryLength
# The sweep starts above every anomaly score so its first row is "no detections".
NO_DETECTION_THRESHOLD = 1.1
PROBATIONARY = "probationary"
# Sorted as in NAB's config/profiles.json so reports list profiles alike.
PROFILE_NAMES = ("reward_low_FN_rate", "reward_low_FP_rate", "standard")

SweepPoint = namedtuple("SweepPoint", "anomaly_score sweep_score window_name")
ThresholdScore = namedtuple("ThresholdScore", "threshold score tp tn fp fn total")


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def scaled_sigmoid(relative_position):
    """NAB's scaledSigmoid: about +0.987 at a window's left edge (-1.0), 0 at its
    right edge (0.0), about -0.987 one window width past it (1.0), -1 beyond 3."""
    if relative_position > 3.0:
        return -1.0
    return 2 * sigmoid(-5 * relative_position) - 1.0


def probationary_length(num_rows, probation_percent=PROBATIONARY_PERCENT):
    """Rows at the start of a series that are never scored. NAB keeps this a
    float (floor(0.15 n) or 750.0) and compares row indices against it."""
    return min(math.floor(probation_percent * num_rows),
               probation_percent * PROBATION_CAP_ROWS)


def sweep_points(timestamps, anomaly_scores, windows, dataset_name, cost):
    """Port of Sweeper.calcSweepScore: each row's weighted score if it were a
    detection, and the name of the window it belongs to (None outside windows,
    PROBATIONARY in the probationary period).

    Kept literally, including list.index() finding the first occurrence of a
    window's timestamps: some NAB series repeat timestamps.
    """
    assert len(timestamps) == len(anomaly_scores), \
        "%s: %d timestamps but %d anomaly scores" % (
            dataset_name, len(timestamps), len(anomaly_scores))
    timestamps = list(timestamps)
    pending_windows = list(windows)
    max_tp = scaled_sigmoid(-1.0)
    probation = probationary_length(len(timestamps))

    window = None
    window_name = None
    window_width = None
    window_right_index = None
    prev_window_width = None
    prev_window_right_index = None
    points = []
    for i, (time, anomaly_score) in enumerate(zip(timestamps, anomaly_scores)):
        if pending_windows and time == pending_windows[0][0]:
            window = pending_windows.pop(0)
            window_name = "%s|%s" % (dataset_name, window[0])
            window_right_index = timestamps.index(window[1])
            window_width = float(window_right_index - timestamps.index(window[0]) + 1)

        if window is not None:
            position = -(window_right_index - i + 1) / window_width
            sweep_score = scaled_sigmoid(position) * cost["tpWeight"] / max_tp
        else:
            if prev_window_right_index is None:
                unweighted = -1.0
            else:
                position_past_window = (abs(prev_window_right_index - i)
                                        / float(prev_window_width - 1))
                unweighted = scaled_sigmoid(position_past_window)
            sweep_score = unweighted * cost["fpWeight"]

        name = window_name if i >= probation else PROBATIONARY
        points.append(SweepPoint(anomaly_score, sweep_score, name))

        if window is not None and time == window[1]:
            prev_window_right_index = i
            prev_window_width = window_width
            window = None
            window_name = None
            window_width = None
            window_right_index = None
    return points


def scores_by_threshold(points, cost):
    """Port of Sweeper.calcScoreByThreshold: the score and counts for every
    distinct anomaly score used as threshold (a row with threshold t counts the
    points whose anomaly score is >= t), highest threshold first, starting with
    the no-detection row at NO_DETECTION_THRESHOLD.

    A window scores its earliest detection (the max of its points' sweep
    scores) or -fnWeight if it has none; every detection outside windows adds
    its (negative) sweep score.
    """
    scorable = sorted((p for p in points if p.window_name != PROBATIONARY),
                      key=lambda p: p.anomaly_score, reverse=True)
    score_parts = {"fp": 0}
    for point in scorable:
        if point.window_name is not None:
            score_parts[point.window_name] = -cost["fnWeight"]

    tn = sum(1 for p in scorable if p.window_name is None)
    fn = len(scorable) - tn
    tp = 0
    fp = 0
    threshold = NO_DETECTION_THRESHOLD
    rows = []
    for point in scorable:
        if point.anomaly_score != threshold:
            rows.append(ThresholdScore(threshold, sum(score_parts.values()),
                                       tp, tn, fp, fn, tp + tn + fp + fn))
            threshold = point.anomaly_score
        if point.window_name is None:
            fp += 1
            tn -= 1
            score_parts["fp"] += point.sweep_score
        else:
            tp += 1
            fn -= 1
            score_parts[point.window_name] = max(score_parts[point.window_name],
                                                 point.sweep_score)
    rows.append(ThresholdScore(threshold, sum(score_parts.values()),
                               tp, tn, fp, fn, tp + tn + fp + fn))
    return rows


def best_row(rows):
    """Port of optimizeThreshold's pick: the highest score; on ties the row
    listed first (highest threshold), as NAB's stable sort keeps it first."""
    best = rows[0]
    for row in rows[1:]:
        if row.score > best.score:
            best = row
    return best


def row_at_threshold(rows, threshold):
    """Port of Sweeper.scoreDataSet's row lookup: the row for detections at
    anomaly score >= threshold, i.e. the last row whose threshold is >= it.
    NAB crashes where no row qualifies (threshold above 1.1); this returns the
    no-detection row then."""
    matching = rows[0]
    for row in rows:
        if row.threshold < threshold:
            break
        matching = row
    return matching


def parse_timestamp(text):
    return datetime.fromisoformat(text.strip())


def load_windows(nab_dir):
    """Labelled anomaly windows per series, e.g. 'realKnownCause/nyc_taxi.csv'."""
    with open(os.path.join(nab_dir, "labels", "combined_windows.json")) as f:
        raw = json.load(f)
    return {path: [(parse_timestamp(a), parse_timestamp(b)) for a, b in windows]
            for path, windows in raw.items()}


def load_profiles(nab_dir):
    with open(os.path.join(nab_dir, "config", "profiles.json")) as f:
        return {name: profile["CostMatrix"] for name, profile in json.load(f).items()}


def load_thresholds_json(path, detector):
    """A detector's per-profile thresholds from a NAB config/thresholds.json."""
    with open(path) as f:
        return {profile: entry["threshold"]
                for profile, entry in json.load(f)[detector].items()}


def read_column(path, column, convert):
    with open(path, newline="") as f:
        return [convert(row[column]) for row in csv.DictReader(f)]


def results_path(results_dir, detector, series):
    category, file_name = series.split("/")
    return os.path.join(results_dir, detector, category,
                        "%s_%s" % (detector, file_name))


def check_windows_exist(series, timestamps, windows):
    """NAB's CorpusLabel refuses labels whose timestamps are not in the data;
    such a window would otherwise silently never open."""
    present = set(timestamps)
    for start, end in windows:
        if start not in present or end not in present:
            raise ValueError("%s: window %s..%s is not on the data's timestamps"
                             % (series, start, end))


def load_corpus(nab_dir, results_dir, detector, windows):
    """(timestamps, anomaly scores) per series: timestamps from NAB's data files
    (as NAB does), anomaly scores from the detector's results files."""
    missing = [s for s in windows
               if not os.path.exists(results_path(results_dir, detector, s))]
    if missing:
        raise FileNotFoundError("%s has no results for %d of %d series, e.g. %s"
                                % (detector, len(missing), len(windows),
                                   results_path(results_dir, detector, missing[0])))
    corpus = {}
    for series in sorted(windows):
        timestamps = read_column(os.path.join(nab_dir, "data", series),
                                 "timestamp", parse_timestamp)
        check_windows_exist(series, timestamps, windows[series])
        scores = read_column(results_path(results_dir, detector, series),
                             "anomaly_score", float)
        corpus[series] = (timestamps, scores)
    return corpus


def sweep_corpus(corpus, windows, cost):
    return {series: sweep_points(timestamps, scores, windows[series], series, cost)
            for series, (timestamps, scores) in corpus.items()}


def optimize_threshold(points_by_series, cost):
    """Port of optimizeThreshold: one sweep over all series' points together."""
    all_points = [p for points in points_by_series.values() for p in points]
    return best_row(scores_by_threshold(all_points, cost))


def score_series_at(points_by_series, cost, threshold):
    """Per-series ThresholdScore at a threshold, as NAB's scoreCorpus does."""
    return {series: row_at_threshold(scores_by_threshold(points, cost), threshold)
            for series, points in points_by_series.items()}


def null_score(points, cost):
    """Raw score with no detections: -fnWeight per window that has a scored
    point. It equals the null detector's raw score that NAB normalises with."""
    return scores_by_threshold(points, cost)[0].score


def normalized(raw, null, perfect):
    """Runner.normalize: 0 for the null detector, 100 for the perfect one."""
    if perfect == null:
        return None
    return 100 * (raw - null) / (perfect - null)


def category_of(series):
    return series.split("/")[0]


def score_profile(points_by_series, windows, cost, threshold=None):
    """Score one profile, optimising the threshold unless one is given."""
    if threshold is None:
        threshold = optimize_threshold(points_by_series, cost).threshold
    per_series = score_series_at(points_by_series, cost, threshold)
    nulls = {s: null_score(p, cost) for s, p in points_by_series.items()}
    raw = sum(row.score for row in per_series.values())
    perfect = cost["tpWeight"] * sum(len(w) for w in windows.values())
    totals = {k: sum(getattr(row, k) for row in per_series.values())
              for k in ("tp", "tn", "fp", "fn", "total")}

    categories = {}
    for category in sorted({category_of(s) for s in per_series}):
        members = [s for s in per_series if category_of(s) == category]
        cat_raw = sum(per_series[s].score for s in members)
        cat_null = sum(nulls[s] for s in members)
        cat_perfect = cost["tpWeight"] * sum(len(windows[s]) for s in members)
        categories[category] = {
            "raw": cat_raw, "null": cat_null, "perfect": cat_perfect,
            "windows": sum(len(windows[s]) for s in members),
            "score": normalized(cat_raw, cat_null, cat_perfect)}

    null = sum(nulls.values())
    return {"threshold": threshold, "raw": raw, "null": null, "perfect": perfect,
            "score": normalized(raw, null, perfect), **totals,
            "categories": categories, "per_series": per_series}


def score_detector(nab_dir, results_dir, detector, thresholds=None, profiles=None):
    """Score a detector on every profile; thresholds maps profile -> threshold
    for the profiles not to optimise."""
    thresholds = thresholds or {}
    windows = load_windows(nab_dir)
    costs = load_profiles(nab_dir)
    corpus = load_corpus(nab_dir, results_dir, detector, windows)
    report = {}
    for profile in profiles or sorted(costs):
        cost = costs[profile]
        points = sweep_corpus(corpus, windows, cost)
        report[profile] = score_profile(points, windows, cost,
                                        thresholds.get(profile))
    return report


def write_scores_csv(path, detector, profile, result):
    """NAB-style <detector>_<profile>_scores.csv: one row per series, then Totals."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Detector", "Profile", "File", "Threshold", "Score",
                      "TP", "TN", "FP", "FN", "Total_Count"])
        for series, row in sorted(result["per_series"].items()):
            out.writerow([detector, profile, series, result["threshold"], row.score,
                          row.tp, row.tn, row.fp, row.fn, row.total])
        out.writerow(["Totals", "", "", "", result["raw"], result["tp"],
                      result["tn"], result["fp"], result["fn"], result["total"]])


def format_score(value):
    return "   n/a" if value is None else "%6.2f" % value


def print_report(detector, report, out=sys.stdout):
    for profile, r in report.items():
        out.write("%s %-18s score %s  threshold %r  raw %.4f (null %.1f, perfect %.1f)"
                  "  TP %d FP %d FN %d TN %d\n" % (
                      detector, profile, format_score(r["score"]), r["threshold"],
                      r["raw"], r["null"], r["perfect"],
                      r["tp"], r["fp"], r["fn"], r["tn"]))
        for category, c in r["categories"].items():
            out.write("    %-22s score %s  raw %9.4f  windows %3d\n" % (
                category, format_score(c["score"]), c["raw"], c["windows"]))


def json_report(report):
    """The report without per-series rows, for --json."""
    return {profile: {k: v for k, v in r.items() if k != "per_series"}
            for profile, r in report.items()}


def parse_threshold_options(values):
    """--threshold T (every profile) or --threshold PROFILE=T."""
    thresholds = {}
    for value in values:
        profile, sep, number = value.rpartition("=")
        for name in ([profile] if sep else PROFILE_NAMES):
            thresholds[name] = float(number)
    return thresholds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab-dir", required=True,
                        help="NAB checkout: data/, labels/combined_windows.json, "
                             "config/profiles.json")
    parser.add_argument("--results-dir", required=True,
                        help="holds <detector>/<category>/<detector>_<file>.csv")
    parser.add_argument("--detector", required=True, action="append",
                        help="detector name; repeat for several")
    parser.add_argument("--profile", action="append", choices=PROFILE_NAMES,
                        help="score only these profiles (default: all)")
    parser.add_argument("--threshold", action="append", default=[],
                        metavar="[PROFILE=]T",
                        help="score at T instead of optimising (all profiles, "
                             "or one with PROFILE=T)")
    parser.add_argument("--thresholds-json",
                        help="take thresholds from a NAB config/thresholds.json")
    parser.add_argument("--write-scores-csv", metavar="DIR",
                        help="write <detector>_<profile>_scores.csv files here")
    parser.add_argument("--json", metavar="PATH",
                        help="write the reports as JSON ('-' for stdout)")
    args = parser.parse_args(argv)

    reports = {}
    for detector in args.detector:
        thresholds = {}
        if args.thresholds_json:
            thresholds.update(load_thresholds_json(args.thresholds_json, detector))
        thresholds.update(parse_threshold_options(args.threshold))
        try:
            report = score_detector(args.nab_dir, args.results_dir, detector,
                                    thresholds, args.profile)
        except (OSError, ValueError, KeyError) as error:
            sys.exit("nab_score: %s" % error)
        reports[detector] = report
        if args.json != "-":
            print_report(detector, report)
        if args.write_scores_csv:
            os.makedirs(args.write_scores_csv, exist_ok=True)
            for profile, result in report.items():
                write_scores_csv(os.path.join(args.write_scores_csv,
                                              "%s_%s_scores.csv" % (detector, profile)),
                                 detector, profile, result)
    if args.json:
        text = json.dumps({d: json_report(r) for d, r in reports.items()}, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
