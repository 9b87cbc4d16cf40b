"""Hand-computed checks of the NAB scoring port; needs no NAB corpus.

Run from the repository root: python3 -m unittest jobs/anomaly/nab/test_nab_score.py

Shared arithmetic (sigmoid(x) = 1 / (1 + e^-x), scaledSigmoid(p) = 2 sigmoid(-5p) - 1):
  maxTP = scaledSigmoid(-1.0) = 2 sigmoid(5) - 1 = 0.98661430
A 40-row series has probation min(floor(0.15 * 40), 0.15 * 5000) = 6 rows (0..5).
WINDOW spans rows 10..19: width 10, right index 19.
"""

import math
import os
import sys
import unittest
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nab_score  # noqa: E402

STANDARD = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
LOW_FN = {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}
ROWS = 40
START = datetime(2024, 1, 1)
TIMESTAMPS = [START + timedelta(minutes=i) for i in range(ROWS)]
WINDOW = [(TIMESTAMPS[10], TIMESTAMPS[19])]


def detections_at(*rows):
    """Anomaly scores 1.0 at the given rows, 0.0 elsewhere."""
    return [1.0 if i in rows else 0.0 for i in range(ROWS)]


def score_at(anomaly_scores, windows=WINDOW, cost=STANDARD, threshold=0.5):
    points = nab_score.sweep_points(TIMESTAMPS, anomaly_scores, windows, "s.csv", cost)
    return nab_score.row_at_threshold(nab_score.scores_by_threshold(points, cost),
                                      threshold)


class ScaledSigmoid(unittest.TestCase):
    def test_edges(self):
        # 2 sigmoid(5) - 1 = 0.98661430 at the left edge, 2 sigmoid(0) - 1 = 0 at
        # the right edge, 2 sigmoid(-5) - 1 = -0.98661430 one width past it.
        self.assertAlmostEqual(nab_score.scaled_sigmoid(-1.0), 0.98661430, places=8)
        self.assertEqual(nab_score.scaled_sigmoid(0.0), 0.0)
        self.assertAlmostEqual(nab_score.scaled_sigmoid(1.0), -0.98661430, places=8)

    def test_far_past_a_window_is_minus_one(self):
        # Beyond 3 widths NAB returns -1 instead of 2 sigmoid(-15.5) - 1.
        self.assertEqual(nab_score.scaled_sigmoid(3.1), -1.0)


class ProbationaryLength(unittest.TestCase):
    def test_fifteen_percent_floored(self):
        self.assertEqual(nab_score.probationary_length(40), 6)  # floor(6.0)
        self.assertEqual(nab_score.probationary_length(1003), 150)  # floor(150.45)

    def test_capped_at_fifteen_percent_of_5000(self):
        # min(floor(0.15 * 22695), 0.15 * 5000) = min(3404, 750.0)
        self.assertEqual(nab_score.probationary_length(22695), 750.0)


class WindowScoring(unittest.TestCase):
    def test_detection_at_window_start_scores_full_tp_weight(self):
        # Row 10: position -(19 - 10 + 1) / 10 = -1.0 -> maxTP / maxTP * tpWeight = 1.0
        row = score_at(detections_at(10))
        self.assertAlmostEqual(row.score, 1.0, places=12)
        self.assertEqual((row.tp, row.fp, row.fn), (1, 0, 9))

    def test_detection_halfway_through_window(self):
        # Row 15: position -(19 - 15 + 1) / 10 = -0.5
        # scaledSigmoid(-0.5) = 2 sigmoid(2.5) - 1 = 0.84828364; / maxTP = 0.85979257
        self.assertAlmostEqual(score_at(detections_at(15)).score, 0.85979257, places=8)

    def test_detection_at_window_end_scores_little(self):
        # Row 19: position -(19 - 19 + 1) / 10 = -0.1
        # scaledSigmoid(-0.1) = 2 sigmoid(0.5) - 1 = 0.24491866; / maxTP = 0.24824155
        self.assertAlmostEqual(score_at(detections_at(19)).score, 0.24824155, places=8)

    def test_only_the_earliest_detection_in_a_window_counts(self):
        # Rows 15 and 19 are both TPs; the window keeps the max, row 15's 0.85979257.
        row = score_at(detections_at(15, 19))
        self.assertAlmostEqual(row.score, 0.85979257, places=8)
        self.assertEqual(row.tp, 2)

    def test_detection_after_window_is_a_graded_false_positive(self):
        # Row 21: position past window |19 - 21| / (10 - 1) = 2/9
        # scaledSigmoid(2/9) = 2 sigmoid(-10/9) - 1 = -0.50467240; * fpWeight 0.11
        # = -0.05551396; the missed window adds -fnWeight = -1 -> -1.05551396
        row = score_at(detections_at(21))
        self.assertAlmostEqual(row.score, -1.05551396, places=8)
        self.assertEqual((row.tp, row.fp, row.fn), (0, 1, 10))

    def test_false_positive_before_any_window_costs_full_fp_weight(self):
        # Row 8 has no preceding window: -1.0 * 0.11; missed window -1 -> -1.11
        self.assertAlmostEqual(score_at(detections_at(8)).score, -1.11, places=12)

    def test_missed_window_costs_fn_weight(self):
        self.assertEqual(score_at(detections_at()).score, -1.0)
        self.assertEqual(score_at(detections_at(), cost=LOW_FN).score, -2.0)

    def test_series_without_windows(self):
        # Two FPs with no window anywhere: 2 * -1.0 * 0.11 = -0.22, as NAB's
        # numenta results show for art_daily_small_noise.csv.
        row = score_at(detections_at(20, 30), windows=[])
        self.assertAlmostEqual(row.score, -0.22, places=12)
        self.assertEqual((row.fp, row.tn, row.total), (2, 32, 34))  # 40 - 6 probation


class Probation(unittest.TestCase):
    def test_detections_in_probation_are_ignored(self):
        # Row 3 < 6 is never scored: only the missed window's -1 remains.
        row = score_at(detections_at(3))
        self.assertEqual(row.score, -1.0)
        self.assertEqual((row.fp, row.total), (0, 34))

    def test_window_inside_probation_is_not_scored(self):
        # A window on rows 1..4 has no scorable row, so NAB neither rewards nor
        # penalises it: the score is 0, not -fnWeight.
        inside = [(TIMESTAMPS[1], TIMESTAMPS[4])]
        self.assertEqual(score_at(detections_at(), windows=inside).score, 0.0)


class Thresholds(unittest.TestCase):
    def test_threshold_includes_equal_scores(self):
        scores = detections_at()
        scores[10] = 0.7
        self.assertEqual(score_at(scores, threshold=0.7).tp, 1)
        self.assertEqual(score_at(scores, threshold=0.7000001).tp, 0)

    def test_optimizer_keeps_the_highest_threshold_on_ties(self):
        rows = [nab_score.ThresholdScore(1.1, -1.0, 0, 0, 0, 0, 0),
                nab_score.ThresholdScore(0.9, 0.5, 0, 0, 0, 0, 0),
                nab_score.ThresholdScore(0.8, 0.5, 0, 0, 0, 0, 0)]
        self.assertEqual(nab_score.best_row(rows).threshold, 0.9)

    def test_optimizer_sweeps_all_series_together(self):
        # Series a: window TP at row 10 with score 0.9 (+1.0).
        # Series b: no window, FP at row 20 with score 0.8 (-0.11).
        # Thresholds 1.1: -1 ; 0.9: +1.0 ; 0.8: 1.0 - 0.11 = 0.89 ; 0.0: worse.
        a = detections_at()
        a[10] = 0.9
        b = detections_at()
        b[20] = 0.8
        points = {
            "a.csv": nab_score.sweep_points(TIMESTAMPS, a, WINDOW, "a.csv", STANDARD),
            "b.csv": nab_score.sweep_points(TIMESTAMPS, b, [], "b.csv", STANDARD)}
        best = nab_score.optimize_threshold(points, STANDARD)
        self.assertEqual((best.threshold, best.score), (0.9, 1.0))


class Normalization(unittest.TestCase):
    def test_null_is_zero_and_perfect_is_hundred(self):
        # NAB's published numenta standard: raw 46.6344501971, null -116, perfect 116
        # -> 100 * (46.6344501971 + 116) / 232 = 70.1010561
        self.assertEqual(nab_score.normalized(-116.0, -116.0, 116.0), 0.0)
        self.assertEqual(nab_score.normalized(116.0, -116.0, 116.0), 100.0)
        self.assertAlmostEqual(nab_score.normalized(46.6344501971, -116.0, 116.0),
                               70.1010561, places=6)

    def test_undefined_without_windows(self):
        self.assertIsNone(nab_score.normalized(-0.22, 0.0, 0.0))

    def test_score_profile_normalizes_against_no_detections(self):
        points = {"cat/s.csv": nab_score.sweep_points(
            TIMESTAMPS, detections_at(10), WINDOW, "cat/s.csv", STANDARD)}
        result = nab_score.score_profile(points, {"cat/s.csv": WINDOW}, STANDARD)
        # Optimised threshold 1.0 catches row 10: raw 1.0, null -1, perfect 1.
        self.assertEqual((result["threshold"], result["null"], result["perfect"]),
                         (1.0, -1.0, 1.0))
        self.assertTrue(math.isclose(result["score"], 100.0))
        self.assertTrue(math.isclose(result["categories"]["cat"]["score"], 100.0))


if __name__ == "__main__":
    unittest.main()
