#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ with cargo-fuzz (libFuzzer), one after another, each for
# SECONDS_PER_TARGET seconds (default 600), then minimizes each corpus back into
# fuzz/corpus/TARGET, the small committed corpus that tests/integration/fuzz_regressions.rs
# replays in CI. A crash stops the run and leaves its input in fuzz/artifacts/TARGET/: copy it
# to fuzz/regressions/TARGET/ before fixing, so the test keeps it.
#
#   scripts/fuzz.sh [TARGET...]          all targets when none is named
#   SECONDS_PER_TARGET=3600 scripts/fuzz.sh pop3_session
#
# Needs a nightly toolchain and cargo-fuzz; installs both when missing. Prints one line per
# target with its executions and time, for docs/SECURITY.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
secs=${SECONDS_PER_TARGET:-600}
jobs=${FUZZ_JOBS:-1}
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pop3_session pop3_listings repo_files config restore_roundtrip mbox_import sealed_objects)
cargo +nightly fuzz build -O
work=$(mktemp -d /tmp/popbackup-fuzz.XXXXXX)
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  cp corpus/"$t"/* "$work/$t"/ 2>/dev/null || true
  start=$(date +%s)
  log=$work/$t.log
  parallel=()
  [ "$jobs" -gt 1 ] && parallel=(-fork="$jobs")
  cargo +nightly fuzz run -O "$t" "$work/$t" -- -max_total_time="$secs" "${parallel[@]}" \
    -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || {
      echo "fuzz: $t FAILED; see $log and fuzz/artifacts/$t/" >&2; tail -40 "$log" >&2; exit 1; }
  execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}')
  [ "$execs" -gt 0 ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  # Keep the committed corpus small: only inputs that add coverage.
  cargo +nightly fuzz cmin -O "$t" "$work/$t" >/dev/null 2>&1 || true
  find corpus/"$t" -type f ! -name 'seed-*' -delete
  for f in "$work/$t"/*; do
    case $(basename "$f") in seed-*) ;; *) cp "$f" corpus/"$t"/ ;; esac
  done
  echo "fuzz: $t: $execs executions in $(( $(date +%s) - start )) s, corpus $(ls corpus/$t | wc -l) inputs ($(cat corpus/$t/* | wc -c) bytes)"
done
rm -rf "$work"
