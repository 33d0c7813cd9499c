//! The `supervise/` directory of a service, as clients see it: paths, "is a supervisor
//! running?" through the `ok` FIFO, control bytes through the `control` FIFO, and the status.

use crate::status::{Extended, Status, StatusError, EXTENDED_FILE};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fmt;
use std::path::{Path, PathBuf};

pub const SUPERVISE: &str = "supervise";
pub const LOCK: &str = "lock";
pub const CONTROL: &str = "control";
pub const OK: &str = "ok";
pub const STATUS: &str = "status";
pub const STAT: &str = "stat";
pub const PID: &str = "pid";
/// warden's directory of FIFOs that clients make and read: each gets a byte whenever the
/// status changes (s6's event fifodir idea), so a waiting client needs no inotify.
pub const EVENT: &str = "event";

/// The scan directory clients use when neither `-d` nor `$SVDIR` says otherwise; the one
/// Debian's runit `sv` uses too.
pub const DEFAULT_SCANDIR: &str = "/etc/service";
/// svscan's own control directory inside the scan directory.
pub const SVSCAN_DIR: &str = ".svscan";

/// Bytes understood by svscan on `SCANDIR/.svscan/control` (held open by svscan, so a client
/// opening it `O_WRONLY|O_NONBLOCK` gets `ENXIO` when no svscan runs).
pub mod scan_control {
    /// Rescan the scan directory now.
    pub const RESCAN: u8 = b'a';
    /// Stop every service, drain the loggers, then exit (as PID 1: exec `init --stage3 halt`).
    pub const TEARDOWN: u8 = b't';
    pub const POWEROFF: u8 = b'p';
    pub const REBOOT: u8 = b'r';
    pub const HALT: u8 = b'h';
}

/// A service directory, seen from outside.
#[derive(Clone, Debug)]
pub struct ServiceDir {
    pub path: PathBuf,
}

/// How every cgroup supervise makes for a service begins.
pub const CGROUP_PREFIX: &str = "warden:";

/// The longest file name cgroupfs takes.
const NAME_MAX: usize = 255;

/// The end of the cgroup name of the service dir whose `stat` says `dev` and `ino`: what makes
/// the name unique per directory (issue 11 item 11).
pub fn cgroup_id(dev: u64, ino: u64) -> String {
    format!("@{dev}:{ino}")
}

/// The name of the cgroup supervise makes for the service dir at `path` (absolute) whose
/// `stat` says `dev` and `ino`: `warden:`, the path with `/` (and newlines) as `:`, cut to fit a
/// file name, then [`cgroup_id`]. The path is there for people; the device and inode make it
/// one directory's: `foo:log` and `foo/log`, two long paths that share their first 230 bytes,
/// or a new `a` after `mv a a.old` each get a cgroup of their own.
pub fn cgroup_leaf(path: &Path, dev: u64, ino: u64) -> String {
    let id = cgroup_id(dev, ino);
    let text = path.to_string_lossy();
    let mut name = String::from(CGROUP_PREFIX);
    for c in text.trim_matches('/').chars() {
        let c = if c == '/' || c == '\n' { ':' } else { c };
        if name.len() + c.len_utf8() + id.len() > NAME_MAX {
            break;
        }
        name.push(c);
    }
    name.push_str(&id);
    name
}

/// Whether the cgroup named `leaf` was made for the dir whose `stat` says `dev` and `ino`.
pub fn cgroup_is_of(leaf: &str, dev: u64, ino: u64) -> bool {
    leaf.starts_with(CGROUP_PREFIX) && leaf.ends_with(&cgroup_id(dev, ino))
}

/// Whether a supervisor runs for a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// `supervise/ok` exists but nobody reads it.
    NotRunning,
    /// No `supervise/ok`: never supervised.
    NeverSupervised,
}

/// Why a client could not talk to a supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    NoSuchService(PathBuf),
    NotSupervised(PathBuf),
    PermissionDenied(PathBuf),
    Io(PathBuf, Errno),
    BadStatus(PathBuf, StatusError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoSuchService(p) => write!(f, "{}: no such service", p.display()),
            ClientError::NotSupervised(p) => write!(f, "{}: not supervised", p.display()),
            ClientError::PermissionDenied(p) => write!(f, "{}: permission denied", p.display()),
            ClientError::Io(p, e) => write!(f, "{}: {}", p.display(), e),
            ClientError::BadStatus(p, e) => write!(f, "{}: {}", p.display(), e),
        }
    }
}

impl std::error::Error for ClientError {}

impl ServiceDir {
    pub fn new(path: impl Into<PathBuf>) -> ServiceDir {
        ServiceDir { path: path.into() }
    }

    pub fn supervise(&self) -> PathBuf {
        self.path.join(SUPERVISE)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(SUPERVISE).join(name)
    }

    /// The logger's service directory, if the service has one.
    pub fn log(&self) -> Option<ServiceDir> {
        let log = self.path.join(crate::service::LOG);
        log.is_dir().then(|| ServiceDir::new(log))
    }

    /// runit's `down` marker; in a oneshot (`type` says so) the file is its down program.
    pub fn normally_down(&self) -> bool {
        self.path.join(crate::service::DOWN).exists() && !crate::deps::is_oneshot(&self.path)
    }

    /// Asks the `ok` FIFO whether a supervisor holds it open, without blocking.
    pub fn liveness(&self) -> Result<Liveness, ClientError> {
        let ok = self.file(OK);
        match open_fifo_for_writing(&ok) {
            Ok(_) => Ok(Liveness::Running),
            Err(Errno::NXIO) => Ok(Liveness::NotRunning),
            Err(Errno::NOENT) if self.path.is_dir() => Ok(Liveness::NeverSupervised),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                Err(ClientError::NoSuchService(self.path.clone()))
            }
            Err(e) => Err(self.io_error(ok, e)),
        }
    }

    /// Writes control bytes to the supervisor; fails at once if none runs.
    pub fn send(&self, bytes: &[u8]) -> Result<(), ClientError> {
        let control = self.file(CONTROL);
        let fd = match open_fifo_for_writing(&control) {
            Ok(fd) => fd,
            Err(Errno::NXIO) => return Err(ClientError::NotSupervised(self.path.clone())),
            Err(Errno::NOENT) if self.path.is_dir() => {
                return Err(ClientError::NotSupervised(self.path.clone()))
            }
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                return Err(ClientError::NoSuchService(self.path.clone()))
            }
            Err(e) => return Err(self.io_error(control, e)),
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            match rustix::io::write(&fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.io_error(control, e)),
            }
        }
        Ok(())
    }

    /// Reads `supervise/status` (runit or daemontools layout).
    pub fn status(&self) -> Result<Status, ClientError> {
        let file = self.file(STATUS);
        match read_state(&file) {
            Ok(bytes) => Status::decode(&bytes).map_err(|e| ClientError::BadStatus(file, e)),
            Err(errno) => match errno {
                Errno::NOENT if self.path.is_dir() => {
                    Err(ClientError::NotSupervised(self.path.clone()))
                }
                Errno::NOENT | Errno::NOTDIR => Err(ClientError::NoSuchService(self.path.clone())),
                e => Err(self.io_error(file, e)),
            },
        }
    }

    /// warden's extended status, if the supervisor is warden's (absent for runsv).
    pub fn extended(&self) -> Option<Extended> {
        read_state(&self.file(EXTENDED_FILE))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|text| Extended::decode(&text))
    }

    fn io_error(&self, file: PathBuf, e: Errno) -> ClientError {
        if e == Errno::ACCESS || e == Errno::PERM {
            ClientError::PermissionDenied(file)
        } else {
            ClientError::Io(file, e)
        }
    }
}

/// Opens `control` or `ok` for writing without blocking. `supervise/` may belong to another
/// user than ours (root's svctl on a user's own tree): a symlink there is not followed
/// (ELOOP), and anything but a FIFO is refused (EINVAL), so no control byte is ever written
/// into a file planted in its place.
fn open_fifo_for_writing(path: &Path) -> Result<rustix::fd::OwnedFd, Errno> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
        return Err(Errno::INVAL);
    }
    Ok(fd)
}

/// The most read of a status file: far more than any record, little enough to never matter.
const STATE_CAP: u64 = 64 * 1024;

/// Reads a small state file (`status`, `warden`) without following a symlink and without
/// blocking on a FIFO planted in its place; only a regular file is read, up to `STATE_CAP`.
fn read_state(path: &Path) -> Result<Vec<u8>, Errno> {
    use std::io::Read;
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    let mut bytes = crate::service::buffer_for(st.st_size, STATE_CAP);
    std::fs::File::from(fd)
        .take(STATE_CAP)
        .read_to_end(&mut bytes)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    Ok(bytes)
}

/// Resolves a service argument as runit's `sv` does: a path if it starts with `/` or `.` or
/// ends with `/`, else a name in the scan directory.
pub fn resolve(scandir: &Path, arg: &str) -> ServiceDir {
    if arg.starts_with('/') || arg.starts_with('.') || arg.ends_with('/') {
        ServiceDir::new(arg)
    } else {
        ServiceDir::new(scandir.join(arg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_oneshots_down_program_is_not_runits_down_marker() {
        let dir = std::env::temp_dir().join(format!("warden-svdir-down-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("down"), "").unwrap();
        assert!(ServiceDir::new(&dir).normally_down());
        std::fs::write(dir.join("type"), "oneshot\n").unwrap();
        assert!(!ServiceDir::new(&dir).normally_down());
        std::fs::write(dir.join("type"), "longrun\n").unwrap();
        assert!(ServiceDir::new(&dir).normally_down());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issue_11_item_11_cgroup_names_are_one_directorys() {
        let name = cgroup_leaf(Path::new("/etc/sv/foo/log"), 2049, 77);
        assert_eq!(name, "warden:etc:sv:foo:log@2049:77");
        assert!(cgroup_is_of(&name, 2049, 77));
        assert!(!cgroup_is_of(&name, 2049, 78));
        assert!(!cgroup_is_of(&name, 20, 4977));
        // Paths that read the same as names differ by their directories.
        assert_ne!(
            cgroup_leaf(Path::new("/sv/foo/log"), 1, 10),
            cgroup_leaf(Path::new("/sv/foo:log"), 1, 11)
        );
        // A long path is cut, never its end.
        let long = format!("/{}", "é".repeat(300));
        for (a, b) in [(1, 2), (u64::MAX, u64::MAX)] {
            let name = cgroup_leaf(Path::new(&long), a, b);
            assert!(name.len() <= NAME_MAX, "{}", name.len());
            assert!(name.ends_with(&cgroup_id(a, b)));
            assert!(!name.contains('/'));
        }
        assert_ne!(
            cgroup_leaf(Path::new(&format!("{long}/a")), 1, 2),
            cgroup_leaf(Path::new(&format!("{long}/b")), 1, 3)
        );
        assert!(!cgroup_leaf(Path::new("/a\nb/"), 1, 2).contains('\n'));
    }

    #[test]
    fn resolves_like_sv() {
        let scan = Path::new("/etc/service");
        assert_eq!(resolve(scan, "getty").path, Path::new("/etc/service/getty"));
        assert_eq!(resolve(scan, "./x").path, Path::new("./x"));
        assert_eq!(resolve(scan, "/srv/x").path, Path::new("/srv/x"));
        assert_eq!(resolve(scan, "x/").path, Path::new("x/"));
    }

    #[test]
    fn liveness_through_the_ok_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let svc = ServiceDir::new(dir.path());
        assert_eq!(svc.liveness(), Ok(Liveness::NeverSupervised));
        assert_eq!(
            svc.send(b"u"),
            Err(ClientError::NotSupervised(dir.path().into()))
        );
        std::fs::create_dir(svc.supervise()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            svc.file(OK),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(svc.liveness(), Ok(Liveness::NotRunning));
        let _reader = rustix::fs::open(
            svc.file(OK),
            OFlags::RDONLY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(svc.liveness(), Ok(Liveness::Running));
        let missing = ServiceDir::new(dir.path().join("nope"));
        drop(_reader);
        // A regular file in place of `control` (or a symlink to one) is never written.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, svc.file(CONTROL)).unwrap();
        assert!(svc.send(b"d").is_err());
        std::fs::remove_file(svc.file(CONTROL)).unwrap();
        std::fs::write(svc.file(CONTROL), b"").unwrap();
        assert!(svc.send(b"d").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(svc.file(CONTROL)).unwrap(), b"");
        assert_eq!(
            missing.liveness(),
            Err(ClientError::NoSuchService(missing.path.clone()))
        );
    }
}
