#!/usr/bin/env bash
# Demo of the main job on this machine: a throwaway Dovecot serving the corpus over TLS, and
# popbackup's client downloading the whole mailbox (pipelined, then serial).
# Later versions run `popbackup init` and `popbackup snapshot` here instead.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${POPBACKUP_CORPUS:-../shared/corpus}"
[ -d "$corpus/messages" ] || { echo "demo.sh: set POPBACKUP_CORPUS to the corpus directory" >&2; exit 1; }
scripts/dovecot.sh install
state=$(mktemp -d /tmp/popbackup-demo.XXXXXX)
trap 'scripts/dovecot.sh stop "$state"; rm -rf "$state"' EXIT
scripts/dovecot.sh start "$state"
# shellcheck disable=SC1091
. "$state/harness.env"
maildir="$POPBACKUP_DOVECOT_MAIL/u01/Maildir/new"
i=0
find "$corpus/messages" -type f | sort | while read -r f; do
  i=$((i + 1)); cp "$f" "$maildir/$i.demo"
done
chown -R vmail:vmail "$POPBACKUP_DOVECOT_MAIL/u01"
cargo build --release --example pop3_fetch -q
for mode in "" --serial; do
  POP3_PASSWORD=pw-u01 target/release/examples/pop3_fetch localhost "$POPBACKUP_DOVECOT_TLS_PORT" implicit u01 "$POPBACKUP_DOVECOT_CA" $mode
done
