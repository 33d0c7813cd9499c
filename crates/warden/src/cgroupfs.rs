//! Reading a service's cgroup from outside: where cgroup2 is mounted and what its files say.
//! The cgroup's name is the one the supervisor records in its extended status (`cgroup`), so
//! readers follow whatever naming scheme the supervisor uses instead of guessing it.

use std::path::{Path, PathBuf};

/// statfs(2)'s f_type of a cgroup2 file system.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Where cgroup2 is mounted: one of the usual places (pure v2, the hybrid layout's
/// `unified`), checked with a statfs each, else the first cgroup2 mount of
/// /proc/self/mountinfo, whose text the kernel builds for every mount (a measurable part of a
/// start when a thousand supervisors start). supervise, svscan, svctl and the tests all ask
/// here.
pub fn mount() -> Option<PathBuf> {
    for usual in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if rustix::fs::statfs(usual).is_ok_and(|fs| fs.f_type as u64 == CGROUP2_SUPER_MAGIC) {
            return Some(PathBuf::from(usual));
        }
    }
    crate::mountinfo::read()
        .ok()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
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
    /// `cpu.stat` `usage_usec` (kept by cgroup2 itself, with or without the cpu controller).
    pub cpu_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    /// `pids.current`, else the threads of the cgroup and the cgroups below it
    /// (`cgroup.threads`): what the pids controller would count.
    pub tasks: Option<u64>,
}

impl Usage {
    pub fn read(dir: &Path) -> Usage {
        let number =
            |file: &str| read_small(&dir.join(file)).and_then(|t| t.trim().parse::<u64>().ok());
        let stat = read_small(&dir.join("cpu.stat")).unwrap_or_default();
        let cpu = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        };
        let tasks = number("pids.current").or_else(|| {
            let mut threads = 0u64;
            for cgroup in subtree(dir) {
                let text = read_small(&cgroup.join("cgroup.threads"))?;
                threads = threads.saturating_add(text.lines().count() as u64);
            }
            Some(threads)
        });
        Usage {
            memory_current: number("memory.current"),
            memory_peak: number("memory.peak"),
            cpu_usec: cpu("usage_usec"),
            cpu_user_usec: cpu("user_usec"),
            cpu_system_usec: cpu("system_usec"),
            tasks,
        }
    }
}

/// A cgroupfs file's text (they are all small), or `None`.
fn read_small(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Most cgroups [`subtree`] walks: a service that makes thousands of cgroups below its own
/// does not make a reader walk them all.
const SUBTREE_CAP: usize = 4096;

/// The cgroup `dir` and every cgroup below it (cgroups are directories), `dir` first.
pub fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut next = 0;
    while let Some(cgroup) = out.get(next).cloned() {
        next += 1;
        let Ok(entries) = std::fs::read_dir(&cgroup) else {
            continue;
        };
        for entry in entries.flatten() {
            if out.len() >= SUBTREE_CAP {
                return out;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The pids in `cgroup.procs`.
pub fn procs(dir: &Path) -> Option<Vec<u32>> {
    let text = read_small(&dir.join("cgroup.procs"))?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// The pids of the cgroup and of every cgroup below it, sorted.
pub fn procs_below(dir: &Path) -> Option<Vec<u32>> {
    let mut all = procs(dir)?;
    for cgroup in subtree(dir).iter().skip(1) {
        all.extend(procs(cgroup).unwrap_or_default());
    }
    all.sort_unstable();
    all.dedup();
    Some(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_the_files_and_from_threads_without_pids_current() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnice_usec 0\n",
        )
        .unwrap();
        std::fs::write(dir.join("cgroup.threads"), "10\n11\n12\n").unwrap();
        std::fs::write(dir.join("cgroup.procs"), "10\n12\n").unwrap();
        std::fs::create_dir(dir.join("child")).unwrap();
        std::fs::write(dir.join("child/cgroup.threads"), "20\n").unwrap();
        std::fs::write(dir.join("child/cgroup.procs"), "20\n").unwrap();
        let usage = Usage::read(dir);
        assert_eq!(
            usage,
            Usage {
                memory_current: Some(4096),
                memory_peak: None,
                cpu_usec: Some(1500),
                cpu_user_usec: Some(1000),
                cpu_system_usec: Some(500),
                tasks: Some(4),
            }
        );
        assert_eq!(procs_below(dir), Some(vec![10, 12, 20]));
        std::fs::write(dir.join("pids.current"), "7\n").unwrap();
        assert_eq!(Usage::read(dir).tasks, Some(7));
    }
}
