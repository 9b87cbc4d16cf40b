#!/usr/bin/env python3
"""Checks webhook requests with the Standard Webhooks specification's
reference Python library (`standardwebhooks`, pinned below): an independent
implementation judging patrol's signatures, driven by
`patrol_standins::standard_webhooks::verify`.

Usage:
    python3 standard_webhooks.py --ensure-venv DIR
        # create DIR as a venv with the pinned library unless already done;
        # safe from parallel processes (an flock serialises them); prints
        # the venv's python.

    VENV/bin/python standard_webhooks.py --verify
        # stdin: {"secret": "whsec_…", "requests": [{"headers": {…},
        #          "body_base64": "…"}, …]}
        # stdout: one JSON list, per request {"ok": true} or
        #         {"ok": false, "error": "…"}
"""

from __future__ import annotations

import argparse
import base64
import json
import sys

PINNED = [
    ("standardwebhooks", "1.3.0", "5bec388e29d3e8c6211af66affa1430ac801cb02f3b132484ef4b8f89d32a5ad"),
]
MARKER = ".standardwebhooks-" + "-".join(version for _, version, _ in PINNED) + "-ready"


def ensure_venv(venv: str) -> str:
    """The venv with PINNED, made once (see pinned_venv.py)."""
    from pinned_venv import ensure_venv as ensure_pinned

    return ensure_pinned(venv, PINNED, MARKER)


def verify(job: dict) -> list:
    from standardwebhooks.webhooks import Webhook

    hook = Webhook(job["secret"])
    verdicts = []
    for request in job["requests"]:
        body = base64.b64decode(request["body_base64"])
        try:
            hook.verify(body, request["headers"], json_parse=False)
            verdicts.append({"ok": True})
        except Exception as error:  # the verdict, whatever the library raised
            verdicts.append({"ok": False, "error": f"{type(error).__name__}: {error}"})
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ensure-venv", metavar="DIR")
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    if args.ensure_venv:
        print(ensure_venv(args.ensure_venv))
        return 0
    if args.verify:
        print(json.dumps(verify(json.load(sys.stdin))))
        return 0
    parser.error("give --ensure-venv DIR or --verify")
    return 2


if __name__ == "__main__":
    sys.exit(main())
