"""Verifies DSSE envelopes of in-toto Statements with securesystemslib (the
reference implementation the in-toto project uses), independently of
patrol: reads a JSON list of {"envelope": <envelope object or raw text>}
cases and the public key PEM and key id from argv, prints one JSON list of
verdicts ("verified" or the error)."""

import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def verdict(raw, key):
    try:
        envelope = Envelope.from_dict(json.loads(raw))
        envelope.verify([key], 1)
        if envelope.payload_type != "application/vnd.in-toto+json":
            return "payload type " + envelope.payload_type
        statement = json.loads(envelope.payload)
        if statement.get("_type") != "https://in-toto.io/Statement/v1":
            return "not an in-toto Statement v1"
        if not statement.get("subject"):
            return "no subject"
        return "verified:" + json.dumps(statement["subject"], sort_keys=True)
    except Exception as error:  # every failure is a verdict, never a crash
        return "failed: " + type(error).__name__ + ": " + str(error)[:200]


def main():
    cases_path, pem_path, keyid = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(pem_path, "rb") as handle:
        public = load_pem_public_key(handle.read())
    key = SSlibKey.from_crypto(public, keyid=keyid, scheme="ecdsa-sha2-nistp256")
    with open(cases_path) as handle:
        cases = json.load(handle)
    print(json.dumps([verdict(case, key) for case in cases]))


if __name__ == "__main__":
    main()
