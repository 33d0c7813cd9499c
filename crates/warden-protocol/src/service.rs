//! A service directory's settings files, read the way runit, daemontools and s6 users expect.
//! Each error names the file and the cause; a bad setting never stops the supervisor, it falls
//! back to the default and says so.

use rustix::process::Signal;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const RUN: &str = "run";
pub const FINISH: &str = "finish";
pub const DOWN: &str = "down";
pub const LOG: &str = "log";
pub const ENV: &str = "env";
pub const CHECK: &str = "check";
pub const NOTIFICATION_FD: &str = "notification-fd";
pub const TIMEOUT_KILL: &str = "timeout-kill";
pub const TIMEOUT_FINISH: &str = "timeout-finish";
pub const DOWN_SIGNAL: &str = "down-signal";

pub const DEFAULT_TIMEOUT_FINISH: Duration = Duration::from_secs(5);

/// A setting file that could not be used, and why.
#[derive(Debug)]
pub struct SettingError {
    pub file: PathBuf,
    pub cause: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.cause)
    }
}

impl std::error::Error for SettingError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A `down` file exists: the service is normally down.
    pub down: bool,
    pub down_signal: Signal,
    pub timeout_kill: Option<Duration>,
    pub timeout_finish: Duration,
    pub notification_fd: Option<i32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            down: false,
            down_signal: Signal::TERM,
            timeout_kill: None,
            timeout_finish: DEFAULT_TIMEOUT_FINISH,
            notification_fd: None,
        }
    }
}

impl Settings {
    /// Reads the settings of the service in `dir`. Unusable files are returned as errors
    /// alongside settings that keep the defaults for them.
    pub fn read(dir: &Path) -> (Settings, Vec<SettingError>) {
        let mut s = Settings {
            down: dir.join(DOWN).exists(),
            ..Settings::default()
        };
        let mut errors = Vec::new();
        let mut setting = |name: &str, apply: &mut dyn FnMut(&str) -> Result<(), String>| {
            let file = dir.join(name);
            match read_first_line(&file) {
                Ok(None) => {}
                Ok(Some(line)) => {
                    if let Err(cause) = apply(&line) {
                        errors.push(SettingError { file, cause });
                    }
                }
                Err(e) => errors.push(SettingError {
                    file,
                    cause: e.to_string(),
                }),
            }
        };
        setting(DOWN_SIGNAL, &mut |v| {
            s.down_signal = crate::signal::parse(v).ok_or(format!("unknown signal {v:?}"))?;
            Ok(())
        });
        setting(TIMEOUT_KILL, &mut |v| {
            s.timeout_kill = Some(parse_duration(v)?).filter(|d| !d.is_zero());
            Ok(())
        });
        setting(TIMEOUT_FINISH, &mut |v| {
            s.timeout_finish = parse_duration(v)?;
            Ok(())
        });
        setting(NOTIFICATION_FD, &mut |v| match v.trim().parse::<i32>() {
            Ok(fd) if fd >= 3 => {
                s.notification_fd = Some(fd);
                Ok(())
            }
            _ => Err(format!(
                "{v:?} is not a file descriptor number of 3 or more"
            )),
        });
        (s, errors)
    }
}

/// humantime (`1500ms`, `10s`, `1m 30s`) or, as in s6, a bare integer of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// The longest a deadline is set for. A longer duration (`timeout-kill`, `WARDEN_GRACE`,
/// `svctl -w`: parsed as given, up to u64 seconds) is as good as forever, and capped at this
/// one `Instant + Duration` cannot overflow (which panics).
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The deadline `d` after `at`, with `d` capped at [`FOREVER`]: never panics.
pub fn deadline(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FOREVER)).unwrap_or(at)
}

/// The most of a setting file that is read: its value is on the first line.
const SETTING_FILE_CAP: u64 = 4096;

/// A buffer for reading a small file of `size` bytes (its `st_size`), at most `cap`, in one
/// `read` and the one that finds its end: an empty `Vec` would take four or five reads of a
/// status record, growing from 32 bytes (svscan reads two files per status change).
pub fn buffer_for(size: impl TryInto<u64>, cap: u64) -> Vec<u8> {
    let size = size.try_into().unwrap_or(0).min(cap);
    Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1))
}

/// The first line of a setting file, without its newline and surrounding blanks; `None` if
/// the file does not exist. Opened without blocking and read only if it is a regular file
/// (a symlink to one is followed, as runit users link settings), so that a FIFO planted
/// there cannot block the supervisor, nor /dev/zero fill its memory.
pub(crate) fn read_first_line(file: &Path) -> io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    let mut bytes = buffer_for(meta.len(), SETTING_FILE_CAP);
    f.by_ref().take(SETTING_FILE_CAP).read_to_end(&mut bytes)?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(Some(String::from_utf8_lossy(line).trim().to_owned()))
}

/// One variable of an envdir: set to a value, or removed (empty file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvVar {
    Set(OsString, OsString),
    Unset(OsString),
}

/// The most of an `env/` file that is read: its value is the first line, and a line longer
/// than this is refused rather than read without bound (a symlink to `/dev/zero`).
pub const ENV_FILE_CAP: usize = 64 * 1024;

/// Reads an envdir as daemontools' `envdir` does: each file NAME sets NAME to its first line
/// with trailing blanks removed and NULs turned into newlines; an empty file unsets NAME.
/// `Ok(vec![])` if there is no `env/`. Names with `=` and dot-files are skipped; so are, with
/// a warning, entries that are not regular files (see [`read_envdir_reporting`]).
pub fn read_envdir(dir: &Path) -> Result<Vec<EnvVar>, SettingError> {
    read_envdir_reporting(dir).map(|(vars, _)| vars)
}

/// [`read_envdir`], with the entries it skipped: a FIFO, a device, a socket (each of which
/// could block the reader or feed it without end) or a file whose first line is longer than
/// [`ENV_FILE_CAP`]. Each is named in its error; the other variables still apply. An entry
/// that cannot be read at all (a dangling symlink, EACCES) is an error, as for `envdir`.
/// Symlinks are followed (a shared env file is a common setup); what counts is the file they
/// lead to, checked with `fstat` on the opened fd, which is opened `O_NONBLOCK` so a FIFO
/// cannot block the open.
pub fn read_envdir_reporting(dir: &Path) -> Result<(Vec<EnvVar>, Vec<SettingError>), SettingError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let err = |file: &Path, e: io::Error| SettingError {
        file: file.to_owned(),
        cause: e.to_string(),
    };
    let dir_fd = match rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(err(dir, e.into())),
    };
    let entries = rustix::fs::Dir::read_from(&dir_fd).map_err(|e| err(dir, e.into()))?;
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, e.into()))?;
        let bytes = entry.file_name().to_bytes();
        if bytes.starts_with(b".") || bytes.contains(&b'=') {
            continue;
        }
        names.push(OsString::from_vec(bytes.to_vec()));
    }
    names.sort();
    let mut vars = Vec::with_capacity(names.len());
    let mut skipped = Vec::new();
    for name in names {
        let file = dir.join(&name);
        let refuse = |skipped: &mut Vec<SettingError>, what: &str| {
            skipped.push(SettingError {
                file: file.clone(),
                cause: what.to_owned(),
            })
        };
        // Looked at before the open too, so that a device node is never opened at all.
        let kind = match rustix::fs::statat(&dir_fd, name.as_os_str(), rustix::fs::AtFlags::empty())
        {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(e) => return Err(err(&file, e.into())),
        };
        if kind == FileType::Directory {
            continue;
        }
        if kind != FileType::RegularFile {
            refuse(
                &mut skipped,
                &format!("not a regular file ({}): ignored", kind_name(kind)),
            );
            continue;
        }
        let fd = rustix::fs::openat(
            &dir_fd,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(&file, e.into()))?;
        // The entry may have been swapped between the look and the open.
        let kind = rustix::fs::fstat(&fd)
            .map(|stat| FileType::from_raw_mode(stat.st_mode))
            .map_err(|e| err(&file, e.into()))?;
        if kind != FileType::RegularFile {
            refuse(
                &mut skipped,
                &format!("not a regular file ({}): ignored", kind_name(kind)),
            );
            continue;
        }
        let mut content = Vec::new();
        let mut reader = io::Read::take(std::fs::File::from(fd), ENV_FILE_CAP as u64 + 1);
        io::Read::read_to_end(&mut reader, &mut content).map_err(|e| err(&file, e))?;
        if content.is_empty() {
            vars.push(EnvVar::Unset(name));
            continue;
        }
        let mut line = match content.iter().position(|&b| b == b'\n') {
            Some(end) => content.get(..end).unwrap_or_default().to_vec(),
            None if content.len() > ENV_FILE_CAP => {
                refuse(
                    &mut skipped,
                    &format!("its first line is longer than {ENV_FILE_CAP} bytes: ignored"),
                );
                continue;
            }
            None => content,
        };
        while line.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            line.pop();
        }
        for b in &mut line {
            if *b == 0 {
                *b = b'\n';
            }
        }
        vars.push(EnvVar::Set(name, OsString::from_vec(line)));
    }
    Ok((vars, skipped))
}

fn kind_name(kind: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match kind {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symlink",
        _ => "not a file",
    }
}

/// Whether a scan-directory entry name is a service: not a dot-name.
pub fn is_service_name(name: &OsStr) -> bool {
    !name.as_bytes().starts_with(b".") && !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn defaults_when_nothing_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let (s, errors) = Settings::read(dir.path());
        assert_eq!(s, Settings::default());
        assert!(errors.is_empty());
    }

    #[test]
    fn a_fifo_as_a_setting_is_reported_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(DOWN_SIGNAL);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let path = dir.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Settings::read(&path));
        });
        let (s, errors) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("Settings::read blocked on a FIFO");
        assert_eq!(s.down_signal, Settings::default().down_signal);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, fifo);
        assert!(errors[0].cause.contains("FIFO"), "{errors:?}");
    }

    #[test]
    fn reads_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join(DOWN), "").unwrap();
        fs::write(p.join(DOWN_SIGNAL), "SIGINT\n").unwrap();
        fs::write(p.join(TIMEOUT_KILL), "1500\n").unwrap();
        fs::write(p.join(TIMEOUT_FINISH), "2s").unwrap();
        fs::write(p.join(NOTIFICATION_FD), "3\n").unwrap();
        let (s, errors) = Settings::read(p);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            s,
            Settings {
                down: true,
                down_signal: Signal::INT,
                timeout_kill: Some(Duration::from_millis(1500)),
                timeout_finish: Duration::from_secs(2),
                notification_fd: Some(3),
            }
        );
    }

    #[test]
    fn bad_settings_name_the_file_and_keep_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join(DOWN_SIGNAL), "SIGBOGUS").unwrap();
        fs::write(p.join(TIMEOUT_FINISH), "soon").unwrap();
        fs::write(p.join(NOTIFICATION_FD), "1").unwrap();
        let (s, errors) = Settings::read(p);
        assert_eq!(s, Settings::default());
        assert_eq!(errors.len(), 3);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(text[0].contains("down-signal") && text[0].contains("SIGBOGUS"));
        assert!(text[1].contains("timeout-finish") && text[1].contains("soon"));
        assert!(text[2].contains("notification-fd"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 10s\n"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn issue_11_6_deadlines_of_huge_durations_saturate() {
        let now = Instant::now();
        let huge = parse_duration("10000000000000000000s").unwrap();
        assert_eq!(deadline(now, huge), now + FOREVER);
        assert_eq!(deadline(now, Duration::MAX), now + FOREVER);
        assert_eq!(
            deadline(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
    }

    #[test]
    fn envdir_like_daemontools() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("PLAIN"), "value  \nsecond line").unwrap();
        fs::write(p.join("EMPTY"), "").unwrap();
        fs::write(p.join("NUL"), b"a\0b").unwrap();
        fs::write(p.join(".hidden"), "x").unwrap();
        fs::write(p.join("A=B"), "x").unwrap();
        let vars = read_envdir(p).unwrap();
        assert_eq!(
            vars,
            vec![
                EnvVar::Unset("EMPTY".into()),
                EnvVar::Set("NUL".into(), "a\nb".into()),
                EnvVar::Set("PLAIN".into(), "value".into()),
            ]
        );
        assert_eq!(read_envdir(&p.join("missing")).unwrap(), vec![]);
    }

    #[test]
    fn envdir_skips_what_is_not_a_regular_file_and_overlong_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("GOOD"), "yes\n").unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, p.join("FIFO"), rustix::fs::Mode::RUSR).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p.join("ZERO")).unwrap();
        fs::write(p.join("LONG"), vec![b'x'; ENV_FILE_CAP + 1]).unwrap();
        let mut exact = vec![b'y'; ENV_FILE_CAP];
        exact.extend_from_slice(b"\nrest");
        fs::write(p.join("EXACT"), &exact).unwrap();
        fs::write(p.join("REAL"), "shared\n").unwrap();
        std::os::unix::fs::symlink("REAL", p.join("LINKED")).unwrap();
        let (vars, skipped) = read_envdir_reporting(p).unwrap();
        let names: Vec<_> = vars
            .iter()
            .map(|v| match v {
                EnvVar::Set(n, _) | EnvVar::Unset(n) => n.clone(),
            })
            .collect();
        // A first line of exactly the cap is whole, so it is used.
        assert_eq!(names, ["EXACT", "GOOD", "LINKED", "REAL"]);
        assert_eq!(
            vars[0],
            EnvVar::Set("EXACT".into(), OsString::from_vec(vec![b'y'; ENV_FILE_CAP]))
        );
        assert_eq!(vars[2], EnvVar::Set("LINKED".into(), "shared".into()));
        let text: Vec<String> = skipped.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].ends_with("FIFO: not a regular file (a FIFO): ignored"));
        assert!(text[1].ends_with("LONG: its first line is longer than 65536 bytes: ignored"));
        assert!(text[2].ends_with("ZERO: not a regular file (a character device): ignored"));
    }

    #[test]
    fn service_names() {
        assert!(is_service_name(OsStr::new("getty")));
        assert!(!is_service_name(OsStr::new(".svscan")));
        assert!(!is_service_name(OsStr::new("")));
    }
}
