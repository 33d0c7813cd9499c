//! Starting a supervisor: in a session of its own (a ctrl-C at the terminal svscan runs in
//! then reaches svscan alone, which stops the tree in order, as runsvdir -P does), with
//! the log pipe's end in place. The child borrows svscan's memory until its exec (see
//! `warden::spawn`), so nothing of svscan is copied, and svscan does not wait for that exec:
//! it goes on starting the next supervisor, and keeps what each child reads until the child
//! is done with it. At most [`IN_FLIGHT`] are kept; svscan waits for the rest before it sleeps.
//! A failed exec is known once the child is done, and is told when its pid is reaped.

use rustix::fd::{AsRawFd, OwnedFd, RawFd};
use rustix::process::{Pid, Signal};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use warden::spawn::{Group, Launching, Spawn};

/// Children that may still read svscan's memory, at most: each holds a 16 KiB stack.
pub const IN_FLIGHT: usize = 32;

/// Supervisors started whose exec may not have happened yet, and the errors of execs that
/// failed, until their pids are reaped.
#[derive(Default)]
pub struct Launches {
    in_flight: Vec<Launching>,
    failed: HashMap<i32, io::Error>,
}

impl Launches {
    /// Lets go of the children done with svscan's memory, noting the execs that failed.
    fn sweep(&mut self) {
        let failed = &mut self.failed;
        self.in_flight.retain(|launching| {
            if !launching.released() {
                return true;
            }
            if let Some(e) = launching.exec_error() {
                failed.insert(launching.pid() as i32, e);
            }
            false
        });
    }

    /// Waits for every child still starting: before svscan sleeps, so that nothing is held
    /// for an idle tree.
    pub fn settle(&mut self) {
        for launching in &self.in_flight {
            launching.wait_released();
        }
        self.sweep();
    }

    /// Why the exec of this reaped child failed, if it did.
    pub fn exec_error(&mut self, pid: i32) -> Option<io::Error> {
        self.sweep();
        self.failed.remove(&pid)
    }
}

/// What the child's fd 0, or fds 1 and 2, are made of.
pub enum Stdio<'a> {
    Inherit,
    /// The write end of a log pipe, as stdout and stderr.
    Output(&'a OwnedFd),
    /// The read end of a log pipe, as stdin.
    Input(&'a OwnedFd),
}

/// Starts `program args...` with `stdio` in place; `caught` are the signals svscan catches.
/// A `program` without a slash is looked for on PATH now, at each start (one found neither
/// beside svscan nor on PATH when it started may have been installed since).
pub fn spawn(
    program: &OsStr,
    args: &[&OsStr],
    stdio: Stdio<'_>,
    caught: &[Signal],
    launches: &mut Launches,
) -> io::Result<Pid> {
    let found = warden::spawn::on_path(program).ok_or(rustix::io::Errno::NOENT)?;
    let argv: Vec<CString> = std::iter::once(found.as_os_str())
        .chain(args.iter().copied())
        .map(|s| CString::new(s.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into()))
        .collect::<io::Result<_>>()?;
    // Also when the pipe's end already is the target (svscan started with that fd closed):
    // the child then only clears its close-on-exec flag.
    let fds: &[(RawFd, RawFd)] = match stdio {
        Stdio::Inherit => &[],
        Stdio::Output(write) => &[(write.as_raw_fd(), 1), (write.as_raw_fd(), 2)],
        Stdio::Input(read) => &[(read.as_raw_fd(), 0)],
    };
    launches.sweep();
    if let Some(oldest) = launches
        .in_flight
        .first()
        .filter(|_| launches.in_flight.len() >= IN_FLIGHT)
    {
        oldest.wait_released();
        launches.sweep();
    }
    let launching = Spawn {
        argv: &argv,
        env: None,
        // No controlling terminal: a terminal set to `tostop` would stop a supervisor of
        // svscan's session (SIGTTOU) at its first diagnostic. Also an autogroup of its own,
        // so a readiness crossing supervisors is not queued behind the others' starts.
        group: Group::NewSession,
        fds,
        cgroup: None,
        caught,
    }
    .start_detached()?;
    let pid = Pid::from_raw(launching.pid() as i32);
    launches.in_flight.push(launching);
    pid.ok_or_else(|| io::ErrorKind::InvalidData.into())
}
