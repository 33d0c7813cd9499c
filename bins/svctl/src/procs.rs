//! The processes of a service, from /proc: who is whose parent, each one's command line, and
//! their resident memory where the cgroup has no memory controller. The tree is drawn by a
//! pure function of the list, so it is tested without processes.

use std::collections::{BTreeMap, BTreeSet};

/// One process as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// The arguments joined by spaces, or `[comm]` for a process without any (a zombie).
    pub command: String,
    /// VmRSS in bytes, when /proc says.
    pub rss: Option<u64>,
}

/// Reads `/proc/PID`; `None` for a process gone meanwhile.
pub fn read(pid: u32) -> Option<Proc> {
    let dir = format!("/proc/{pid}");
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // `pid (comm) S ppid ...`: comm may hold anything, parentheses too, so split at the last.
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (").map_or("", |(_, c)| c);
    let ppid = rest.split(' ').nth(1)?.parse().ok()?;
    let args = std::fs::read(format!("{dir}/cmdline")).unwrap_or_default();
    let command = command_line(&args).unwrap_or_else(|| format!("[{comm}]"));
    let rss = std::fs::read_to_string(format!("{dir}/status"))
        .ok()
        .and_then(|s| {
            let kb = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map(|kb| kb.saturating_mul(1024));
    Some(Proc {
        pid,
        ppid,
        command,
        rss,
    })
}

/// `/proc/PID/cmdline`'s NUL-separated arguments, joined by spaces; `None` when empty.
pub fn command_line(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// The processes `pids` names that still exist.
pub fn read_all(pids: &[u32]) -> Vec<Proc> {
    pids.iter().filter_map(|&pid| read(pid)).collect()
}

/// `root` and its descendants, found by their parent pids in /proc: the tree of a service
/// whose supervisor keeps no cgroup (runsv, or no cgroup2).
pub fn descendants(root: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<Proc> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect();
    let mut keep = BTreeSet::from([root]);
    // Parents are not always listed before their children (pids wrap): repeat until stable.
    loop {
        let before = keep.len();
        for p in &all {
            if keep.contains(&p.ppid) {
                keep.insert(p.pid);
            }
        }
        if keep.len() == before {
            break;
        }
    }
    all.into_iter().filter(|p| keep.contains(&p.pid)).collect()
}

/// The tree as lines, `systemctl status` style: roots (processes whose parent is not in the
/// list) in pid order, each child under its parent, drawn with `├─`, `└─` and `│`.
/// Returns (prefix, process) pairs; the caller writes the pid and command after the prefix.
pub fn tree(procs: &[Proc]) -> Vec<(String, &Proc)> {
    let by_pid: BTreeMap<u32, &Proc> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut children: BTreeMap<u32, Vec<&Proc>> = BTreeMap::new();
    let mut roots = Vec::new();
    for p in by_pid.values() {
        if p.ppid != p.pid && by_pid.contains_key(&p.ppid) {
            children.entry(p.ppid).or_default().push(p);
        } else {
            roots.push(*p);
        }
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    // (process, prefix for its own line, prefix for its children's lines)
    let mut stack: Vec<(&Proc, String, String)> = roots
        .into_iter()
        .rev()
        .map(|p| (p, String::new(), String::new()))
        .collect();
    while let Some((p, own, below)) = stack.pop() {
        if !seen.insert(p.pid) {
            continue;
        }
        out.push((own, p));
        let kids = children.get(&p.pid).map(Vec::as_slice).unwrap_or_default();
        for (i, kid) in kids.iter().enumerate().rev() {
            let last = i + 1 == kids.len();
            let own = format!("{below}{}", if last { "└─" } else { "├─" });
            let next = format!("{below}{}", if last { "  " } else { "│ " });
            stack.push((kid, own, next));
        }
    }
    // A cycle in racy reads leaves some unvisited: list them flat rather than lose them.
    for p in by_pid.values() {
        if !seen.contains(&p.pid) {
            out.push((String::new(), p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, command: &str) -> Proc {
        Proc {
            pid,
            ppid,
            command: command.into(),
            rss: None,
        }
    }

    #[test]
    fn tree_indents_by_parentage() {
        let procs = [
            p(30, 10, "sleep 2"),
            p(10, 1, "sh ./run"),
            p(20, 10, "sh -c worker"),
            p(25, 20, "sleep 1"),
            p(99, 5, "stray"),
        ];
        let lines: Vec<String> = tree(&procs)
            .into_iter()
            .map(|(prefix, p)| format!("{prefix}{} {}", p.pid, p.command))
            .collect();
        assert_eq!(
            lines,
            [
                "10 sh ./run",
                "├─20 sh -c worker",
                "│ └─25 sleep 1",
                "└─30 sleep 2",
                "99 stray",
            ]
        );
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            command_line(b"sleep\x001000\x00").as_deref(),
            Some("sleep 1000")
        );
        assert_eq!(command_line(b""), None);
        assert_eq!(command_line(b"\0"), None);
    }

    #[test]
    fn this_process_reads_itself() {
        let me = read(std::process::id()).unwrap();
        assert_eq!(
            me.ppid,
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
        );
        assert!(me.rss.is_some_and(|r| r > 0));
        assert!(descendants(me.ppid).iter().any(|d| d.pid == me.pid));
    }
}
