//! What a service runs as and with (issue 17): the service-dir files `memory.max`,
//! `memory.high`, `memory.swap.max`, `pids.max`, `cpu.max`, `cpu.weight`, `io.weight` (written
//! to the service's cgroup), `user`, `limits`, `nice`, `umask` and `restart-limit`. The parsers
//! are pure functions of the file's text (and, for `user`, of the passwd and group databases'
//! text), so they are tested with plain values; [`read_file`] reads one file relative to the
//! service dir's fd, a regular file only, capped.

use rustix::fd::AsFd;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::time::Duration;

/// The cgroup2 files a service dir may hold, each written as it is to the service's cgroup.
pub const CGROUP_FILES: [&str; 7] = [
    "memory.max",
    "memory.high",
    "memory.swap.max",
    "pids.max",
    "cpu.max",
    "cpu.weight",
    "io.weight",
];
pub const USER: &str = "user";
pub const LIMITS: &str = "limits";
pub const NICE: &str = "nice";
pub const UMASK: &str = "umask";
pub const RESTART_LIMIT: &str = "restart-limit";

/// The most of a setting file read: far more than any setting, little enough for a symlink
/// to `/dev/zero` (refused anyway: not a regular file) or a huge file to cost nothing.
pub const SETTING_CAP: usize = 4096;
/// The most of `/etc/passwd` or `/etc/group` read.
pub const DATABASE_CAP: usize = 4 << 20;

/// The controller a cgroup file belongs to (`memory.max` -> `memory`).
pub fn controller(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// What a cgroup file is set back to when the service dir no longer has it.
pub fn cgroup_default(file: &str) -> &'static str {
    match file {
        "cpu.weight" => "100",
        "io.weight" => "default 100",
        _ => "max",
    }
}

/// A cgroup value as the file holds it: its text without surrounding blanks, one line of
/// printable characters (`64M`, `max`, `50000 100000`). The kernel judges the value itself.
pub fn parse_cgroup_value(text: &str) -> Result<String, String> {
    let value = text.trim();
    if value.is_empty() {
        return Err("empty: write the value the cgroup file takes (max, 64M, ...)".into());
    }
    if value.contains('\n') {
        return Err("more than one line".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?} in {value:?}"));
    }
    Ok(value.to_owned())
}

/// `user`: `USER[:GROUP[:GROUP...]]`, or `:UID:GID[:GID...]` (numbers, not looked up), as
/// `chpst -u`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    /// The groups given after the user; empty: the user's primary group and its groups in
    /// the group database.
    pub groups: Vec<String>,
    /// `:UID:GID`: numbers only.
    pub numeric: bool,
}

pub fn parse_user(text: &str) -> Result<UserSpec, String> {
    let line = text.trim();
    if line.is_empty() {
        return Err("empty: write USER or USER:GROUP".into());
    }
    if line.contains(char::is_whitespace) {
        return Err(format!("{line:?} has blanks: write USER or USER:GROUP"));
    }
    let (numeric, rest) = match line.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut parts = rest.split(':');
    let user = parts.next().unwrap_or_default().to_owned();
    let groups: Vec<String> = parts.map(str::to_owned).collect();
    if user.is_empty() || groups.iter().any(String::is_empty) {
        return Err(format!("{line:?}: an empty user or group name"));
    }
    if numeric {
        if groups.is_empty() {
            return Err(format!("{line:?}: :UID:GID needs a GID"));
        }
        for n in std::iter::once(&user).chain(&groups) {
            if n.parse::<u32>().is_err() {
                return Err(format!("{line:?}: {n:?} is not a number"));
            }
        }
    }
    Ok(UserSpec {
        user,
        groups,
        numeric,
    })
}

/// Who a service runs as, resolved from the databases before the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary one included), sorted, without duplicates.
    pub groups: Vec<u32>,
    pub home: String,
}

/// One `/etc/passwd` entry: name, uid, gid, home.
fn passwd_entry(line: &str) -> Option<(&str, u32, u32, &str)> {
    let mut f = line.split(':');
    let name = f.next()?;
    let _password = f.next()?;
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    let _gecos = f.next()?;
    let home = f.next()?;
    Some((name, uid, gid, home))
}

/// One `/etc/group` entry: name, gid, members.
fn group_entry(line: &str) -> Option<(&str, u32, &str)> {
    let mut f = line.split(':');
    let name = f.next()?;
    let _password = f.next()?;
    let gid = f.next()?.parse().ok()?;
    let members = f.next().unwrap_or_default();
    Some((name, gid, members))
}

fn group_id(name: &str, group_db: &str) -> Option<u32> {
    group_db
        .lines()
        .filter_map(group_entry)
        .find(|(n, _, _)| *n == name)
        .map(|(_, gid, _)| gid)
}

/// Resolves `spec` against the text of `/etc/passwd` and `/etc/group`, as `chpst -u` and
/// `initgroups`: the user's uid, its primary gid (or the first GROUP given), and as
/// supplementary groups the groups given, or else the primary group and every group of the
/// group database that lists the user. An unknown user or group is an error naming it.
pub fn resolve_user(spec: &UserSpec, passwd: &str, group_db: &str) -> Result<Account, String> {
    if spec.numeric {
        let uid = spec.user.parse().map_err(|_| "bad uid".to_owned())?;
        let gids: Vec<u32> = spec.groups.iter().filter_map(|g| g.parse().ok()).collect();
        let gid = *gids.first().ok_or("no gid")?;
        let mut groups = gids;
        groups.sort_unstable();
        groups.dedup();
        return Ok(Account {
            name: spec.user.clone(),
            uid,
            gid,
            groups,
            home: "/".into(),
        });
    }
    let (name, uid, primary, home) = passwd
        .lines()
        .filter_map(passwd_entry)
        .find(|(name, ..)| *name == spec.user)
        .ok_or_else(|| format!("unknown user {:?}", spec.user))?;
    let mut groups = Vec::new();
    for g in &spec.groups {
        groups.push(group_id(g, group_db).ok_or_else(|| format!("unknown group {g:?}"))?);
    }
    let gid = match groups.first() {
        Some(&gid) => gid,
        None => {
            groups.push(primary);
            for (_, gid, members) in group_db.lines().filter_map(group_entry) {
                if members.split(',').any(|m| m.trim() == name) {
                    groups.push(gid);
                }
            }
            primary
        }
    };
    groups.sort_unstable();
    groups.dedup();
    Ok(Account {
        name: name.to_owned(),
        uid,
        gid,
        groups,
        home: home.to_owned(),
    })
}

/// setrlimit's resources by the names `limits` uses (those of prlimit(1), `ulimit` and
/// systemd's `Limit*=` without the prefix).
#[allow(clippy::unnecessary_cast)] // the constants are u32 with glibc, c_int with musl
pub const RESOURCES: [(&str, i32); 16] = [
    ("as", libc::RLIMIT_AS as i32),
    ("core", libc::RLIMIT_CORE as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("locks", libc::RLIMIT_LOCKS as i32),
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("rss", libc::RLIMIT_RSS as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("rttime", libc::RLIMIT_RTTIME as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
    ("stack", libc::RLIMIT_STACK as i32),
];

/// RLIM_INFINITY.
pub const UNLIMITED: u64 = u64::MAX;

/// One line of `limits`: both the soft and the hard limit of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// A limit's value: `unlimited` (or `infinity`), or a number with an optional binary suffix
/// `K`, `M`, `G`, `T` (`1G` is 1073741824).
pub fn parse_limit_value(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinity") {
        return Ok(UNLIMITED);
    }
    let (digits, shift) = match t.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{t:?}: unknown suffix {c:?} (K, M, G or T)")),
            };
            (t.get(..at).unwrap_or_default(), shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{t:?} is not a number, a size (1G) or unlimited"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&v| v != UNLIMITED)
        .ok_or_else(|| format!("{t:?} is too large: write unlimited"))
}

/// `limits`: one `NAME VALUE` (soft and hard) or `NAME SOFT:HARD` per line; blank lines and
/// `#` comments are skipped. An error names the line.
pub fn parse_limits(text: &str) -> Result<Vec<Rlimit>, String> {
    let mut out: Vec<Rlimit> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n.saturating_add(1));
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        let Some(value) = words.next() else {
            return Err(at(format!("{line:?}: write NAME VALUE (nofile 4096)")));
        };
        if words.next().is_some() {
            return Err(at(format!("{line:?}: write NAME VALUE (nofile 4096)")));
        }
        let Some(&(name, resource)) = RESOURCES.iter().find(|(r, _)| *r == name) else {
            let known: Vec<&str> = RESOURCES.iter().map(|(r, _)| *r).collect();
            return Err(at(format!(
                "unknown limit {name:?} (one of {})",
                known.join(", ")
            )));
        };
        let (soft, hard) = match value.split_once(':') {
            Some((s, h)) => (
                parse_limit_value(s).map_err(at)?,
                parse_limit_value(h).map_err(at)?,
            ),
            None => {
                let v = parse_limit_value(value).map_err(at)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(at(format!("{name}: the soft limit is above the hard one")));
        }
        let limit = Rlimit {
            name,
            resource,
            soft,
            hard,
        };
        // A later line for the same resource wins.
        match out.iter_mut().find(|l| l.resource == resource) {
            Some(old) => *old = limit,
            None => out.push(limit),
        }
    }
    Ok(out)
}

/// A limit as `limits` writes it, for messages and the status.
pub fn limit_text(limit: &Rlimit) -> String {
    let one = |v: u64| {
        if v == UNLIMITED {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    if limit.soft == limit.hard {
        format!("{} {}", limit.name, one(limit.soft))
    } else {
        format!("{} {}:{}", limit.name, one(limit.soft), one(limit.hard))
    }
}

/// `nice`: the niceness to run at, -20 to 19 (absolute, as systemd's `Nice=`).
pub fn parse_nice(text: &str) -> Result<i32, String> {
    let t = text.trim();
    match t.parse::<i32>() {
        Ok(n) if (-20..=19).contains(&n) => Ok(n),
        _ => Err(format!("{t:?} is not a niceness from -20 to 19")),
    }
}

/// `umask`: octal, as umask(1) (`022`, `0027`).
pub fn parse_umask(text: &str) -> Result<u32, String> {
    let t = text.trim();
    match u32::from_str_radix(t, 8) {
        Ok(m) if m <= 0o777 && !t.is_empty() => Ok(m),
        _ => Err(format!("{t:?} is not an octal umask (022)")),
    }
}

/// `restart-limit`: after `count` runs that each lived under a second within `within`, the
/// supervisor stops restarting the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub count: u32,
    pub within: Duration,
}

pub fn parse_restart_limit(text: &str) -> Result<RestartLimit, String> {
    let t = text.trim();
    let usage = || format!("{t:?}: write COUNT DURATION (5 10s)");
    let (count, within) = t.split_once(char::is_whitespace).ok_or_else(usage)?;
    let count: u32 = count.trim().parse().map_err(|_| usage())?;
    if count == 0 {
        return Err(format!("{t:?}: COUNT must be 1 or more"));
    }
    let within = crate::service::parse_duration(within)?;
    if within.is_zero() {
        return Err(format!("{t:?}: DURATION must be more than 0"));
    }
    Ok(RestartLimit { count, within })
}

/// A v1 (hybrid layout) equivalent of a cgroup2 setting: the controller's hierarchy, the
/// file there and its value. Where the kernel has bound a controller to a v1 hierarchy, it is
/// not available in cgroup2 (the hybrid layout of systemd before v247, and of this host).
/// `None`: no v1 equivalent (`memory.high`, `memory.swap.max`, `io.weight`).
pub fn v1_equivalent(file: &str, value: &str) -> Option<Vec<(&'static str, &'static str, String)>> {
    let max_to_minus_one = |v: &str| {
        if v == "max" {
            "-1".to_owned()
        } else {
            v.to_owned()
        }
    };
    match file {
        "memory.max" => Some(vec![(
            "memory",
            "memory.limit_in_bytes",
            max_to_minus_one(value),
        )]),
        "pids.max" => Some(vec![("pids", "pids.max", value.to_owned())]),
        "cpu.max" => {
            let mut words = value.split_whitespace();
            let quota = words.next().unwrap_or_default();
            let period = words.next().unwrap_or("100000");
            Some(vec![
                ("cpu", "cpu.cfs_period_us", period.to_owned()),
                ("cpu", "cpu.cfs_quota_us", max_to_minus_one(quota)),
            ])
        }
        "cpu.weight" => {
            // cgroup2's 1..10000 around 100, v1's shares around 1024.
            let shares = value
                .parse::<u64>()
                .map(|w| (w.saturating_mul(1024) / 100).max(2).to_string())
                .unwrap_or_else(|_| value.to_owned());
            Some(vec![("cpu", "cpu.shares", shares)])
        }
        _ => None,
    }
}

/// Why a setting file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    NotRegular,
    TooLarge,
    NotText,
    Io(Errno),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotRegular => f.write_str("not a regular file"),
            ReadError::TooLarge => write!(f, "larger than {SETTING_CAP} bytes"),
            ReadError::NotText => f.write_str("not UTF-8 text"),
            ReadError::Io(e) => f.write_str(&cause(&std::io::Error::from(*e))),
        }
    }
}

/// Reads the setting file `name` relative to `dir` (the service dir's fd): `Ok(None)` when
/// there is none. A symlink is not followed, a FIFO does not block, only a regular file of at
/// most `cap` bytes of UTF-8 is read.
pub fn read_file(dir: impl AsFd, name: &str, cap: usize) -> Result<Option<String>, ReadError> {
    use std::io::Read;
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(ReadError::NotRegular),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(ReadError::Io)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ReadError::NotRegular);
    }
    let limit = (cap as u64).saturating_add(1);
    let mut bytes = warden_protocol::service::buffer_for(st.st_size, limit);
    std::fs::File::from(fd)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    if bytes.len() > cap {
        return Err(ReadError::TooLarge);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ReadError::NotText)
}

/// Every file of this module, to look for in a service dir.
pub const ALL_FILES: [&str; 12] = [
    "memory.max",
    "memory.high",
    "memory.swap.max",
    "pids.max",
    "cpu.max",
    "cpu.weight",
    "io.weight",
    USER,
    LIMITS,
    NICE,
    UMASK,
    RESTART_LIMIT,
];

/// Which of [`ALL_FILES`] the directory `dir` has (of any type: the read says what is wrong
/// with one that is not a regular file): one listing of the directory, so a start without
/// any of them costs a getdents, not a dozen failed opens. `None` if it cannot be listed
/// (every file is then looked for).
pub fn present(dir: impl AsFd) -> Option<Vec<&'static str>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut found = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().to_bytes();
        if let Some(&known) = ALL_FILES.iter().find(|f| f.as_bytes() == name) {
            found.push(known);
        }
    }
    Some(found)
}

/// The user, limits, niceness and umask a service's processes get (`run`, `finish`, `check`
/// and the `control/` hooks alike).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub account: Option<Account>,
    pub limits: Vec<Rlimit>,
    pub nice: Option<i32>,
    pub umask: Option<u32>,
}

/// Where the user and group databases are.
pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

impl Identity {
    /// Reads `user`, `limits`, `nice` and `umask` relative to `dir` (the service dir), and
    /// resolves the user in /etc/passwd and /etc/group. An error names the file: the
    /// service must then not start (without its user it would run as root).
    pub fn read(dir: impl AsFd) -> Result<Identity, crate::service::SettingError> {
        Identity::read_present(dir, None)
    }

    /// [`Identity::read`], looking only for the files of `present` when it is known.
    pub fn read_present(
        dir: impl AsFd,
        present: Option<&[&str]>,
    ) -> Result<Identity, crate::service::SettingError> {
        let dir = dir.as_fd();
        if present.is_some_and(|p| !p.iter().any(|f| [USER, LIMITS, NICE, UMASK].contains(f))) {
            return Ok(Identity::default());
        }
        let error = |file: &str, cause: String| crate::service::SettingError {
            file: file.into(),
            cause,
        };
        let text =
            |name: &str| read_file(dir, name, SETTING_CAP).map_err(|e| error(name, e.to_string()));
        let mut id = Identity::default();
        if let Some(t) = text(USER)? {
            let spec = parse_user(&t).map_err(|e| error(USER, e))?;
            let database = |path: &str| {
                if spec.numeric {
                    return Ok(String::new());
                }
                read_database(path).map_err(|e| error(path, e))
            };
            let (passwd, group) = (database(PASSWD)?, database(GROUP)?);
            id.account = Some(resolve_user(&spec, &passwd, &group).map_err(|e| error(USER, e))?);
        }
        if let Some(t) = text(LIMITS)? {
            id.limits = parse_limits(&t).map_err(|e| error(LIMITS, e))?;
        }
        if let Some(t) = text(NICE)? {
            id.nice = Some(parse_nice(&t).map_err(|e| error(NICE, e))?);
        }
        if let Some(t) = text(UMASK)? {
            id.umask = Some(parse_umask(&t).map_err(|e| error(UMASK, e))?);
        }
        Ok(id)
    }

    /// `(resource, soft, hard)` for [`crate::spawn::Process::rlimits`].
    pub fn rlimits(&self) -> Vec<(i32, u64, u64)> {
        self.limits
            .iter()
            .map(|l| (l.resource, l.soft, l.hard))
            .collect()
    }

    /// `HOME`, `USER` and `LOGNAME` of the account, set before `env/` applies.
    pub fn env(&self) -> Vec<(String, String)> {
        match &self.account {
            Some(a) => vec![
                ("HOME".into(), a.home.clone()),
                ("USER".into(), a.name.clone()),
                ("LOGNAME".into(), a.name.clone()),
            ],
            None => Vec::new(),
        }
    }

    /// The settings as `NAME VALUE`, for the extended status.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(a) = &self.account {
            let groups: Vec<String> = a.groups.iter().map(u32::to_string).collect();
            out.push((
                USER.to_owned(),
                format!(
                    "{} (uid {} gid {} groups {})",
                    a.name,
                    a.uid,
                    a.gid,
                    groups.join(",")
                ),
            ));
        }
        if !self.limits.is_empty() {
            let limits: Vec<String> = self.limits.iter().map(limit_text).collect();
            out.push((LIMITS.to_owned(), limits.join(", ")));
        }
        if let Some(n) = self.nice {
            out.push((NICE.to_owned(), n.to_string()));
        }
        if let Some(m) = self.umask {
            out.push((UMASK.to_owned(), format!("{m:04o}")));
        }
        out
    }
}

/// An I/O error as people read it: `Permission denied`, without `(os error 13)`.
pub fn cause(e: &std::io::Error) -> String {
    crate::diag::cause(e)
}

/// Reads a user or group database, capped at [`DATABASE_CAP`].
fn read_database(path: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(DATABASE_CAP as u64).read_to_string(&mut text))
        .map_err(|e| cause(&e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        www:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nwww:x:33:\n\
        adm:x:4:syslog,www\nstaff:x:50:www\nother:x:60:wwwx\n";

    #[test]
    fn users_as_chpst_u() {
        let spec = parse_user("www\n").unwrap();
        let a = resolve_user(&spec, PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gid), (33, 33));
        assert_eq!(a.groups, [4, 33, 50]);
        assert_eq!(a.home, "/var/www");
        let a = resolve_user(&parse_user("www:adm").unwrap(), PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gid, a.groups), (33, 4, vec![4]));
        let a = resolve_user(&parse_user(":1000:100:20").unwrap(), "", "").unwrap();
        assert_eq!((a.uid, a.gid, a.groups), (1000, 100, vec![20, 100]));
        assert_eq!(
            resolve_user(&parse_user("nosuch").unwrap(), PASSWD, GROUP),
            Err("unknown user \"nosuch\"".into())
        );
        assert_eq!(
            resolve_user(&parse_user("www:nogroup").unwrap(), PASSWD, GROUP),
            Err("unknown group \"nogroup\"".into())
        );
        for bad in ["", "a b", "www:", ":x:1", ":1", "a::b"] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_lines() {
        let l =
            parse_limits("# ours\nnofile 4096\ncore unlimited\nas 1G\nstack 8M:16M\n\n").unwrap();
        let got: Vec<(&str, u64, u64)> = l.iter().map(|l| (l.name, l.soft, l.hard)).collect();
        assert_eq!(
            got,
            [
                ("nofile", 4096, 4096),
                ("core", UNLIMITED, UNLIMITED),
                ("as", 1 << 30, 1 << 30),
                ("stack", 8 << 20, 16 << 20),
            ]
        );
        assert_eq!(limit_text(&l[3]), "stack 8388608:16777216");
        assert_eq!(limit_text(&l[1]), "core unlimited");
        assert_eq!(parse_limits("nofile 1\nnofile 2").unwrap()[0].soft, 2);
        assert!(parse_limits("files 10")
            .unwrap_err()
            .starts_with("line 1: unknown limit"));
        assert_eq!(
            parse_limits("nofile 1\nnofile 9:1").unwrap_err(),
            "line 2: nofile: the soft limit is above the hard one"
        );
        for bad in [
            "nofile",
            "nofile 1 2",
            "nofile x",
            "as 1Q",
            "as 99999999999T",
        ] {
            assert!(parse_limits(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nice_umask_restart_limit_and_cgroup_values() {
        assert_eq!(parse_nice(" 10\n"), Ok(10));
        assert!(parse_nice("20").is_err() && parse_nice("-21").is_err());
        assert_eq!(parse_umask("027\n"), Ok(0o27));
        assert!(parse_umask("8").is_err() && parse_umask("1000").is_err());
        assert!(parse_umask("").is_err());
        assert_eq!(
            parse_restart_limit("5 10s\n"),
            Ok(RestartLimit {
                count: 5,
                within: Duration::from_secs(10)
            })
        );
        assert_eq!(
            parse_restart_limit("3 1500").unwrap().within.as_millis(),
            1500
        );
        for bad in ["5", "0 10s", "x 10s", "5 0", "5 soon"] {
            assert!(parse_restart_limit(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_cgroup_value("50000 100000\n"),
            Ok("50000 100000".into())
        );
        assert!(parse_cgroup_value(" \n").is_err());
        assert!(parse_cgroup_value("1\n2").is_err());
        assert_eq!(controller("memory.swap.max"), "memory");
        assert_eq!(cgroup_default("io.weight"), "default 100");
    }

    #[test]
    fn v1_equivalents() {
        assert_eq!(
            v1_equivalent("cpu.max", "max 50000"),
            Some(vec![
                ("cpu", "cpu.cfs_period_us", "50000".into()),
                ("cpu", "cpu.cfs_quota_us", "-1".into())
            ])
        );
        assert_eq!(
            v1_equivalent("memory.max", "64M"),
            Some(vec![("memory", "memory.limit_in_bytes", "64M".into())])
        );
        assert_eq!(
            v1_equivalent("cpu.weight", "100"),
            Some(vec![("cpu", "cpu.shares", "1024".into())])
        );
        assert_eq!(v1_equivalent("memory.high", "1G"), None);
    }

    #[test]
    fn present_lists_the_known_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(present(&fd), Some(vec![]));
        for name in ["run", "memory.max", "user", "memory.maxx"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("nice")).unwrap();
        let mut found = present(&fd).unwrap();
        found.sort_unstable();
        assert_eq!(found, ["memory.max", "nice", "user"]);
        assert_eq!(
            Identity::read_present(&fd, Some(&["memory.max"])).unwrap(),
            Identity::default()
        );
        assert!(Identity::read_present(&fd, Some(&found)).is_err());
    }

    #[test]
    fn read_file_takes_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(read_file(&fd, "nope", 10), Ok(None));
        std::fs::write(dir.path().join("a"), "64M\n").unwrap();
        assert_eq!(read_file(&fd, "a", 10), Ok(Some("64M\n".into())));
        assert_eq!(read_file(&fd, "a", 2), Err(ReadError::TooLarge));
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("l")).unwrap();
        assert_eq!(read_file(&fd, "l", 10), Err(ReadError::NotRegular));
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert_eq!(read_file(&fd, "d", 10), Err(ReadError::NotRegular));
        std::fs::write(dir.path().join("b"), [0xff, 0xfe]).unwrap();
        assert_eq!(read_file(&fd, "b", 10), Err(ReadError::NotText));
    }
}
