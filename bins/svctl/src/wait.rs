//! `-w`: wait for a goal, woken by the supervisor rather than by a timer.
//!
//! Under warden's supervise, svctl makes a FIFO in `supervise/event/` and gets a byte on every
//! change of `status` (s6's fifodir idea); a pidfd on the supervisor says when it exits. No
//! inotify instance is needed there, which matters: closing one that has a watch waits for
//! an SRCU grace period, about 15 ms on this kernel, longer than the whole wait usually takes.
//!
//! supervise also writes a byte when `supervise/warden` changes, so readiness (`ready_at`) and
//! the last exit wake the wait the same way.
//!
//! Under runit's runsv (no `event/`), inotify on `supervise/`: the supervisor replaces
//! `status` by rename (IN_MOVED_TO) and, when it exits, closes its read end of `ok`
//! (IN_CLOSE_NOWRITE on `ok`). Our own reads of `status` and probes of `ok` cause events too
//! (IN_CLOSE_NOWRITE on `status`, IN_CLOSE_WRITE on `ok`); those are ignored, so checking
//! never wakes the loop again by itself.
//!
//! Either way the subscription comes first and the state is read after it, so no change
//! between the two is missed.
//!
//! `./check` has no event: it is re-run with a short back-off (a deadline in the same poll)
//! until it exits 0 or time runs out.

use crate::goal::{has_check, judge, Goal, Snapshot, Verdict, EVENT_DIR};
use crate::interrupts::{die_of, Interrupts};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::fs::{mknodat, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags, Signal};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use warden::svdir::{ClientError, Liveness, ServiceDir, OK};
use warden::Tai64N;

/// First pause between two failing runs of `./check`; doubled up to `CHECK_BACKOFF_MAX`.
const CHECK_BACKOFF_MIN: Duration = Duration::from_millis(20);
const CHECK_BACKOFF_MAX: Duration = Duration::from_millis(500);

pub enum Waited {
    Reached,
    TimedOut,
    /// It, or a service it needs, failed for good after the command: the reason.
    Failed(String),
}

/// Waits until `dir` reaches `goal` (the command having been sent at `since`) or `deadline`.
pub fn wait_for(
    dir: &ServiceDir,
    goal: Goal,
    since: Tai64N,
    deadline: Instant,
) -> Result<Waited, ClientError> {
    // Subscribe first: every change after this point wakes us, so the state read below
    // cannot miss one.
    let mut waker = Waker::new(dir, goal)?;
    let mut backoff = CHECK_BACKOFF_MIN;
    let mut next_check: Option<Instant> = None;
    loop {
        if goal == Goal::Gone {
            if dir.liveness()? != Liveness::Running {
                return Ok(Waited::Reached);
            }
        } else {
            let snap = Snapshot::take(dir)?;
            match judge(goal, &snap, since) {
                Verdict::Failed => return Ok(Waited::Failed(snap.failure())),
                Verdict::Reached => return Ok(Waited::Reached),
                Verdict::NeedsCheck if !has_check(&dir.path) => return Ok(Waited::Reached),
                // Its supervisor ran `./check` until it passed (and says so in `ready_at`):
                // the wait is over without running it again. `svctl check` still runs it.
                Verdict::NeedsCheck if snap.checked_by_supervisor() => return Ok(Waited::Reached),
                Verdict::NeedsCheck => {
                    if next_check.map_or(true, |at| at <= Instant::now()) {
                        match run_check(&dir.path, deadline)? {
                            CheckResult::Passed => return Ok(Waited::Reached),
                            CheckResult::TimedOut => return Ok(Waited::TimedOut),
                            CheckResult::Failed => {
                                next_check = Some(Instant::now() + backoff);
                                backoff = (backoff * 2).min(CHECK_BACKOFF_MAX);
                            }
                        }
                    }
                }
                Verdict::NotYet => {
                    next_check = None;
                    backoff = CHECK_BACKOFF_MIN;
                    if let Some(why) = held_for_good(dir, &snap, goal, since) {
                        return Ok(Waited::Failed(why));
                    }
                }
            }
        }
        let wake_at = next_check.map_or(deadline, |at| at.min(deadline));
        match waker.wait(dir, wake_at)? {
            Wake::Changed => {}
            Wake::Quiet if Instant::now() >= deadline => return Ok(Waited::TimedOut),
            Wake::Quiet => {}
            // What `-w exit` waits for; for any other goal, nothing will reach it now.
            Wake::SupervisorGone if goal == Goal::Gone => return Ok(Waited::Reached),
            Wake::SupervisorGone => return Err(ClientError::NotSupervised(dir.path.clone())),
            Wake::Signalled(signal) => {
                // Our FIFO goes first; then die of the signal as if we had not caught it.
                drop(waker);
                die_of(signal);
                return Err(ClientError::Io(dir.supervise(), Errno::INTR));
            }
        }
    }
}

/// How a wait ended.
enum Wake {
    /// Something may have changed: read the state again.
    Changed,
    /// The time given ran out.
    Quiet,
    /// INT, TERM or HUP arrived while we had a FIFO to remove.
    Signalled(Signal),
    /// The supervisor we watched has exited, and `supervise/warden` names no other.
    SupervisorGone,
}

/// What wakes a waiting svctl: warden's event FIFO, or inotify under runsv.
enum Waker {
    Events(Listener),
    Inotify(Watch),
}

impl Waker {
    fn new(dir: &ServiceDir, goal: Goal) -> Result<Waker, ClientError> {
        if let Some(listener) = Listener::new(dir) {
            // The supervisor's exit writes no event; only its pidfd tells.
            if goal != Goal::Gone || listener.supervisor.is_some() {
                return Ok(Waker::Events(listener));
            }
        }
        Watch::new(dir).map(Waker::Inotify)
    }

    fn wait(&mut self, dir: &ServiceDir, until: Instant) -> Result<Wake, ClientError> {
        match self {
            Waker::Events(listener) => listener.wait(dir, until),
            Waker::Inotify(watch) => Ok(if watch.wait(dir, until)? {
                Wake::Changed
            } else {
                Wake::Quiet
            }),
        }
    }
}

/// Our FIFO in warden's `supervise/event/`, removed when dropped.
struct Listener {
    /// For messages.
    path: PathBuf,
    /// `event/`, opened without following a symlink: the FIFO is made, opened and removed
    /// relative to it.
    events: OwnedFd,
    name: String,
    fifo: OwnedFd,
    /// A pidfd on the supervisor (with its pid), from `supervisor_pid` in
    /// `supervise/warden`: it exiting writes no event.
    supervisor: Option<(i32, OwnedFd)>,
    /// Armed before the FIFO exists, so an interrupted svctl can still remove it.
    signals: Option<&'static Interrupts>,
}

impl Listener {
    /// None when `supervise/event/` is missing (runsv) or we cannot use it; inotify then
    /// takes over, and its probes say what is wrong.
    fn new(dir: &ServiceDir) -> Option<Listener> {
        let events_path = dir.file(EVENT_DIR);
        // `supervise` may be a symlink (runit packaging); `event` in it may not.
        let events = rustix::fs::open(
            dir.supervise(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(|supervise| {
            rustix::fs::openat(
                &supervise,
                EVENT_DIR,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .ok()?;
        let signals = Interrupts::get();
        if let Some(signals) = signals {
            signals.arm();
        }
        let Some((name, fifo)) = make_fifo(&events) else {
            if let Some(signals) = signals {
                signals.disarm();
            }
            return None;
        };
        let supervisor = supervisor_of(dir, None);
        Some(Listener {
            path: events_path.join(&name),
            events,
            name,
            fifo,
            supervisor,
            signals,
        })
    }

    fn wait(&mut self, dir: &ServiceDir, until: Instant) -> Result<Wake, ClientError> {
        let io = |e: Errno| ClientError::Io(self.path.clone(), e);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Wake::Quiet);
            }
            let timeout = timespec(left);
            let mut fds = Vec::with_capacity(3);
            fds.push(PollFd::new(&self.fifo, PollFlags::IN));
            if let Some(signals) = self.signals {
                fds.push(PollFd::new(signals, PollFlags::IN));
            }
            if let Some((_, supervisor)) = &self.supervisor {
                fds.push(PollFd::new(supervisor, PollFlags::IN));
            }
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(io(e)),
            }
            let fired: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
            let mut fired = fired.into_iter();
            let event = fired.next().unwrap_or(false);
            let signalled = self.signals.is_some() && fired.next().unwrap_or(false);
            let exited = self.supervisor.is_some() && fired.next().unwrap_or(false);
            if signalled {
                if let Some(signal) = self.signals.and_then(Interrupts::take) {
                    return Ok(Wake::Signalled(signal));
                }
            }
            if event {
                drain(&self.fifo).map_err(io)?;
            }
            if exited {
                // Its end is certain; `ok` may still read as served for a moment (a child of
                // it between its fork and its exec holds the FIFO), so liveness is not asked.
                // A supervisor started since (svscan restarts one) is watched in its place.
                let dead = self.supervisor.take().map(|(pid, _)| pid);
                self.supervisor = supervisor_of(dir, dead);
                if self.supervisor.is_none() {
                    return Ok(Wake::SupervisorGone);
                }
            }
            if event || exited {
                return Ok(Wake::Changed);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Ours to remove (supervise removes one only once it has no reader and the PID in
        // its name is gone); nothing to do if it is gone already.
        let _ = rustix::fs::unlinkat(&self.events, &self.name, AtFlags::empty());
        if let Some(signals) = self.signals {
            signals.disarm();
        }
    }
}

/// A pidfd on the supervisor `supervise/warden` names, unless that is `dead` (the one that
/// has exited) or it cannot be opened (it has exited too).
fn supervisor_of(dir: &ServiceDir, dead: Option<i32>) -> Option<(i32, OwnedFd)> {
    let pid = i32::try_from(dir.extended()?.supervisor_pid?).ok()?;
    if Some(pid) == dead {
        return None;
    }
    let pidfd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?;
    Some((pid, pidfd))
}

/// Makes and opens `event/svctl.PID.N` (supervise removes those whose PID is gone, so a
/// SIGKILLed svctl leaves nothing behind for long). Read-write, so the FIFO never reads as
/// hung up between two of the supervisor's writes; mode 0622, so a supervisor running as
/// another user than ours can still write to it (`event/` itself is the supervisor's, mode
/// 0700).
///
/// `event/` may be writable by someone else (a user's own supervise, watched by root): the
/// name is opened relative to the dir fd with `O_NOFOLLOW`, checked to be the FIFO we just made
/// (a FIFO owned by us), and only that fd is `fchmod`ed past the umask, so no symlink or
/// other file swapped in between ever has its mode changed (issue 11, item 1).
fn make_fifo(events: &OwnedFd) -> Option<(String, OwnedFd)> {
    let euid = rustix::process::geteuid().as_raw();
    for attempt in 0..100u32 {
        let name = format!("svctl.{}.{attempt}", std::process::id());
        match mknodat(events, &name, FileType::Fifo, Mode::from_raw_mode(0o600), 0) {
            Ok(()) => {}
            Err(Errno::EXIST) => continue,
            Err(_) => return None,
        }
        let opened = rustix::fs::openat(
            events,
            &name,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(|fifo| {
            let st = rustix::fs::fstat(&fifo)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Fifo || st.st_uid != euid {
                return Err(Errno::PERM);
            }
            // Past the umask, on the fd: never on a path.
            rustix::fs::fchmod(&fifo, Mode::from_raw_mode(0o622))?;
            Ok(fifo)
        });
        return match opened {
            Ok(fifo) => Some((name, fifo)),
            Err(_) => {
                let _ = rustix::fs::unlinkat(events, &name, AtFlags::empty());
                None
            }
        };
    }
    None
}

/// Empties the FIFO: one byte per change, and any number of changes mean one re-read.
fn drain(fifo: &OwnedFd) -> Result<(), Errno> {
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(fifo, &mut buf) {
            Ok(0) | Err(Errno::AGAIN) => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Why a service held for its dependencies will not come up by itself, if it will not: its
/// dependency files are bad, a cycle runs through what it depends on, or one it needs failed
/// for good after the command (svctl waits for what `up` pulls in first, so that failure is
/// seen by then).
fn held_for_good(dir: &ServiceDir, snap: &Snapshot, goal: Goal, since: Tai64N) -> Option<String> {
    let held = snap.extended.as_ref().is_some_and(|x| x.held);
    if !held || !matches!(goal, Goal::Up | Goal::NewRun) {
        return None;
    }
    let scandir = dir.path.parent()?;
    let view = crate::graph::DepView::read(scandir, &dir.path, SystemTime::now())?;
    let lasting = view.problem.as_ref().is_some_and(|p| !p.transient);
    if lasting || view.cycle.is_some() {
        return view.why_held();
    }
    let needs = view
        .deps
        .iter()
        .filter(|d| d.edge == warden::deps::Edge::Needs);
    needs.map(|d| &d.name).find_map(|need| {
        let snap = Snapshot::take(&ServiceDir::new(scandir.join(need))).ok()?;
        snap.failed_since(since)
            .then(|| format!("it needs {need}, which failed: {}", snap.failure()))
    })
}

/// Whether `dir` is at `goal` now, running `./check` once where it has the last word (bounded
/// by `check_deadline`).
pub fn holds_now(
    dir: &ServiceDir,
    goal: Goal,
    since: Tai64N,
    check_deadline: Instant,
) -> Result<bool, ClientError> {
    Ok(match judge(goal, &Snapshot::take(dir)?, since) {
        Verdict::Reached => true,
        Verdict::NeedsCheck if !has_check(&dir.path) => true,
        Verdict::NeedsCheck => matches!(run_check(&dir.path, check_deadline)?, CheckResult::Passed),
        Verdict::NotYet | Verdict::Failed => false,
    })
}

/// `-w` on a directory whose supervisor has not started yet (one just dropped into the scan
/// directory, which svscan picks up within milliseconds): waits, bounded by `until`, until a
/// supervisor has opened `supervise/ok`, its last step before it takes commands. Woken by
/// inotify: `supervise/` being made, then the supervisor's open of `ok` (our own probe of `ok`
/// fails while nobody reads it, and a failed open makes no event). True once supervised.
pub fn wait_supervised(dir: &ServiceDir, until: Instant) -> Result<bool, ClientError> {
    let io = |e: Errno| ClientError::Io(dir.path.clone(), e);
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(io)?;
    inotify::add_watch(
        &fd,
        &dir.path,
        WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR,
    )
    .map_err(io)?;
    loop {
        // Watched before the probe below, so an open in between still wakes us.
        match inotify::add_watch(&fd, dir.supervise(), WatchFlags::OPEN | WatchFlags::ONLYDIR) {
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io(e)),
        }
        if dir.liveness()? == Liveness::Running {
            return Ok(true);
        }
        if !poll_until(&fd, until).map_err(io)? {
            return Ok(false);
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        loop {
            match reader.next() {
                Ok(_) | Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(e) => return Err(io(e)),
            }
        }
    }
}

/// An inotify watch on one `supervise/` directory.
struct Watch {
    fd: OwnedFd,
}

impl Watch {
    fn new(dir: &ServiceDir) -> Result<Watch, ClientError> {
        let supervise = dir.supervise();
        let io = |e: Errno| ClientError::Io(supervise.clone(), e);
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(io)?;
        let mask = WatchFlags::MOVED_TO
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::CLOSE_NOWRITE
            | WatchFlags::DELETE_SELF
            | WatchFlags::ONLYDIR;
        match inotify::add_watch(&fd, &supervise, mask) {
            Ok(_) => Ok(Watch { fd }),
            // Let the usual probe say what is wrong (no service, never supervised, EACCES).
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::ACCESS) => {
                dir.liveness()?;
                Err(ClientError::NotSupervised(dir.path.clone()))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Blocks until something relevant changes in `supervise/` (true) or `until` passes
    /// (false).
    fn wait(&self, dir: &ServiceDir, until: Instant) -> Result<bool, ClientError> {
        let io = |e: Errno| ClientError::Io(dir.supervise(), e);
        while poll_until(&self.fd, until).map_err(io)? {
            if self.drain().map_err(io)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads every queued event; true if one of them may mean a new state.
    fn drain(&self) -> Result<bool, Errno> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut relevant = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    let is_ok = event
                        .file_name()
                        .is_some_and(|n| n.to_bytes() == OK.as_bytes());
                    relevant |= is_relevant(event.events(), is_ok);
                }
                Err(Errno::AGAIN) => return Ok(relevant),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Events our own probing causes are not news: reading `status` (close-nowrite) and
/// probing `ok` for writing (close-write on `ok`).
fn is_relevant(events: ReadFlags, on_ok: bool) -> bool {
    let changed = ReadFlags::MOVED_TO
        | ReadFlags::DELETE_SELF
        | ReadFlags::IGNORED
        | ReadFlags::QUEUE_OVERFLOW;
    if events.intersects(changed) {
        return true;
    }
    if on_ok {
        // The supervisor's read end closing: it exited.
        events.contains(ReadFlags::CLOSE_NOWRITE)
    } else {
        events.contains(ReadFlags::CLOSE_WRITE)
    }
}

enum CheckResult {
    Passed,
    Failed,
    TimedOut,
}

/// Runs `DIR/check` once (cwd DIR, stdin and stdout on /dev/null, stderr ours, in our process
/// group as `sv` runs it), killing it at the deadline. It runs as the service runs (issue 17): with its `limits`, `nice` and `umask`
/// and, when svctl runs as root, as its `user`; a bad one of these files fails the check with
/// a message naming it.
fn run_check(dir: &Path, deadline: Instant) -> Result<CheckResult, ClientError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let check = std::path::absolute(dir.join(warden::service::CHECK))
        .unwrap_or_else(|_| dir.join(warden::service::CHECK));
    let io = |e: Errno| ClientError::Io(check.clone(), e);
    let fail = |why: String| {
        warden::say!("svctl: warning: unable to run {}: {why}", check.display());
        Ok(CheckResult::Failed)
    };
    let dir_fd = match rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return fail(warden::runas::cause(&e.into())),
    };
    let identity = match warden::runas::Identity::read(&dir_fd) {
        Ok(identity) => identity,
        Err(e) => {
            let file = dir.join(&e.file);
            return fail(format!("unable to use {}: {}", file.display(), e.cause));
        }
    };
    let null =
        rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(io)?;
    let (Ok(program), Ok(cwd)) = (
        CString::new(check.as_os_str().as_bytes()),
        CString::new(dir.as_os_str().as_bytes()),
    ) else {
        return fail("NUL in its path".into());
    };
    let extra = identity.env();
    let env: Option<Vec<CString>> = (!extra.is_empty()).then(|| {
        std::env::vars_os()
            .filter(|(name, _)| !extra.iter().any(|(n, _)| std::ffi::OsStr::new(n) == name))
            .map(|(n, v)| {
                let mut bytes = n.as_bytes().to_vec();
                bytes.push(b'=');
                bytes.extend_from_slice(v.as_bytes());
                bytes
            })
            .chain(extra.iter().map(|(n, v)| format!("{n}={v}").into_bytes()))
            .filter_map(|bytes| CString::new(bytes).ok())
            .collect()
    });
    let rlimits = identity.rlimits();
    let root = rustix::process::geteuid().is_root();
    let null_fd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let fds = [(null_fd, 0), (null_fd, 1)];
    let caught = crate::interrupts::caught_signals();
    let started = warden::spawn::Spawn {
        argv: &[program],
        env: env.as_deref(),
        group: warden::spawn::Group::Caller,
        fds: &fds,
        cgroup: None,
        caught: &caught,
    }
    .start_with(&warden::spawn::Process {
        cwd: Some(&cwd),
        rlimits: &rlimits,
        nice: identity.nice,
        umask: identity.umask,
        ids: identity
            .account
            .as_ref()
            .filter(|_| root)
            .map(|a| warden::spawn::Ids {
                uid: a.uid,
                gid: a.gid,
                groups: &a.groups,
            }),
        join: &[],
    });
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            // The child exited 127: reap it.
            if let Some(pid) = e
                .pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(Pid::from_raw)
            {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
            return fail(format!("{:?}: {}", e.step, warden::runas::cause(&e.error)));
        }
    };
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return fail("no pid".into());
    };
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(io)?;
    if !poll_until(&pidfd, deadline).map_err(io)? {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        return Ok(CheckResult::TimedOut);
    }
    // The pidfd said it exited: this wait returns at once.
    let status = loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) => return Ok(CheckResult::Failed),
            Err(Errno::INTR) => {}
            Err(e) => return Err(io(e)),
        }
    };
    Ok(if status.exit_status() == Some(0) {
        CheckResult::Passed
    } else {
        CheckResult::Failed
    })
}

/// Blocks until `fd` is readable (true) or `until` passes (false).
pub(crate) fn poll_until(fd: &OwnedFd, until: Instant) -> Result<bool, Errno> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let timeout = timespec(left);
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

fn timespec(duration: Duration) -> Timespec {
    warden::poll::timeout(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_probes_are_not_news() {
        // Reading status, probing ok.
        assert!(!is_relevant(ReadFlags::CLOSE_NOWRITE, false));
        assert!(!is_relevant(ReadFlags::CLOSE_WRITE, true));
        // The supervisor renaming status.new, or closing its end of ok on exit.
        assert!(is_relevant(ReadFlags::MOVED_TO, false));
        assert!(is_relevant(ReadFlags::CLOSE_NOWRITE, true));
        assert!(is_relevant(ReadFlags::CLOSE_WRITE, false));
        assert!(is_relevant(ReadFlags::QUEUE_OVERFLOW, false));
    }
}
