//! `SCANDIR/.svscan/`: the lock that keeps a second svscan out, and the control FIFO that
//! `svctl rescan/shutdown/poweroff/...` writes to.

use rustix::fs::{FileType, FlockOperation, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use warden::svdir::{CONTROL, LOCK, SVSCAN_DIR};

pub struct ControlDir {
    _lock: OwnedFd,
    fifo: OwnedFd,
    /// Held so that the FIFO never reads EOF when the last client closes it.
    _fifo_writer: OwnedFd,
}

#[derive(Debug)]
pub enum ControlDirError {
    /// Another svscan holds the lock.
    Locked,
    Io {
        what: &'static str,
        file: String,
        cause: Errno,
    },
}

impl fmt::Display for ControlDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlDirError::Locked => write!(
                f,
                "unable to lock {SVSCAN_DIR}/{LOCK}: another svscan is running on this directory"
            ),
            ControlDirError::Io { what, file, cause } => {
                write!(f, "unable to {what} {file}: {cause}")
            }
        }
    }
}

fn io(what: &'static str, file: &str) -> impl FnOnce(Errno) -> ControlDirError {
    let file = file.to_owned();
    move |cause| ControlDirError::Io { what, file, cause }
}

impl ControlDir {
    /// Sets up `.svscan/` in the current directory (svscan runs inside the scan directory).
    pub fn open() -> Result<ControlDir, ControlDirError> {
        match rustix::fs::mkdirat(CWD, SVSCAN_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io("create", SVSCAN_DIR)(e)),
        }
        let lock_path = format!("{SVSCAN_DIR}/{LOCK}");
        let lock = rustix::fs::open(
            &lock_path,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io("open", &lock_path))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Err(ControlDirError::Locked),
            Err(e) => return Err(io("lock", &lock_path)(e)),
        }
        let fifo_path = format!("{SVSCAN_DIR}/{CONTROL}");
        match rustix::fs::mknodat(
            CWD,
            &fifo_path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        ) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io("create", &fifo_path)(e)),
        }
        let fifo = rustix::fs::open(
            &fifo_path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io("open", &fifo_path))?;
        let kind = rustix::fs::fstat(&fifo).map_err(io("stat", &fifo_path))?;
        if FileType::from_raw_mode(kind.st_mode) != FileType::Fifo {
            return Err(io("use", &fifo_path)(Errno::NOTSUP));
        }
        let fifo_writer = rustix::fs::open(
            &fifo_path,
            OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io("open", &fifo_path))?;
        Ok(ControlDir {
            _lock: lock,
            fifo,
            _fifo_writer: fifo_writer,
        })
    }

    /// Every byte waiting in the FIFO; junk is the caller's to ignore.
    pub fn read_commands(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match rustix::io::read(&self.fifo, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break,
                Err(e) => {
                    warden::say!("svscan: warning: unable to read {SVSCAN_DIR}/{CONTROL}: {e}");
                    break;
                }
            }
        }
        out
    }
}

impl AsFd for ControlDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fifo.as_fd()
    }
}
