//! `-w`: wait for a goal, woken by inotify on `supervise/` rather than by a timer.
//!
//! The supervisor replaces `status` by rename (IN_MOVED_TO) and, when it exits, closes its
//! read end of `ok` (IN_CLOSE_NOWRITE on `ok`). Our own reads of `status` and probes of `ok`
//! cause events too (IN_CLOSE_NOWRITE on `status`, IN_CLOSE_WRITE on `ok`); those are
//! ignored, so checking never wakes the loop again by itself.
//!
//! `./check` has no event: it is re-run with a short back-off (a deadline in the same poll)
//! until it exits 0 or time runs out.

use crate::goal::{has_check, judge, Goal, Snapshot, Verdict};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden::svdir::{ClientError, Liveness, ServiceDir, OK};
use warden::Tai64N;

/// First pause between two failing runs of `./check`; doubled up to `CHECK_BACKOFF_MAX`.
const CHECK_BACKOFF_MIN: Duration = Duration::from_millis(20);
const CHECK_BACKOFF_MAX: Duration = Duration::from_millis(500);

pub enum Waited {
    Reached,
    TimedOut,
}

/// Waits until `dir` reaches `goal` (the command having been sent at `since`) or `deadline`.
pub fn wait_for(
    dir: &ServiceDir,
    goal: Goal,
    since: Tai64N,
    deadline: Instant,
) -> Result<Waited, ClientError> {
    let watch = Watch::new(dir)?;
    let mut backoff = CHECK_BACKOFF_MIN;
    let mut next_check: Option<Instant> = None;
    loop {
        if goal == Goal::Gone {
            if dir.liveness()? != Liveness::Running {
                return Ok(Waited::Reached);
            }
        } else {
            match judge(goal, &Snapshot::take(dir)?, since) {
                Verdict::Reached => return Ok(Waited::Reached),
                Verdict::NeedsCheck if !has_check(&dir.path) => return Ok(Waited::Reached),
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
                }
            }
        }
        let wake_at = next_check.map_or(deadline, |at| at.min(deadline));
        if !watch.wait(dir, wake_at)? && Instant::now() >= deadline {
            return Ok(Waited::TimedOut);
        }
    }
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
        Verdict::NotYet => false,
    })
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

/// Runs `DIR/check` once (cwd DIR, stdin and stdout on /dev/null, stderr ours), killing it at
/// the deadline.
fn run_check(dir: &Path, deadline: Instant) -> Result<CheckResult, ClientError> {
    let check = std::path::absolute(dir.join(warden::service::CHECK))
        .unwrap_or_else(|_| dir.join(warden::service::CHECK));
    let io = |e: Errno| ClientError::Io(check.clone(), e);
    let mut child = match Command::new(&check)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("svctl: warning: unable to run {}: {e}", check.display());
            return Ok(CheckResult::Failed);
        }
    };
    let pid = rustix::process::Pid::from_child(&child);
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(io)?;
    if !poll_until(&pidfd, deadline).map_err(io)? {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(CheckResult::TimedOut);
    }
    // The pidfd said it exited: this wait returns at once.
    let status = child
        .wait()
        .map_err(|e| io(Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    Ok(if status.success() {
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
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
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
