//! Reading a service's cgroup from outside: where cgroup2 is mounted and what its files say.
//! The cgroup's name is the one the supervisor records in its extended status (`cgroup`), so
//! readers follow whatever naming scheme the supervisor uses instead of guessing it.

use std::path::{Path, PathBuf};

/// statfs(2)'s f_type of a cgroup2 file system.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Where cgroup2 is mounted: the usual places first (pure v2, the hybrid layout's `unified`),
/// else the first cgroup2 line of /proc/self/mountinfo.
pub fn mount() -> Option<PathBuf> {
    for usual in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if rustix::fs::statfs(usual).is_ok_and(|fs| fs.f_type as u64 == CGROUP2_SUPER_MAGIC) {
            return Some(PathBuf::from(usual));
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        left.split(' ').nth(4).map(PathBuf::from)
    })
}

/// The directory of the cgroup named `name` (as /proc/PID/cgroup shows it) under `mount`.
pub fn dir(mount: &Path, name: &str) -> PathBuf {
    mount.join(name.trim_start_matches('/'))
}

/// A cgroup's figures, each `None` where the file is missing or unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    /// `cpu.stat` `usage_usec`.
    pub cpu_usec: Option<u64>,
    /// `pids.current`, else the number of `cgroup.procs` lines.
    pub tasks: Option<u64>,
}

impl Usage {
    pub fn read(dir: &Path) -> Usage {
        let number = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
        };
        let cpu_usec = std::fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse().ok())
            });
        let tasks = number("pids.current").or_else(|| procs(dir).map(|p| p.len() as u64));
        Usage {
            memory_current: number("memory.current"),
            memory_peak: number("memory.peak"),
            cpu_usec,
            tasks,
        }
    }
}

/// The pids in `cgroup.procs`.
pub fn procs(dir: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}
