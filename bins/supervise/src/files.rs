//! The `supervise/` directory as runit's `runsv` makes it: `lock`, the `control` and `ok`
//! FIFOs, and the `status`, `stat`, `pid` files plus warden's extended status, each replaced
//! atomically. Paths are relative: the supervisor runs with the service dir as cwd.

use crate::Fatal;
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use warden::control::Command;
use warden::status::{Extended, Status, EXTENDED_FILE};
use warden::svdir::{CONTROL, LOCK, OK, PID, STAT, STATUS, SUPERVISE};

/// Directory of FIFOs that clients make and read; each gets a byte whenever `status` changes
/// (s6's event fifodir idea), so a waiting client needs no inotify.
pub const EVENT: &str = "event";

/// Bytes read from `control` at a time.
pub const CHUNK: usize = 64;

pub struct SuperviseDir {
    /// The service dir as the user named it, made absolute, for messages.
    service: PathBuf,
    _lock: File,
    control: OwnedFd,
    /// Held so that reading `control` never sees EOF when a client closes.
    _control_write: OwnedFd,
    /// Held so that clients opening `ok` for writing know a supervisor runs; opened only once
    /// the first status is written, so nobody takes a dead supervisor's status for ours.
    ok: Option<OwnedFd>,
    last_status: Option<[u8; warden::status::STATUS_LEN]>,
    last_pid: Option<u32>,
    last_extended: String,
}

impl SuperviseDir {
    /// Creates and opens `supervise/`; fails if another supervisor holds the lock.
    pub fn open(service: &Path) -> Result<SuperviseDir, Fatal> {
        let dir = Path::new(SUPERVISE);
        make_dir(service, dir)?;
        let name = |file: &str| service.join(SUPERVISE).join(file);
        let lock_path = dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Fatal::io("open", &name(LOCK), &e))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(Fatal::new(
                    "lock",
                    &name(LOCK),
                    "another supervise runs".into(),
                ))
            }
            Err(e) => return Err(Fatal::errno("lock", &name(LOCK), e)),
        }
        let control_path = dir.join(CONTROL);
        make_fifo(&control_path, &name(CONTROL))?;
        let control = open_fifo(&control_path, OFlags::RDONLY, &name(CONTROL))?;
        let control_write = open_fifo(&control_path, OFlags::WRONLY, &name(CONTROL))?;
        make_fifo(&dir.join(OK), &name(OK))?;
        let mut events = std::fs::DirBuilder::new();
        events.mode(0o700);
        match events.create(dir.join(EVENT)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Fatal::io("create", &name(EVENT), &e)),
        }
        Ok(SuperviseDir {
            service: service.to_owned(),
            _lock: lock,
            control,
            _control_write: control_write,
            ok: None,
            last_status: None,
            last_pid: None,
            last_extended: String::new(),
        })
    }

    /// Opens `ok` for reading: from now on clients see a running supervisor.
    pub fn announce(&mut self) -> Result<(), Fatal> {
        if self.ok.is_none() {
            let shown = self.service.join(SUPERVISE).join(OK);
            // Made again if it went away since startup (this is also the retry after a failure).
            make_fifo(&Path::new(SUPERVISE).join(OK), &shown)?;
            self.ok = Some(open_fifo(
                &Path::new(SUPERVISE).join(OK),
                OFlags::RDONLY,
                &shown,
            )?);
        }
        Ok(())
    }

    pub fn control(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Reads one chunk of what waits on `control` and puts its commands into `out`, in order.
    /// Unknown bytes are reported (a newline from `echo d > control` silently skipped) and
    /// ignored. `None` once nothing more is waiting.
    pub fn read_commands(&self, out: &mut [Command; CHUNK]) -> Option<usize> {
        let mut buf = [0u8; CHUNK];
        loop {
            match rustix::io::read(&self.control, &mut buf) {
                Ok(0) | Err(Errno::AGAIN) => return None,
                Ok(n) => {
                    let mut count = 0;
                    for &byte in buf.iter().take(n) {
                        match Command::from_byte(byte) {
                            Some(command) => {
                                if let Some(slot) = out.get_mut(count) {
                                    *slot = command;
                                    count += 1;
                                }
                            }
                            None if byte == b'\n' => {}
                            None => say!(
                                "supervise: warning: ignoring unknown byte {byte:#04x} on {}",
                                self.service.join(SUPERVISE).join(CONTROL).display()
                            ),
                        }
                    }
                    return Some(count);
                }
                Err(Errno::INTR) => {}
                Err(e) => {
                    say!(
                        "supervise: warning: unable to read {}: {}",
                        self.service.join(SUPERVISE).join(CONTROL).display(),
                        crate::cause_errno(e)
                    );
                    return None;
                }
            }
        }
    }

    /// Writes what changed of `status`, `stat`, `pid` and the extended status, then wakes the
    /// listeners once. A failure (full disk) is reported and retried at the next change; it
    /// never stops the supervisor.
    pub fn publish(&mut self, status: &Status, extended: &Extended) {
        let dir = Path::new(SUPERVISE);
        let mut changed = false;
        // The very first time, the extended status goes before `status`: clients tell warden's
        // supervise from runsv by `supervise/warden` alone, so it must never be missing while
        // a `status` of ours exists.
        if self.last_status.is_none() {
            changed |= self.publish_extended(extended);
        }
        let bytes = status.encode();
        if self.last_status != Some(bytes) {
            let result = warden::write::replace(dir, STATUS, &bytes)
                .and_then(|()| warden::write::replace(dir, STAT, status.stat_text().as_bytes()));
            match result {
                Ok(()) => {
                    self.last_status = Some(bytes);
                    changed = true;
                }
                Err(e) => self.warn(STATUS, &e),
            }
        }
        if self.last_pid != Some(status.pid) {
            match warden::write::replace(dir, PID, status.pid_text().as_bytes()) {
                Ok(()) => self.last_pid = Some(status.pid),
                Err(e) => self.warn(PID, &e),
            }
        }
        // Readiness and the last exit live only in the extended status: listeners hear of
        // them too. It follows `status`; readers match its `ready_at` against the status
        // stamp.
        changed |= self.publish_extended(extended);
        // Once, after every file is in place: a woken client reads them all consistent.
        if changed {
            notify_listeners();
        }
    }

    /// Writes the extended status if it changed; true if it did.
    fn publish_extended(&mut self, extended: &Extended) -> bool {
        let text = extended.encode();
        if text == self.last_extended {
            return false;
        }
        match warden::write::replace(Path::new(SUPERVISE), EXTENDED_FILE, text.as_bytes()) {
            Ok(()) => {
                self.last_extended = text;
                true
            }
            Err(e) => {
                self.warn(EXTENDED_FILE, &e);
                false
            }
        }
    }

    fn warn(&self, file: &str, e: &std::io::Error) {
        say!(
            "supervise: warning: unable to write {}: {}",
            self.service.join(SUPERVISE).join(file).display(),
            crate::cause(e)
        );
    }
}

/// Writes one byte to every FIFO in `supervise/event/` that has a reader. A FIFO without one
/// (ENXIO) belongs to a client that has gone or not yet opened it; its owner removes it.
fn notify_listeners() {
    let Ok(entries) = std::fs::read_dir(Path::new(SUPERVISE).join(EVENT)) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| {
            use std::os::unix::fs::FileTypeExt;
            t.is_fifo()
        }) {
            continue;
        }
        if let Ok(fifo) = rustix::fs::open(
            entry.path(),
            OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rustix::io::write(&fifo, b"s");
        }
    }
}

/// `mkdir supervise 0700`; if `supervise` is a symlink to a missing dir, makes its target
/// (runit's way of keeping the state on a tmpfs).
fn make_dir(service: &Path, dir: &Path) -> Result<(), Fatal> {
    let shown = service.join(dir);
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    match builder.create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Fatal::io("create", &shown, &e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Fatal::io("stat", &shown, &e))?;
    if meta.file_type().is_symlink() && std::fs::metadata(dir).is_err() {
        let target = std::fs::read_link(dir).map_err(|e| Fatal::io("read", &shown, &e))?;
        builder.recursive(true);
        builder
            .create(&target)
            .map_err(|e| Fatal::io("create", &service.join(&target), &e))?;
    }
    Ok(())
}

fn make_fifo(path: &Path, shown: &Path) -> Result<(), Fatal> {
    match rustix::fs::mkfifoat(rustix::fs::CWD, path, Mode::from_raw_mode(0o600)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Fatal::errno("create", shown, e)),
    }
    let stat = rustix::fs::stat(path).map_err(|e| Fatal::errno("stat", shown, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
        return Err(Fatal::new(
            "use",
            shown,
            "it exists but is not a FIFO".into(),
        ));
    }
    Ok(())
}

fn open_fifo(path: &Path, access: OFlags, shown: &Path) -> Result<OwnedFd, Fatal> {
    rustix::fs::open(
        path,
        access | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Fatal::errno("open", shown, e))
}
