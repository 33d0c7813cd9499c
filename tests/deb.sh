#!/usr/bin/env bash
# The Debian package end to end (issue 15, docs/install.md): build it with `cargo xtask deb`,
# install it with apt-get beside Debian's runit, daemontools and util-linux, check that the
# files land where documented, that nothing of the system changed owner (util-linux's logger
# above all), that the man page renders and the installed daemons run a tree, then purge it and
# check that nothing is left. Needs root; run by .ci/run after the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "deb.sh: $*"; }
fail() { echo "deb.sh: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (apt-get install)"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
! installed warden || fail "a warden package is installed already: not touching it"
for p in runit daemontools bsdutils man-db; do installed "$p" || fail "$p is not installed (.ci/run installs it)"; done

owner() { dpkg -S "$1" 2>/dev/null | cut -d: -f1; }
logger_path=$(readlink -f "$(command -v logger)")
logger_owner=$(owner "$logger_path")
[ -n "$logger_owner" ] || fail "logger ($logger_path) belongs to no package"
svscan_man=$(man -w svscan)
service_before=$(readlink -f /etc/service || true)
pid1_before=$(readlink /proc/1/exe || true)

deb=$(cargo xtask deb | tail -n 1)
[ -f "$deb" ] || fail "cargo xtask deb made no file ($deb)"
say "built $deb ($(stat -c %s "$deb") bytes)"
# Output is captured before it is matched: with pipefail, `cmd | grep -q` fails whenever grep
# exits at its first match while cmd still writes (SIGPIPE).
info=$(dpkg-deb --info "$deb")
[ "$(dpkg-deb --field "$deb" Package)" = warden ] || fail "not a warden package: $info"
! grep -qE "^ +(preinst|postinst|prerm|postrm|conffiles)" <<<"$info" ||
  fail "the package has maintainer scripts or conffiles"

work=$(mktemp -d)
tree_pid=
cleanup() {
  if [ -n "$tree_pid" ]; then
    # A failed check left the tree running: stop it the way users do, then by pid.
    timeout 15 /usr/bin/svctl -d "$work/sv" -w 10 shutdown >/dev/null 2>&1 || kill "$tree_pid" 2>/dev/null
    wait "$tree_pid" 2>/dev/null
  fi
  # And no cgroup of this tree is left (supervise names them after the service's path).
  for cg in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    for d in "$cg/warden${work//\//:}:"*; do if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi; done
  done
  if installed warden; then DEBIAN_FRONTEND=noninteractive apt-get purge -y -q warden >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cp "$deb" "$work/"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$work/$(basename "$deb")" > "$work/apt.log" 2>&1 ||
  { cat "$work/apt.log"; fail "apt-get install failed"; }
installed warden || fail "warden is not installed after apt-get install"
dpkg -L warden > "$work/files"

# The documented layout, every file the package's own.
for f in /usr/bin/svctl /usr/lib/warden/init /usr/lib/warden/svscan /usr/lib/warden/supervise \
  /usr/lib/warden/logger /usr/share/man/man8/svctl.8.gz /usr/share/man/man8/warden-svscan.8.gz \
  /usr/share/man/man8/warden-supervise.8.gz /usr/share/man/man8/warden-logger.8.gz \
  /usr/share/man/man8/warden-init.8.gz /usr/share/bash-completion/completions/svctl \
  /usr/share/doc/warden/install.md /usr/share/doc/warden/copyright; do
  [ -e "$f" ] || fail "$f is missing"
  [ "$(owner "$f")" = warden ] || fail "$f is not warden's: $(owner "$f")"
done
for f in /usr/bin/svctl /usr/lib/warden/init /usr/lib/warden/svscan /usr/lib/warden/supervise /usr/lib/warden/logger; do
  [ -x "$f" ] || fail "$f is not executable"
  header=$(readelf -h "$f")
  grep -q "Type: *EXEC" <<<"$header" || fail "$f is not a non-PIE executable: $(grep Type: <<<"$header")"
  ! grep -q "Requesting program interpreter" <<<"$(readelf -l "$f")" || fail "$f is not static"
done
# Nothing on PATH but svctl; nothing of other packages replaced.
for name in logger svscan supervise init svlogd poweroff reboot halt; do
  if p=$(command -v "$name"); then
    [ "$(owner "$(readlink -f "$p")")" != warden ] || fail "$name on PATH is warden's ($p)"
  fi
done
grep -qE '^/usr/s?bin/(logger|svscan|supervise|init|svlogd|poweroff|reboot|halt)$|^/s?bin/' "$work/files" &&
  fail "the package ships a file on PATH other than svctl: $(grep -E '^/usr/s?bin/' "$work/files")"
[ "$(owner "$(readlink -f "$(command -v logger)")")" = "$logger_owner" ] ||
  fail "logger is no longer $logger_owner's"
[ "$(man -w svscan)" = "$svscan_man" ] || fail "man svscan is no longer $svscan_man"
[ "$(readlink -f /etc/service || true)" = "$service_before" ] || fail "/etc/service changed"
[ "$(readlink /proc/1/exe || true)" = "$pid1_before" ] || fail "PID 1 changed"
say "layout ok; logger is still $logger_owner's ($logger_path)"

# man svctl renders.
MANWIDTH=80 man svctl 2> "$work/man.err" | tr -s ' ' > "$work/man.out" || { cat "$work/man.err"; fail "man svctl failed"; }
grep -q "svctl - control and watch services" "$work/man.out" || fail "man svctl: no NAME line"
grep -q "EXIT STATUS" "$work/man.out" || fail "man svctl: no EXIT STATUS"
[ ! -s "$work/man.err" ] || { cat "$work/man.err"; fail "man svctl warned"; }
page=$(MANWIDTH=80 man warden-svscan | tr -s ' ')
grep -q "warden-svscan - warden's service scanner" <<<"$page" || fail "man warden-svscan"
say "man svctl renders ($(wc -l < "$work/man.out") lines)"

# The bash completion completes commands.
bash -c 'source /usr/share/bash-completion/completions/svctl; COMP_WORDS=(svctl resta); COMP_CWORD=1; _svctl; [ "${COMPREPLY[*]}" = restart ]' ||
  fail "bash completion of svctl"

# The installed daemons find each other in /usr/lib/warden and run a tree.
mkdir -p "$work/sv/a"
printf '#!/bin/sh\nexec sleep 1000\n' > "$work/sv/a/run"
chmod +x "$work/sv/a/run"
env PATH=/usr/bin:/bin /usr/lib/warden/svscan "$work/sv" > "$work/svscan.log" 2>&1 &
tree_pid=$!
/usr/bin/svctl -d "$work/sv" -w 10 up a > /dev/null || { cat "$work/svscan.log"; fail "svctl -w up a"; }
[ -f "$work/sv/a/supervise/warden" ] || fail "a is not supervised by warden's supervise"
/usr/bin/svctl -d "$work/sv" -w 10 shutdown > /dev/null || fail "svctl shutdown"
wait "$tree_pid" || fail "svscan exited $?"
tree_pid=
say "the installed svscan ran a service"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -q warden > "$work/apt.log" 2>&1 ||
  { cat "$work/apt.log"; fail "apt-get purge failed"; }
! installed warden || fail "warden still installed after purge"
dpkg-query -W -f='${Status}' warden 2>/dev/null | grep -q "not-installed" ||
  ! dpkg-query -W warden >/dev/null 2>&1 || fail "warden not purged: $(dpkg-query -W -f='${Status}' warden)"
while read -r f; do
  [ -d "$f" ] && continue
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is left after purge"
done < "$work/files"
[ ! -e /usr/lib/warden ] || fail "/usr/lib/warden is left after purge"
[ "$(owner "$(readlink -f "$(command -v logger)")")" = "$logger_owner" ] || fail "logger changed owner after purge"
say "ok: installed, checked, purged"
