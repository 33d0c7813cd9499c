//! Readiness notification, s6-log's `-d FD`: once the log directory is open and locked, a
//! newline is written on FD and FD is closed, so that a supervised log service with
//! `notification-fd` counts as ready (and `svctl -w up` on it returns) only when lines sent
//! to it are being written.
//!
//! Without `-d`, the fd is the one supervise gives the logger: the `notification-fd` file of
//! the current directory (supervise runs `log/run` in the log service's directory) names it,
//! and it is used only if it is open, inherited, and the write end of a pipe, and only if the
//! logger is the process supervise started (`run` exec'd into it, so it leads the session
//! supervise made for the run). A logger run by hand in such a directory, without the fd,
//! notifies nobody; so does one in a pipeline such as `daemon | logger` in a service's own
//! `run`, where readiness is the daemon's to announce, not the logger's.
//!
//! The fd is claimed before the logger opens anything: a number that is not inherited could
//! otherwise be one of the logger's own descriptors by the time it notifies.

use rustix::fs::{FileType, OFlags};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Where the notification goes: nowhere, or an fd to write a newline on and close.
pub struct Notifier(Option<OwnedFd>);

/// `-d FD`'s value: a number of 3 or more (0, 1 and 2 are the logger's input and output).
pub fn parse_fd(text: &str) -> Option<RawFd> {
    text.trim().parse::<RawFd>().ok().filter(|&fd| fd >= 3)
}

impl Notifier {
    /// Claims `explicit` (`-d FD`), or else the fd the `notification-fd` file of the current
    /// directory names, if supervise left it open. Warnings (an explicit fd that is not open)
    /// are prefixed with `program`.
    pub fn claim(explicit: Option<RawFd>, program: &str) -> Notifier {
        let fd = match explicit {
            Some(fd) => {
                let owned = inherited(fd);
                if owned.is_none() {
                    warden::say!(
                        "{program}: warning: fd {fd} (-d) is not open: no readiness notification"
                    );
                }
                owned
            }
            None => default_fd()
                .filter(|_| started_by_supervise())
                .and_then(|fd| {
                    let owned = inherited(fd)?;
                    if is_pipe_write_end(&owned) {
                        Some(owned)
                    } else {
                        // Not supervise's pipe: leave it open and unchanged, as it came.
                        let _ = owned.into_raw_fd();
                        None
                    }
                }),
        };
        // Close-on-exec, so that no child of the logger (a `!processor`) holds it open.
        if let Some(fd) = &fd {
            let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
        }
        Notifier(fd)
    }

    /// The log directory is open and locked: tell the supervisor, once.
    pub fn ready(&mut self) {
        if let Some(fd) = self.0.take() {
            // A supervisor gone or a reader that closed its end (EPIPE) changes nothing for
            // the logger; the fd is closed either way.
            let _ = rustix::io::write(&fd, b"\n");
        }
    }
}

/// The number in `./notification-fd`, as supervise reads it (the first line, 3 or more).
/// Read as supervise reads its settings: a FIFO planted there must not block the logger's
/// start, nor a link to /dev/zero fill its memory.
fn default_fd() -> Option<RawFd> {
    let text = warden::runas::read_file(rustix::fs::CWD, warden::service::NOTIFICATION_FD, 64)
        .ok()
        .flatten()?;
    parse_fd(text.lines().next()?)
}

/// Whether this process is the one supervise started: supervise runs `run` in a session of
/// its own, so the process it exec'd into leads it. A logger forked by `run` (the right side
/// of `daemon | logger`) is in that session without leading it.
fn started_by_supervise() -> bool {
    warden::ids::session() == Some(rustix::process::getpid().as_raw_nonzero().get())
}

/// `fd` as an owned descriptor if it is open.
fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags; an unused number gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: the descriptor is open and was inherited (this runs before the logger opens
    // anything of its own), so nothing else in the process owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_pipe_write_end(fd: &OwnedFd) -> bool {
    let fifo = rustix::fs::fstat(fd).is_ok_and(|st| FileType::from_raw_mode(st.st_mode).is_fifo());
    let writable = rustix::fs::fcntl_getfl(fd).is_ok_and(|flags| {
        let mode = flags & OFlags::RWMODE;
        mode == OFlags::WRONLY || mode == OFlags::RDWR
    });
    fifo && writable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_numbers() {
        assert_eq!(parse_fd("3"), Some(3));
        assert_eq!(parse_fd(" 7\n"), Some(7));
        assert_eq!(parse_fd("2"), None);
        assert_eq!(parse_fd("-1"), None);
        assert_eq!(parse_fd("x"), None);
    }
}
