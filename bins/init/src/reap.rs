//! The one place init reaps: every exited child, known or not, in a non-blocking loop, woken
//! by SIGCHLD through the signal pipe; waits are bounded by a monotonic deadline.

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{wait, Pid, Signal, WaitOptions, WaitStatus};
use std::time::{Duration, Instant};
use warden::signal::SignalPipe;

/// What one reaping pass found.
#[derive(Debug, Default)]
pub struct Reaped {
    pub exited: Vec<(Pid, WaitStatus)>,
    /// No child is left at all (ECHILD): for process 1, no process is left.
    pub none_left: bool,
}

/// How a wait for one child ended.
#[derive(Debug)]
pub enum Waited {
    Exited(WaitStatus),
    /// Reaped unseen (no child left): someone else's wait took it.
    Vanished,
    TimedOut,
}

pub struct Reaper {
    /// None only if the pipe could not be made; then waits fall back to short naps so that
    /// process 1 still reaps and still meets its deadlines.
    signals: Option<SignalPipe>,
}

impl Reaper {
    /// Watches SIGCHLD and `extra` signals. Must be made before any child is started, so no
    /// exit goes unnoticed.
    pub fn new(extra: &[Signal]) -> Reaper {
        let mut wanted = vec![Signal::CHILD];
        wanted.extend_from_slice(extra);
        match SignalPipe::new(&wanted) {
            Ok(pipe) => Reaper {
                signals: Some(pipe),
            },
            Err(e) => {
                warden::say!("init: warning: unable to set up the signal pipe: {e}");
                Reaper { signals: None }
            }
        }
    }

    /// Reaps every child that has exited, without blocking.
    pub fn reap(&self) -> Reaped {
        let mut found = Reaped::default();
        loop {
            match wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => found.exited.push((pid, status)),
                Ok(None) => break,
                Err(Errno::CHILD) => {
                    found.none_left = true;
                    break;
                }
                Err(Errno::INTR) => continue,
                Err(e) => {
                    warden::say!("init: warning: unable to reap children: {e}");
                    break;
                }
            }
        }
        found
    }

    /// Blocks until a watched signal arrives or `deadline` passes (None: no deadline), and
    /// returns the signals other than SIGCHLD that arrived.
    pub fn wait(&self, deadline: Option<Instant>) -> Vec<Signal> {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let Some(pipe) = &self.signals else {
            std::thread::sleep(
                timeout
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_millis(50)),
            );
            return Vec::new();
        };
        let spec = timeout.map(warden::poll::timeout);
        let mut fds = [PollFd::new(pipe, PollFlags::IN)];
        match poll(&mut fds, spec.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                warden::say!("init: warning: unable to poll the signal pipe: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        pipe.take()
            .into_iter()
            .filter(|s| *s != Signal::CHILD)
            .collect()
    }

    /// Reaps until `pid` exits, returning its status (None if it vanished unseen).
    pub fn wait_for(&self, pid: Pid) -> Option<WaitStatus> {
        match self.wait_for_until(pid, None) {
            Waited::Exited(status) => Some(status),
            Waited::Vanished | Waited::TimedOut => None,
        }
    }

    /// Reaps until `pid` exits or `deadline` passes (None: no deadline).
    pub fn wait_for_until(&self, pid: Pid, deadline: Option<Instant>) -> Waited {
        loop {
            let reaped = self.reap();
            if let Some((_, status)) = reaped.exited.iter().find(|(p, _)| *p == pid) {
                return Waited::Exited(*status);
            }
            if reaped.none_left {
                return Waited::Vanished;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Waited::TimedOut;
            }
            self.wait(deadline);
        }
    }

    /// Reaps until no child is left or `deadline` passes; true if none is left.
    pub fn wait_all_gone(&self, deadline: Instant) -> bool {
        loop {
            if self.reap().none_left {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.wait(Some(deadline));
        }
    }
}

/// A shell-style exit code for a wait status: the exit code, or 128 + the signal.
pub fn exit_code(status: WaitStatus) -> u8 {
    if let Some(code) = status.exit_status() {
        code as u8
    } else if let Some(sig) = status.terminating_signal() {
        (128 + sig) as u8
    } else {
        111
    }
}

/// `exited 3` / `killed by TERM`, for messages.
pub fn describe(status: WaitStatus) -> String {
    if let Some(code) = status.exit_status() {
        format!("exited {code}")
    } else if let Some(sig) = status.terminating_signal() {
        format!("killed by {}", warden::signal::name_or_number(sig))
    } else {
        "stopped".into()
    }
}
