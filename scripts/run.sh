#!/usr/bin/env bash
# The README's one command: patrol on its embedded defaults (SQLite ledger
# ./patrol.db, the shipped schedules/ over fixtures/, alerts on the console).
#
#   ./scripts/run.sh                      # = patrol serve
#   ./scripts/run.sh run residency --wait # any other patrol command
#
# The shipped `residency` schedule is a plugin job, and patrol loads a plugin
# only when patrol.yaml pins its sha256. The example plugin is built here from
# this checkout, like the runner itself, so this script pins the build it just
# made (ADR 0003); a plugin from anyone else is pinned once, by hand, with
# `patrol plugins pin PATH` after checking where it came from.
#
# It runs in the checkout's root (where the embedded defaults find
# schedules/ and fixtures/), so relative paths given to it are read there.
# The pin goes into the config patrol will read: --config/-c FILE or
# PATROL_CONFIG if given, else ./patrol.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${PATROL_CONFIG:-}
previous=
for arg in "$@"; do
  case "$previous" in --config | -c) config=$arg ;; esac
  case "$arg" in --config=*) config=${arg#--config=} ;; esac
  previous=$arg
done

target=${CARGO_TARGET_DIR:-target}
# A debug build by default: a newcomer's first run (cold: about 6 minutes
# on a 2-core machine, against 17 for an optimised build) is about trying
# patrol on the shipped fixtures, not speed. PATROL_PROFILE=release builds
# the optimised binary; production installs use scripts/package.sh.
profile=${PATROL_PROFILE:-dev}
case "$profile" in
  dev) out=debug ;;
  *) out=$profile ;;
esac
# Two builds, not one: a joint build unifies shared dependencies' features
# differently, so a later `cargo run` would rebuild patrol.
cargo build --profile "$profile" --quiet -p patrol-plugin-residency
cargo build --profile "$profile" --quiet -p patrol
case "$(uname -s)" in
  Darwin) library=libpatrol_plugin_residency.dylib ;;
  *) library=libpatrol_plugin_residency.so ;;
esac
patrol="$target/$out/patrol"
# The plugin reads only what its entry allows (docs/plugins.md, "The
# sandbox"): the shipped schedule's inputs.
reads=(--read-path fixtures/plugins/residency)
if [ -n "$config" ]; then
  "$patrol" --config "$config" plugins pin "$target/$out/$library" "${reads[@]}" >&2
else
  "$patrol" plugins pin "$target/$out/$library" "${reads[@]}" >&2
fi
exec "$patrol" "${@:-serve}"
