#!/usr/bin/env bash
# Builds patrol to ship: full release optimisation, then the debug info
# split off the binary, as distributions do:
#
#   dist/patrol        the binary, no symbols or line tables (under 100 MB)
#   dist/patrol.debug  its symbols and line tables
#
# The binary names its debug file in `.gnu_debuglink`: installed beside it
# (or under /usr/lib/debug/.build-id/), panics and backtraces name every
# function, with file and line for patrol's own code; without it they show
# addresses only. Keep each patrol.debug with the binary it was split from.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
out=${1:-dist}
cargo build --release --locked --quiet -p patrol
mkdir -p "$out"
cp "$target/release/patrol" "$out/patrol.tmp"
objcopy --only-keep-debug "$out/patrol.tmp" "$out/patrol.debug"
# The link stores the debug file's name and CRC: add it from beside it.
(cd "$out" && objcopy --strip-all --add-gnu-debuglink=patrol.debug patrol.tmp)
mv "$out/patrol.tmp" "$out/patrol"
ls -l "$out/patrol" "$out/patrol.debug"
