#!/usr/bin/env bash
# The main job in one command: build popbackup, start a throwaway Dovecot serving the corpus over
# TLS, then `init`, `snapshot` (everything is new), a second `snapshot` (nothing is new), and
# show where the archive is. The archive and its config stay in $POPBACKUP_DEMO_DIR (default
# /tmp/popbackup-demo) so you can look around: `popbackup --config DIR/config.toml snapshots`.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${POPBACKUP_CORPUS:-../shared/corpus}"
[ -d "$corpus/messages" ] || { echo "demo.sh: set POPBACKUP_CORPUS to the corpus directory" >&2; exit 1; }
demo="${POPBACKUP_DEMO_DIR:-/tmp/popbackup-demo}"

scripts/dovecot.sh install
echo "== building popbackup (release)"
cargo build --release -q
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/popbackup"

state=$(mktemp -d /tmp/popbackup-demo-server.XXXXXX)
trap 'scripts/dovecot.sh stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
scripts/dovecot.sh start "$state" >/dev/null
# shellcheck disable=SC1091
. "$state/harness.env"
maildir="$POPBACKUP_DOVECOT_MAIL/u01/Maildir/new"
i=0
find "$corpus/messages" -type f | sort | while read -r f; do
  i=$((i + 1)); cp "$f" "$maildir/$i.demo"
done
chown -R vmail:vmail "$POPBACKUP_DOVECOT_MAIL/u01"
echo "== a throwaway Dovecot serves $(find "$maildir" -type f | wc -l) messages on localhost:$POPBACKUP_DOVECOT_TLS_PORT (implicit TLS)"

rm -rf "$demo"
mkdir -p "$demo"
chmod 700 "$demo"
umask 077
printf 'pw-u01\n' > "$demo/password"
cat > "$demo/config.toml" <<TOML
repository = "$demo/archive"

[accounts.demo]
host = "localhost"
port = $POPBACKUP_DOVECOT_TLS_PORT
tls = "implicit"
user = "u01"
password_file = "$demo/password"
ca_file = "$demo/ca.pem"
TOML
chmod 600 "$demo/config.toml"
cp "$POPBACKUP_DOVECOT_CA" "$demo/ca.pem"

run() { echo "\$ popbackup $*"; "$bin" --config "$demo/config.toml" "$@"; }
run init
run snapshot
run snapshot
run inventory demo --no-headers
run snapshots
# What proves a backup: the archive reads back intact, and a restore gives the mail back.
run verify
run restore --to "maildir:$demo/restored"
# A real reader (Python's mailbox) counts the restored Maildir; every distinct message of the
# latest snapshot must be there (identical copies are archived, and restored, once).
restored=$(python3 -c 'import mailbox, sys; print(len(mailbox.Maildir(sys.argv[1], create=False)))' "$demo/restored")
archived=$("$bin" --config "$demo/config.toml" ls --json \
  | python3 -c 'import json, sys; print(len({m["sha256"] for s in json.load(sys.stdin) for m in s["messages"]}))')
echo "== Python's mailbox reads $restored messages in $demo/restored; the latest snapshot holds $archived distinct ones"
[ "$restored" -eq "$archived" ] || { echo "demo.sh: the restore does not match the archive" >&2; exit 1; }
echo "== the archive is in $demo/archive ($(du -sh "$demo/archive" | cut -f1)); its config is $demo/config.toml"
