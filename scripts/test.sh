#!/usr/bin/env bash
# Runs patrol's whole test suite on a fresh machine: installs PostgreSQL if
# it is missing, starts a throwaway cluster on a free loopback port, runs
# formatting and lint checks and every test, then removes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

find_pg_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

PG_BIN=$(find_pg_bin || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  log "PostgreSQL server not found; installing it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(find_pg_bin)
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

PG_DIR=$(mktemp -d /tmp/patrol-pg.XXXXXX)
PG_PORT=$(free_port)
# initdb refuses to run as root; the cluster belongs to the postgres user.
as_pg() {
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$PG_DIR"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
stop_pg() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_pg EXIT

log "starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null
export PATROL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# Independent checkers of patrol's outputs: pdftotext (poppler) reads the
# control attestation PDFs; the Python securesystemslib package (in-toto's)
# verify its DSSE attestations. Versions pinned in scripts/requirements-test.txt.
if ! command -v pdftotext >/dev/null 2>&1; then
  log "pdftotext not found; installing poppler-utils"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq poppler-utils >/dev/null
fi
VENV=target/test-venv
if [ ! -x "$VENV/bin/python" ] || ! cmp -s scripts/requirements-test.txt "$VENV/requirements-test.txt"; then
  log "Python test packages into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt "$VENV/requirements-test.txt"
fi
export PATROL_TEST_PYTHON="$PWD/$VENV/bin/python"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "NAB scorer port self-checks (python3, stdlib only)"
python3 -m unittest discover -s jobs/anomaly/nab -p 'test_*.py'

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
