#!/usr/bin/env python3
"""Run NAB's own optimize and score code on a detector, writing nothing into
the NAB checkout, to cross-check nab_score.py's optimizer.

Not part of the scorer: this needs NAB's dependencies (pandas<2, numpy<2,
python-dateutil) and a NAB checkout on the import path. Writes
ref_<detector>.json into the current directory.
"""

import json
import multiprocessing
import os
import sys

NAB_DIR = os.environ.get("NAB_DIR", "/tmp/NAB")
sys.path.insert(0, NAB_DIR)

from nab.corpus import Corpus  # noqa: E402
from nab.labeler import CorpusLabel  # noqa: E402
from nab.optimizer import optimizeThreshold  # noqa: E402
from nab.scorer import scoreCorpus  # noqa: E402

PROBATIONARY_PERCENT = 0.15


def totals(threshold, pool, detector, profile, cost, results_dir, results, labels):
    # scoreFlag False: NAB would otherwise append S(t) columns to the results files.
    frame = scoreCorpus(threshold, (pool, detector, profile, cost, results_dir,
                                    results, labels, PROBATIONARY_PERCENT, False))
    row = frame.iloc[-1]
    return {"threshold": threshold, "score": float(row["Score"]),
            "tp": int(row["TP"]), "fp": int(row["FP"]),
            "fn": int(row["FN"]), "tn": int(row["TN"])}


def main(detectors):
    corpus = Corpus(os.path.join(NAB_DIR, "data"))
    labels = CorpusLabel(path=os.path.join(NAB_DIR, "labels", "combined_windows.json"),
                         corpus=corpus)
    with open(os.path.join(NAB_DIR, "config", "profiles.json")) as f:
        profiles = json.load(f)
    with open(os.path.join(NAB_DIR, "config", "thresholds.json")) as f:
        published_thresholds = json.load(f)
    pool = multiprocessing.Pool()
    for detector in detectors:
        results_dir = os.path.join(NAB_DIR, "results", detector)
        results = Corpus(results_dir)
        report = {}
        for profile, spec in profiles.items():
            cost = spec["CostMatrix"]
            best = optimizeThreshold((detector, cost, results, labels,
                                      PROBATIONARY_PERCENT))
            args = (pool, detector, profile, cost, results_dir, results, labels)
            report[profile] = {
                "opt_threshold": best["threshold"],
                "opt_score": best["score"],
                "opt": totals(best["threshold"], *args),
                "published": totals(
                    published_thresholds[detector][profile]["threshold"], *args),
            }
        with open("ref_%s.json" % detector, "w") as f:
            json.dump({detector: report}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
