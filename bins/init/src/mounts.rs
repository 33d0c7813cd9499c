//! The early filesystems stage 1 mounts, and the unmounting stage 3 does, driven by
//! /proc/self/mountinfo.

use rustix::io::Errno;
use rustix::mount::{mount, mount_remount, unmount, MountFlags, UnmountFlags};
use std::path::Path;

/// One early filesystem: (source, mount point, type, flags, data).
struct Early {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static str,
}

const fn early(
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static str,
) -> Early {
    Early {
        source,
        target,
        fstype,
        flags,
        data,
    }
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// In mount order: each one's mount point lives on an earlier one.
const EARLY: &[Early] = &[
    early("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
    early("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
    early(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::NOSUID,
        "mode=0755",
    ),
    early(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID.union(MountFlags::NOEXEC),
        "mode=0620,ptmxmode=0666",
    ),
    early(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID.union(MountFlags::NODEV),
        "mode=1777",
    ),
    early(
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID.union(MountFlags::NODEV),
        "mode=0755",
    ),
    early(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        NOSUID_NODEV_NOEXEC,
        "nsdelegate",
    ),
];

pub use warden::mountinfo::{read as read_mountinfo, Mount as MountEntry};

fn kernel_has(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|text| {
            text.lines()
                .any(|l| l.split_whitespace().last() == Some(fstype))
        })
        .unwrap_or(false)
}

/// Mounts each early filesystem whose mount point is not a mount point yet. Errors are
/// warnings; "not allowed" (a container) is said once for all.
pub fn mount_early() {
    let mut not_allowed = Vec::new();
    for fs in EARLY {
        let mounted = match read_mountinfo() {
            Ok(table) => table.iter().any(|m| m.mount_point == fs.target),
            // Before /proc is mounted there is no table; only /proc can be missing then.
            Err(_) => fs.target != "/proc",
        };
        if mounted {
            continue;
        }
        if fs.fstype == "cgroup2" && !kernel_has("cgroup2") {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(fs.target) {
            if !Path::new(fs.target).is_dir() {
                warden::say!("init: warning: unable to create {}: {e}", fs.target);
                continue;
            }
        }
        let data = std::ffi::CString::new(fs.data).unwrap_or_default();
        match mount(
            fs.source,
            fs.target,
            fs.fstype,
            fs.flags,
            Some(data.as_c_str()),
        ) {
            Ok(()) => {}
            Err(Errno::PERM) | Err(Errno::ACCESS) | Err(Errno::ROFS) => not_allowed.push(fs.target),
            Err(e) => warden::say!(
                "init: warning: unable to mount {} on {}: {e}",
                fs.fstype,
                fs.target
            ),
        }
    }
    if !not_allowed.is_empty() {
        warden::say!(
            "init: warning: not allowed to mount (a container?): skipping {}",
            not_allowed.join(" ")
        );
    }
}

/// What happened to one filesystem at shutdown.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    Done,
    /// Busy: remounted read-only (if it could be) and detached lazily.
    Detached {
        read_only: bool,
    },
    Failed(Errno),
}

/// Unmounts every filesystem but `/`, in reverse mount order, then remounts `/` read-only.
/// Returns what happened to each, for the report.
pub fn unmount_all(table: &[MountEntry]) -> Vec<(String, Unmounted)> {
    let mut results = Vec::new();
    for entry in table.iter().rev() {
        if entry.mount_point == "/" {
            continue;
        }
        let path = entry.mount_point.as_str();
        let outcome = match unmount(path, UnmountFlags::empty()) {
            Ok(()) => Unmounted::Done,
            // Already gone with a parent that was detached, or stacked twice.
            Err(Errno::INVAL) | Err(Errno::NOENT) => continue,
            Err(Errno::BUSY) => {
                let read_only = mount_remount(path, MountFlags::RDONLY, "").is_ok();
                match unmount(path, UnmountFlags::DETACH) {
                    Ok(()) => Unmounted::Detached { read_only },
                    Err(e) => Unmounted::Failed(e),
                }
            }
            Err(e) => Unmounted::Failed(e),
        };
        results.push((path.to_owned(), outcome));
    }
    let root = match mount_remount("/", MountFlags::RDONLY, "") {
        Ok(()) => Unmounted::Detached { read_only: true },
        Err(e) => Unmounted::Failed(e),
    };
    results.push(("/".to_owned(), root));
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_mounts_come_parent_first() {
        for (i, fs) in EARLY.iter().enumerate() {
            for ancestor in Path::new(fs.target).ancestors().skip(1) {
                if let Some(j) = EARLY.iter().position(|e| Path::new(e.target) == ancestor) {
                    assert!(j < i, "{} mounted before {}", fs.target, EARLY[j].target);
                }
            }
        }
    }
}
