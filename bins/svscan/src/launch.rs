//! Starting supervisors in batches, without waiting for each exec.
//!
//! `std::process::Command::spawn` returns only once the child has exec'd (or failed to), so a
//! scanner that starts 1000 supervisors pays for 1000 execs one after the other while the other
//! cores wait. Here every child of a pass is forked at once and execs on its own, and the exec
//! failures of the whole pass come back afterwards through one close-on-exec pipe: a child that
//! cannot exec writes its pid and errno there and exits 127. The pipe reaches EOF when every
//! child has exec'd or died, so the pass ends knowing each outcome, holding two fds for it.

use rustix::fd::{AsRawFd, OwnedFd, RawFd};
use rustix::process::Pid;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// One record on the report pipe: the child's pid and its exec errno.
const RECORD: usize = 8;
/// Starts per batch: their failure records must fit the pipe's 64 KiB, as nobody reads it
/// before the batch ends.
pub const BATCH: usize = 1024;

/// What the child's fd 0, or fds 1 and 2, are made of.
pub enum Stdio<'a> {
    Inherit,
    /// The write end of a log pipe, as stdout and stderr.
    Output(&'a OwnedFd),
    /// The read end of a log pipe, as stdin.
    Input(&'a OwnedFd),
}

pub struct Batch {
    /// Both ends of the report pipe, made at the first start.
    report: Option<(OwnedFd, OwnedFd)>,
    started: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            report: None,
            started: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.started >= BATCH
    }

    /// Forks `program args...` in a process group of its own with `stdio` set up; returns the
    /// child's pid at once. Whether its exec worked is known after [`Batch::finish`].
    pub fn start(&mut self, program: &OsStr, args: &[&OsStr], stdio: Stdio<'_>) -> io::Result<Pid> {
        let c = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        };
        let argv: Vec<CString> = std::iter::once(program)
            .chain(args.iter().copied())
            .map(c)
            .collect::<io::Result<_>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        if self.report.is_none() {
            self.report = Some(crate::tree::with_fds(|| {
                Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
            })?);
        }
        let report = match &self.report {
            Some((_, write)) => write.as_raw_fd(),
            None => return Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        let (fd, targets): (RawFd, &[RawFd]) = match stdio {
            Stdio::Inherit => (-1, &[]),
            Stdio::Output(write) => (write.as_raw_fd(), &[1, 2]),
            Stdio::Input(read) => (read.as_raw_fd(), &[0]),
        };
        let setup = Setup {
            argv: &argv_ptrs,
            fd,
            targets,
            report,
        };
        // SAFETY: svscan is single-threaded, so the child, a copy of it, may run `exec_child`,
        // which makes raw syscalls only on memory prepared above and ends in execvp or _exit.
        let pid = unsafe {
            match libc::fork() {
                0 => exec_child(&setup),
                -1 => return Err(io::Error::last_os_error()),
                pid => pid,
            }
        };
        self.started += 1;
        Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// Waits until every child started has exec'd or failed to; returns the failures.
    pub fn finish(self) -> Vec<(i32, io::Error)> {
        let Some((read, write)) = self.report else {
            return Vec::new();
        };
        drop(write);
        let mut failures = Vec::new();
        let mut buf = [0u8; RECORD * 64];
        let mut have = 0;
        while let Some(free) = buf.get_mut(have..) {
            match rustix::io::read(&read, free) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    eprintln!(
                        "svscan: warning: unable to read the exec reports of supervisors: {e}"
                    );
                    break;
                }
            }
            let whole = have - have % RECORD;
            for record in buf.get(..whole).unwrap_or_default().chunks_exact(RECORD) {
                let word = |at: usize| {
                    record
                        .get(at..at + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(0, i32::from_ne_bytes)
                };
                failures.push((word(0), io::Error::from_raw_os_error(word(4))));
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
        failures
    }
}

struct Setup<'a> {
    argv: &'a [*const libc::c_char],
    /// The log pipe end to place at `targets`, or -1.
    fd: RawFd,
    targets: &'a [RawFd],
    report: RawFd,
}

/// In the child: own process group (a ctrl-C at svscan's terminal reaches svscan alone, which
/// stops the tree in order, as runsvdir -P), the pipe end in place, default SIGPIPE (Rust's
/// runtime ignores it, and ignored stays ignored across exec), an empty signal mask, exec. On failure the pid and
/// errno go to the report pipe.
unsafe fn exec_child(setup: &Setup<'_>) -> ! {
    let fail = || -> ! {
        let [e0, e1, e2, e3] = (*libc::__errno_location()).to_ne_bytes();
        let [p0, p1, p2, p3] = libc::getpid().to_ne_bytes();
        let record: [u8; RECORD] = [p0, p1, p2, p3, e0, e1, e2, e3];
        libc::write(setup.report, record.as_ptr().cast(), RECORD);
        libc::_exit(127)
    };
    if libc::setpgid(0, 0) < 0 {
        fail();
    }
    for &target in setup.targets {
        // The pipe end is close-on-exec; its copies at 0, 1, 2 are not (nor is the end itself
        // when it already sits there, svscan having been started with that fd closed).
        let placed = if setup.fd == target {
            libc::fcntl(target, libc::F_SETFD, 0)
        } else {
            libc::dup2(setup.fd, target)
        };
        if placed < 0 {
            fail();
        }
    }
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    // A mask svscan inherited is not the supervisor's to keep (std's Command clears it too).
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    if let Some(&program) = setup.argv.first() {
        // execvp: a supervise not found at start is still looked for on PATH, not in the scan dir.
        libc::execvp(program, setup.argv.as_ptr());
    }
    fail()
}
