"""A venv with pinned wheels, made once: shared by the stand-ins' Python
helpers (smtp_server.py, standard_webhooks.py) and
tests/reference/cron_reference.py, which run it with the system python3
before starting under the venv's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile


def ensure_venv(venv: str, pinned: list[tuple[str, str, str]], marker_name: str) -> str:
    """Creates `venv` with the `pinned` (name, version, sha256) wheels
    unless a previous run finished doing so; returns its python. Parallel
    callers wait on an exclusive flock, and a venv counts as ready only once
    its marker file exists, so an interrupted install is redone."""
    import fcntl

    venv = os.path.abspath(venv)
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, marker_name)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(marker):
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, stdout=sys.stderr)
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as requirements:
                for name, version, digest in pinned:
                    requirements.write(f"{name}=={version} --hash=sha256:{digest}\n")
            try:
                subprocess.run(
                    [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                     "--only-binary", ":all:", "--require-hashes", "-r", requirements.name],
                    check=True,
                    stdout=sys.stderr,
                )
            finally:
                os.unlink(requirements.name)
            with open(marker, "w") as done:
                done.write("ok\n")
    return python
