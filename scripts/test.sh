#!/usr/bin/env bash
# The one test command: formatting, lints, and every test, with a real Dovecot and a real
# S3-compatible store (Garage) on loopback.
#
# Installs what it needs when missing (dovecot-pop3d, openssl; as root; and Garage with
# `cargo install garage --locked`, about 15 minutes once), starts a throwaway Dovecot
# (scripts/dovecot.sh) and a single-node Garage (scripts/garage.sh) for the duration of the
# run (and a 3-node cluster for the fault test), and stops them on exit.
# Environment: POPBACKUP_CORPUS (default ../shared/corpus when present), CI=true makes tests
# that need Dovecot, Garage or the corpus fail instead of skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${POPBACKUP_CORPUS:-}" ] && [ -d ../shared/corpus ]; then
  POPBACKUP_CORPUS=$(cd ../shared/corpus && pwd)
fi
export POPBACKUP_CORPUS="${POPBACKUP_CORPUS:-}"
[ -n "$POPBACKUP_CORPUS" ] || echo "test.sh: POPBACKUP_CORPUS not set and ../shared/corpus missing: corpus tests will skip" >&2

# Tools the tests use besides Dovecot: python3 (helpers, mailbox), zstd and tar (the repository
# must be readable with standard tools), tzdata (retention in a DST time zone), mount and
# setpriv (local_faults.rs: a small or read-only tmpfs, and running as another user).
missing=()
# mpop and fetchmail: real POP3 clients that download what `serve` offers (serve.rs).
for tool in python3 zstd tar mount mpop fetchmail; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)  # the example units are verified
command -v kill >/dev/null 2>&1 || missing+=(procps)              # SIGINT/SIGTERM tests
[ -e /usr/share/zoneinfo/Europe/Berlin ] || missing+=(tzdata)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/dovecot.sh install
scripts/garage.sh install

state=$(mktemp -d /tmp/popbackup-test.XXXXXX)
cleanup() {
  scripts/garage.sh stop "$state/garage" || true
  scripts/garage.sh stop "$state/garage3" || true
  scripts/dovecot.sh stop "$state" || true
  rm -rf "$state"
}
trap cleanup EXIT
scripts/dovecot.sh start "$state"
export POPBACKUP_DOVECOT_DIR="$state"
scripts/garage.sh start "$state/garage" 1
export POPBACKUP_GARAGE_DIR="$state/garage"
# Three nodes, replication factor 3: the test that kills one mid-snapshot.
scripts/garage.sh start "$state/garage3" 3
export POPBACKUP_GARAGE3_DIR="$state/garage3"
# Where popbackup builds packs before uploading them to a bucket: inside this run's state.
export XDG_CACHE_HOME="$state/cache"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
cargo test --locked --all-targets 2>&1 | tee "$log"
# One closing line for the whole run, summed over the test binaries.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
