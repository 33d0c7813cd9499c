//! The supervision tree: one entry per service directory, each with the `supervise` of the
//! service, and, when the service has a `log/`, the logger's `supervise` and the pipe between
//! them, which svscan holds for the life of the entry so that no restart loses a line.

use crate::launch::{self, Launches, Stdio};
use crate::scandir::Id;
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitStatus};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden::svdir::{Liveness, ServiceDir};

/// A supervisor that lived at least this long is not failing: restart it at once.
const QUICK_DEATH: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// How often starts that failed for want of file descriptors are tried again.
const FD_SHORTAGE_RETRY: Duration = Duration::from_secs(1);

/// Restart back-off after `quick_deaths` deaths in a row, each within [`QUICK_DEATH`] of its
/// start: none for the first death after a good run, then 1 s, 2 s, 4 s... up to 30 s.
pub fn restart_delay(quick_deaths: u32) -> Duration {
    match quick_deaths {
        0 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 1).min(5)).min(MAX_RESTART_DELAY),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Service,
    Log,
}

/// Where svscan finds the programs it starts.
pub struct Programs {
    /// Warden's `supervise` beside svscan, or why there is none (each start then fails with
    /// that, and is retried with the back-off; nothing from PATH is started in its place).
    pub supervise: Result<PathBuf, String>,
}

struct Running {
    pid: Pid,
    since: Instant,
    /// Set for a supervisor adopted from an earlier svscan: not our child, so its exit comes
    /// through the pidfd instead of wait().
    pidfd: Option<OwnedFd>,
    /// TERM (service) or HUP (logger) was sent.
    stop_sent: bool,
    /// The supervisor's cgroup directory, read from its extended status when it was told to
    /// stop: removed, if empty, once it has exited for good, as a supervisor killed with KILL
    /// cannot do that itself.
    cgroup: Option<PathBuf>,
    /// The `last_exit_at` of the service when svscan adopted its supervisor: an exit from
    /// before svscan's time never ends a container (`container-exit`).
    exit_seen: Option<warden::Tai64N>,
}

impl Running {
    /// Records that the supervisor was told to stop (it still runs, so its directory, and
    /// with it its extended status, can be found through /proc whatever the entry is called).
    fn stopping(&mut self) {
        self.stop_sent = true;
        if self.cgroup.is_none() {
            self.cgroup = cgroup_of(&supervisor_dir(self.pid));
        }
    }
}

/// The cgroup directory that the supervisor of `dir` names in its extended status, if it is
/// one of supervise's own in the cgroup2 mount and made for this very directory (its name
/// ends in the dir's device and inode): a stale or foreign status never names another's.
fn cgroup_of(dir: &Path) -> Option<PathBuf> {
    static MOUNT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let mount = MOUNT.get_or_init(cgroup2_mount).as_ref()?;
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
fn dead_supervisor_cgroup(dir: &Path) -> Option<PathBuf> {
    match ServiceDir::new(dir).liveness() {
        Ok(Liveness::Running) => None,
        _ => cgroup_of(dir),
    }
}

/// Removes a dead supervisor's cgroup; one still in use (EBUSY) or already gone stays as is.
fn remove_cgroup(cgroup: Option<PathBuf>) {
    if let Some(dir) = cgroup {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Where cgroup2 is mounted, from /proc/self/mountinfo (fs type after the ` - ` separator).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mount_point = left.split(' ').nth(4)?;
        // mountinfo escapes blanks as \040; such a mount point is not worth guessing at.
        (!mount_point.contains('\\')).then(|| PathBuf::from(mount_point))
    })
}

enum State {
    Waiting { at: Instant },
    Running(Running),
    Gone,
}

struct Slot {
    state: State,
    /// Told to exit only to be restarted at once (to connect a `log/` that appeared).
    restart_now: bool,
    quick_deaths: u32,
    /// A failure of this slot was reported; quiet until it has worked again.
    reported: bool,
}

impl Slot {
    fn waiting(now: Instant) -> Slot {
        Slot {
            state: State::Waiting { at: now },
            restart_now: false,
            quick_deaths: 0,
            reported: false,
        }
    }

    fn is_gone(&self) -> bool {
        matches!(self.state, State::Gone)
    }

    fn due(&self, now: Instant) -> bool {
        matches!(self.state, State::Waiting { at } if at <= now)
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { at } => Some(at),
            _ => None,
        }
    }

    /// Back-off after a death or a failed start.
    fn retry(&mut self, lived: Duration, now: Instant) -> Duration {
        if lived >= QUICK_DEATH {
            self.quick_deaths = 0;
            self.reported = false;
        } else {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        }
        let delay = restart_delay(self.quick_deaths);
        self.state = State::Waiting { at: now + delay };
        delay
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

struct LogSide {
    slot: Slot,
    pipe: Option<Pipe>,
    /// After the service is gone: the read end, kept so that lines still in the pipe outlive
    /// a logger that dies while draining; a new logger is started on them.
    leftover: Option<OwnedFd>,
    /// The logger's supervisor is to get HUP (`e`) once its logger runs: `e` to a supervisor
    /// whose logger is down (restart throttle) would make it exit with the pipe unread.
    hup_pending: bool,
}

impl LogSide {
    fn new(slot: Slot, pipe: Option<Pipe>) -> LogSide {
        LogSide {
            slot,
            pipe,
            leftover: None,
            hup_pending: false,
        }
    }

    fn unread(&self) -> bool {
        self.leftover
            .as_ref()
            .is_some_and(|fd| rustix::io::ioctl_fionread(fd).is_ok_and(|n| n > 0))
    }

    /// Whether the logger must (still) run: for the service, or to drain what it left.
    fn needed(&self, wanted: bool, service_gone: bool) -> bool {
        wanted || !service_gone || self.leftover.is_some()
    }
}

/// The directory a supervisor runs in, whatever its name in the scan directory is now (it
/// may have been renamed or moved out already): supervise works inside its directory.
fn supervisor_dir(pid: Pid) -> PathBuf {
    PathBuf::from(format!("/proc/{}/cwd", pid.as_raw_nonzero()))
}

/// What a logger's supervisor says of its logger, as far as its HUP is concerned.
#[derive(PartialEq, Eq)]
enum Logger {
    Running,
    /// Not running yet: starting, or held back by the restart throttle.
    Coming,
    /// Down and meant to stay down (`down` file, `svctl down`): nobody will read the pipe.
    Down,
}

/// The logger's state from the status of its supervisor in `dir`; `None` when the status
/// could not be read for a reason that may pass (out of fds, say), unlike a status file not
/// written yet, which inotify will report.
fn logger_state(dir: &Path) -> Option<Logger> {
    use warden::status::{RunState, Want};
    use warden::svdir::ClientError;
    match ServiceDir::new(dir).status() {
        Ok(s) if s.pid != 0 && s.state == RunState::Run => Some(Logger::Running),
        Ok(s) if s.state == RunState::Down && s.want != Want::Up => Some(Logger::Down),
        Ok(_) | Err(ClientError::NotSupervised(_) | ClientError::NoSuchService(_)) => {
            Some(Logger::Coming)
        }
        Err(_) => None,
    }
}

/// Where a logger's supervisor stands with its pending HUP.
#[derive(Debug, PartialEq, Eq)]
pub enum Hup {
    /// Sent, or no longer needed.
    Done,
    /// Its logger does not run yet: the next change of its status tells.
    Pending,
    /// Its status could not be read: look again shortly.
    Recheck,
}

struct Entry {
    name: OsString,
    /// The directory is in the scan directory and no shutdown is under way.
    wanted: bool,
    service: Slot,
    log: Option<LogSide>,
    /// The service has a `container-exit` file: its end ends svscan (read at each start of
    /// its supervisor).
    container_exit: Option<ContainerExit>,
}

impl Entry {
    fn finished(&self) -> bool {
        !self.wanted
            && self.service.is_gone()
            && self.log.as_ref().map_or(true, |log| log.slot.is_gone())
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
fn container_exit_of(name: &OsStr, before: Option<ContainerExit>) -> Option<ContainerExit> {
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
fn container_status(exit: warden::status::Exit) -> u8 {
    match exit {
        warden::status::Exit::Code(c) => u8::try_from(c & 0xff).unwrap_or(111),
        warden::status::Exit::Signal(n) => {
            u8::try_from(n.clamp(0, 127).saturating_add(128)).unwrap_or(255)
        }
    }
}

/// The catch-all logger (s6-linux-init's uncaught-logs logger): one pipe, held by svscan like
/// every log pipe, that the supervisors of services without a `log/` get as stdout and
/// stderr, read by a logger supervised in `dir` (`supervise --default-log`: `logger ./main`
/// unless `dir` has a `run`). It is stopped last, once every entry is gone, to drain it all.
struct Uncaught {
    id: Id,
    dir: PathBuf,
    log: LogSide,
}

pub struct Tree {
    entries: HashMap<Id, Entry>,
    uncaught: Option<Uncaught>,
    /// `unwant_all` was called: the catch-all logger is to stop once the entries are gone.
    shutting_down: bool,
    pids: HashMap<i32, (Id, Role)>,
    programs: Programs,
    /// Running out of file descriptors was reported; quiet until a start works again.
    fd_shortage_reported: bool,
    launches: Launches,
    /// Some service ever had a `container-exit` file: until then, looking for them costs
    /// nothing per wake-up, however big the tree.
    container_exit_seen: bool,
}

/// The path svscan passes to `supervise`: the name, made unmistakable for an option.
fn service_path(name: &OsStr) -> PathBuf {
    if name.as_bytes().first() == Some(&b'-') {
        Path::new(".").join(name)
    } else {
        PathBuf::from(name)
    }
}

fn log_path(name: &OsStr) -> PathBuf {
    service_path(name).join(warden::service::LOG)
}

/// A name for messages: quoted and escaped, so spaces, newlines and odd bytes stay visible.
pub fn shown(name: &OsStr) -> String {
    format!("{:?}", name)
}

/// The service's name, or `NAME/log` for its logger, for messages.
fn shown_as(name: &OsStr, role: Role) -> String {
    match role {
        Role::Service => shown(name),
        Role::Log => shown(Path::new(name).join(warden::service::LOG).as_os_str()),
    }
}

fn describe(status: Option<WaitStatus>) -> String {
    match status {
        Some(s) => match (s.exit_status(), s.terminating_signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {}", warden::signal::name_or_number(sig)),
            _ => "exited".into(),
        },
        None => "exited".into(),
    }
}

fn is_emfile(e: &io::Error) -> bool {
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

fn new_pipe() -> io::Result<Pipe> {
    with_fds(|| {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Pipe { read, write })
    })
}

/// Re-owns the pipe an adopted supervisor has on `fd`, through /proc, so that a logger
/// restarted later still reads what the service writes.
fn reopen_pipe(pid: Pid, fd: i32) -> Option<Pipe> {
    use rustix::fs::{FileType, Mode, OFlags};
    let path = format!("/proc/{}/fd/{fd}", pid.as_raw_nonzero());
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

/// Takes over a supervisor that an earlier svscan started, if one runs for `dir`.
fn adopt(dir: &Path) -> Result<Option<Running>, String> {
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
        std::fs::metadata(supervisor_dir(pid)),
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
    Ok(Some(Running {
        pid,
        since: started_at(pid, Instant::now()),
        pidfd: Some(pidfd),
        stop_sent: false,
        cgroup: None,
        exit_seen,
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
fn signal(supervisor: &Running, sig: Signal, what: &str, name: &OsStr) {
    let sent = match &supervisor.pidfd {
        Some(pidfd) => rustix::process::pidfd_send_signal(pidfd, sig),
        None => rustix::process::kill_process(supervisor.pid, sig),
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
fn kill_group_of(dir: &Path) {
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
    let own = rustix::process::getpgrp();
    if pgid.as_raw_nonzero().get() > 1 && pgid != own {
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
}

impl Tree {
    pub fn new(programs: Programs) -> Tree {
        Tree {
            entries: HashMap::new(),
            uncaught: None,
            shutting_down: false,
            pids: HashMap::new(),
            programs,
            fd_shortage_reported: false,
            launches: Launches::default(),
            container_exit_seen: false,
        }
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.entries.contains_key(id)
    }

    /// No entry is left, nor the catch-all logger.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self
                .uncaught
                .as_ref()
                .map_or(true, |u| u.log.slot.is_gone())
    }

    /// Sends the output of every service without a `log/` to a logger supervised in `dir`
    /// (absolute), adopting the one an earlier svscan left running there, and its pipe.
    pub fn set_uncaught(&mut self, dir: PathBuf, now: Instant) -> io::Result<()> {
        let meta = std::fs::metadata(&dir)?;
        let id = (meta.dev(), meta.ino());
        let mut slot = Slot::waiting(now);
        let name = dir.clone().into_os_string();
        let adopted = match adopt(&dir) {
            Ok(Some(running)) => {
                let pid = running.pid;
                slot.state = State::Running(running);
                Some(pid)
            }
            Ok(None) => None,
            Err(cause) => {
                warden::say!(
                    "svscan: warning: unable to adopt the running supervisor of {}: {cause}",
                    shown(&name)
                );
                None
            }
        };
        let pipe = match adopted.and_then(|pid| reopen_pipe(pid, 0)) {
            Some(pipe) => pipe,
            None => {
                if adopted.is_some() {
                    warden::say!(
                        "svscan: warning: unable to take over the pipe of the catch-all logger \
                         {}: its next start gets a new one",
                        shown(&name)
                    );
                }
                new_pipe()?
            }
        };
        if let Some(pid) = adopted {
            self.pids
                .insert(pid.as_raw_nonzero().get(), (id, Role::Log));
        }
        self.uncaught = Some(Uncaught {
            id,
            dir,
            log: LogSide::new(slot, Some(pipe)),
        });
        // Now, before the first scan starts any service: the pipe has its reader first.
        self.start_uncaught(now);
        Ok(())
    }

    /// After a failed exec of the next stage (PID 1): the catch-all logger is wanted again,
    /// with a new pipe if the old one was let go.
    pub fn resume(&mut self, now: Instant) {
        self.shutting_down = false;
        let Some(u) = self.uncaught.as_mut() else {
            return;
        };
        if u.log.pipe.is_none() {
            match new_pipe() {
                Ok(pipe) => u.log.pipe = Some(pipe),
                Err(e) => warden::say!(
                    "svscan: warning: unable to make the pipe of the catch-all logger: {e}; \
                     services without a log/ now write where svscan does"
                ),
            }
            u.log.leftover = None;
        }
        if u.log.slot.is_gone() {
            u.log.slot = Slot::waiting(now);
        }
    }

    /// Once every entry is gone in a shutdown: svscan lets go of the catch-all pipe's write
    /// end and tells the logger's supervisor to exit once the logger has read it all.
    fn stop_uncaught(&mut self) {
        let Some(u) = self.uncaught.as_mut() else {
            return;
        };
        if !self.shutting_down || !self.entries.is_empty() {
            return;
        }
        let log = &mut u.log;
        if let Some(pipe) = log.pipe.take() {
            log.leftover = Some(pipe.read);
        }
        let unread = log.unread();
        match &mut log.slot.state {
            State::Running(r) if !r.stop_sent && !log.hup_pending => {
                match logger_state(&supervisor_dir(r.pid)) {
                    Some(state @ (Logger::Running | Logger::Down)) => {
                        hup_uncaught(&u.dir, r, &mut log.leftover, state);
                    }
                    Some(Logger::Coming) | None => log.hup_pending = true,
                }
            }
            State::Running(_) | State::Gone => {}
            State::Waiting { .. } if unread => {}
            State::Waiting { .. } => {
                log.slot.state = State::Gone;
                log.leftover = None;
            }
        }
    }

    /// Starts the catch-all logger's supervisor when it is due: on the pipe, or, in a
    /// shutdown, on what is left of it (and then to exit once that is read).
    fn start_uncaught(&mut self, now: Instant) {
        let Some(u) = self.uncaught.as_mut() else {
            return;
        };
        if !u.log.slot.due(now) {
            return;
        }
        let draining = u.log.pipe.is_none();
        let read = match (&u.log.pipe, &u.log.leftover) {
            (Some(pipe), _) => &pipe.read,
            (None, Some(read)) if u.log.unread() => read,
            (None, _) => {
                u.log.slot.state = State::Gone;
                u.log.leftover = None;
                return;
            }
        };
        let Ok(supervise) = &self.programs.supervise else {
            // Said once at startup; the catch-all waits, its pipe held, as any log pipe.
            return;
        };
        let result = launch::spawn(
            supervise.as_os_str(),
            &[OsStr::new("--default-log"), u.dir.as_os_str()],
            Stdio::Input(read),
            crate::scanner::Scanner::signals(),
            &mut self.launches,
        );
        match result {
            Ok(pid) => {
                self.pids
                    .insert(pid.as_raw_nonzero().get(), (u.id, Role::Log));
                u.log.slot.state = State::Running(Running {
                    pid,
                    since: now,
                    pidfd: None,
                    stop_sent: false,
                    cgroup: None,
                    exit_seen: None,
                });
                u.log.hup_pending = draining;
            }
            Err(e) => {
                let delay = u.log.slot.retry(Duration::ZERO, now);
                if !std::mem::replace(&mut u.log.slot.reported, true) {
                    warden::say!(
                        "svscan: warning: unable to start the supervisor of the catch-all \
                         logger {}: {e}; retrying in {}",
                        u.dir.display(),
                        humanize(delay)
                    );
                }
            }
        }
    }

    /// The catch-all logger's supervisor exited: restarted on the same pipe, so that no line
    /// is lost, unless the shutdown is over for it.
    fn uncaught_exited(&mut self, pid: i32, status: Option<WaitStatus>, now: Instant) {
        let Some(u) = self.uncaught.as_mut() else {
            return;
        };
        let State::Running(running) = &u.log.slot.state else {
            return;
        };
        if running.pid.as_raw_nonzero().get() != pid {
            return;
        }
        let lived = now.saturating_duration_since(running.since);
        let asked_to_stop = running.stop_sent;
        let cgroup = running.cgroup.clone();
        u.log.hup_pending = false;
        if u.log.pipe.is_some() || u.log.unread() {
            let delay = u.log.slot.retry(lived, now);
            if !asked_to_stop && !std::mem::replace(&mut u.log.slot.reported, true) {
                warden::say!(
                    "svscan: warning: the supervisor of the catch-all logger {} ended ({}); \
                     restarting it in {}",
                    u.dir.display(),
                    describe(status),
                    humanize(delay)
                );
            }
        } else {
            u.log.slot.state = State::Gone;
            u.log.leftover = None;
            remove_cgroup(cgroup);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn name(&self, id: &Id) -> Option<&OsStr> {
        self.entries.get(id).map(|e| e.name.as_os_str())
    }

    /// (name, id) of every entry, wanted or being stopped.
    pub fn names(&self) -> Vec<(OsString, Id)> {
        self.entries
            .iter()
            .map(|(id, e)| (e.name.clone(), *id))
            .collect()
    }

    pub fn rename(&mut self, id: &Id, name: &OsStr) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.name = name.to_owned();
        }
    }

    /// A service directory appeared: supervise it, adopting supervisors an earlier svscan
    /// left running.
    pub fn add(&mut self, id: Id, name: &OsStr, now: Instant) {
        let dir = service_path(name);
        let mut service = Slot::waiting(now);
        let adopted = self.adopt_slot(&dir, name, Role::Service, &mut service);
        let log = if log_path(name).is_dir() {
            let mut slot = Slot::waiting(now);
            let log_adopted = self.adopt_slot(&log_path(name), name, Role::Log, &mut slot);
            let pipe = adopted
                .and_then(|pid| reopen_pipe(pid, 1))
                .or_else(|| log_adopted.and_then(|pid| reopen_pipe(pid, 0)));
            if (adopted.is_some() || log_adopted.is_some()) && pipe.is_none() {
                warden::say!(
                    "svscan: warning: unable to take over the log pipe of {}: a restarted side \
                     gets a new pipe",
                    shown(name)
                );
            }
            Some(LogSide::new(slot, pipe))
        } else {
            None
        };
        for (role, slot) in [
            (Role::Service, Some(&service)),
            (Role::Log, log.as_ref().map(|l| &l.slot)),
        ] {
            if let Some(Slot {
                state: State::Running(r),
                ..
            }) = slot
            {
                self.pids.insert(r.pid.as_raw_nonzero().get(), (id, role));
            }
        }
        let mut entry = Entry {
            name: name.to_owned(),
            wanted: true,
            service,
            log,
            container_exit: container_exit_of(name, None),
        };
        self.container_exit_seen |= entry.container_exit.is_some();
        // Started at once, not at the end of the scan that found it: at boot the first
        // supervisors are then at work while svscan still looks at the rest.
        self.starter(now).start_entry(id, &mut entry);
        self.entries.insert(id, entry);
    }

    fn adopt_slot(&self, dir: &Path, name: &OsStr, role: Role, slot: &mut Slot) -> Option<Pid> {
        match adopt(dir) {
            Ok(Some(running)) => {
                let pid = running.pid;
                slot.state = State::Running(running);
                Some(pid)
            }
            Ok(None) => None,
            Err(cause) => {
                warden::say!(
                    "svscan: warning: unable to adopt the running supervisor of {}: {cause}",
                    shown_as(name, role)
                );
                slot.reported = true;
                None
            }
        }
    }

    /// A directory that was being stopped is back (moved out and in again).
    pub fn want(&mut self, id: &Id, now: Instant) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.wanted {
            return;
        }
        entry.wanted = true;
        if let Some(log) = entry.log.as_mut() {
            // A logger still draining the old pipe finishes it; the service gets a new one.
            log.leftover = None;
        }
        for slot in
            std::iter::once(&mut entry.service).chain(entry.log.as_mut().map(|l| &mut l.slot))
        {
            slot.quick_deaths = 0;
            if slot.is_gone() {
                slot.state = State::Waiting { at: now };
            }
        }
    }

    pub fn is_wanted(&self, id: &Id) -> bool {
        self.entries.get(id).is_some_and(|e| e.wanted)
    }

    /// The directory is gone, or svscan shuts down: stop the service (`x`, by TERM to its
    /// supervisor); its logger follows once the service's supervisor has exited.
    pub fn unwant(&mut self, id: &Id) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.wanted = false;
        match &mut entry.service.state {
            State::Running(r) if !r.stop_sent => {
                r.stopping();
                signal(r, Signal::TERM, "supervisor", &entry.name);
            }
            State::Running(_) => {}
            State::Waiting { .. } => {
                // A supervisor that died (KILL) and was not restarted yet left its cgroup.
                remove_cgroup(dead_supervisor_cgroup(&service_path(&entry.name)));
                entry.service.state = State::Gone;
            }
            State::Gone => {}
        }
        if entry.service.is_gone() {
            stop_log(entry);
        }
        if entry.finished() {
            self.entries.remove(id);
        }
    }

    pub fn unwant_all(&mut self) {
        self.shutting_down = true;
        let ids: Vec<Id> = self.entries.keys().copied().collect();
        for id in ids {
            self.unwant(&id);
        }
    }

    /// A child was reaped, or an adopted supervisor's pidfd said it exited. Unknown pids are
    /// orphans svscan reaps as PID 1 or subreaper: nothing to do.
    pub fn exited(&mut self, pid: i32, status: Option<WaitStatus>, now: Instant) {
        // A supervisor whose exec failed exits 127: the exec's error says why.
        let exec_error = self.launches.exec_error(pid);
        let Some((id, role)) = self.pids.remove(&pid) else {
            return;
        };
        if self.uncaught.as_ref().is_some_and(|u| u.id == id) {
            self.uncaught_exited(pid, status, now);
            return;
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let wanted = entry.wanted;
        let service_gone = entry.service.is_gone();
        let name = entry.name.clone();
        let (slot, keep) = match role {
            Role::Service => (&mut entry.service, wanted),
            Role::Log => match entry.log.as_mut() {
                Some(log) => {
                    log.hup_pending = false;
                    let keep = wanted || !service_gone || (log.unread() && can_drain(&name));
                    if !keep {
                        drop_leftover(&name, &mut log.leftover, LOG_DIR_GONE);
                    }
                    (&mut log.slot, keep)
                }
                None => return,
            },
        };
        let State::Running(running) = &slot.state else {
            return;
        };
        if running.pid.as_raw_nonzero().get() != pid {
            return;
        }
        let lived = now.saturating_duration_since(running.since);
        let asked_to_stop = running.stop_sent;
        let cgroup = running.cgroup.clone();
        if keep && std::mem::take(&mut slot.restart_now) {
            slot.state = State::Waiting { at: now };
        } else if keep {
            let delay = slot.retry(lived, now);
            if !asked_to_stop && !slot.reported {
                slot.reported = true;
                match exec_error {
                    Some(e) => warden::say!(
                        "svscan: warning: unable to start the supervisor of {}: {e}; retrying \
                         in {}",
                        shown_as(&name, role),
                        humanize(delay)
                    ),
                    None => warden::say!(
                        "svscan: warning: the supervisor of {} ended ({}); restarting it in {}",
                        shown_as(&name, role),
                        describe(status),
                        humanize(delay)
                    ),
                }
            }
        } else {
            slot.state = State::Gone;
            remove_cgroup(cgroup);
        }
        if role == Role::Service && entry.service.is_gone() {
            stop_log(entry);
        }
        if entry.finished() {
            self.entries.remove(&id);
        }
    }

    /// A service made in place got its `log/` just after svscan started its supervisor (the
    /// `mkdir -p foo/log` or `cp -r` race): its supervisor is told to exit (`x`) and started
    /// again at once, now with the pipe and the logger. True once there is nothing left to do.
    pub fn connect_new_log(&mut self, id: &Id) -> bool {
        let Some(entry) = self.entries.get_mut(id) else {
            return true;
        };
        if entry.log.is_some() || !entry.wanted {
            return true;
        }
        if !log_path(&entry.name).is_dir() {
            return false;
        }
        if let State::Running(r) = &mut entry.service.state {
            if !r.stop_sent {
                r.stop_sent = true;
                entry.service.restart_now = true;
                signal(r, Signal::TERM, "supervisor", &entry.name);
            }
        }
        true
    }

    /// Entries whose logger supervisor waits for its HUP, with the logger's directory.
    pub fn pending_hups(&self) -> Vec<(Id, PathBuf, OsString)> {
        let uncaught = self
            .uncaught
            .as_ref()
            .and_then(|u| match &u.log.slot.state {
                State::Running(r) if u.log.hup_pending => {
                    Some((u.id, supervisor_dir(r.pid), u.dir.clone().into_os_string()))
                }
                _ => None,
            });
        self.entries
            .iter()
            .filter_map(|(id, e)| {
                let log = e.log.as_ref().filter(|l| l.hup_pending)?;
                match &log.slot.state {
                    State::Running(r) => Some((
                        *id,
                        supervisor_dir(r.pid),
                        log_path(&e.name).into_os_string(),
                    )),
                    _ => None,
                }
            })
            .chain(uncaught)
            .collect()
    }

    /// Sends the pending HUP if the logger now runs.
    pub fn try_hup(&mut self, id: &Id) -> Hup {
        if let Some(u) = self.uncaught.as_mut().filter(|u| u.id == *id) {
            let log = &mut u.log;
            if !log.hup_pending {
                return Hup::Done;
            }
            let State::Running(r) = &mut log.slot.state else {
                return Hup::Pending;
            };
            let state = match logger_state(&supervisor_dir(r.pid)) {
                Some(Logger::Coming) => return Hup::Pending,
                None => return Hup::Recheck,
                Some(state) => state,
            };
            log.hup_pending = false;
            hup_uncaught(&u.dir, r, &mut log.leftover, state);
            return Hup::Done;
        }
        let Some(entry) = self.entries.get_mut(id) else {
            return Hup::Done;
        };
        let Some(log) = entry.log.as_mut() else {
            return Hup::Done;
        };
        if !log.hup_pending {
            return Hup::Done;
        }
        let State::Running(r) = &mut log.slot.state else {
            return Hup::Pending;
        };
        let state = match logger_state(&supervisor_dir(r.pid)) {
            Some(Logger::Coming) => return Hup::Pending,
            None => return Hup::Recheck,
            Some(state) => state,
        };
        log.hup_pending = false;
        hup_logger(&entry.name, r, &mut log.leftover, state);
        Hup::Done
    }

    /// Before svscan sleeps: waits until the supervisors still starting are done with its
    /// memory, so that an idle tree holds nothing for them.
    pub fn settle_launches(&mut self) {
        self.launches.settle();
    }

    /// Starts every supervisor whose time has come: loggers before their services, so the
    /// pipe has a reader first.
    pub fn start_due(&mut self, now: Instant) {
        self.start_uncaught(now);
        let mut entries = std::mem::take(&mut self.entries);
        let mut starter = self.starter(now);
        entries.retain(|id, entry| {
            if entry.service.due(now) || entry.log.as_ref().is_some_and(|l| l.slot.due(now)) {
                starter.start_entry(*id, entry);
            }
            !entry.finished()
        });
        self.entries = entries;
        self.stop_uncaught();
    }

    fn starter(&mut self, now: Instant) -> Starter<'_> {
        Starter {
            programs: &self.programs,
            pids: &mut self.pids,
            fd_shortage_reported: &mut self.fd_shortage_reported,
            launches: &mut self.launches,
            container_exit_seen: &mut self.container_exit_seen,
            uncaught: self
                .uncaught
                .as_ref()
                .and_then(|u| u.log.pipe.as_ref())
                .map(|pipe| &pipe.write),
            now,
        }
    }

    /// The nearest time a supervisor is due to (re)start.
    pub fn next_deadline(&self) -> Option<Instant> {
        let uncaught = self.uncaught.as_ref().and_then(|u| u.log.slot.deadline());
        self.entries
            .values()
            .flat_map(|e| {
                let service = e.wanted.then(|| e.service.deadline()).flatten();
                let log = e.log.as_ref().and_then(|l| {
                    l.needed(e.wanted, e.service.is_gone())
                        .then(|| l.slot.deadline())
                        .flatten()
                });
                [service, log]
            })
            .flatten()
            .chain(uncaught)
            .min()
    }

    /// pidfds of adopted supervisors, with their pids.
    pub fn pidfds(&self) -> Vec<(i32, BorrowedFd<'_>)> {
        let mut out = Vec::new();
        let uncaught = self.uncaught.as_ref().map(|u| &u.log.slot);
        for e in self.entries.values() {
            for slot in std::iter::once(&e.service).chain(e.log.as_ref().map(|l| &l.slot)) {
                if let State::Running(Running {
                    pid,
                    pidfd: Some(fd),
                    ..
                }) = &slot.state
                {
                    out.push((pid.as_raw_nonzero().get(), fd.as_fd()));
                }
            }
        }
        if let Some(State::Running(Running {
            pid,
            pidfd: Some(fd),
            ..
        })) = uncaught.map(|slot| &slot.state)
        {
            out.push((pid.as_raw_nonzero().get(), fd.as_fd()));
        }
        out
    }

    /// Services with a `container-exit` file whose supervisor runs, with their directory:
    /// their `supervise/` is watched for the service's end.
    pub fn container_exits(&self) -> Vec<(Id, PathBuf)> {
        if !self.container_exit_seen {
            return Vec::new();
        }
        self.entries
            .iter()
            .filter(|(_, e)| e.wanted && e.container_exit.is_some())
            .filter(|(_, e)| matches!(e.service.state, State::Running(_)))
            .map(|(id, e)| (*id, service_path(&e.name)))
            .collect()
    }

    /// The status svscan is to end with, if the `container-exit` service `id` has ended: its
    /// supervisor (the one running now, not an earlier one whose files are left) records an
    /// exit of `run` newer than any svscan found at adoption, and, unless the file says
    /// `always`, the service is down and wanted down, with nothing of the run left.
    pub fn container_exit(&self, id: &Id) -> Option<u8> {
        let entry = self.entries.get(id).filter(|e| e.wanted)?;
        let mode = entry.container_exit?;
        let State::Running(r) = &entry.service.state else {
            return None;
        };
        let dir = ServiceDir::new(service_path(&entry.name));
        let x = dir.extended()?;
        let ours = x
            .supervisor_pid
            .is_some_and(|p| i64::from(p) == i64::from(r.pid.as_raw_nonzero().get()));
        let exit = x.last_exit?;
        if !ours || x.last_exit_at.is_none() || x.last_exit_at == r.exit_seen {
            return None;
        }
        if mode == ContainerExit::Down {
            // supervise writes `status` before `supervise/warden`: a `warden` that still names
            // the run's group is from before that run ended, its `last_exit` an older one.
            if x.pgid.is_some() {
                return None;
            }
            let s = dir.status().ok()?;
            if s.state != warden::status::RunState::Down || s.want == warden::status::Want::Up {
                return None;
            }
        }
        Some(container_status(exit))
    }

    /// Whether every service supervisor has exited (loggers may still drain).
    pub fn services_gone(&self) -> bool {
        self.entries.values().all(|e| e.service.is_gone())
    }

    /// The shutdown grace is over: KILL what is left of the services (or of the loggers), the
    /// supervisor and the process group it recorded.
    pub fn kill_stragglers(&mut self, role: Role) {
        if let (Role::Log, Some(u)) = (role, self.uncaught.as_ref()) {
            if let State::Running(r) = &u.log.slot.state {
                warden::say!(
                    "svscan: warning: the catch-all logger {} did not stop in time: sending KILL",
                    u.dir.display()
                );
                kill_group_of(&supervisor_dir(r.pid));
                signal(r, Signal::KILL, "supervisor", u.dir.as_os_str());
            }
        }
        for e in self.entries.values_mut() {
            let slot = match role {
                Role::Service => &mut e.service,
                Role::Log => match e.log.as_mut() {
                    Some(log) => &mut log.slot,
                    None => continue,
                },
            };
            if let State::Running(r) = &slot.state {
                warden::say!(
                    "svscan: warning: {} did not stop in time: sending KILL",
                    shown_as(&e.name, role)
                );
                kill_group_of(&supervisor_dir(r.pid));
                signal(r, Signal::KILL, "supervisor", &e.name);
            }
        }
    }
}

/// Tells a logger's supervisor to exit once its logger has drained the pipe (HUP = `e`). A
/// logger that stays down drains nothing: what is left in the pipe goes with it, said aloud
/// (runsv drops it silently).
fn hup_logger(
    name: &OsStr,
    supervisor: &mut Running,
    leftover: &mut Option<OwnedFd>,
    state: Logger,
) {
    if state == Logger::Down {
        drop_leftover(name, leftover, "is down");
    }
    supervisor.stopping();
    signal(supervisor, Signal::HUP, "log supervisor", name);
}

/// [`hup_logger`] for the catch-all logger, whose messages name its directory.
fn hup_uncaught(
    dir: &Path,
    supervisor: &mut Running,
    leftover: &mut Option<OwnedFd>,
    state: Logger,
) {
    if state == Logger::Down {
        if let Some(read) = leftover.take() {
            if let Ok(n @ 1..) = rustix::io::ioctl_fionread(&read) {
                warden::say!(
                    "svscan: warning: the catch-all logger {} is down: {n} unread bytes of its \
                     pipe are dropped",
                    dir.display()
                );
            }
        }
    }
    supervisor.stopping();
    signal(supervisor, Signal::HUP, "log supervisor", dir.as_os_str());
}

/// Closes what is left of a removed service's log pipe when no logger will read it, saying
/// how much is lost (runsv drops it silently).
fn drop_leftover(name: &OsStr, leftover: &mut Option<OwnedFd>, why: &str) {
    if let Some(read) = leftover.take() {
        match rustix::io::ioctl_fionread(&read) {
            Ok(0) => {}
            Ok(n) => warden::say!(
                "svscan: warning: {} {why}: {n} unread bytes of its pipe are dropped",
                shown_as(name, Role::Log)
            ),
            Err(e) => warden::say!(
                "svscan: warning: {} {why}: what is left in its pipe is dropped (unable to \
                 count it: {e})",
                shown_as(name, Role::Log)
            ),
        }
    }
}

/// Whether a logger can still be started to drain a removed service's pipe: not once its
/// directory is gone from the scan dir too (moved away with the service, say).
fn can_drain(name: &OsStr) -> bool {
    log_path(name).is_dir()
}

const LOG_DIR_GONE: &str = "has no directory any more";

/// Closes svscan's ends of the log pipe and tells the logger's supervisor to exit once the
/// logger has drained it (HUP = `e`).
fn stop_log(entry: &mut Entry) {
    let Some(log) = entry.log.as_mut() else {
        return;
    };
    if let Some(pipe) = log.pipe.take() {
        log.leftover = Some(pipe.read);
    }
    let unread = log.unread();
    match &mut log.slot.state {
        State::Running(r) if !r.stop_sent && !log.hup_pending => {
            match logger_state(&supervisor_dir(r.pid)) {
                Some(state @ (Logger::Running | Logger::Down)) => {
                    hup_logger(&entry.name, r, &mut log.leftover, state);
                }
                Some(Logger::Coming) | None => log.hup_pending = true,
            }
        }
        State::Running(_) => {}
        State::Waiting { .. } if unread && can_drain(&entry.name) => {}
        State::Waiting { .. } | State::Gone => {
            if !log.slot.is_gone() {
                remove_cgroup(dead_supervisor_cgroup(&log_path(&entry.name)));
            }
            log.slot.state = State::Gone;
            drop_leftover(&entry.name, &mut log.leftover, LOG_DIR_GONE);
        }
    }
}

fn ensure_pipe(pipe: &mut Option<Pipe>) -> io::Result<&Pipe> {
    if pipe.is_none() {
        *pipe = Some(new_pipe()?);
    }
    pipe.as_ref()
        .ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

/// What starting the due supervisors of one entry needs from the tree.
struct Starter<'a> {
    programs: &'a Programs,
    pids: &'a mut HashMap<i32, (Id, Role)>,
    fd_shortage_reported: &'a mut bool,
    launches: &'a mut Launches,
    /// Set once a service has a `container-exit` file.
    container_exit_seen: &'a mut bool,
    /// The catch-all pipe's write end: stdout and stderr of services without a `log/`.
    uncaught: Option<&'a OwnedFd>,
    now: Instant,
}

impl Starter<'_> {
    fn start_entry(&mut self, id: Id, entry: &mut Entry) {
        let now = self.now;
        if entry.wanted
            && entry.service.due(now)
            && entry.log.is_none()
            && log_path(&entry.name).is_dir()
        {
            // A log/ added to an existing service: it takes effect when the service's
            // supervisor (re)starts, which is now.
            entry.log = Some(LogSide::new(Slot::waiting(now), None));
        }
        let service_gone = entry.service.is_gone();
        let pipe_was_open = entry.log.as_ref().is_some_and(|log| log.pipe.is_some());
        if let Some(log) = entry.log.as_mut() {
            if log.slot.due(now) && log.needed(entry.wanted, service_gone) {
                let draining = !entry.wanted && service_gone;
                if draining && !can_drain(&entry.name) {
                    log.slot.state = State::Gone;
                    drop_leftover(&entry.name, &mut log.leftover, LOG_DIR_GONE);
                    return;
                }
                let result = if draining {
                    match log.leftover.as_ref() {
                        Some(read) => self.spawn(&entry.name, Role::Log, Some(read)),
                        None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
                    }
                } else {
                    match ensure_pipe(&mut log.pipe) {
                        Ok(pipe) => self.spawn(&entry.name, Role::Log, Some(&pipe.read)),
                        Err(e) => Err(e),
                    }
                };
                let started = result.is_ok();
                settle(
                    result,
                    &mut log.slot,
                    (id, Role::Log),
                    &entry.name,
                    self.pids,
                    self.fd_shortage_reported,
                    now,
                );
                if started && draining {
                    // Only lines left over: this logger is to exit once they are read.
                    log.hup_pending = true;
                }
            }
        }
        if entry.wanted && entry.service.due(now) {
            // Looked at with each start, as `log/` is: added or removed, it counts from the
            // supervisor's next start.
            entry.container_exit = container_exit_of(&entry.name, entry.container_exit);
            *self.container_exit_seen |= entry.container_exit.is_some();
            let result = match entry.log.as_mut() {
                Some(log) => match ensure_pipe(&mut log.pipe) {
                    Ok(pipe) => self.spawn(&entry.name, Role::Service, Some(&pipe.write)),
                    Err(e) => Err(e),
                },
                None => {
                    let uncaught = self.uncaught;
                    self.spawn(&entry.name, Role::Service, uncaught)
                }
            };
            settle(
                result,
                &mut entry.service,
                (id, Role::Service),
                &entry.name,
                self.pids,
                self.fd_shortage_reported,
                now,
            );
        }
        if let Some(log) = entry.log.as_mut() {
            // A pipe made for starts that both failed reached no process: closed, so an
            // entry that cannot start (out of fds, say) does not hold fds others could use.
            let unused = !pipe_was_open
                && !matches!(log.slot.state, State::Running(_))
                && !matches!(entry.service.state, State::Running(_));
            if unused {
                log.pipe = None;
            }
        }
    }

    /// Starts a supervisor: the service's with `pipe_end` (the write end) on stdout and
    /// stderr, the logger's with it (the read end) on stdin.
    fn spawn(&mut self, name: &OsStr, role: Role, pipe_end: Option<&OwnedFd>) -> io::Result<Pid> {
        let programs = self.programs;
        // Looked for again while it is missing: it may have been installed since.
        let found;
        let supervise = match &programs.supervise {
            Ok(path) => path.as_os_str(),
            Err(_) => {
                found = warden::companion::find("supervise")
                    .map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
                found.as_os_str()
            }
        };
        let caught = crate::scanner::Scanner::signals();
        match role {
            Role::Service => {
                let stdio = pipe_end.map_or(Stdio::Inherit, Stdio::Output);
                let dir = service_path(name);
                launch::spawn(supervise, &[dir.as_os_str()], stdio, caught, self.launches)
            }
            Role::Log => {
                // Supervised even without a `run`: supervise then runs the built-in default,
                // `logger ./main`, so its status and control work as for any service.
                let stdio = pipe_end.map_or(Stdio::Inherit, Stdio::Input);
                let dir = log_path(name);
                launch::spawn(
                    supervise,
                    &[OsStr::new("--default-log"), dir.as_os_str()],
                    stdio,
                    caught,
                    self.launches,
                )
            }
        }
    }
}

/// Records the outcome of a start: a running supervisor, or a report and a retry deadline.
fn settle(
    result: io::Result<Pid>,
    slot: &mut Slot,
    key: (Id, Role),
    name: &OsStr,
    pids: &mut HashMap<i32, (Id, Role)>,
    fd_shortage_reported: &mut bool,
    now: Instant,
) {
    match result {
        Ok(pid) => {
            *fd_shortage_reported = false;
            pids.insert(pid.as_raw_nonzero().get(), key);
            slot.state = State::Running(Running {
                pid,
                since: now,
                pidfd: None,
                stop_sent: false,
                cgroup: None,
                exit_seen: None,
            });
        }
        Err(e) if is_emfile(&e) => {
            // Not this entry's fault, and over once other entries give fds back: a steady
            // retry, so that every starved entry starts soon after, without a growing back-off.
            slot.state = State::Waiting {
                at: now + FD_SHORTAGE_RETRY,
            };
            if !std::mem::replace(fd_shortage_reported, true) {
                warden::say!(
                    "svscan: warning: unable to start the supervisor of {}: {e}; retrying \
                     every {} while file descriptors are short",
                    shown_as(name, key.1),
                    humanize(FD_SHORTAGE_RETRY)
                );
            }
        }
        Err(e) => {
            let delay = slot.retry(Duration::ZERO, now);
            let quiet = std::mem::replace(&mut slot.reported, true);
            if !quiet {
                warden::say!(
                    "svscan: warning: unable to start the supervisor of {}: {e}; retrying in {}",
                    shown_as(name, key.1),
                    humanize(delay)
                );
            }
        }
    }
}

pub fn humanize(d: Duration) -> String {
    if d.is_zero() {
        "no time".into()
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_thirty_seconds() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_secs(1));
        assert_eq!(restart_delay(2), Duration::from_secs(2));
        assert_eq!(restart_delay(5), Duration::from_secs(16));
        assert_eq!(restart_delay(6), Duration::from_secs(30));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn a_long_run_resets_the_back_off() {
        let now = Instant::now();
        let mut slot = Slot::waiting(now);
        assert_eq!(slot.retry(Duration::ZERO, now), Duration::from_secs(1));
        assert_eq!(slot.retry(Duration::ZERO, now), Duration::from_secs(2));
        slot.reported = true;
        assert_eq!(slot.retry(Duration::from_secs(60), now), Duration::ZERO);
        assert!(!slot.reported);
        assert!(slot.due(now));
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

    #[test]
    fn names_that_look_like_options_get_a_path() {
        assert_eq!(service_path(OsStr::new("-x")), PathBuf::from("./-x"));
        assert_eq!(service_path(OsStr::new("x y")), PathBuf::from("x y"));
        assert_eq!(log_path(OsStr::new("a")), PathBuf::from("a/log"));
        assert_eq!(shown(OsStr::new("a\nb")), "\"a\\nb\"");
    }
}
