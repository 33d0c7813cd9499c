//! Everything a service started: the process group of its `run` (each run has a session of its
//! own) and, where cgroup v2 is mounted and writable, a cgroup of its own that also holds the
//! daemons that double-forked out of the group. Without cgroups this falls back, silently, to
//! the process group.

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub struct Tree {
    /// Process group of the current or last run, until nothing is left of it.
    pgid: Option<Pid>,
    cgroup: Option<Cgroup>,
    /// The cgroup files written at the last start, set back to their defaults when the
    /// service dir no longer has them.
    applied: Vec<&'static str>,
    /// Controllers (or `cgroup` itself) already warned about: one warning each.
    warned: Vec<&'static str>,
    /// v1 cgroups of the hybrid layout the service joins, for controllers cgroup2 lacks.
    v1: Vec<V1Cgroup>,
    /// Where the memory limit is, for the OOM killer's count.
    memory: Option<Memory>,
}

/// A cgroup of a v1 hierarchy (hybrid layout) made for the service.
struct V1Cgroup {
    controller: &'static str,
    dir: PathBuf,
    dir_fd: OwnedFd,
    /// Opened for writing: the child writes `0` to it before its exec.
    procs: OwnedFd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Memory {
    /// `memory.events` of the cgroup2 cgroup.
    V2,
    /// `memory.oom_control` of the v1 memory cgroup.
    V1,
}

/// What the cgroup settings came to at a start.
#[derive(Debug, Default)]
pub struct Applied {
    pub warnings: Vec<String>,
    /// `NAME VALUE` of each setting written.
    pub settings: Vec<(String, String)>,
    /// The memory limit in force, as `memory.max 64M`, when one was set.
    pub memory_limit: Option<String>,
}

struct Cgroup {
    /// The cgroup's directory in the cgroup2 mount.
    dir: PathBuf,
    /// The path as /proc/PID/cgroup shows it, for the extended status.
    name: String,
    /// The directory, for clone3(CLONE_INTO_CGROUP).
    dir_fd: OwnedFd,
    /// `cgroup.events`: poll says POLLPRI when `populated` changes, so the emptying of the
    /// cgroup wakes the loop even when the last process was not our child. Opened the first
    /// time the tree is found not empty, before that look, so no emptying goes unnoticed.
    events: Option<OwnedFd>,
    /// Made by this supervisor and nothing started in it yet: empty without asking.
    fresh: bool,
}

impl Tree {
    pub fn new(service: &Path) -> Tree {
        Tree {
            pgid: None,
            cgroup: Cgroup::create(service),
            applied: Vec::new(),
            warned: Vec::new(),
            v1: Vec::new(),
            memory: None,
        }
    }

    /// Writes the service dir's cgroup settings (`wanted`: file and value) to its cgroup, and
    /// sets those written at the last start that are gone back to their defaults. A value the
    /// kernel refuses is the error (naming the file and the kernel's cause): the service must
    /// not start. A controller that cgroup2 lacks is enabled in the parent's
    /// `cgroup.subtree_control` where permitted, else taken from its v1 hierarchy (hybrid
    /// layout), else warned about once and left out.
    pub fn apply(
        &mut self,
        wanted: &[(&'static str, String)],
        service: &Path,
    ) -> Result<Applied, String> {
        let mut applied = Applied::default();
        if wanted.is_empty() && self.applied.is_empty() {
            return Ok(applied);
        }
        let mut now_applied = Vec::new();
        for file in warden::runas::CGROUP_FILES {
            let value = match wanted.iter().find(|(f, _)| *f == file) {
                Some((_, v)) => v.as_str(),
                None if self.applied.contains(&file) => warden::runas::cgroup_default(file),
                None => continue,
            };
            let shown = service.join(file);
            let refused = |cause: String| {
                format!(
                    "unable to use {}: the kernel refused {value:?} for {file}: {cause}",
                    shown.display()
                )
            };
            let controller = warden::runas::controller(file);
            let written = match &self.cgroup {
                Some(cgroup) => cgroup.write_setting(file, value),
                None => {
                    self.warn_once(
                        "cgroup",
                        format!(
                            "{} has no cgroup of its own (no writable cgroup2): its cgroup \
                             settings are not applied",
                            service.display()
                        ),
                        &mut applied,
                    );
                    continue;
                }
            };
            match written {
                Ok(()) => {
                    if controller == "memory" {
                        self.memory = Some(Memory::V2);
                    }
                }
                Err(Errno::NOENT) => match self.apply_v1(service, file, value) {
                    Some(Ok(())) => {
                        if controller == "memory" {
                            self.memory = Some(Memory::V1);
                        }
                    }
                    Some(Err(e)) => return Err(refused(crate::cause_errno(e))),
                    None => {
                        let parent = self
                            .cgroup
                            .as_ref()
                            .and_then(|c| c.dir.parent())
                            .map(|p| p.join("cgroup.subtree_control"));
                        let parent = parent.as_deref().unwrap_or(Path::new("the parent"));
                        let v1 = if warden::runas::v1_equivalent(file, value).is_some() {
                            "nor in a v1 hierarchy"
                        } else {
                            "and it has no v1 equivalent"
                        };
                        self.warn_once(
                            file,
                            format!(
                                "{} not applied: cgroup2 has no {controller} controller for {} \
                                 (not enabled in {}, or bound to v1), {v1}; starting without it",
                                shown.display(),
                                service.display(),
                                parent.display()
                            ),
                            &mut applied,
                        );
                        continue;
                    }
                },
                Err(e) => return Err(refused(crate::cause_errno(e))),
            }
            now_applied.push(file);
            if wanted.iter().any(|(f, _)| *f == file) {
                applied.settings.push((file.to_owned(), value.to_owned()));
                if controller == "memory" && applied.memory_limit.is_none() {
                    applied.memory_limit = Some(format!("{file} {value}"));
                }
            }
        }
        if applied.memory_limit.is_none() {
            self.memory = None;
        }
        self.applied = now_applied;
        Ok(applied)
    }

    fn warn_once(&mut self, what: &'static str, message: String, applied: &mut Applied) {
        if !self.warned.contains(&what) {
            self.warned.push(what);
            applied.warnings.push(message);
        }
    }

    /// Writes `file`'s v1 equivalent in the hybrid layout's hierarchy of its controller:
    /// `None` when there is none to write to.
    fn apply_v1(&mut self, service: &Path, file: &str, value: &str) -> Option<Result<(), Errno>> {
        let writes = warden::runas::v1_equivalent(file, value)?;
        for (controller, v1_file, v1_value) in writes {
            let at = match self.v1.iter().position(|c| c.controller == controller) {
                Some(at) => at,
                None => {
                    self.v1.push(V1Cgroup::create(service, controller)?);
                    self.v1.len().checked_sub(1)?
                }
            };
            let cgroup = self.v1.get(at)?;
            if let Err(e) = write_at(&cgroup.dir_fd, v1_file, &v1_value) {
                return Some(Err(e));
            }
        }
        Some(Ok(()))
    }

    /// The `cgroup.procs` of the v1 cgroups the child joins.
    pub fn join_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.v1.iter().map(|c| c.procs.as_raw_fd()).collect()
    }

    /// How many processes of the service the OOM killer has killed so far, where a memory
    /// limit is set.
    pub fn oom_kills(&self) -> Option<u64> {
        let (fd, file) = match self.memory? {
            Memory::V2 => (&self.cgroup.as_ref()?.dir_fd, "memory.events"),
            Memory::V1 => (
                &self.v1.iter().find(|c| c.controller == "memory")?.dir_fd,
                "memory.oom_control",
            ),
        };
        let fd =
            rustix::fs::openat(fd, file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let mut buf = [0u8; 512];
        let n = rustix::io::read(&fd, &mut buf).ok()?;
        parse_oom_kill(buf.get(..n)?)
    }

    /// The cgroup's directory fd, for clone3 (or for a child that moves itself there).
    pub fn join_fd(&self) -> Option<BorrowedFd<'_>> {
        self.cgroup.as_ref().map(|c| c.dir_fd.as_fd())
    }

    /// The fd to poll (POLLPRI) while waiting for the tree to empty.
    pub fn events_fd(&self) -> Option<BorrowedFd<'_>> {
        self.cgroup.as_ref()?.events.as_ref().map(|fd| fd.as_fd())
    }

    /// Re-arms the `cgroup.events` notification after it fired (kernfs wants a read).
    pub fn events_seen(&self) {
        if let Some(fd) = self.cgroup.as_ref().and_then(|c| c.events.as_ref()) {
            let mut buf = [0u8; 64];
            let _ = rustix::io::pread(fd, &mut buf, 0);
        }
    }

    pub fn cgroup_name(&self) -> Option<&str> {
        self.cgroup.as_ref().map(|c| c.name.as_str())
    }

    pub fn started(&mut self, pgid: u32) {
        self.pgid = i32::try_from(pgid).ok().and_then(Pid::from_raw);
        if let Some(cgroup) = self.cgroup.as_mut() {
            cgroup.fresh = false;
        }
    }

    /// Sends `signal` to every process of the service.
    pub fn signal(&mut self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            match rustix::process::kill_process_group(pgid, signal) {
                Ok(()) => {}
                Err(Errno::SRCH) => self.pgid = None,
                Err(e) => say!(
                    "supervise: warning: unable to signal process group {}: {}",
                    pgid.as_raw_nonzero(),
                    crate::cause_errno(e)
                ),
            }
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.signal(signal);
        }
    }

    /// Whether nothing of the service is alive any more (zombies the supervisor has not reaped
    /// yet excepted, as it reaps before asking).
    pub fn is_empty(&mut self) -> bool {
        if let Some(pgid) = self.pgid {
            if rustix::process::test_kill_process_group(pgid) == Err(Errno::SRCH) {
                self.pgid = None;
            }
        }
        let cgroup_empty = match &mut self.cgroup {
            Some(cgroup) => cgroup.is_empty(),
            None => true,
        };
        self.pgid.is_none() && cgroup_empty
    }

    /// Removes the cgroup when the supervisor exits; a populated one stays (EBUSY).
    pub fn remove(&self) {
        if let Some(cgroup) = &self.cgroup {
            let _ = std::fs::remove_dir(&cgroup.dir);
        }
        for cgroup in &self.v1 {
            let _ = std::fs::remove_dir(&cgroup.dir);
        }
    }
}

/// Writes `value` to the cgroup file `file` in `dir`: the kernel's error if it refuses it.
/// A cgroup directory, opened for the `*at` calls on its files.
fn open_dir(dir: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn write_at(dir: &OwnedFd, file: &str, value: &str) -> Result<(), Errno> {
    let fd = rustix::fs::openat(dir, file, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    loop {
        match rustix::io::write(&fd, value.as_bytes()) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The `oom_kill` count of `memory.events` (cgroup2) or `memory.oom_control` (v1).
fn parse_oom_kill(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// statfs(2)'s f_type of a cgroup v1 hierarchy.
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;

impl V1Cgroup {
    /// The service's cgroup in the v1 hierarchy of `controller` (hybrid layout): a child of
    /// the supervisor's own cgroup there, named as its cgroup2 one.
    fn create(service: &Path, controller: &'static str) -> Option<V1Cgroup> {
        let mount = Path::new("/sys/fs/cgroup").join(controller);
        if !rustix::fs::statfs(&mount).is_ok_and(|fs| fs.f_type as u64 == CGROUP_SUPER_MAGIC) {
            return None;
        }
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            let controllers = f.next()?;
            let path = f.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })?;
        let here = rustix::fs::stat(".").ok()?;
        let leaf = warden::svdir::cgroup_leaf(service, here.st_dev, here.st_ino);
        let dir = mount.join(own.trim_start_matches('/')).join(leaf);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        let dir_fd = open_dir(&dir).ok()?;
        let procs = rustix::fs::openat(
            &dir_fd,
            "cgroup.procs",
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(V1Cgroup {
            controller,
            dir,
            dir_fd,
            procs,
        })
    }
}

impl Cgroup {
    /// Writes a setting; where the file is missing (its controller not enabled here), enables
    /// the controller in the parent's `cgroup.subtree_control` (where permitted: the root, or
    /// a parent without processes of its own) and tries once more.
    fn write_setting(&self, file: &str, value: &str) -> Result<(), Errno> {
        match write_at(&self.dir_fd, file, value) {
            Err(Errno::NOENT) => {
                let controller = warden::runas::controller(file);
                let parent = self.dir.parent().ok_or(Errno::NOENT)?;
                let parent = open_dir(parent).map_err(|_| Errno::NOENT)?;
                write_at(&parent, "cgroup.subtree_control", &format!("+{controller}"))
                    .map_err(|_| Errno::NOENT)?;
                write_at(&self.dir_fd, file, value)
            }
            other => other,
        }
    }

    /// A child of the supervisor's own cgroup, named after the service's path and its
    /// directory's device and inode (`warden::svdir::cgroup_leaf`), so that a restarted
    /// supervisor finds the same one and no other service dir ever does: one found populated
    /// holds that very directory's processes. `None` wherever that is not possible.
    fn create(service: &Path) -> Option<Cgroup> {
        let mount = warden::cgroupfs::mount()?;
        let own = own_cgroup()?;
        // The supervisor runs in the service dir: "." is that directory, whatever its path
        // resolves to by now.
        let dir = rustix::fs::stat(".").ok()?;
        let leaf = warden::svdir::cgroup_leaf(service, dir.st_dev, dir.st_ino);
        let name = format!("{}/{leaf}", own.trim_end_matches('/'));
        let dir = mount.join(name.trim_start_matches('/'));
        let fresh = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A left-over empty cgroup is made afresh, so no state of an earlier user
                // sticks; one still populated (EBUSY) is used as it is. Tried only after
                // mkdir failed: an rmdir takes the parent's lock, which a thousand supervisors
                // starting at once would queue on.
                std::fs::remove_dir(&dir).is_ok() && std::fs::create_dir(&dir).is_ok()
            }
            Err(_) => return None,
        };
        let dir_fd = open_dir(&dir).ok()?;
        Some(Cgroup {
            dir,
            name,
            dir_fd,
            events: None,
            fresh,
        })
    }

    fn pids(&self) -> impl Iterator<Item = Pid> {
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter_map(Pid::from_raw)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn signal(&self, signal: Signal) {
        // Not cgroup.kill: on this kernel (6.18) a cgroup once killed that way also kills every
        // child later cloned into it with CLONE_INTO_CGROUP. Two passes catch what forked
        // while the first one ran.
        for _ in 0..2 {
            for pid in self.pids() {
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    }

    /// Empty once the kernel says `populated 0` in `cgroup.events`: that counts the cgroups
    /// below it too, and a process killed but not yet dead (D state) until it is gone, where
    /// `cgroup.procs` may already leave it out (issue 11 item 13). `cgroup.procs` only where
    /// `cgroup.events` cannot be read.
    fn is_empty(&mut self) -> bool {
        if self.fresh {
            return true;
        }
        if self.events.is_none() {
            self.events = rustix::fs::openat(
                &self.dir_fd,
                "cgroup.events",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok();
        }
        match self.events.as_ref().and_then(populated) {
            Some(populated) => !populated,
            None => self.pids().next().is_none(),
        }
    }
}

/// The `populated` key of a `cgroup.events` file (`populated 1\nfrozen 0\n`).
fn populated(events: &OwnedFd) -> Option<bool> {
    let mut buf = [0u8; 128];
    let n = rustix::io::pread(events, &mut buf, 0).ok()?;
    parse_populated(buf.get(..n)?)
}

fn parse_populated(text: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|line| match line.strip_prefix("populated ")? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        })
}

/// statfs(2)'s f_type of a cgroup2 file system.
/// The supervisor's own cgroup v2 path (the `0::` line of /proc/self/cgroup).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_is_read_from_cgroup_events() {
        assert_eq!(parse_populated(b"populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated(b"populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated(b"frozen 0\n"), None);
        assert_eq!(parse_populated(b"populated x\n"), None);
    }

    #[test]
    fn oom_kill_is_read_from_memory_events_or_oom_control() {
        let v2 = b"low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        let v1 = b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        assert_eq!(parse_oom_kill(b"oom 1\n"), None);
    }
}
