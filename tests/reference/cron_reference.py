#!/usr/bin/env python3
"""Reference fire times for the cron table, computed with the PyPI package
`crondst` (pinned: crondst==1.0.3), an independent implementation of Vixie
cron's schedule including its DST rules.

Usage:
    cron_reference.py [TABLE.tsv]          # or the table on stdin
    cron_reference.py --ignore-marks TABLE # also run crondst on `brute` cases
    python3 cron_reference.py --ensure-venv DIR
        # create DIR as a venv with crondst==1.0.3 unless already done; safe to
        # run from parallel processes (an flock serialises them), prints the
        # venv's python. The Rust test runs the reference with that python.

Input: the TSV described in tests/data/cron_table.tsv:
    expression<TAB>timezone<TAB>after<TAB>count[<TAB>reference]
with a header line, `#` comment lines and blank lines ignored.

Output: one JSON object per case, one per line, in table order:
    {"line": 12, "expression": "...", "timezone": "...", "after": "...",
     "count": 5, "reference": "crondst", "fires": ["2026-...+02:00", ...]}
`fires` are RFC 3339 with the zone's UTC offset at that instant. For cases
this script does not answer, `reference` is "brute" and `fires` is null: the
Rust test computes those with its brute-force reference. That is the case
 - for 6-field expressions (leading seconds): crondst has no seconds field;
 - for rows marked `brute` in the 5th column: crondst is known to be wrong
   there (the table says why in a comment).
If crondst rejects an expression or fails, the object has "error" instead.

Adaptations to crondst, all of them plain rewrites of the expression that
Vixie cron itself makes too:
 - crondst has no @macros: they are expanded here exactly as Vixie cron
   does (@yearly/@annually = 0 0 1 1 *, @monthly = 0 0 1 * *,
   @weekly = 0 0 * * 0, @daily/@midnight = 0 0 * * *, @hourly = 0 * * * *);
 - crondst only knows lower-case month and weekday names (Vixie cron's are
   case-insensitive): the expression is lower-cased.

How crondst is driven: the start is the `after` instant expressed in the
target zone (crondst computes in the start's tzinfo and excludes the start
itself); each result is normalised through its POSIX timestamp, so the
printed offset is the zone's real offset at the instant crondst meant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import signal
import sys
from zoneinfo import ZoneInfo

PINNED_VERSION = "1.0.3"
# sha256 of crondst-1.0.3-py3-none-any.whl on PyPI.
PINNED_WHEEL_SHA256 = "3bc1267147d000241426eab1af448b2633ec737653f172b676ef0e9836608a6c"

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# A guard: crondst goes wrong around transitions that are not on the hour
# (see Pacific/Chatham in the table); should it ever loop without yielding,
# that case reports an error instead of hanging the test.
SECONDS_PER_CASE = 20


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise CaseTimeout()


def ensure_venv(venv: str) -> str:
    """The venv with the pinned crondst, made once (see
    tests/standins/pinned_venv.py: flock-serialised, ready only once its
    marker exists); returns its python."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "standins"))
    from pinned_venv import ensure_venv as ensure_pinned

    pinned = [("crondst", PINNED_VERSION, PINNED_WHEEL_SHA256)]
    return ensure_pinned(venv, pinned, f".crondst-{PINNED_VERSION}-ready")


def parse_table(text: str):
    """Yields (line number, fields) for each case row."""
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if not header_seen:
            header_seen = True
            if fields[0] == "expression":
                continue
        if len(fields) not in (4, 5):
            raise SystemExit(f"line {number}: expected 4 or 5 tab-separated fields, got {len(fields)}: {line!r}")
        yield number, fields


def for_crondst(expression: str) -> str:
    expression = expression.strip()
    if expression.startswith("@"):
        return MACROS[expression.lower()]
    return expression.lower()


def reference_fires(expression: str, zone: str, after: str, count: int) -> list[str]:
    tz = ZoneInfo(zone)
    start = dt.datetime.fromisoformat(after).astimezone(tz)
    fires = []
    import crondst

    for fire in itertools.islice(crondst.CronDst(for_crondst(expression)).iter(start), count):
        instant = dt.datetime.fromtimestamp(fire.timestamp(), tz=tz)
        fires.append(instant.isoformat(timespec="seconds"))
    return fires


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", nargs="?", default="-", help="TSV table (default: stdin)")
    parser.add_argument(
        "--ignore-marks",
        action="store_true",
        help="run crondst on rows marked `brute` as well (to look at its answers there)",
    )
    parser.add_argument("--ensure-venv", metavar="DIR", help="set up DIR as described above and exit")
    args = parser.parse_args()

    if args.ensure_venv:
        print(ensure_venv(args.ensure_venv))
        return 0

    installed = importlib.metadata.version("crondst")
    if installed != PINNED_VERSION:
        raise SystemExit(f"crondst {installed} installed, the reference is pinned to {PINNED_VERSION}")

    text = sys.stdin.read() if args.table == "-" else open(args.table, encoding="utf-8").read()
    signal.signal(signal.SIGALRM, _on_alarm)
    for number, fields in parse_table(text):
        expression, zone, after, count = fields[:4]
        mark = fields[4].strip() if len(fields) == 5 else ""
        if mark not in ("", "brute"):
            raise SystemExit(f"line {number}: unknown reference column {mark!r} (only `brute`)")
        case = {
            "line": number,
            "expression": expression,
            "timezone": zone,
            "after": after,
            "count": int(count),
        }
        six_fields = not expression.strip().startswith("@") and len(expression.split()) == 6
        if six_fields or (mark == "brute" and not args.ignore_marks):
            case["reference"] = "brute"
            case["fires"] = None
            case["why"] = "6-field expression" if six_fields else "marked brute in the table"
        else:
            case["reference"] = "crondst"
            signal.alarm(SECONDS_PER_CASE)
            try:
                case["fires"] = reference_fires(expression, zone, after, int(count))
            except CaseTimeout:
                case["error"] = f"crondst did not finish within {SECONDS_PER_CASE}s"
            except Exception as error:  # noqa: BLE001 - reported per case
                case["error"] = f"{type(error).__name__}: {error}"
            finally:
                signal.alarm(0)
        print(json.dumps(case), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
