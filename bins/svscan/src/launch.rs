//! Starting a supervisor: in a process group of its own (a ctrl-C at the terminal svscan runs
//! in then reaches svscan alone, which stops the tree in order, as runsvdir -P does), with
//! the log pipe's end in place. The child borrows svscan's memory until its exec (see
//! `warden::spawn`): nothing of svscan is copied, and svscan waits only until the exec has
//! replaced the child's memory. An exec that fails is returned here as the error.

use rustix::fd::{AsRawFd, OwnedFd, RawFd};
use rustix::process::{Pid, Signal};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use warden::spawn::{Group, Spawn};

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
) -> io::Result<Pid> {
    let found = on_path(program).ok_or(rustix::io::Errno::NOENT)?;
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
    let pid = Spawn {
        argv: &argv,
        env: None,
        group: Group::NewProcessGroup,
        fds,
        cgroup: None,
        caught,
    }
    .start()?;
    Pid::from_raw(pid as i32).ok_or_else(|| io::ErrorKind::InvalidData.into())
}

fn on_path(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
