#!/usr/bin/env python3
"""Compare nab_score.py with NAB's published results; prints Markdown tables.

1. At the thresholds in NAB's config/thresholds.json (as NAB's score step
   uses them) against results/final_results.json, or, for a detector missing
   there, against the Totals rows of its published <detector>_<profile>_scores.csv
   normalised the way NAB's normalize step does.
2. Optimised (the default mode) against the JSON that run_nab_reference.py
   writes from NAB's own optimizer, when --reference-dir is given.
"""

import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402

DEFAULT_DETECTORS = ("numenta", "numentaTM", "twitterADVec", "windowedGaussian",
                     "skyline", "bayesChangePt", "relativeEntropy", "null", "random")


def published_scores_csv_total(nab_dir, detector, profile):
    path = os.path.join(nab_dir, "results", detector,
                        "%s_%s_scores.csv" % (detector, profile))
    with open(path, newline="") as f:
        totals = [row for row in csv.DictReader(f) if row["Detector"] == "Totals"]
    return float(totals[0]["Score"])


def published_normalized(nab_dir, final_results, detector, profile, port_result):
    """NAB's published normalised score and where it came from."""
    if detector in final_results:
        return final_results[detector][profile], "final_results.json"
    raw = published_scores_csv_total(nab_dir, detector, profile)
    return (nab_score.normalized(raw, port_result["null"], port_result["perfect"]),
            "%s_%s_scores.csv" % (detector, profile))


def load_final_results(nab_dir):
    with open(os.path.join(nab_dir, "results", "final_results.json")) as f:
        return json.load(f)


def compare_at_published_thresholds(nab_dir, detectors):
    final_results = load_final_results(nab_dir)
    thresholds_path = os.path.join(nab_dir, "config", "thresholds.json")
    print("| detector | profile | threshold | NAB published | port | difference | source |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for detector in detectors:
        thresholds = nab_score.load_thresholds_json(thresholds_path, detector)
        report = nab_score.score_detector(nab_dir, os.path.join(nab_dir, "results"),
                                          detector, thresholds)
        for profile, result in report.items():
            published, source = published_normalized(nab_dir, final_results,
                                                     detector, profile, result)
            difference = result["score"] - published
            worst = max(worst, abs(difference))
            print("| %s | %s | %.6g | %.4f | %.4f | %+.2g | %s |" % (
                detector, profile, result["threshold"], published,
                result["score"], difference, source))
    print("\nlargest |difference|: %.3g\n" % worst)


def compare_optimized(nab_dir, detectors, reference_dir):
    final_results = load_final_results(nab_dir)
    print("| detector | profile | NAB optimizer threshold | port threshold "
          "| NAB optimized raw | port raw | port normalized | NAB published |")
    print("|---|---|---|---|---|---|---|---|")
    for detector in detectors:
        with open(os.path.join(reference_dir, "ref_%s.json" % detector)) as f:
            reference = json.load(f)[detector]
        report = nab_score.score_detector(nab_dir, os.path.join(nab_dir, "results"),
                                          detector)
        for profile, result in report.items():
            published, _ = published_normalized(nab_dir, final_results,
                                                detector, profile, result)
            print("| %s | %s | %r | %r | %.6f | %.6f | %.4f | %.4f |" % (
                detector, profile, reference[profile]["opt_threshold"],
                result["threshold"], reference[profile]["opt_score"],
                result["raw"], result["score"], published))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab-dir", required=True)
    parser.add_argument("--detector", action="append",
                        help="default: %s" % " ".join(DEFAULT_DETECTORS))
    parser.add_argument("--reference-dir",
                        help="ref_<detector>.json files from run_nab_reference.py")
    args = parser.parse_args()
    detectors = args.detector or DEFAULT_DETECTORS
    compare_at_published_thresholds(args.nab_dir, detectors)
    if args.reference_dir:
        compare_optimized(args.nab_dir, detectors, args.reference_dir)


if __name__ == "__main__":
    main()
