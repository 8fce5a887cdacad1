#!/usr/bin/env bash
# Benchmarks popbackup against the floor (a raw pipelined RETR loop) and its peers (mpop,
# fetchmail) on loopback TLS from a throwaway Dovecot, and writes the table into
# docs/PERFORMANCE.md between the bench markers. One command, as root on Debian:
#
#   scripts/bench.sh            # RUNS=3 by default: each figure is the median of 3 runs
#
# Mailboxes (scripts/bench_mail.py, deterministic): "small" 20,000 messages (~77 MB),
# "mixed" 3,000 messages (~90 MB, a tenth with attachments), "huge" one ~200 MB message; and,
# for memory at scale only, "many": 100,000 small messages, one run of each operation.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RUNS=${RUNS:-3}
export POPBACKUP_CORPUS="${POPBACKUP_CORPUS:-$(cd ../shared/corpus 2>/dev/null && pwd || true)}"
[ -d "$POPBACKUP_CORPUS/messages" ] || { echo "bench.sh: set POPBACKUP_CORPUS" >&2; exit 1; }

need=()
for pkg in mpop fetchmail zstd python3; do command -v "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
[ -x /usr/bin/time ] || need+=(time)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/dovecot.sh install
scripts/garage.sh install
echo "bench: building (release)" >&2
cargo build --release -q --bin popbackup --example pop3_fetch --example delay_link
bin=$root/target/release/popbackup
floor=$root/target/release/examples/pop3_fetch

state=$(mktemp -d /tmp/popbackup-bench.XXXXXX)
link_pid=
trap '[ -z "$link_pid" ] || kill "$link_pid" 2>/dev/null; scripts/garage.sh stop "$state/garage" >/dev/null 2>&1 || true; scripts/dovecot.sh stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
scripts/dovecot.sh start "$state" >/dev/null
# shellcheck disable=SC1091
. "$state/harness.env"
mail=$POPBACKUP_DOVECOT_MAIL
port=$POPBACKUP_DOVECOT_TLS_PORT
ca=$POPBACKUP_DOVECOT_CA

# The median of its arguments, to PREC decimals (2 unless told).
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[2:]]; print(f"{statistics.median(v):.{sys.argv[1]}f}")' "${PREC:-2}" "$@"; }
# Runs a command, prints "SECONDS MAXRSS_KB". With OK_EXIT=N, exit status N is not a failure
# (fetchmail exits 1 when there is no new mail).
# Every run starts with nothing left to write back: the tools that fsync (popbackup, mpop)
# would otherwise wait for what the runs before them wrote (mailboxes, Maildirs, BSMTP files).
timed() {
  local status=0
  sync
  /usr/bin/time -f "%e %M" -o "$state/t" "$@" >/dev/null 2>"$state/err" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne "${OK_EXIT:-0}" ]; then
    cat "$state/err" >&2; echo "bench.sh: $* failed ($status)" >&2; return 1
  fi
  tail -n 1 "$state/t"
}

deliver() { # USER DIR
  local m=$mail/$1/Maildir
  rm -rf "$m"; mkdir -p "$m/cur" "$m/tmp" "$m/new"
  cp "$2"/* "$m/new/"
  chown -R vmail:vmail "$mail/$1"
}

declare -A user=([small]=u37 [mixed]=u38 [huge]=u39)
declare -A extra=([small]=200 [mixed]=30 [huge]=0)
for box in small mixed huge; do
  echo "bench: generating the $box mailbox" >&2
  python3 scripts/bench_mail.py "$box" "$state/gen/$box"
  deliver "${user[$box]}" "$state/gen/$box"
done

row() { printf '| %s | %s | %s | %s |\n' "$@"; }
declare -A local_full local_noop
results=$state/results.md
sizes=$state/sizes.md
: > "$results"; : > "$sizes"

for box in small mixed huge; do
  u=${user[$box]}
  echo "bench: $box" >&2
  raw=$(cat "$state/gen/$box"/* | wc -c)
  n=$(ls "$state/gen/$box" | wc -l)
  # Warm Dovecot's index (its first session over a new mailbox builds it).
  POP3_PASSWORD=pw-$u "$floor" localhost "$port" implicit "$u" "$ca" >/dev/null
  f=(); full=(); noop=(); more=(); grew=0; newraw=0; rss_full=(); rss_noop=(); mp=(); mpn=(); fm=(); fmn=(); fz=(); fzc=()
  for i in $(seq "$RUNS"); do
    t=$(POP3_PASSWORD=pw-$u timed "$floor" localhost "$port" implicit "$u" "$ca"); f+=("${t% *}")
    repo=$state/repo-$box; cfg=$state/cfg-$box.toml
    rm -rf "$repo"
    printf 'repository = "%s"\n[accounts.b]\nhost = "localhost"\nport = %s\nuser = "%s"\npassword_env = "PW"\nca_file = "%s"\n' \
      "$repo" "$port" "$u" "$ca" > "$cfg"; chmod 600 "$cfg"
    PW=pw-$u "$bin" --config "$cfg" init -q
    t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); full+=("${t% *}"); rss_full+=("${t#* }")
    # The archive of exactly these messages: one snapshot.
    if [ "$i" -eq 1 ]; then
      repo_bytes=$(du -sb "$repo" | cut -f1); pack_bytes=$(du -sb "$repo/packs" | cut -f1)
      frame_bytes=$(for p in "$repo"/packs/*.tar; do tar -tvf "$p" messages.zst; done | awk '{s += $3} END {print s}')
      # The dictionary the snapshot made, for the floor with compression below.
      dict=none; for d in "$repo"/dicts/*.zdict.zst; do [ -e "$d" ] && { zstd -dc -q "$d" > "$state/dict-$box"; dict=$state/dict-$box; }; done
    fi
    # The floor plus only the compression every archive with a frame per message must do (and
    # then the frame check): what is left of 1.3x the floor for everything else. Not for the
    # 200 MB message, which this client would hold whole and compress on one thread.
    if [ "$box" != huge ]; then
      t=$(POP3_PASSWORD=pw-$u timed "$floor" localhost "$port" implicit "$u" "$ca" --compress "$dict"); fz+=("${t% *}")
      t=$(POP3_PASSWORD=pw-$u timed "$floor" localhost "$port" implicit "$u" "$ca" --compress "$dict" --check); fzc+=("${t% *}")
    fi
    # A no-op run is a tenth of a second, most of it Dovecot's: three of each per round, so
    # that the medians say more than the machine's noise.
    for _ in 1 2 3; do
      t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); noop+=("${t% *}"); rss_noop+=("${t#* }")
    done
    if [ "${extra[$box]}" -gt 0 ]; then
      python3 scripts/bench_mail.py more "$state/more" "${extra[$box]}" "$i"
      cp "$state/more"/* "$mail/$u/Maildir/new/"; chown -R vmail:vmail "$mail/$u"
      before=$(du -sb "$repo" | cut -f1)
      t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); more+=("${t% *}")
      # What a night with new mail adds to the repository, against the new mail itself.
      [ "$i" -gt 1 ] || { grew=$(( $(du -sb "$repo" | cut -f1) - before )); newraw=$(cat "$state/more"/* | wc -c); }
      for x in "$state/more"/*; do rm -f "$mail/$u/Maildir/new/$(basename "$x")" "$mail/$u/Maildir/cur/$(basename "$x")"*; done
      rm -rf "$state/more"
    fi
    # mpop: keep on, Maildir delivery, fresh UIDL list each time (a full download).
    md=$state/mpop-$box; rm -rf "$md"; mkdir -p "$md/new" "$md/cur" "$md/tmp"
    cat > "$state/mpoprc" <<EOF
account b
host localhost
port $port
tls on
tls_starttls off
tls_trust_file $ca
user $u
passwordeval echo pw-$u
keep on
only_new on
pipelining on
uidls_file $state/mpop-uidls
delivery maildir $md
EOF
    chmod 600 "$state/mpoprc"; rm -f "$state/mpop-uidls"
    t=$(timed mpop -q -C "$state/mpoprc" b); mp+=("${t% *}")
    # Its no-op run: the UIDL list now names every message.
    for _ in 1 2 3; do t=$(timed mpop -q -C "$state/mpoprc" b); mpn+=("${t% *}"); done
    # fetchmail: keep, uidl, one BSMTP file.
    cat > "$state/fetchmailrc" <<EOF
poll localhost service $port protocol pop3 uidl
  user "$u" password "pw-$u" ssl sslcertfile "$ca" sslcertck keep fetchall
EOF
    chmod 600 "$state/fetchmailrc"; rm -f "$state/fetchids" "$state/bsmtp"
    t=$(timed fetchmail -s -f "$state/fetchmailrc" -i "$state/fetchids" --bsmtp "$state/bsmtp" --nosyslog); fm+=("${t% *}")
    cat > "$state/fetchmailrc" <<EOF
poll localhost service $port protocol pop3 uidl
  user "$u" password "pw-$u" ssl sslcertfile "$ca" sslcertck keep
EOF
    chmod 600 "$state/fetchmailrc"
    for _ in 1 2 3; do
      t=$(OK_EXIT=1 timed fetchmail -s -f "$state/fetchmailrc" -i "$state/fetchids" --bsmtp "$state/bsmtp" --nosyslog); fmn+=("${t% *}")
    done
  done
  F=$(median "${f[@]}"); P=$(median "${full[@]}")
  local_full[$box]=$P; local_noop[$box]=$(median "${noop[@]}")
  ratio=$(python3 -c "print(f'{$P/$F:.2f}')")
  row "$box ($n msgs, $((raw / 1000000)) MB)" "floor $F s" "popbackup full $P s (${ratio}x floor)" "mpop $(median "${mp[@]}") s, fetchmail $(median "${fm[@]}") s" >> "$results"
  row "" "nothing new: popbackup $(median "${noop[@]}") s" "fetchmail $(median "${fmn[@]}") s, mpop $(median "${mpn[@]}") s" "1% new: popbackup ${more:+$(median "${more[@]}") s; the repository grew $((grew / 1000)) kB for $((newraw / 1000)) kB of new mail}" >> "$results"
  if [ ${#fz[@]} -gt 0 ]; then
    Z=$(median "${fz[@]}"); ZC=$(median "${fzc[@]}")
    row "" "floor + compression alone (a frame per message, the snapshot's dictionary) $Z s ($(python3 -c "print(f'{$Z/$F:.2f}')")x floor)" "and the frame check $ZC s ($(python3 -c "print(f'{$ZC/$F:.2f}')")x)" "popbackup: $(python3 -c "print(f'{$P/$ZC:.2f}')")x of that" >> "$results"
  fi
  row "" "peak RSS, full snapshot" "$(( $(median "${rss_full[@]}" | cut -d. -f1) / 1024 )) MiB" "nothing new: $(( $(median "${rss_noop[@]}" | cut -d. -f1) / 1024 )) MiB" >> "$results"
  # Sizes: the repository after one snapshot vs solid archives of the same messages, both as
  # the files were generated (LF) and in the wire form popbackup archives (CRLF, what Dovecot
  # sends); the ratio is against the wire form.
  tz3=$(tar -C "$state/gen/$box" -cf - . | zstd -3 -q -c | wc -c)
  tz19=$(tar -C "$state/gen/$box" -cf - . | zstd -19 -T0 -q -c | wc -c)
  rm -rf "$state/crlf"; mkdir -p "$state/crlf"
  python3 - "$state/gen/$box" "$state/crlf" <<'PY'
import os, sys
for n in os.listdir(sys.argv[1]):
    data = open(os.path.join(sys.argv[1], n), "rb").read()
    open(os.path.join(sys.argv[2], n), "wb").write(data.replace(b"\n", b"\r\n"))
PY
  tzw=$(tar -C "$state/crlf" -cf - . | zstd -3 -q -c | wc -c); rm -rf "$state/crlf"
  row "$box" "raw $((raw / 1000)) kB" "popbackup repository after one snapshot $((repo_bytes / 1000)) kB ($(python3 -c "print(f'{$repo_bytes/$tzw:.2f}')")x tar\|zstd -3 of the wire form); its packs alone $((pack_bytes / 1000)) kB ($(python3 -c "print(f'{$pack_bytes/$tzw:.2f}')")x), their frames alone $((frame_bytes / 1000)) kB ($(python3 -c "print(f'{$frame_bytes/$tzw:.2f}')")x)" "tar\|zstd -3: wire form (CRLF) $((tzw / 1000)) kB, files (LF) $((tz3 / 1000)) kB; zstd -19 (LF) $((tz19 / 1000)) kB" >> "$sizes"
done

# Pinned, as when the server is on another host (issue 25): Dovecot and its children on
# CPU 0, each client on CPU 1. Wall time against the floor pinned the same way, and CPU
# seconds (user + system) of each client, against a reference that does only the work an
# archive must: `sha256sum` and `zstd -3 -T1` over the same messages in the wire form.
# Children forked later inherit the master's CPU; the ones running now are moved too.
pin_dovecot() { for p in $(pgrep -f "$state/dovecot.conf") $(pgrep -x pop3-login) $(pgrep -x pop3) $(pgrep -x auth) $(pgrep -x anvil) $(pgrep -x log) $(pgrep -x config); do taskset -pc "$1" "$p" >/dev/null 2>&1 || true; done; }
# "SECONDS CPU_SECONDS" of a command.
cpu_timed() {
  sync
  /usr/bin/time -f "%e %U %S" -o "$state/t" "$@" >/dev/null 2>"$state/err" || { [ "${OK_EXIT:-0}" -ne 0 ] || { cat "$state/err" >&2; return 1; }; }
  tail -n 1 "$state/t" | awk '{ printf "%s %.2f\n", $1, $2 + $3 }'
}
per_gb() { python3 -c "print(f'{$1 / ($2 / 1e9):.1f}')"; }
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  pin_dovecot 0
  for box in small mixed huge; do
    u=${user[$box]}
    raw=$(cat "$state/gen/$box"/* | wc -c)
    pf=(); pp=(); pcpu=(); mcpu=(); fcpu=(); pe=(); pecpu=()
    for i in $(seq "$RUNS"); do
      t=$(POP3_PASSWORD=pw-$u cpu_timed taskset -c 1 "$floor" localhost "$port" implicit "$u" "$ca"); pf+=("${t% *}")
      repo=$state/repo-pinned; cfg=$state/cfg-pinned.toml; rm -rf "$repo"
      printf 'repository = "%s"\n[accounts.b]\nhost = "localhost"\nport = %s\nuser = "%s"\npassword_env = "PW"\nca_file = "%s"\n' \
        "$repo" "$port" "$u" "$ca" > "$cfg"; chmod 600 "$cfg"
      "$bin" --config "$cfg" init -q
      t=$(PW=pw-$u cpu_timed taskset -c 1 "$bin" --config "$cfg" snapshot -q); pp+=("${t% *}"); pcpu+=("${t#* }")
      # The same into an encrypted repository. Its key is made cheap to derive: Argon2id's
      # cost is a fixed one per command (measured on its own below), not encryption's.
      erepo=$state/repo-pinned-enc; ecfg=$state/cfg-pinned-enc.toml; rm -rf "$erepo"
      printf 'repository = "%s"\nrepository_password_env = "RPW"\n[accounts.b]\nhost = "localhost"\nport = %s\nuser = "%s"\npassword_env = "PW"\nca_file = "%s"\n' \
        "$erepo" "$port" "$u" "$ca" > "$ecfg"; chmod 600 "$ecfg"
      RPW=bench "$bin" --config "$ecfg" init -q --encrypt --kdf-memory 1MiB --kdf-iterations 1
      t=$(PW=pw-$u RPW=bench cpu_timed taskset -c 1 "$bin" --config "$ecfg" snapshot -q); pe+=("${t% *}"); pecpu+=("${t#* }")
      if [ "$box" = small ]; then rm -rf "$state/repo-small-enc"; mv "$erepo" "$state/repo-small-enc"; fi
      md=$state/mpop-pinned; rm -rf "$md"; mkdir -p "$md/new" "$md/cur" "$md/tmp"
      sed "s#^delivery maildir .*#delivery maildir $md#; s#^user .*#user $u#; s#^passwordeval .*#passwordeval echo pw-$u#" "$state/mpoprc" > "$state/mpoprc-pinned"
      chmod 600 "$state/mpoprc-pinned"; rm -f "$state/mpop-uidls"
      t=$(cpu_timed taskset -c 1 mpop -q -C "$state/mpoprc-pinned" b); mcpu+=("${t#* }")
      printf 'poll localhost service %s protocol pop3 uidl\n  user "%s" password "pw-%s" ssl sslcertfile "%s" sslcertck keep fetchall\n' "$port" "$u" "$u" "$ca" > "$state/fetchmailrc"
      chmod 600 "$state/fetchmailrc"; rm -f "$state/fetchids" "$state/bsmtp"
      t=$(cpu_timed taskset -c 1 fetchmail -s -f "$state/fetchmailrc" -i "$state/fetchids" --bsmtp "$state/bsmtp" --nosyslog); fcpu+=("${t#* }")
    done
    F=$(median "${pf[@]}"); P=$(median "${pp[@]}"); C=$(median "${pcpu[@]}")
    row "$box, pinned (Dovecot on CPU 0, the client on CPU 1)" "floor $F s" "popbackup full $P s ($(python3 -c "print(f'{$P/$F:.2f}')")x floor)" "CPU s/GB: popbackup $(per_gb "$C" "$raw") ($C s), mpop $(per_gb "$(median "${mcpu[@]}")" "$raw"), fetchmail $(per_gb "$(median "${fcpu[@]}")" "$raw")" >> "$results"
    E=$(median "${pe[@]}"); EC=$(median "${pecpu[@]}")
    row "$box, pinned, encrypted repository" "popbackup full $E s" "$(python3 -c "print(f'{$E/$P:.2f}')")x the plain run's wall time" "CPU $EC s, $(python3 -c "print(f'{$EC/$C:.2f}')")x the plain run's" >> "$results"
    if [ "$box" = small ]; then
      # The reference: the hash and the compression of every message, in the wire form.
      rm -rf "$state/crlf"; mkdir -p "$state/crlf"
      python3 - "$state/gen/$box" "$state/crlf" <<'PY'
import os, sys
for n in os.listdir(sys.argv[1]):
    data = open(os.path.join(sys.argv[1], n), "rb").read()
    open(os.path.join(sys.argv[2], n), "wb").write(data.replace(b"\n", b"\r\n"))
PY
      t=$(cpu_timed taskset -c 1 sh -c "cd '$state/crlf' && ls | xargs sha256sum"); rsha=${t#* }
      t=$(cpu_timed taskset -c 1 sh -c "cd '$state/crlf' && ls | xargs zstd -3 -T1 -q -c"); rzst=${t#* }
      R=$(python3 -c "print(f'{$rsha + $rzst:.2f}')")
      row "" "CPU cost of the full snapshot: popbackup $C s" "reference sha256sum $rsha s + zstd -3 -T1 $rzst s = $R s" "popbackup $(python3 -c "print(f'{$C/$R:.2f}')")x the reference" >> "$results"
      rm -rf "$state/crlf"
    fi
  done
  pin_dovecot 0-$(($(nproc) - 1))
fi

# A link with latency (issue 25): 10 ms each way (20 ms a round trip) and 200 mbit, from
# examples/delay_link.rs between every client and Dovecot, as `tc netem` would give on a
# kernel that has it (this one has no sch_netem). Each client against the floor run the
# same way; a night with nothing new against the floor's login and UIDL alone, with the round
# trips each client took (counted by the link). fetchmail does not pipeline, so its full
# download is one round trip per message: taken once, on the mixed mailbox only.
echo "bench: a link with latency" >&2
lport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$root/target/release/examples/delay_link" "$lport" "127.0.0.1:$port" 10 200 > "$state/link.out" 2> "$state/link.err" &
link_pid=$!
for _ in $(seq 50); do grep -q listening "$state/link.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$state/link.out" || { echo "bench.sh: delay_link did not start" >&2; cat "$state/link.err" >&2; exit 1; }
# The round trips of the connection that ended last.
trips() { sleep 0.2; tail -n 1 "$state/link.err" | awk '{print $2}'; }
for box in small mixed; do
  u=${user[$box]}
  lf=(); lp=(); ln=(); lu=(); lm=(); lmn=(); lfm=(); lfmn=()
  for i in $(seq "$RUNS"); do
    t=$(POP3_PASSWORD=pw-$u timed "$floor" localhost "$lport" implicit "$u" "$ca"); lf+=("${t% *}")
    repo=$state/repo-link; cfg=$state/cfg-link.toml; rm -rf "$repo"
    printf 'repository = "%s"\n[accounts.b]\nhost = "localhost"\nport = %s\nuser = "%s"\npassword_env = "PW"\nca_file = "%s"\n' \
      "$repo" "$lport" "$u" "$ca" > "$cfg"; chmod 600 "$cfg"
    "$bin" --config "$cfg" init -q
    t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); lp+=("${t% *}")
    for _ in 1 2 3; do
      t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); ln+=("${t% *}")
      t=$(POP3_PASSWORD=pw-$u timed "$floor" localhost "$lport" implicit "$u" "$ca" --uidl-only); lu+=("${t% *}")
    done
    PW=pw-$u "$bin" --config "$cfg" snapshot -q; pb_trips=$(trips)
    POP3_PASSWORD=pw-$u "$floor" localhost "$lport" implicit "$u" "$ca" --uidl-only >/dev/null; floor_trips=$(trips)
    md=$state/mpop-link; rm -rf "$md"; mkdir -p "$md/new" "$md/cur" "$md/tmp"
    sed "s#^port .*#port $lport#; s#^delivery maildir .*#delivery maildir $md#; s#^user .*#user $u#; s#^passwordeval .*#passwordeval echo pw-$u#" "$state/mpoprc" > "$state/mpoprc-link"
    chmod 600 "$state/mpoprc-link"; rm -f "$state/mpop-uidls"
    t=$(timed mpop -q -C "$state/mpoprc-link" b); lm+=("${t% *}")
    for _ in 1 2 3; do t=$(timed mpop -q -C "$state/mpoprc-link" b); lmn+=("${t% *}"); done
    mpop_trips=$(trips)
    printf 'poll localhost service %s protocol pop3 uidl\n  user "%s" password "pw-%s" ssl sslcertfile "%s" sslcertck keep fetchall\n' "$lport" "$u" "$u" "$ca" > "$state/fetchmailrc"
    chmod 600 "$state/fetchmailrc"; rm -f "$state/fetchids" "$state/bsmtp"
    if [ "$box" = mixed ] && [ "$i" -eq 1 ]; then
      t=$(timed fetchmail -s -f "$state/fetchmailrc" -i "$state/fetchids" --bsmtp "$state/bsmtp" --nosyslog); lfm+=("${t% *}")
    else
      # Its list of seen messages, without downloading them over the slow link.
      fetchmail -s -f "$state/fetchmailrc" -i "$state/fetchids" --bsmtp "$state/bsmtp" --nosyslog --service "$port" >/dev/null 2>&1 || true
    fi
    sed -i 's/ fetchall$//' "$state/fetchmailrc"
    for _ in 1 2 3; do
      t=$(OK_EXIT=1 timed fetchmail -s -f "$state/fetchmailrc" -i "$state/fetchids" --bsmtp "$state/bsmtp" --nosyslog); lfmn+=("${t% *}")
    done
    fetchmail_trips=$(trips)
  done
  F=$(median "${lf[@]}"); P=$(median "${lp[@]}"); N=$(median "${ln[@]}"); U=$(median "${lu[@]}")
  row "$box, 10 ms each way, 200 mbit" "floor $F s" "popbackup full $P s ($(python3 -c "print(f'{$P/$F:.2f}')")x floor)" "mpop $(median "${lm[@]}") s${lfm:+, fetchmail $(median "${lfm[@]}") s}" >> "$results"
  row "" "nothing new: popbackup $N s ($(python3 -c "print(f'{$N/$U:.2f}')")x the floor's login and UIDL, $U s)" "fetchmail $(median "${lfmn[@]}") s, mpop $(median "${lmn[@]}") s" "round trips: popbackup $pb_trips, the floor $floor_trips, mpop $mpop_trips, fetchmail $fetchmail_trips" >> "$results"
done
kill "$link_pid" 2>/dev/null || true; link_pid=

# verify and restore on the small mailbox's repository.
repo=$state/repo-small
tar -C "$state/gen/small" -cf "$state/small.tar" . ; zstd -3 -q -c "$state/small.tar" > "$state/small.tar.zst"
# A verify is under half a second, so one run says more about the machine than the code: the
# plain and encrypted repositories and the reference, taken in turn, several times each.
vts=(); evts=(); rts=()
[ -d "$state/repo-small-enc" ] &&
  printf 'repository = "%s"\nrepository_password_env = "RPW"\n' "$state/repo-small-enc" > "$state/cfg-small-enc.toml"
for _ in $(seq $((2 * RUNS + 3))); do
  t=$(timed "$bin" --repo "$repo" verify -q); vts+=("${t% *}"); vrss=${t#* }
  if [ -d "$state/repo-small-enc" ]; then
    t=$(RPW=bench timed "$bin" --config "$state/cfg-small-enc.toml" verify -q); evts+=("${t% *}")
  fi
  t=$(timed sh -c "zstd -d -c '$state/small.tar.zst' | sha256sum"); rts+=("${t% *}")
done
vt=$(PREC=3 median "${vts[@]}"); rt=$(PREC=3 median "${rts[@]}")
[ ${#evts[@]} -gt 0 ] && evt=$(PREC=3 median "${evts[@]}")
# What opening an encrypted repository costs: Argon2id at its defaults, once per command.
rm -rf "$state/repo-kdf"; printf 'repository = "%s"\nrepository_password_env = "RPW"\n' "$state/repo-kdf" > "$state/cfg-kdf.toml"
RPW=bench "$bin" --config "$state/cfg-kdf.toml" init -q --encrypt
t=$(RPW=bench timed "$bin" --config "$state/cfg-kdf.toml" snapshots -q); kdft=${t% *}; kdfrss=${t#* }
t=$(timed "$bin" --repo "$repo" snapshots -q); plainopen=${t% *}
rawsmall=$(cat "$state/gen/small"/* | wc -c)
t=$(timed "$bin" --repo "$repo" restore -q --to "maildir:$state/restored"); md=${t% *}; mdrss=${t#* }
t=$(timed "$bin" --repo "$repo" restore -q --to "mbox:$state/restored.mbox"); mb=${t% *}
mkdir -p "$state/untar"; t=$(timed tar -C "$state/untar" -xf "$state/small.tar"); ut=${t% *}
t=$(timed "$bin" --repo "$state/repo-huge" restore -q --to "maildir:$state/restored-huge"); hugerss=${t#* }
{
  row "verify (small)" "popbackup $vt s ($(python3 -c "print(f'{$rawsmall/$vt/1e6:.0f}')") MB/s), peak RSS $((vrss / 1024)) MiB" "zstd -d \| sha256sum $rt s" "ratio $(python3 -c "print(f'{$vt/$rt:.2f}')")x"
  if [ -n "${evt:-}" ]; then
    row "verify (small), encrypted repository" "popbackup $evt s" "$(python3 -c "print(f'{$evt/$vt:.2f}')")x the plain repository's" "zstd -d \| sha256sum ratio $(python3 -c "print(f'{$evt/$rt:.2f}')")x"
  fi
  row "opening an encrypted repository (Argon2id 64 MiB, 7 passes)" "popbackup snapshots $kdft s, peak RSS $((kdfrss / 1024)) MiB" "a plain repository $plainopen s" "once per command"
  row "restore (small, 20,000 msgs)" "Maildir $md s ($(python3 -c "print(f'{20000/$md:.0f}')") msgs/s), mbox $mb s ($(python3 -c "print(f'{20000/$mb:.0f}')") msgs/s)" "tar -x $ut s" "peak RSS $((mdrss / 1024)) MiB; huge message restore $((hugerss / 1024)) MiB"
} >> "$results"

# import: the small mailbox's 20,000 files as a mail client's Maildir (into a repository of
# its own, so every message is new), then unchanged (nothing may be read); and the mbox the
# restore above wrote, the same way.
echo "bench: import" >&2
md=$state/import-maildir; rm -rf "$md" "$state/repo-import"; mkdir -p "$md/cur" "$md/new" "$md/tmp"
cp "$state/gen/small"/* "$md/new/"
"$bin" --repo "$state/repo-import" init -q
t=$(timed "$bin" --repo "$state/repo-import" import -q "maildir:$md"); imf=${t% *}; imfrss=${t#* }
t=$(timed "$bin" --repo "$state/repo-import" import -q "maildir:$md"); ims=${t% *}; imsrss=${t#* }
t=$(timed "$bin" --repo "$state/repo-import" import -q "mbox:$state/restored.mbox" --account mbox); ibf=${t% *}; ibfrss=${t#* }
t=$(timed "$bin" --repo "$state/repo-import" import -q "mbox:$state/restored.mbox" --account mbox); ibs=${t% *}
row "import (small, 20,000 files)" "Maildir: first run $imf s, peak RSS $((imfrss / 1024)) MiB" "unchanged second run $ims s, peak RSS $((imsrss / 1024)) MiB" "the same as one mbox ($(( $(stat -c %s "$state/restored.mbox") / 1000000 )) MB): first run $ibf s (peak RSS $((ibfrss / 1024)) MiB), unchanged $ibs s" >> "$results"
rm -rf "$md" "$state/repo-import"
# A folder five times as large, of tiny messages: memory must not grow with the folder.
python3 - "$md" <<'PY'
import os, sys
root = sys.argv[1]
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
for i in range(100000):
    with open(os.path.join(root, "cur", f"{i:06d}.bench:2,S"), "w") as f:
        f.write(f"From: a{i}@example.org\nSubject: message {i}\nMessage-ID: <{i}@example.org>\n\nbody {i}\n")
PY
"$bin" --repo "$state/repo-import" init -q
t=$(timed "$bin" --repo "$state/repo-import" import -q "maildir:$md"); ilf=${t% *}; ilfrss=${t#* }
t=$(timed "$bin" --repo "$state/repo-import" import -q "maildir:$md"); ils=${t% *}; ilsrss=${t#* }
row "import (100,000 tiny files)" "Maildir: first run $ilf s, peak RSS $((ilfrss / 1024)) MiB" "unchanged second run $ils s, peak RSS $((ilsrss / 1024)) MiB" "" >> "$results"
rm -rf "$md" "$state/repo-import"

# The repository in a bucket: the small mailbox and the 200 MB message to a single-node
# Garage on loopback (every request a real S3 request, signed, over HTTP), next to the local
# disk's figures above.
echo "bench: object storage (Garage)" >&2
scripts/garage.sh start "$state/garage" 1 2>/dev/null
# shellcheck disable=SC1091
. "$state/garage/garage.env"
s3full=(); s3noop=(); s3rss=()
for box in small huge; do
  u=${user[$box]}
  for i in $(seq "$RUNS"); do
    cfg=$state/cfg-s3-$box.toml
    printf 'repository = "s3://%s/%s-%s"\n[s3]\nendpoint = "%s"\nregion = "%s"\naccess_key_id = "%s"\nsecret_access_key_file = "%s"\n[accounts.b]\nhost = "localhost"\nport = %s\nuser = "%s"\npassword_env = "PW"\nca_file = "%s"\n' \
      "$POPBACKUP_GARAGE_BUCKET" "$box" "$i" "$POPBACKUP_GARAGE_ENDPOINTS" "$POPBACKUP_GARAGE_REGION" "$POPBACKUP_GARAGE_KEY_ID" "$POPBACKUP_GARAGE_SECRET_FILE" "$port" "$u" "$ca" > "$cfg"; chmod 600 "$cfg"
    XDG_CACHE_HOME=$state/cache "$bin" --config "$cfg" init -q
    t=$(PW=pw-$u XDG_CACHE_HOME=$state/cache timed "$bin" --config "$cfg" snapshot -q)
    if [ "$box" = small ]; then
      s3full+=("${t% *}")
      for _ in 1 2 3; do
        t=$(PW=pw-$u XDG_CACHE_HOME=$state/cache timed "$bin" --config "$cfg" snapshot -q); s3noop+=("${t% *}")
      done
    else
      s3rss+=("${t#* }")
    fi
  done
done
XDG_CACHE_HOME=$state/cache "$bin" --config "$state/cfg-s3-huge.toml" verify -q
row "small to a bucket (Garage, 1 node, loopback)" "full snapshot $(median "${s3full[@]}") s (local disk ${local_full[small]} s)" "nothing new $(median "${s3noop[@]}") s (local disk ${local_noop[small]} s)" "200 MB message to the bucket: peak RSS $(( $(median "${s3rss[@]}" | cut -d. -f1) / 1024 )) MiB" >> "$results"

# Memory at scale: a mailbox of 100,000 small messages, one run of each operation (peak RSS
# is what is measured here; the times are for orientation). The night removes the 1,000
# oldest messages and adds 1,000.
echo "bench: many (100,000 messages)" >&2
u=u35; python3 scripts/bench_mail.py more "$state/gen/many" 100000 50
# cp of 100,000 files does not fit an argument list.
m=$mail/$u/Maildir; rm -rf "$m"; mkdir -p "$m/cur" "$m/tmp" "$m/new"
cp -r "$state/gen/many/." "$m/new/"; chown -R vmail:vmail "$mail/$u"
rawmany=$(find "$state/gen/many" -type f -exec cat {} + | wc -c); rm -rf "$state/gen/many"
repo=$state/repo-many; cfg=$state/cfg-many.toml
printf 'repository = "%s"\n[accounts.b]\nhost = "localhost"\nport = %s\nuser = "%s"\npassword_env = "PW"\nca_file = "%s"\n' \
  "$repo" "$port" "$u" "$ca" > "$cfg"; chmod 600 "$cfg"
POP3_PASSWORD=pw-$u "$floor" localhost "$port" implicit "$u" "$ca" >/dev/null
PW=pw-$u "$bin" --config "$cfg" init -q
t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); many_full=${t% *}; many_full_rss=${t#* }
t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); many_noop_rss=${t#* }
python3 - "$m" <<'PY'
import os, sys
names = sorted((n, d) for d in ("cur", "new") for n in os.listdir(os.path.join(sys.argv[1], d)))
for n, d in names[:1000]:
    os.remove(os.path.join(sys.argv[1], d, n))
PY
python3 scripts/bench_mail.py more "$state/more" 1000 60
cp "$state/more"/* "$m/new/"; chown -R vmail:vmail "$mail/$u"; rm -rf "$state/more"
t=$(PW=pw-$u timed "$bin" --config "$cfg" snapshot -q); many_night=${t% *}; many_night_rss=${t#* }
t=$(timed "$bin" --repo "$repo" verify -q); many_verify_rss=${t#* }
t=$(timed "$bin" --repo "$repo" restore -q --to "mbox:$state/many.mbox"); many_mbox_rss=${t#* }; rm -f "$state/many.mbox"
t=$(timed "$bin" --repo "$repo" restore -q --to "maildir:$state/many-md"); many_md_rss=${t#* }; rm -rf "$state/many-md"
t=$(timed "$bin" --repo "$repo" ls latest); many_ls_rss=${t#* }
t=$(timed "$bin" --repo "$repo" ls latest --json); many_lsj_rss=${t#* }
t=$(timed "$bin" --repo "$repo" restore --dry-run --to "mbox:$state/many.mbox"); many_dry_rss=${t#* }
# Retention: keep the night's snapshot only, and repack every pack with any unused bytes (the
# 1,000 messages that went are spread over the first pack), so that prune copies frames.
"$bin" --repo "$repo" forget -q --keep-last 1
t=$(timed "$bin" --repo "$repo" prune -q --max-unused 1); many_prune_rss=${t#* }
"$bin" --repo "$repo" verify -q
mib() { echo "$(( $1 / 1024 )) MiB"; }
{
  row "many (100000 msgs, $((rawmany / 1000000)) MB), peak RSS" "full snapshot $(mib "$many_full_rss") (${many_full} s), nothing new $(mib "$many_noop_rss")" "a night (1,000 gone, 1,000 new) $(mib "$many_night_rss") (${many_night} s)" "verify $(mib "$many_verify_rss"), restore to mbox $(mib "$many_mbox_rss"), to Maildir $(mib "$many_md_rss"), ls $(mib "$many_ls_rss") (with --json $(mib "$many_lsj_rss")), restore --dry-run $(mib "$many_dry_rss"), prune that repacks $(mib "$many_prune_rss")"
} >> "$results"

table=$state/table.md
{
  echo "<!-- bench:start -->"
  echo "Measured by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, median of $RUNS runs (of $((3 * RUNS)) for the runs with nothing new), TLS on loopback from Dovecot $(dovecot --version | cut -d' ' -f1):"
  echo
  echo "| mailbox | | | |"
  echo "|---|---|---|---|"
  cat "$results"
  echo
  echo "| archive size | | | |"
  echo "|---|---|---|---|"
  cat "$sizes"
  echo "<!-- bench:end -->"
} > "$table"
python3 - "$root/docs/PERFORMANCE.md" "$table" <<'PY'
import re, sys
doc, table = open(sys.argv[1]).read(), open(sys.argv[2]).read().strip()
if "<!-- bench:start -->" in doc:
    doc = re.sub(r"<!-- bench:start -->.*?<!-- bench:end -->", lambda m: table, doc, flags=re.S)
else:
    doc = doc.replace("## verify", "## Benchmark (scripts/bench.sh)\n\n" + table + "\n\n## verify", 1)
open(sys.argv[1], "w").write(doc)
PY
cat "$table"
