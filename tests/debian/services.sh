#!/usr/bin/env bash
# Debian's real service dirs under warden's svscan (issue 15, must show 1). Run as process 1 of
# a fresh PID, mount and network namespace (tests/tests/debian_services.rs does
# `unshare --pid --fork --mount --propagation private --mount-proc --net`), never on the host:
# /run, /var/log and /etc/sv are private here, the network is a loopback of its own, and the
# daemons get test configs where theirs would touch the host (rsyslog's kernel log and
# /dev/log, cron's jobs). The service dirs themselves are Debian's, as shipped: cron, rsyslog
# (runit-services), dbus (runit-services, its log/run the shared /etc/sv/svlogd/run) and ssh
# (openssh-server), each with `chpst -u _runit-log svlogd -tt` logging. `svlogd` is warden's
# logger (linked under that name, first on PATH); the script checks that the log services run
# it (/proc/PID/exe) and that Debian's /usr/bin/svlogd, replaced in this namespace by a stub
# that leaves a mark, is never run. WARDEN_SVLOGD=0 runs Debian's instead, for comparison.
#
# usage: services.sh BINDIR WORKDIR   (BINDIR holds svscan, supervise, logger, svctl)
set -euo pipefail
bins=$(readlink -f "$1")
work=$(readlink -f "$2")
say() { echo "services.sh: $*"; }
dump() {
  set +e
  [ -e /run/debian-svlogd/ran ] && { echo "--- Debian's svlogd ran (warden's should have):"; cat /run/debian-svlogd/ran; }
  echo "--- svscan's output"; cat "$work/svscan.log" 2>/dev/null | tail -n 60
  for d in /var/log/runit/*; do echo "--- $d/current"; tail -n 20 "$d/current" 2>/dev/null; done
  echo "--- processes"; ps -eo pid,ppid,user,stat,args 2>/dev/null
}
svscan=
fail() {
  echo "services.sh: FAIL: $*"
  dump
  # Stop the tree in order, so that each supervise removes its cgroup.
  if [ -n "$svscan" ]; then
    "$bins/svctl" -d "$work/service" -w 30 shutdown > /dev/null 2>&1 || kill "$svscan"
    wait "$svscan"
  fi
  exit 1
}
[ "$$" = 1 ] || fail "must be process 1 of its own PID namespace (got pid $$)"

# --- The private world.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/runit/supervise /run/lock
# A private /var/log, with the log dirs the packages' postinsts made (ssh/log/run expects its own).
logdirs=$(find /var/log/runit -mindepth 1 -maxdepth 1 -type d -printf '%f %u %g %m\n' 2>/dev/null || true)
mount -t tmpfs -o mode=755 tmpfs /var/log
mkdir -p /var/log/runit
while read -r name user group mode; do
  [ -n "$name" ] && install -d -o "$user" -g "$group" -m "$mode" "/var/log/runit/$name"
done <<< "$logdirs"
ip link set lo up
# This machine's policy-rc.d (exit 101: apt starts no daemon) would make invoke-run refuse to
# start them: here, in the namespace only, they may run.
if [ -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 0\n' > "$work/policy-rc.d"
  chmod +x "$work/policy-rc.d"
  mount --bind "$work/policy-rc.d" /usr/sbin/policy-rc.d
fi
# rsyslog as shipped reads the kernel log (imklog: /proc/kmsg, a destructive read) and takes
# /dev/log, both the host's: a test config with a socket in the private /run.
cat > "$work/rsyslog.conf" <<'CONF'
module(load="imuxsock" SysSock.Name="/run/test-syslog.sock")
*.* /var/log/syslog
CONF
mount --bind "$work/rsyslog.conf" /etc/rsyslog.conf
# cron must not run this machine's jobs.
: > "$work/crontab"
mkdir -p "$work/empty-cron.d" "$work/empty-crontabs"
mount --bind "$work/crontab" /etc/crontab
[ -d /etc/cron.d ] && mount --bind "$work/empty-cron.d" /etc/cron.d
[ -d /var/spool/cron/crontabs ] && mount --bind "$work/empty-crontabs" /var/spool/cron/crontabs

# --- The service dirs: a copy of /etc/sv (what runit-services enabled), with cron and rsyslog
# from /usr/share/runit/sv when they are not there yet, mounted over /etc/sv so that their
# scripts (invoke-run, /etc/sv/svlogd/run) find themselves where Debian puts them.
mkdir -p "$work/etc-sv"
cp -a /etc/sv/. "$work/etc-sv/"
for name in cron rsyslog dbus; do
  [ -d "$work/etc-sv/$name" ] || cp -a "/usr/share/runit/sv/$name" "$work/etc-sv/$name"
done
[ -d "$work/etc-sv/ssh" ] || fail "/etc/sv/ssh is missing: apt-get install openssh-server runit-services"
# A control/t hook the way postfix's and apache2's are written: the daemon ignores TERM and the
# hook stops it its own way, exiting 0 when it did. `nohook` is the same daemon without one.
for name in hooked nohook; do
  mkdir -p "$work/etc-sv/$name"
  printf '#!/bin/sh\nexec 2>&1\necho $$ > /run/%s.pid\ntrap "" TERM\nexec sleep 100000\n' "$name" \
    > "$work/etc-sv/$name/run"
  chmod +x "$work/etc-sv/$name/run"
done
mkdir -p "$work/etc-sv/hooked/control"
printf '#!/bin/sh\necho "control/t $1" >> /run/hooked.hook\nkill -KILL "$(cat /run/hooked.pid)" && exit 0\nexit 1\n' \
  > "$work/etc-sv/hooked/control/t"
chmod +x "$work/etc-sv/hooked/control/t"
mount --bind "$work/etc-sv" /etc/sv

services="cron rsyslog dbus ssh hooked nohook"
mkdir -p "$work/service"
for name in $services; do ln -s "/etc/sv/$name" "$work/service/$name"; done
export SVDIR=$work/service
# warden's logger as `svlogd` (a link, as `cargo xtask install --svlogd` makes), first on the
# PATH that svscan passes down to every log/run, and usable by the _runit-log user the log/run
# scripts drop to (checked here, so that a failure says why rather than falling back).
mkdir -p "$work/bin" /run/svlogd-probe
ln -s "$bins/logger" "$work/bin/svlogd"
chown _runit-log /run/svlogd-probe
case ${WARDEN_SVLOGD:-1} in
  0) use_warden= ;;
  *) use_warden=1 ;;
esac
if [ -n "$use_warden" ]; then
  export PATH=$work/bin:$PATH
  out=$(echo probe | chpst -u _runit-log svlogd -tt /run/svlogd-probe 2>&1) ||
    fail "warden's svlogd as _runit-log: $out"
  grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9:.]+ probe$' /run/svlogd-probe/current ||
    fail "warden's svlogd -tt wrote: $(cat /run/svlogd-probe/current)"
  # Debian's svlogd, in this namespace only, becomes a stub that leaves a mark and fails: a
  # log/run that reached it (a PATH that does not find warden's first) shows.
  mkdir -m 1777 /run/debian-svlogd
  printf '#!/bin/sh\necho "$0 $*" >> /run/debian-svlogd/ran\nexit 111\n' > "$work/debian-svlogd-stub"
  chmod 755 "$work/debian-svlogd-stub"
  mount --bind "$work/debian-svlogd-stub" /usr/bin/svlogd
fi
if [ -n "$use_warden" ] && [ "$(command -v svlogd)" != "$work/bin/svlogd" ]; then
  fail "svlogd on PATH is $(command -v svlogd), not warden's link"
fi
say "svlogd: $(readlink -f "$(command -v svlogd)")"
svctl=$bins/svctl

"$bins/svscan" "$work/service" > "$work/svscan.log" 2>&1 &
svscan=$!

# --- Each comes up, and its daemon works.
deadline=$((SECONDS + 60))
until_ok() { # WHAT COMMAND...: retry until COMMAND succeeds or the deadline
  local what=$1; shift
  until "$@" > /dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what"
    sleep 0.1
  done
}
up() { sv status "$1" | grep -qE "^run: $1: \(pid [0-9]+\) [0-9]+s(; run: log: \(pid [0-9]+\) [0-9]+s)?$"; }
for name in $services; do until_ok "$name up: $(sv status "$name" 2>&1)" up "$name"; done
for name in ssh dbus; do
  until_ok "$name's log up: $(sv status "$name" 2>&1)" sh -c "sv status $name | grep -q '; run: log:'"
done
if [ -n "$use_warden" ]; then
  # The log services (ssh's own log/run, dbus's the shared /etc/sv/svlogd/run) are warden's
  # logger, run as _runit-log, holding their directory's lock; Debian's svlogd never ran.
  logger_exe=$(readlink -f "$bins/logger")
  for name in ssh dbus; do
    # The pid is log/run's: sh, then chpst, then svlogd, each exec'ing the next.
    while :; do
      [ ! -e /run/debian-svlogd/ran ] || fail "Debian's svlogd ran: $(cat /run/debian-svlogd/ran)"
      pid=$(cat "/etc/sv/$name/log/supervise/pid" 2> /dev/null) || pid=
      exe=$(readlink -f "/proc/$pid/exe" 2> /dev/null) || exe=
      [ "$exe" = "$logger_exe" ] && break
      [ $SECONDS -lt $deadline ] || fail "$name's log service runs '$exe', not warden's logger"
      sleep 0.1
    done
    [ "$(stat -c %U "/proc/$pid")" = _runit-log ] || fail "$name's logger is not _runit-log's"
    until_ok "$name's logger to open its lock" \
      sh -c "ls -l /proc/$pid/fd | grep -q ' /var/log/runit/$name/lock\$'"
    until_ok "$name's logger to hold its lock" \
      sh -c "! flock -n /var/log/runit/$name/lock true"
  done
  say "ssh's and dbus's logs are written by warden's logger ($logger_exe), not /usr/bin/svlogd"
fi
until_ok "sshd answers on 127.0.0.1:22" bash -c 'exec 3<>/dev/tcp/127.0.0.1/22; read -t 5 l <&3; [[ $l == SSH-2.0-* ]]'
until_ok "dbus's ./check (system bus socket)" sv check dbus
until_ok "cron's pid file" test -s /run/crond.pid
[ "$(cat /run/crond.pid)" = "$(cat /etc/sv/cron/supervise/pid)" ] || fail "crond.pid is not the supervised pid"
logger -u /run/test-syslog.sock "warden-test-line-$$"
until_ok "rsyslog to write the line" grep -q "warden-test-line-$$" /var/log/syslog
say "cron, rsyslog, dbus, ssh are up and serving"

# --- Their logs land where svlogd puts them, with -tt labels.
until_ok "ssh's log line" grep -q "Server listening on" /var/log/runit/ssh/current
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{5} .*Server listening on' \
  /var/log/runit/ssh/current || fail "ssh's log is not svlogd -tt: $(head -n 3 /var/log/runit/ssh/current)"
[ "$(stat -c %U /var/log/runit/ssh/current)" = _runit-log ] || fail "ssh's log is not _runit-log's"
[ -f /var/log/runit/dbus/current ] || fail "no /var/log/runit/dbus/current"
[ ! -e /run/debian-svlogd/ran ] || fail "Debian's svlogd ran: $(cat /run/debian-svlogd/ran)"
say "logs in /var/log/runit/{ssh,dbus}/current"

# --- sv status and svctl status agree: the same states and pids, service and log.
states_sv() { grep -oE '(^|; )(run|down|finish):' | grep -oE 'run|down|finish' | tr '\n' ' '; }
states_svctl() { grep -oE '(^|; )[^:;]+: (up|down|finish)' | grep -oE '(up|down|finish)$' | sed 's/up/run/' | tr '\n' ' '; }
pids() { grep -oE 'pid [0-9]+' | tr '\n' ' '; }
compare() {
  local name=$1 a b
  a=$(sv status "$name"); b=$("$svctl" status --short "$name" || true)
  [ "$(states_sv <<< "$a")" = "$(states_svctl <<< "$b")" ] && [ "$(pids <<< "$a")" = "$(pids <<< "$b")" ] ||
    fail "sv and svctl disagree on $name: sv: $a / svctl: $b"
  echo "  sv:    $a"
  echo "  svctl: $b"
}
for name in $services; do compare "$name"; done

# --- sv stop works on each.
for name in cron rsyslog dbus ssh; do
  pid=$(cat "/etc/sv/$name/supervise/pid")
  out=$(sv -w 20 stop "$name") || fail "sv stop $name: $out"
  [[ $out == "ok: down: $name: "* ]] || fail "sv stop $name said: $out"
  ! kill -0 "$pid" 2>/dev/null || fail "$name's daemon $pid still runs after sv stop"
  compare "$name"
done
say "sv stop stopped cron, rsyslog, dbus, ssh"

# --- A control/t hook stops a daemon that TERM does not.
pid=$(cat /run/hooked.pid)
out=$(sv -w 20 stop hooked) || fail "sv stop hooked: $out"
! kill -0 "$pid" 2>/dev/null || fail "hooked's daemon still runs"
[ "$(cat /run/hooked.hook)" = "control/t $pid" ] || fail "control/t ran as: $(cat /run/hooked.hook)"
grep -qx "last_exit signal 9" /etc/sv/hooked/supervise/warden || fail "hooked did not die by the hook's KILL"
compare hooked
pid=$(cat /run/nohook.pid)
if out=$(sv -w 3 stop nohook); then fail "nohook stopped without a hook: $out"; fi
kill -0 "$pid" || fail "nohook's daemon died of TERM"
sv kill nohook > /dev/null
say "control/t stopped hooked; without it TERM does not ($out)"

# --- Teardown: svscan stops everything and exits; nothing is left.
"$svctl" -w 30 shutdown > /dev/null || fail "svctl shutdown"
wait "$svscan" || fail "svscan exited $?"
left=
for p in /proc/[0-9]*; do
  p=${p#/proc/}
  [ "$p" = 1 ] && continue
  read -r comm < "/proc/$p/comm" 2>/dev/null || continue
  left="$left $p:$comm"
done
[ -z "$left" ] || fail "left running:$left"
say "ok"
