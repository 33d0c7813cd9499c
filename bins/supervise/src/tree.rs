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
        }
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
    }
}

impl Cgroup {
    /// A child of the supervisor's own cgroup, named after the service's path and its
    /// directory's device and inode (`warden::svdir::cgroup_leaf`), so that a restarted
    /// supervisor finds the same one and no other service dir ever does: one found populated
    /// holds that very directory's processes. `None` wherever that is not possible.
    fn create(service: &Path) -> Option<Cgroup> {
        let mount = cgroup2_mount()?;
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
        let dir_fd = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
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
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Where cgroup2 is mounted: one of the usual places (pure v2, or the hybrid layout's
/// `unified`), checked with a statfs each, else from /proc/self/mountinfo, whose text the kernel
/// builds for every mount (a measurable part of a start when a thousand supervisors start).
fn cgroup2_mount() -> Option<PathBuf> {
    for usual in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if rustix::fs::statfs(usual).is_ok_and(|fs| fs.f_type as u64 == CGROUP2_SUPER_MAGIC) {
            return Some(PathBuf::from(usual));
        }
    }
    mountinfo_cgroup2_mount()
}

/// The cgroup2 mount point from /proc/self/mountinfo (fs type after the ` - ` separator).
fn mountinfo_cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mount_point = left.split(' ').nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// The supervisor's own cgroup v2 path (the `0::` line of /proc/self/cgroup).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// mountinfo escapes blanks as `\040` and the like.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let digits = bytes.get(i + 1..i + 4);
        match digits {
            Some(d) if b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn mountinfo_escapes() {
        assert_eq!(unescape_octal("/sys/fs/a\\040b"), "/sys/fs/a b");
        assert_eq!(unescape_octal("/plain\\"), "/plain\\");
    }
}
