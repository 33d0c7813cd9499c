//! The `supervise/` directory as runit's `runsv` makes it: `lock`, the `control` and `ok`
//! FIFOs, and the `status`, `stat`, `pid` files plus warden's extended status, each replaced
//! atomically. Paths are relative: the supervisor runs with the service dir as cwd.

use crate::Fatal;
use rustix::fs::{AtFlags, Dir, FileType, FlockOperation, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;
use rustix::process::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use warden::control::Command;
use warden::status::{Extended, Status, EXTENDED_FILE};
pub use warden::svdir::EVENT;
use warden::svdir::{CONTROL, LOCK, OK, PID, STAT, STATUS, SUPERVISE};

/// Bytes read from `control` at a time.
pub const CHUNK: usize = 64;

pub struct SuperviseDir {
    /// The service dir as the user named it, made absolute, for messages.
    service: PathBuf,
    /// `supervise/` itself, checked to be ours: every file in it is opened relative to this.
    dir: OwnedFd,
    /// `supervise/event/`, opened without following a symlink.
    events: OwnedFd,
    _lock: OwnedFd,
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
    /// Creates and opens `supervise/`; fails if another supervisor holds the lock, or if the
    /// directory is not ours alone (see `open_dir`).
    pub fn open(service: &Path) -> Result<SuperviseDir, Fatal> {
        let dir = open_dir(service)?;
        let name = |file: &str| service.join(SUPERVISE).join(file);
        // NONBLOCK: a FIFO planted as `lock` fails with ENXIO instead of hanging us. NOCTTY
        // (here and for the FIFOs): under svscan a supervisor leads a session without a
        // terminal, and a terminal planted in supervise/ must not become its own.
        let lock = rustix::fs::openat(
            &dir,
            LOCK,
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Fatal::errno("open", &name(LOCK), e))?;
        let is_file = rustix::fs::fstat(&lock)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if !is_file {
            return Err(Fatal::new(
                "use",
                &name(LOCK),
                "it exists but is not a regular file".into(),
            ));
        }
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
        make_fifo(&dir, CONTROL, &name(CONTROL))?;
        let control = open_fifo(&dir, CONTROL, OFlags::RDONLY, &name(CONTROL))?;
        let control_write = open_fifo(&dir, CONTROL, OFlags::WRONLY, &name(CONTROL))?;
        make_fifo(&dir, OK, &name(OK))?;
        match rustix::fs::mkdirat(&dir, EVENT, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Fatal::errno("create", &name(EVENT), e)),
        }
        let events = rustix::fs::openat(
            &dir,
            EVENT,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Fatal::errno("open", &name(EVENT), e))?;
        Ok(SuperviseDir {
            service: service.to_owned(),
            dir,
            events,
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
            make_fifo(&self.dir, OK, &shown)?;
            self.ok = Some(open_fifo(&self.dir, OK, OFlags::RDONLY, &shown)?);
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
        let mut changed = false;
        // The very first time, the extended status goes before `status`: clients tell warden's
        // supervise from runsv by `supervise/warden` alone, so it must never be missing while
        // a `status` of ours exists.
        if self.last_status.is_none() {
            changed |= self.publish_extended(extended);
        }
        // `pid` before `status`: a client that sees the new status finds the pid file
        // agreeing with it.
        if self.last_pid != Some(status.pid) {
            match warden::write::replace_at(&self.dir, PID, status.pid_text().as_bytes()) {
                Ok(()) => self.last_pid = Some(status.pid),
                Err(e) => self.warn(PID, &e),
            }
        }
        let bytes = status.encode();
        if self.last_status != Some(bytes) {
            let result = warden::write::replace_at(&self.dir, STATUS, &bytes).and_then(|()| {
                warden::write::replace_at(&self.dir, STAT, status.stat_text().as_bytes())
            });
            match result {
                Ok(()) => {
                    self.last_status = Some(bytes);
                    changed = true;
                }
                Err(e) => self.warn(STATUS, &e),
            }
        }
        // Readiness and the last exit live only in the extended status: listeners hear of
        // them too. It follows `status`; readers match its `ready_at` against the status
        // stamp.
        changed |= self.publish_extended(extended);
        // Once, after every file is in place: a woken client reads them all consistent.
        if changed {
            notify_listeners(&self.events);
        }
    }

    /// Writes the extended status if it changed; true if it did.
    fn publish_extended(&mut self, extended: &Extended) -> bool {
        let text = extended.encode();
        if text == self.last_extended {
            return false;
        }
        match warden::write::replace_at(&self.dir, EXTENDED_FILE, text.as_bytes()) {
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

/// Writes one byte to every FIFO in `supervise/event/` that has a reader. Each is opened
/// relative to the dir fd without following a symlink and checked to be a FIFO before the
/// write, so nothing planted there gets written.
///
/// A FIFO without a reader (ENXIO) is a client's that has gone, or one caught between making
/// its FIFO and opening it. Those named `svctl.PID.N` whose PID no longer exists are removed
/// here: an `svctl -w` killed with SIGKILL never removes its own (issue 11, item 14).
fn notify_listeners(events: &OwnedFd) {
    let Ok(mut entries) = Dir::read_from(events) else {
        return;
    };
    while let Some(entry) = entries.read() {
        let Ok(entry) = entry else {
            return;
        };
        let name = entry.file_name();
        let kind = match entry.file_type() {
            FileType::Unknown => {
                match rustix::fs::statat(events, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(_) => continue,
                }
            }
            kind => kind,
        };
        if kind != FileType::Fifo {
            continue;
        }
        match rustix::fs::openat(
            events,
            name,
            OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fifo) => {
                let is_fifo = rustix::fs::fstat(&fifo)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo);
                if is_fifo {
                    let _ = rustix::io::write(&fifo, b"s");
                }
            }
            Err(Errno::NXIO) if client_gone(name.to_bytes()) => {
                let _ = rustix::fs::unlinkat(events, name, AtFlags::empty());
            }
            Err(_) => {}
        }
    }
}

/// Whether `name` is an `svctl -w` FIFO (`svctl.PID.N`) whose PID no longer exists. A live
/// PID (possibly reused) keeps it: it is removed once that process is gone too. Only asked
/// after ENXIO, and svctl holds its FIFO open from just after making it, so the PID of an
/// svctl in another pid namespace can at worst cost that svctl its FIFO in that instant
/// (it then waits with inotify).
fn client_gone(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"svctl.") else {
        return false;
    };
    let Some(pid) = rest.split(|&b| b == b'.').next() else {
        return false;
    };
    let Some(pid) = std::str::from_utf8(pid)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok())
        .and_then(Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(Errno::SRCH)
}

/// Opens `supervise/` (making it, mode 0700, if missing) and checks that it is ours alone:
/// owned by our euid and not writable by group or others. Otherwise someone else could plant
/// files there that we would trust, so it is refused with a message naming it.
///
/// A `supervise` symlink (runit packaging keeps the state on a tmpfs:
/// `supervise -> /run/runit/supervise.NAME`) is followed for the directory itself: its target
/// is made if missing, then opened refusing any further symlink on the way
/// (`RESOLVE_NO_SYMLINKS`), and checked like a plain `supervise/`. A dangling link into `/tmp`
/// therefore cannot be raced into pointing at someone else's directory.
fn open_dir(service: &Path) -> Result<OwnedFd, Fatal> {
    let shown = service.join(SUPERVISE);
    match rustix::fs::mkdirat(CWD, SUPERVISE, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Fatal::errno("create", &shown, e)),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let (fd, shown) =
        match rustix::fs::openat(CWD, SUPERVISE, flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => (fd, shown),
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                let is_link = rustix::fs::statat(CWD, SUPERVISE, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                if !is_link {
                    return Err(Fatal::new("use", &shown, "it is not a directory".into()));
                }
                let target = rustix::fs::readlinkat(CWD, SUPERVISE, Vec::new())
                    .map_err(|e| Fatal::errno("read", &shown, e))?;
                let target = PathBuf::from(std::ffi::OsString::from_vec(target.into_bytes()));
                let shown = PathBuf::from(format!("{} -> {}", shown.display(), target.display()));
                (open_target(&target, flags, &shown)?, shown)
            }
            Err(e) => return Err(Fatal::errno("open", &shown, e)),
        };
    let st = rustix::fs::fstat(&fd).map_err(|e| Fatal::errno("stat", &shown, e))?;
    let euid = rustix::process::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(Fatal::new(
            "use",
            &shown,
            format!(
                "it is owned by uid {}, not by uid {euid} that supervise runs as; \
                 refusing a supervise/ someone else controls (chown it, or remove it)",
                st.st_uid
            ),
        ));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Fatal::new(
            "use",
            &shown,
            format!(
                "its mode {mode:04o} lets group or others write into it; refusing it \
                 (chmod go-w it; runit makes it 0700)"
            ),
        ));
    }
    Ok(fd)
}

/// Opens the target of the `supervise` symlink (relative to the service dir, as the kernel
/// would resolve it), making it first if it does not exist.
fn open_target(target: &Path, flags: OFlags, shown: &Path) -> Result<OwnedFd, Fatal> {
    let open = || {
        match rustix::fs::openat2(CWD, target, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
            // Kernels before 5.6: at least the last component must not be a symlink.
            Err(Errno::NOSYS) => {
                rustix::fs::openat(CWD, target, flags | OFlags::NOFOLLOW, Mode::empty())
            }
            other => other,
        }
    };
    match open() {
        Err(Errno::NOENT) => {
            let mut builder = std::fs::DirBuilder::new();
            builder.mode(0o700).recursive(true);
            builder
                .create(target)
                .map_err(|e| Fatal::io("create", shown, &e))?;
            open()
        }
        other => other,
    }
    .map_err(|e| match e {
        Errno::LOOP | Errno::XDEV => Fatal::new(
            "use",
            shown,
            "its target is reached through a further symlink; refusing it (name the real \
             directory in the link)"
                .into(),
        ),
        e => Fatal::errno("open", shown, e),
    })
}

fn make_fifo(dir: &OwnedFd, name: &str, shown: &Path) -> Result<(), Fatal> {
    match rustix::fs::mkfifoat(dir, name, Mode::from_raw_mode(0o600)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Fatal::errno("create", shown, e)),
    }
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Fatal::errno("stat", shown, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
        return Err(Fatal::new(
            "use",
            shown,
            "it exists but is not a FIFO".into(),
        ));
    }
    Ok(())
}

fn open_fifo(dir: &OwnedFd, name: &str, access: OFlags, shown: &Path) -> Result<OwnedFd, Fatal> {
    rustix::fs::openat(
        dir,
        name,
        access | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Fatal::errno("open", shown, e))
}
