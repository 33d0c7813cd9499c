//! svlogd mode: run under the name `svlogd` (a link to the logger), the logger takes runit's
//! svlogd(8) command line and each log directory's `config`, and writes the same files with
//! the same contents (see docs/logger.md, "svlogd mode").
//!
//! What stays the logger's own is the input path: stdin is copied with tee(2) and consumed only
//! once every directory has its lines (crate::input), so a logger killed at any point leaves
//! every unwritten line in the pipe. svlogd itself reads and drops them.
//!
//! A batch of input is first planned for every directory (which lines it takes, where it
//! rotates, as svlogd would decide line by line), then carried out; a failed write (a full
//! disk) stops the carrying out where it stopped and is retried from there.

use crate::input::{Fill, Input};
use crate::lines::{self, End, Record};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::Signal;
use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warden::signal::SignalPipe;
use warden::Tai64N;

pub const USAGE: &str =
    "usage: svlogd [-tttv] [-r c] [-R abc] [-l len] [-b buflen] [-d fd] dir ...\n";

/// svlogd's command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// 0 none, 1 `-t` TAI64N, 2 `-tt` `YYYY-MM-DD_HH:MM:SS.xxxxx`, 3 `-ttt` with a `T`.
    pub stamp: u8,
    /// `-r c`: the byte that replaces non-printable ones (and those of `-R`).
    pub repl: Option<u8>,
    /// `-R abc`: more bytes to replace.
    pub replace: Vec<u8>,
    /// `-l len`: bytes of a line that are processed (replaced, matched, sent by UDP).
    pub linemax: usize,
    /// `-b buflen`: kept for the command line's sake (its one effect: it must exceed len).
    pub buflen: usize,
    pub verbose: bool,
    /// `-d fd` (warden's, s6-log's readiness fd; svlogd has none): None means the
    /// supervisor's `notification-fd`, if any (crate::ready).
    pub ready_fd: Option<i32>,
    pub dirs: Vec<PathBuf>,
}

/// The leading decimal digits of `s` (svlogd's scan_ulong): the value (saturating) and how
/// many bytes they take.
fn scan_ulong(s: &[u8]) -> (u64, usize) {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = s.iter().take(digits).fold(0u64, |v, &d| {
        v.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    (value, digits)
}

/// Parses the arguments after the program name, getopt style (`-tt`, `-b2048`, `-r _`,
/// options before the directories). Err means: print the usage, exit 111.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
    let mut options = Options {
        stamp: 0,
        repl: None,
        replace: Vec::new(),
        linemax: 1000,
        buflen: 1024,
        verbose: false,
        ready_fd: None,
        dirs: Vec::new(),
    };
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.peek() {
        let bytes = arg.as_bytes().to_vec();
        if bytes == b"--" {
            args.next();
            break;
        }
        if bytes.len() < 2 || bytes.first() != Some(&b'-') {
            break;
        }
        args.next();
        let mut i = 1;
        while let Some(&c) = bytes.get(i) {
            i += 1;
            match c {
                b't' => options.stamp = (options.stamp + 1).min(3),
                b'v' => options.verbose = true,
                b'R' | b'r' | b'l' | b'b' | b'd' => {
                    let value = match bytes.get(i..) {
                        Some(rest) if !rest.is_empty() => rest.to_vec(),
                        _ => match args.next() {
                            Some(v) => v.as_bytes().to_vec(),
                            None => return Err(format!("option -{} needs a value", c as char)),
                        },
                    };
                    i = bytes.len();
                    match c {
                        b'R' => {
                            options.replace = value;
                            options.repl.get_or_insert(b'_');
                        }
                        b'r' => match value.as_slice() {
                            [one] if *one != 0 => options.repl = Some(*one),
                            _ => return Err("-r takes one character".into()),
                        },
                        b'd' => {
                            let fd = std::str::from_utf8(&value)
                                .ok()
                                .and_then(crate::ready::parse_fd);
                            match fd {
                                Some(fd) => options.ready_fd = Some(fd),
                                None => return Err("-d takes an fd number of 3 or more".into()),
                            }
                        }
                        b'l' => {
                            let (n, _) = scan_ulong(&value);
                            options.linemax = if n == 0 {
                                1000
                            } else {
                                usize::try_from(n).unwrap_or(usize::MAX)
                            };
                        }
                        _ => {
                            let (n, _) = scan_ulong(&value);
                            options.buflen = if n == 0 {
                                1024
                            } else {
                                usize::try_from(n).unwrap_or(usize::MAX)
                            };
                        }
                    }
                }
                b'V' => return Err("version: warden".into()),
                other => return Err(format!("unknown option -{}", other as char)),
            }
        }
    }
    options.dirs = args.map(PathBuf::from).collect();
    if options.dirs.is_empty() {
        return Err("missing dir".into());
    }
    if options.buflen <= options.linemax {
        return Err("buflen must exceed len".into());
    }
    Ok(options)
}

/// One directory's `config`, as svlogd(8) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub sizemax: u64,
    pub nmax: u64,
    pub nmin: u64,
    /// Seconds; 0: no rotation by age.
    pub tmax: u64,
    pub processor: Option<Vec<u8>>,
    pub udp: Option<SocketAddrV4>,
    pub udponly: bool,
    pub prefix: Vec<u8>,
    /// The `+ - e E` lines, in order, each with its leading character.
    pub patterns: Vec<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            sizemax: 1_000_000,
            nmax: 10,
            nmin: 10,
            tmax: 0,
            processor: None,
            udp: None,
            udponly: false,
            prefix: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// `a.b.c.d` at the start of `s`: the address and the bytes it takes.
fn scan_ip4(s: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut pos = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let (value, len) = scan_ulong(s.get(pos..)?);
        if len == 0 {
            return None;
        }
        // As svlogd, which keeps the low byte.
        *octet = (value & 0xff) as u8;
        pos += len;
    }
    Some((Ipv4Addr::from(octets), pos))
}

pub fn parse_config(text: &[u8]) -> Config {
    let mut config = Config::default();
    let mut start = 0;
    // svlogd looks at a line only if at least two bytes of the file are left from its start.
    while start + 1 < text.len() {
        let rest = text.get(start..).unwrap_or_default();
        let len = lines::find_newline(rest).unwrap_or(rest.len());
        let line = rest.get(..len).unwrap_or_default();
        start += len + 1;
        let arg = line.get(1..).unwrap_or_default();
        match line.first() {
            Some(b'+' | b'-' | b'e' | b'E') => config.patterns.push(line.to_vec()),
            Some(b's') => {
                let (n, used) = scan_ulong(arg);
                config.sizemax = match arg.get(used) {
                    Some(b'm') => n.saturating_mul(1024 * 1024),
                    Some(b'k') => n.saturating_mul(1024),
                    _ => n,
                };
            }
            Some(b'n') => config.nmax = scan_ulong(arg).0,
            Some(b'N') => config.nmin = scan_ulong(arg).0,
            Some(b't') => {
                let (n, used) = scan_ulong(arg);
                config.tmax = match arg.get(used) {
                    Some(b'h') => n.saturating_mul(3600),
                    Some(b'm') => n.saturating_mul(60),
                    _ => n,
                };
            }
            Some(b'!') if !arg.is_empty() => config.processor = Some(arg.to_vec()),
            Some(c @ (b'u' | b'U')) => {
                if *c == b'U' {
                    config.udponly = true;
                }
                let Some((ip, used)) = scan_ip4(arg) else {
                    warn(&format!(
                        "unable to scan ip address: {}",
                        String::from_utf8_lossy(arg)
                    ));
                    continue;
                };
                let port = match arg.get(used) {
                    Some(b':') => {
                        let (port, _) = scan_ulong(arg.get(used + 1..).unwrap_or_default());
                        match u16::try_from(port) {
                            Ok(p) if p != 0 => p,
                            _ => {
                                warn("unable to scan port number");
                                continue;
                            }
                        }
                    }
                    _ => 514,
                };
                config.udp = Some(SocketAddrV4::new(ip, port));
            }
            Some(b'p') if !arg.is_empty() => config.prefix = arg.to_vec(),
            _ => {}
        }
    }
    config
}

/// svlogd's pattern match: `*c` skips to the first `c` (a trailing `*` matches the rest),
/// `+c` takes one or more `c`, anything else matches itself; the pattern must cover the line.
pub fn pmatch(pattern: &[u8], line: &[u8]) -> bool {
    let mut p = 0;
    let mut s = 0;
    loop {
        let Some(&c) = pattern.get(p) else {
            return s >= line.len();
        };
        p += 1;
        match c {
            b'*' => {
                let Some(&next) = pattern.get(p) else {
                    return true;
                };
                loop {
                    match line.get(s) {
                        None => return false,
                        Some(&b) if b == next => break,
                        Some(_) => s += 1,
                    }
                }
            }
            b'+' => {
                let next = pattern.get(p).copied();
                p += 1;
                if next.is_none() || line.get(s).copied() != next {
                    return false;
                }
                loop {
                    match line.get(s) {
                        // As svlogd: the end of the line ends the match, successfully.
                        None => return true,
                        Some(&b) if Some(b) != next => break,
                        Some(_) => s += 1,
                    }
                }
            }
            _ => {
                if line.get(s) != Some(&c) {
                    return false;
                }
                s += 1;
            }
        }
    }
}

/// What a directory's patterns decide for a line: (written or sent, copied to stderr).
fn select(patterns: &[Vec<u8>], line: &[u8]) -> (bool, bool) {
    let mut take = true;
    let mut alert = false;
    for pattern in patterns {
        let (kind, body) = match pattern.split_first() {
            Some((k, b)) => (*k, b),
            None => continue,
        };
        if pmatch(body, line) {
            match kind {
                b'+' => take = true,
                b'-' => take = false,
                b'e' => alert = true,
                _ => alert = false,
            }
        }
    }
    (take, alert)
}

/// The label and its space for a line read now.
pub fn stamp(style: u8, now: Tai64N) -> Vec<u8> {
    let mut out = match style {
        1 => now.label().to_vec(),
        2 | 3 => {
            let c = crate::clock::utc(now.unix_secs());
            let sep = if style == 2 { '_' } else { 'T' };
            // svlogd prints the first five of the nine digits of the nanoseconds.
            format!(
                "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}.{:05}",
                c.year,
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second,
                now.nanos / 10_000
            )
            .into_bytes()
        }
        _ => return Vec::new(),
    };
    out.push(b' ');
    out
}

fn warn(message: &str) {
    warden::say!("svlogd: warning: {message}");
}

fn info(verbose: bool, message: &str) {
    if verbose {
        warden::say!("svlogd: info: {message}");
    }
}

/// One step of a directory's plan for a batch.
enum Op {
    /// Append `buf[from..to]` to `current`.
    Write(usize, usize),
    Rotate,
}

struct LogDir {
    name: PathBuf,
    fd: OwnedFd,
    _lock: OwnedFd,
    current: OwnedFd,
    /// Size of `current` as planned (what is written plus what the plan will write).
    size: u64,
    config: Config,
    processor: Option<Child>,
    /// The archive being processed (`@….u`) or the last one made.
    fnsave: String,
    /// When `current` is next rotated for age.
    trotate: Option<Instant>,
    buf: Vec<u8>,
    ops: Vec<Op>,
    /// Where carrying out the plan stands: the op, and bytes of it written.
    done: (usize, usize),
}

fn fail(what: &str, name: &std::path::Path, e: impl std::fmt::Display) -> String {
    format!("unable to {what} {}: {e}", name.display())
}

impl LogDir {
    fn open(name: &std::path::Path, verbose: bool) -> Result<LogDir, String> {
        // svlogd wants the directory made beforehand; making it is friendlier and harmless.
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(name);
        let fd = rustix::fs::open(
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open log directory", name, e))?;
        let lock = rustix::fs::openat(
            &fd,
            "lock",
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .and_then(|lock| {
            rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)?;
            Ok(lock)
        })
        .map_err(|e| fail("lock directory", name, e))?;
        let config = match read_config(&fd) {
            Ok(Some(text)) => {
                info(verbose, &format!("read: {}/config", name.display()));
                parse_config(&text)
            }
            Ok(None) => Config::default(),
            Err(e) => {
                warn(&fail("read config", name, e));
                Config::default()
            }
        };
        let mut fnsave = String::new();
        let mut size = 0;
        match rustix::fs::statat(&fd, "current", AtFlags::SYMLINK_NOFOLLOW) {
            // A `current` left by a logger that did not exit cleanly (svlogd marks it
            // executable on exit) is kept as an unfinished archive, as svlogd does.
            Ok(st) if st.st_size > 0 && st.st_mode & 0o100 == 0 => {
                fnsave = unique_name(&fd, b'u');
                rustix::fs::renameat(&fd, "current", &fd, fnsave.as_str())
                    .map_err(|e| fail("rename current in", name, e))?;
            }
            Ok(st) => size = u64::try_from(st.st_size).unwrap_or(0),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(fail("stat current in", name, e)),
        }
        let current = open_current(&fd).map_err(|e| fail("open current in", name, e))?;
        info(verbose, &format!("open: {}/current", name.display()));
        let trotate = (config.tmax > 0)
            .then(|| Instant::now().checked_add(Duration::from_secs(config.tmax)))
            .flatten();
        let dir = LogDir {
            name: name.to_owned(),
            fd,
            _lock: lock,
            current,
            size,
            config,
            processor: None,
            fnsave,
            trotate,
            buf: Vec::new(),
            ops: Vec::new(),
            done: (0, 0),
        };
        if !dir.fnsave.is_empty() {
            dir.rmoldest(verbose);
        }
        Ok(dir)
    }

    /// Plans `bytes` (one line, its newline included) as svlogd writes it: a `current` at the
    /// size limit rotates first, a write never takes it past the limit (the rest of the line
    /// goes to the next file), and a line that ends within `linemax` of the limit rotates.
    fn plan_line(&mut self, parts: &[&[u8]], linemax: usize) {
        let sizemax = self.config.sizemax;
        let start = self.buf.len();
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        let end = self.buf.len();
        let mut from = start;
        while from < end {
            if sizemax > 0 && self.size >= sizemax {
                self.ops.push(Op::Rotate);
                self.size = 0;
            }
            let room = if sizemax > 0 {
                usize::try_from(sizemax - self.size).unwrap_or(usize::MAX)
            } else {
                usize::MAX
            };
            let to = end.min(from.saturating_add(room));
            match self.ops.last_mut() {
                Some(Op::Write(_, last)) if *last == from => *last = to,
                _ => self.ops.push(Op::Write(from, to)),
            }
            self.size += (to - from) as u64;
            from = to;
        }
        let threshold = sizemax.checked_sub(linemax as u64);
        if sizemax > 0 && threshold.is_some_and(|t| self.size >= t) {
            self.ops.push(Op::Rotate);
            self.size = 0;
        }
    }

    /// Carries out the plan from where it stopped; Err leaves it there.
    fn carry_out(&mut self, verbose: bool) -> Result<(), String> {
        while let Some(op) = self.ops.get(self.done.0) {
            match *op {
                Op::Write(from, to) => {
                    let from = from + self.done.1;
                    if from >= to {
                        self.done = (self.done.0 + 1, 0);
                        continue;
                    }
                    let data = self.buf.get(from..to).unwrap_or_default();
                    match rustix::io::write(&self.current, data) {
                        Ok(0) => return Err(fail("write to current in", &self.name, "no room")),
                        Ok(n) => self.done.1 += n,
                        Err(Errno::INTR) => {}
                        Err(e) => return Err(fail("write to current in", &self.name, e)),
                    }
                }
                Op::Rotate => {
                    self.rotate(verbose)?;
                    self.done = (self.done.0 + 1, 0);
                }
            }
        }
        self.ops.clear();
        self.buf.clear();
        self.done = (0, 0);
        Ok(())
    }

    /// Bytes in `current` now, whatever the plan says.
    fn actual_size(&self) -> u64 {
        rustix::fs::fstat(&self.current).map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0))
    }

    /// svlogd's rotation: wait for a running processor, sync `current`, mark it finished
    /// (mode 0744), rename it to `@<now>.s` (`.u` for the processor), open a new one, delete
    /// the oldest archive beyond `n`, start the processor.
    fn rotate(&mut self, verbose: bool) -> Result<(), String> {
        if self.config.tmax > 0 {
            self.trotate = Instant::now().checked_add(Duration::from_secs(self.config.tmax));
        }
        self.processor_wait(verbose);
        if self.actual_size() == 0 {
            return Ok(());
        }
        rustix::fs::fsync(&self.current).map_err(|e| fail("fsync current in", &self.name, e))?;
        rustix::fs::fchmod(&self.current, Mode::from_raw_mode(0o744))
            .map_err(|e| fail("set mode of current in", &self.name, e))?;
        let kind = if self.config.processor.is_some() {
            b'u'
        } else {
            b's'
        };
        let fnsave = unique_name(&self.fd, kind);
        rustix::fs::renameat(&self.fd, "current", &self.fd, fnsave.as_str())
            .map_err(|e| fail("rename current in", &self.name, e))?;
        info(
            verbose,
            &format!("rename: {}/current {fnsave}", self.name.display()),
        );
        self.fnsave = fnsave;
        self.current =
            open_current(&self.fd).map_err(|e| fail("create new current in", &self.name, e))?;
        self.rmoldest(verbose);
        self.processor_start(verbose);
        Ok(())
    }

    /// Deletes processor leftovers (`.t`) and, if there are more than `n` archives, the
    /// oldest (never the `.u` being processed).
    fn rmoldest(&self, verbose: bool) {
        let Ok(entries) = std::fs::read_dir(&self.name) else {
            warn(&format!("unable to read directory {}", self.name.display()));
            return;
        };
        let mut count = 0u64;
        let mut oldest: Option<String> = None;
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.len() != 27 || !name.starts_with('@') {
                continue;
            }
            if name.ends_with('t') {
                if self.processor.is_none() {
                    let _ = rustix::fs::unlinkat(&self.fd, name.as_str(), AtFlags::empty());
                }
                continue;
            }
            // The archive waiting for the processor counts for nothing yet (as svlogd 2.1.2:
            // with a processor it keeps n finished archives besides the one in the works).
            if self.fnsave.ends_with('u') && self.fnsave == name {
                continue;
            }
            count += 1;
            if oldest.as_ref().map_or(true, |o| name < *o) {
                oldest = Some(name);
            }
        }
        if self.config.nmax > 0 && count > self.config.nmax {
            if let Some(oldest) = oldest {
                info(
                    verbose,
                    &format!("delete: {}/{oldest}", self.name.display()),
                );
                if let Err(e) = rustix::fs::unlinkat(&self.fd, oldest.as_str(), AtFlags::empty()) {
                    warn(&fail("unlink oldest logfile in", &self.name, e));
                }
            }
        }
    }

    /// Runs `!processor` on the archive just made: `sh -c processor` in the directory with
    /// the archive on stdin, `@….t` on stdout, `state` on fd 4 and `newstate` on fd 5.
    fn processor_start(&mut self, verbose: bool) {
        let Some(program) = self.config.processor.clone() else {
            return;
        };
        if self.processor.is_some() {
            return;
        }
        let spawned = self.spawn_processor(&program);
        match spawned {
            Ok(child) => {
                info(
                    verbose,
                    &format!("processing: {}/{}", self.name.display(), self.fnsave),
                );
                self.processor = Some(child);
            }
            Err(e) => warn(&fail("run processor for", &self.name, e)),
        }
    }

    fn spawn_processor(&self, program: &[u8]) -> std::io::Result<Child> {
        let ro = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let trunc = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW;
        let mode = Mode::from_raw_mode(0o644);
        let input = rustix::fs::openat(&self.fd, self.fnsave.as_str(), ro, Mode::empty())?;
        let output = rustix::fs::openat(
            &self.fd,
            output_name(&self.fnsave).as_str(),
            trunc | OFlags::CLOEXEC,
            mode,
        )?;
        let state = match rustix::fs::openat(&self.fd, "state", ro, Mode::empty()) {
            Err(Errno::NOENT) => {
                drop(rustix::fs::openat(
                    &self.fd,
                    "state",
                    trunc | OFlags::CLOEXEC,
                    mode,
                )?);
                rustix::fs::openat(&self.fd, "state", ro, Mode::empty())?
            }
            other => other?,
        };
        let newstate = rustix::fs::openat(&self.fd, "newstate", trunc | OFlags::CLOEXEC, mode)?;
        // Above 5, so that moving one onto 4 or 5 cannot overwrite the other.
        let state = rustix::io::fcntl_dupfd_cloexec(&state, 6)?;
        let newstate = rustix::io::fcntl_dupfd_cloexec(&newstate, 6)?;
        let (dir, state_fd, newstate_fd) =
            (self.fd.as_raw_fd(), state.as_raw_fd(), newstate.as_raw_fd());
        let mut command = Command::new("/bin/sh");
        command
            .arg0("sh")
            .arg("-c")
            .arg(OsStr::from_bytes(program))
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(output));
        // SAFETY: fchdir and dup2 are async-signal-safe syscalls on descriptors that stay open
        // in the parent until spawn returns; the closure allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::fchdir(dir) != 0
                    || libc::dup2(state_fd, 4) < 0
                    || libc::dup2(newstate_fd, 5) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn();
        drop((state, newstate));
        child
    }

    /// Collects a processor that has exited (all of them at `block`) and keeps its output as
    /// svlogd does: `@….t` becomes `@….s` (mode 0744), the `.u` goes, `newstate` becomes
    /// `state`. A failed processor runs again on the same file.
    fn processor_reap(&mut self, block: bool, verbose: bool) -> bool {
        loop {
            let Some(child) = self.processor.as_mut() else {
                return true;
            };
            let status = if block {
                child.wait().map(Some)
            } else {
                child.try_wait()
            };
            let status = match status {
                Ok(Some(status)) => status,
                Ok(None) => return false,
                Err(e) => {
                    warn(&fail("wait for processor of", &self.name, e));
                    self.processor = None;
                    return true;
                }
            };
            self.processor = None;
            let output = output_name(&self.fnsave);
            if !status.success() {
                warn(&format!(
                    "processor failed, restart: {}",
                    self.name.display()
                ));
                let _ = rustix::fs::unlinkat(&self.fd, output.as_str(), AtFlags::empty());
                self.processor_start(verbose);
                if !block {
                    return false;
                }
                continue;
            }
            let finished = format!("{}s", self.fnsave.get(..26).unwrap_or_default());
            let kept = rustix::fs::openat(
                &self.fd,
                output.as_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|fd| rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o744)))
            .and_then(|()| {
                rustix::fs::renameat(&self.fd, output.as_str(), &self.fd, finished.as_str())
            });
            if let Err(e) = kept {
                warn(&fail("rename processed in", &self.name, e));
                return true;
            }
            if let Err(e) = rustix::fs::unlinkat(&self.fd, self.fnsave.as_str(), AtFlags::empty()) {
                warn(&fail("unlink processed input in", &self.name, e));
            }
            if let Err(e) = rustix::fs::renameat(&self.fd, "newstate", &self.fd, "state") {
                warn(&fail("rename state in", &self.name, e));
            }
            info(
                verbose,
                &format!("processed: {}/{finished}", self.name.display()),
            );
            return true;
        }
    }

    fn processor_wait(&mut self, verbose: bool) {
        self.processor_reap(true, verbose);
    }

    /// Clean exit: `current` synced and marked finished (mode 0744), as svlogd leaves it.
    fn close(&mut self, verbose: bool) {
        self.processor_wait(verbose);
        let _ = rustix::fs::fsync(&self.current);
        let _ = rustix::fs::fchmod(&self.current, Mode::from_raw_mode(0o744));
        info(verbose, &format!("close: {}", self.name.display()));
    }
}

fn output_name(fnsave: &str) -> String {
    format!("{}t", fnsave.get(..26).unwrap_or_default())
}

fn read_config(dir: &OwnedFd) -> std::io::Result<Option<Vec<u8>>> {
    match rustix::fs::openat(
        dir,
        "config",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut text)?;
            Ok(Some(text))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_current(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    let fd = rustix::fs::openat(
        dir,
        "current",
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
    Ok(fd)
}

/// `@<now>.s` or `.u`, the first such name not taken.
fn unique_name(dir: &OwnedFd, kind: u8) -> String {
    loop {
        let label = Tai64N::now().label();
        let name = format!("{}.{}", String::from_utf8_lossy(&label), kind as char);
        match rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return name,
            _ => std::thread::yield_now(),
        }
    }
}

/// Writing keeps failing: retry at `deadline`.
struct Stall {
    deadline: Instant,
    delay: Duration,
}

struct Svlogd {
    options: Options,
    dirs: Vec<Option<LogDir>>,
    input: Input,
    batch: Vec<u8>,
    records: Vec<Record>,
    line: Vec<u8>,
    udp: Option<UdpSocket>,
    /// Bytes of the batch covered by the planned lines, consumed once they are written.
    pending: Option<usize>,
    stall: Option<Stall>,
    input_ready: bool,
    /// The last batch was planned only up to a rotation. In read mode the rest is still in
    /// `batch` and is planned next, before anything more is read: waiting for input first
    /// would hold those lines back (a socket or terminal may send nothing more), and reading
    /// more first would let `batch` grow without bound (a file). In tee mode the rest is
    /// still in the pipe and the next copy brings it back anyway.
    unplanned: bool,
    eof: bool,
}

pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            warden::say!("svlogd: {e}\n{USAGE}");
            return 111;
        }
    };
    // Before anything is opened: see crate::ready.
    let mut ready = crate::ready::Notifier::claim(options.ready_fd, "svlogd");
    let signals = match SignalPipe::new(&[
        Signal::TERM,
        Signal::INT,
        Signal::ALARM,
        Signal::HUP,
        Signal::CHILD,
    ]) {
        Ok(s) => s,
        Err(e) => {
            warden::say!("svlogd: fatal: unable to set up signal handling: {e}");
            return 111;
        }
    };
    let input = Input::from_stdin();
    let mut svlogd = Svlogd {
        dirs: Vec::new(),
        input,
        batch: Vec::new(),
        records: Vec::new(),
        line: Vec::new(),
        udp: None,
        pending: None,
        stall: None,
        input_ready: false,
        unplanned: false,
        eof: false,
        options,
    };
    svlogd.input_ready = !svlogd.input.level_triggered();
    if !svlogd.reopen() {
        warden::say!("svlogd: fatal: no functional log directories.");
        return 111;
    }
    // Every directory that can be is open and locked.
    ready.ready();
    let code = match svlogd.run(&signals) {
        Ok(()) => 0,
        Err(e) => {
            warden::say!("svlogd: fatal: unable to read standard input: {e}");
            111
        }
    };
    let verbose = svlogd.options.verbose;
    for dir in svlogd.dirs.iter_mut().flatten() {
        dir.close(verbose);
    }
    code
}

const FIRST_RETRY: Duration = Duration::from_millis(20);
const LAST_RETRY: Duration = Duration::from_secs(3);

impl Svlogd {
    /// (Re)opens every directory, re-reading its config; false if none works.
    fn reopen(&mut self) -> bool {
        let verbose = self.options.verbose;
        for dir in self.dirs.iter_mut().flatten() {
            dir.close(verbose);
        }
        self.dirs.clear();
        for name in &self.options.dirs {
            match LogDir::open(name, verbose) {
                Ok(dir) => self.dirs.push(Some(dir)),
                Err(e) => {
                    warn(&e);
                    self.dirs.push(None);
                }
            }
        }
        self.dirs.iter().any(Option::is_some)
    }

    fn run(&mut self, signals: &SignalPipe) -> std::io::Result<()> {
        let verbose = self.options.verbose;
        let (mut exit, mut rotate, mut reopen) = (false, false, false);
        loop {
            let readable = self.wait(signals)?;
            for signal in signals.take() {
                match signal {
                    Signal::TERM | Signal::INT => exit = true,
                    Signal::ALARM => rotate = true,
                    Signal::HUP => reopen = true,
                    Signal::CHILD => {
                        for dir in self.dirs.iter_mut().flatten() {
                            dir.processor_reap(false, verbose);
                        }
                    }
                    _ => {}
                }
            }
            if readable {
                self.input.acknowledge();
                self.input_ready = true;
            }
            if let Some(stall) = &self.stall {
                if Instant::now() < stall.deadline && !exit {
                    continue;
                }
            }
            if self.pending.is_some() && !self.carry_out()? {
                if exit {
                    // What is not written stays in the pipe (tee mode) for the next logger.
                    return Ok(());
                }
                continue;
            }
            if exit {
                return Ok(());
            }
            if std::mem::take(&mut rotate) {
                for dir in self.dirs.iter_mut().flatten() {
                    if let Err(e) = dir.rotate(verbose) {
                        warn(&e);
                    }
                }
            }
            if std::mem::take(&mut reopen) && !self.reopen() {
                warden::say!("svlogd: fatal: no functional log directories.");
                return Ok(());
            }
            let now = Instant::now();
            for dir in self.dirs.iter_mut().flatten() {
                if dir.trotate.is_some_and(|t| t <= now) {
                    if let Err(e) = dir.rotate(verbose) {
                        warn(&e);
                    }
                }
            }
            if (self.input_ready || self.unplanned) && self.read_batch()? {
                return Ok(());
            }
        }
    }

    /// Blocks until a signal, input, a rotation by age or a retry is due; whether input is
    /// readable.
    fn wait(&self, signals: &SignalPipe) -> std::io::Result<bool> {
        let now = Instant::now();
        let mut deadline = self.stall.as_ref().map(|s| s.deadline);
        if self.stall.is_none() && (self.input_ready || self.unplanned) {
            deadline = Some(now);
        }
        for dir in self.dirs.iter().flatten() {
            if let Some(t) = dir.trotate {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        }
        let timespec = warden::poll::until(deadline, now);
        let watch_input = self.stall.is_none() && !self.input_ready;
        let input = self.input.wait_fd();
        let mut fds = [
            PollFd::new(signals, PollFlags::IN),
            PollFd::new(&input, PollFlags::IN),
        ];
        let count = if watch_input { 2 } else { 1 };
        match rustix::event::poll(fds.get_mut(..count).unwrap_or_default(), timespec.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(watch_input && fds.get(1).is_some_and(|f| !f.revents().is_empty()))
    }

    /// Reads a batch, plans its lines for every directory and writes them; true at the end
    /// of input with everything written.
    fn read_batch(&mut self) -> std::io::Result<bool> {
        let backlog = std::mem::take(&mut self.unplanned) && self.input.level_triggered();
        if !backlog {
            match self.input.fill(&mut self.batch)? {
                Fill::Empty => {
                    self.input_ready = false;
                    return Ok(false);
                }
                Fill::Eof => self.eof = true,
                Fill::Data => {
                    if self.input.level_triggered() {
                        self.input_ready = false;
                    }
                }
            }
        }
        let room = self.input.line_room();
        self.records.clear();
        let mut consumed = lines::plan(&self.batch, room, self.eof, &mut self.records);
        if self.records.is_empty() && !self.eof && !self.batch.is_empty() {
            // Only an unfinished line: as in crate::run, wait for its end unless no one can
            // write it any more.
            if self.input.copy_was_cut_short() {
                self.records.push(Record {
                    start: 0,
                    end: self.batch.len(),
                    ending: End::Split,
                });
                consumed = self.batch.len();
            } else if self.input.writers_gone() {
                if self.input.holds_more_than(self.batch.len()) {
                    return Ok(false);
                }
                self.eof = true;
                consumed = lines::plan(&self.batch, room, true, &mut self.records);
            } else {
                self.input_ready = false;
            }
        }
        if self.records.is_empty() {
            return Ok(self.eof && self.batch.len() == consumed);
        }
        let planned = self.plan();
        self.unplanned = planned < self.records.len();
        if planned < self.records.len() {
            // A rotation (an fsync) was planned: consume up to it before going on, so that a
            // logger killed now and then still makes progress.
            consumed = self
                .records
                .get(planned.saturating_sub(1))
                .map_or(consumed, |r| r.end);
        }
        self.pending = Some(consumed);
        self.carry_out()?;
        Ok(false)
    }

    /// Decides, line by line, what each directory gets; stops after the first line that
    /// makes a directory rotate. Returns how many records it planned.
    fn plan(&mut self) -> usize {
        let stamp = stamp(self.options.stamp, Tai64N::now());
        let linemax = self.options.linemax;
        let Svlogd {
            options,
            dirs,
            batch,
            records,
            line,
            udp,
            ..
        } = self;
        let mut planned = 0;
        for record in records.iter() {
            if dirs
                .iter()
                .flatten()
                .any(|d| d.ops.iter().any(|op| matches!(op, Op::Rotate)))
            {
                break;
            }
            planned += 1;
            let mut content = batch.get(record.start..record.end).unwrap_or_default();
            if record.ending == End::Newline {
                content = content
                    .get(..content.len().saturating_sub(1))
                    .unwrap_or_default();
            }
            let head_len = content.len().min(linemax);
            let (head_raw, rest) = content.split_at(head_len);
            // svlogd processes (replaces, matches, sends) only the first `linemax` bytes.
            let truncated = content.len() >= linemax;
            let head: &[u8] = match options.repl {
                Some(repl) => {
                    line.clear();
                    line.extend(head_raw.iter().map(|&c| {
                        if !(32..=126).contains(&c) || options.replace.contains(&c) {
                            repl
                        } else {
                            c
                        }
                    }));
                    line
                }
                None => head_raw,
            };
            let dots: &[u8] = if truncated { b"..." } else { b"" };
            for dir in dirs.iter_mut().flatten() {
                let (take, alert) = if dir.config.patterns.is_empty() {
                    (true, false)
                } else {
                    select(&dir.config.patterns, head)
                };
                if alert {
                    let message = [&stamp[..], &dir.config.prefix, head, dots, b"\n"].concat();
                    let _ = rustix::io::write(rustix::stdio::stderr(), &message);
                }
                if !take {
                    continue;
                }
                if let Some(addr) = dir.config.udp {
                    let message = [&stamp[..], &dir.config.prefix, head, dots, b"\n"].concat();
                    if udp.is_none() {
                        *udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
                        if let Some(socket) = udp.as_ref() {
                            let _ = socket.set_nonblocking(true);
                        }
                    }
                    let sent = udp.as_ref().map(|s| s.send_to(&message, addr));
                    match sent {
                        Some(Ok(n)) if n == message.len() => {}
                        Some(_) => dir.plan_line(
                            &[b"warning: failure sending through udp: ", &message],
                            linemax,
                        ),
                        None => dir.plan_line(
                            &[
                                b"warning: no udp socket available: ",
                                &stamp,
                                &dir.config.prefix.clone(),
                                head,
                                b"\n",
                            ],
                            linemax,
                        ),
                    }
                }
                if !dir.config.udponly {
                    let prefix = std::mem::take(&mut dir.config.prefix);
                    dir.plan_line(&[&stamp, &prefix, head, rest, b"\n"], linemax);
                    dir.config.prefix = prefix;
                }
            }
        }
        planned
    }

    /// Writes what is planned; true when all is written and the input consumed.
    fn carry_out(&mut self) -> std::io::Result<bool> {
        let Some(consumed) = self.pending else {
            return Ok(true);
        };
        let verbose = self.options.verbose;
        for dir in self.dirs.iter_mut().flatten() {
            if let Err(e) = dir.carry_out(verbose) {
                let delay = match &self.stall {
                    None => {
                        warden::say!("svlogd: pausing: {e}");
                        FIRST_RETRY
                    }
                    Some(stall) => (stall.delay * 2).min(LAST_RETRY),
                };
                self.stall = Instant::now()
                    .checked_add(delay)
                    .map(|deadline| Stall { deadline, delay });
                return Ok(false);
            }
        }
        self.stall = None;
        self.pending = None;
        self.input.consume(&mut self.batch, consumed)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(|s| s.into()).collect()
    }

    #[test]
    fn command_line() {
        let o = parse(args(&[
            "-tt", "-b", "2048", "-r_", "-R", "xy", "-l", "500", "a", "b",
        ]))
        .unwrap();
        assert_eq!(o.stamp, 2);
        assert_eq!((o.buflen, o.linemax, o.repl), (2048, 500, Some(b'_')));
        assert_eq!(o.replace, b"xy");
        assert_eq!(o.dirs, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(parse(args(&["-tttt", "-v", "d"])).unwrap().stamp, 3);
        assert!(parse(args(&["-t"])).is_err());
        assert!(parse(args(&["-l", "2000", "d"])).is_err(), "buflen <= len");
        assert!(parse(args(&["-x", "d"])).is_err());
        assert!(parse(args(&["-r", "ab", "d"])).is_err());
        assert_eq!(
            parse(args(&["-tt", "-d", "4", "d"])).unwrap().ready_fd,
            Some(4)
        );
        assert_eq!(parse(args(&["-d3", "d"])).unwrap().ready_fd, Some(3));
        assert!(parse(args(&["-d", "1", "d"])).is_err());
    }

    #[test]
    fn config_lines() {
        let c = parse_config(
            b"# comment\ns4k\nn3\nN1\nt2m\n!gzip\nu127.0.0.1:5140\npP: \n-*\n+auth.*\ne*err*\n",
        );
        assert_eq!((c.sizemax, c.nmax, c.nmin, c.tmax), (4096, 3, 1, 120));
        assert_eq!(c.processor.as_deref(), Some(&b"gzip"[..]));
        assert_eq!(c.udp, Some("127.0.0.1:5140".parse().unwrap()));
        assert!(!c.udponly);
        assert_eq!(c.prefix, b"P: ");
        assert_eq!(c.patterns.len(), 3);
        let c = parse_config(b"s0\nU10.0.0.1\n");
        assert_eq!(c.sizemax, 0);
        assert!(c.udponly);
        assert_eq!(c.udp, Some("10.0.0.1:514".parse().unwrap()));
    }

    #[test]
    fn patterns_as_svlogd() {
        assert!(pmatch(b"*", b"anything"));
        assert!(pmatch(b"auth.*", b"auth.info: x"));
        assert!(!pmatch(b"auth.*", b"kern.info: x"));
        assert!(pmatch(b"*err*", b"an error here"));
        assert!(!pmatch(b"*err", b"an error"));
        assert!(pmatch(b"a+bc", b"abbbc"));
        assert!(!pmatch(b"a+bc", b"ac"));
        assert!(pmatch(b"exact", b"exact"));
        assert!(!pmatch(b"exact", b"exactly"));
        let patterns = vec![b"-*".to_vec(), b"+auth.*".to_vec()];
        assert_eq!(select(&patterns, b"auth.x"), (true, false));
        assert_eq!(select(&patterns, b"kern.x"), (false, false));
    }

    #[test]
    fn labels() {
        let t = Tai64N::from_system_time(
            std::time::UNIX_EPOCH + Duration::new(1_796_391_531, 664_829_123),
        );
        assert_eq!(stamp(2, t), b"2026-12-04_13:38:51.66482 ");
        assert_eq!(stamp(3, t), b"2026-12-04T13:38:51.66482 ");
        assert_eq!(stamp(1, t).len(), 26);
        assert!(stamp(0, t).is_empty());
    }
}
