//! What svscan asks of the system for its entries, and nothing else: adoption of the
//! supervisors an earlier svscan left running (through `supervise/ok`, `supervise/warden` and
//! /proc), signals (by pidfd for adopted ones), process groups, cgroups, the log pipes (made,
//! or taken over from a running supervisor through /proc), the fd limit, and the files a
//! service dir has for svscan (`container-exit`, the logger's status). The decisions are
//! `life`'s and `tree`'s; this module only does what it is told and says what it found.

use crate::life::{Logger, Run};
use crate::scandir::{service_path, shown};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden::svdir::{Liveness, ServiceDir};

/// The signals svscan catches (through its signal pipe); its children reset them.
pub const CAUGHT: &[Signal] = &[
    Signal::CHILD,
    Signal::HUP,
    Signal::ALARM,
    Signal::TERM,
    Signal::INT,
    Signal::USR1,
    Signal::USR2,
    Signal::POWER,
];

/// The cgroup directory that the supervisor of `dir` names in its extended status, if it is
/// one of supervise's own in the cgroup2 mount and made for this very directory (its name
/// ends in the dir's device and inode): a stale or foreign status never names another's.
pub fn cgroup_of(dir: &Path) -> Option<PathBuf> {
    static MOUNT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let mount = MOUNT.get_or_init(warden::cgroupfs::mount).as_ref()?;
    let name = ServiceDir::new(dir).extended()?.cgroup?;
    let relative = Path::new(name.trim_start_matches('/'));
    let leaf = relative.file_name()?.to_str()?;
    let plain = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let st = rustix::fs::stat(dir).ok()?;
    (plain && warden::svdir::cgroup_is_of(leaf, st.st_dev, st.st_ino)).then(|| mount.join(relative))
}

/// The cgroup of the supervisor of `dir` that died without being restarted, unless some
/// supervisor runs there now (a new directory under the old name may have a live one, whose
/// cgroup is empty while its service is down).
pub fn dead_supervisor_cgroup(dir: &Path) -> Option<PathBuf> {
    match ServiceDir::new(dir).liveness() {
        Ok(Liveness::Running) => None,
        _ => cgroup_of(dir),
    }
}

/// Removes a dead supervisor's cgroup; one still in use (EBUSY) or already gone stays as is.
pub fn remove_cgroup(cgroup: Option<PathBuf>) {
    if let Some(dir) = cgroup {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The directory a supervisor runs in, whatever its name in the scan directory is now (it
/// may have been renamed or moved out already): supervise works inside its directory.
pub fn supervisor_dir(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/cwd"))
}

/// The logger's state from the status of its supervisor in `dir`.
pub fn logger_state(dir: &Path) -> Logger {
    use warden::status::{RunState, Want};
    use warden::svdir::ClientError;
    match ServiceDir::new(dir).status() {
        Ok(s) if s.pid != 0 && s.state == RunState::Run => Logger::Running,
        Ok(s) if s.state == RunState::Down && s.want != Want::Up => Logger::Down,
        Ok(_) | Err(ClientError::NotSupervised(_) | ClientError::NoSuchService(_)) => {
            Logger::Coming
        }
        Err(_) => Logger::Unreadable,
    }
}

/// When a service with a `container-exit` file ends svscan (s6-overlay's "the container ends
/// with its main service").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerExit {
    /// An empty file (or `down`): when `run` has exited and supervise will not start it again
    /// (the service is down and wanted down: `svctl once`, `svctl down`, a `down` file).
    Down,
    /// `always`: at any exit of `run`, even one supervise would restart.
    Always,
}

/// The name of the file in a service directory that makes its end svscan's.
pub const CONTAINER_EXIT: &str = "container-exit";

/// Reads `NAME/container-exit`: `None` when there is none. Looked at with a `stat` first, so
/// the usual answers (none, empty) cost no fd; only a file with words in it is opened (without
/// blocking on a FIFO, a little of it read). When it cannot be read (out of fds, say), what
/// was known before stays.
pub fn container_exit_of(name: &OsStr, before: Option<ContainerExit>) -> Option<ContainerExit> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read;
    let path = service_path(name).join(CONTAINER_EXIT);
    let st = match rustix::fs::stat(&path) {
        Ok(st) => st,
        Err(Errno::NOENT | Errno::NOTDIR) => return None,
        Err(_) => return before.or(Some(ContainerExit::Down)),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        warden::say!(
            "svscan: warning: {} is not a regular file; taken as empty (down)",
            shown(path.as_os_str())
        );
        return Some(ContainerExit::Down);
    }
    if st.st_size == 0 {
        return Some(ContainerExit::Down);
    }
    let fd = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let Ok(fd) = fd else {
        return before.or(Some(ContainerExit::Down));
    };
    let mut text = Vec::new();
    if std::fs::File::from(fd)
        .take(256)
        .read_to_end(&mut text)
        .is_err()
    {
        return before.or(Some(ContainerExit::Down));
    }
    let word = text
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    match word {
        b"" | b"down" => Some(ContainerExit::Down),
        b"always" => Some(ContainerExit::Always),
        _ => {
            warden::say!(
                "svscan: warning: {} says {:?}, neither down nor always; taken as down",
                shown(path.as_os_str()),
                String::from_utf8_lossy(word)
            );
            Some(ContainerExit::Down)
        }
    }
}

/// The exit status a container ends with for the service's last exit: its code, or 128 + n
/// when signal n killed it (as a shell and `init --` say it).
pub fn container_status(exit: warden::status::Exit) -> u8 {
    match exit {
        warden::status::Exit::Code(c) => u8::try_from(c & 0xff).unwrap_or(111),
        warden::status::Exit::Signal(n) => {
            u8::try_from(n.clamp(0, 127).saturating_add(128)).unwrap_or(255)
        }
    }
}

pub fn is_emfile(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE) | Some(Errno::NFILE)
    )
}

/// Raises the soft limit on open files towards the hard one; true if it went up. svscan holds
/// two pipe ends per logged service, more than the usual 1024 allows for a big tree.
fn raise_fd_limit() -> bool {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return false;
    };
    let wanted = current.saturating_mul(2).max(1024);
    let new = match limit.maximum {
        Some(max) if current >= max => return false,
        Some(max) => wanted.min(max),
        None => wanted,
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(new),
            maximum: limit.maximum,
        },
    )
    .is_ok()
}

/// Runs an fd-creating operation, raising the fd limit once if it is what stood in the way.
pub fn with_fds<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if is_emfile(&e) && raise_fd_limit() => op(),
        other => other,
    }
}

/// A log pipe: svscan holds both ends for the life of the entry.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

pub fn new_pipe() -> io::Result<Pipe> {
    with_fds(|| {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Pipe { read, write })
    })
}

/// Re-owns the pipe an adopted supervisor has on `fd`, through /proc, so that a logger
/// restarted later still reads what the service writes.
pub fn reopen_pipe(pid: i32, fd: i32) -> Option<Pipe> {
    use rustix::fs::{FileType, Mode, OFlags};
    let path = format!("/proc/{pid}/fd/{fd}");
    let is_fifo = rustix::fs::stat(&path)
        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo)
        .unwrap_or(false);
    if !is_fifo {
        return None;
    }
    // Opened non-blocking so the open cannot wait; our reader then lets the writer's open
    // through at once.
    let read = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let write = rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    rustix::fs::fcntl_setfl(&read, OFlags::empty()).ok()?;
    Some(Pipe { read, write })
}

/// A write end again for a pipe of which svscan holds only the read end (the leftover of a
/// log), opened through /proc: it cannot wait, as `read` is a reader. Checked to be that very
/// pipe, in case /proc is not what it seems.
pub fn writer_for(read: &OwnedFd) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/self/fd/{}", read.as_raw_fd());
    let write = with_fds(|| {
        Ok(rustix::fs::open(
            &path,
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    })?;
    let (want, got) = (rustix::fs::fstat(read)?, rustix::fs::fstat(&write)?);
    if (want.st_dev, want.st_ino) != (got.st_dev, got.st_ino) {
        return Err(io::Error::other(format!("{path} is not the pipe")));
    }
    Ok(write)
}

/// A supervisor an earlier svscan started, taken over.
pub struct Adopted {
    pub run: Run,
    /// Not our child: its exit comes through the pidfd instead of wait().
    pub pidfd: OwnedFd,
}

/// Takes over a supervisor that an earlier svscan started, if one runs for `dir`: one holds
/// `supervise/ok` open for reading, and `supervise/warden` names its pid, which /proc says is
/// a `supervise` working in this very directory.
pub fn adopt(dir: &Path) -> Result<Option<Adopted>, String> {
    let svc = ServiceDir::new(dir);
    if svc.liveness() != Ok(Liveness::Running) {
        return Ok(None);
    }
    let pid = svc
        .extended()
        .and_then(|x| x.supervisor_pid)
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)
        .ok_or("a supervisor runs, but supervise/warden names no supervisor_pid")?;
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(|e| {
            format!(
                "unable to open a pidfd for supervisor {}: {e}",
                pid.as_raw_nonzero()
            )
        })?;
    // The pid was read from a file: make sure it still names a supervise, not a reused pid.
    let comm =
        std::fs::read_to_string(format!("/proc/{}/comm", pid.as_raw_nonzero())).unwrap_or_default();
    let same_dir = match (
        std::fs::metadata(supervisor_dir(pid.as_raw_nonzero().get())),
        std::fs::metadata(dir),
    ) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    if comm.trim_end() != "supervise" || !same_dir {
        return Err(format!(
            "pid {} named in supervise/warden is not a supervise of this directory",
            pid.as_raw_nonzero()
        ));
    }
    let exit_seen = svc.extended().and_then(|x| x.last_exit_at);
    Ok(Some(Adopted {
        run: Run {
            pid: pid.as_raw_nonzero().get(),
            since: started_at(pid, Instant::now()),
            stop_sent: false,
            exit_seen,
        },
        pidfd,
    }))
}

/// When process `pid` started, on the clock of `now`, from its start time in /proc (clock
/// ticks since boot): an adopted supervisor that had run for minutes before svscan restarted
/// is restarted at once if it dies, not throttled as one that ran less than a second.
/// `now` when /proc does not say.
fn started_at(pid: Pid, now: Instant) -> Instant {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()));
    let ticks = stat.ok().and_then(|s| {
        // Field 22, counted after the `(comm)` that may hold blanks.
        let (_, rest) = s.rsplit_once(") ")?;
        rest.split(' ').nth(19)?.parse::<u64>().ok()
    });
    let per_second = rustix::param::clock_ticks_per_second();
    let (Some(ticks), true) = (ticks, per_second > 0) else {
        return now;
    };
    let started = Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second).saturating_mul(1_000_000_000) / per_second);
    let boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let uptime = Duration::new(
        u64::try_from(boot.tv_sec).unwrap_or(0),
        u32::try_from(boot.tv_nsec).unwrap_or(0),
    );
    now.checked_sub(uptime.saturating_sub(started))
        .unwrap_or(now)
}

/// Signals a supervisor: an adopted one through its pidfd, which cannot reach another process
/// that took its pid once it has exited (issue 11 item 12); our own child by pid, which stays
/// ours (a zombie at worst) until svscan reaps it.
pub fn signal(pid: i32, pidfd: Option<&OwnedFd>, sig: Signal, what: &str, name: &OsStr) {
    let sent = match (pidfd, Pid::from_raw(pid)) {
        (Some(pidfd), _) => rustix::process::pidfd_send_signal(pidfd, sig),
        (None, Some(pid)) => rustix::process::kill_process(pid, sig),
        (None, None) => Err(Errno::SRCH),
    };
    match sent {
        Ok(()) | Err(Errno::SRCH) => {}
        Err(e) => warden::say!(
            "svscan: warning: unable to signal the {what} of {}: {e}",
            shown(name)
        ),
    }
}

/// KILLs a service's (or logger's) process group, as recorded by its supervisor, unless the
/// service is down: then nothing of it runs, and the id may be another group's by now (a
/// record from a supervise that did not yet remove `pgid` once the run was gone).
pub fn kill_group_of(dir: &Path) {
    let service = ServiceDir::new(dir);
    if service
        .status()
        .is_ok_and(|s| s.state == warden::status::RunState::Down)
    {
        return;
    }
    let Some(pgid) = service
        .extended()
        .and_then(|x| x.pgid)
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    let own = warden::ids::process_group();
    if pgid.as_raw_nonzero().get() > 1 && pgid.as_raw_nonzero().get() != own {
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
}

/// How many bytes are unread in a pipe, from its read end.
pub fn unread(read: &OwnedFd) -> rustix::io::Result<u64> {
    rustix::io::ioctl_fionread(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_gets_a_write_end_of_that_very_pipe_again() {
        let Pipe { read, write } = new_pipe().unwrap();
        rustix::io::write(&write, b"left").unwrap();
        drop(write);
        let again = writer_for(&read).unwrap();
        rustix::io::write(&again, b" over").unwrap();
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&read, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"left over");
        // Blocking, as a service's stdout must be, and the only writer: EOF once it goes.
        let flags = rustix::fs::fcntl_getfl(&again).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        drop(again);
        assert_eq!(rustix::io::read(&read, &mut buf), Ok(0));
    }

    #[test]
    fn a_container_ends_with_the_code_or_128_plus_the_signal() {
        use warden::status::Exit;
        assert_eq!(container_status(Exit::Code(0)), 0);
        assert_eq!(container_status(Exit::Code(3)), 3);
        assert_eq!(container_status(Exit::Code(255)), 255);
        assert_eq!(container_status(Exit::Signal(9)), 137);
        assert_eq!(container_status(Exit::Signal(15)), 143);
        assert_eq!(container_status(Exit::Signal(i32::MAX)), 255);
        assert_eq!(container_status(Exit::Signal(-1)), 128);
    }
}
