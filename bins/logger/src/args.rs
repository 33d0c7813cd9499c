//! The command line.

use crate::run::StampStyle;
use crate::show::{ShowOptions, Source};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: logger [-s SIZE] [-n COUNT] [-t tai64n|iso|none] [-d FD] DIR
       logger --show [-n LINES] [-f] DIR|-

Writes the lines read on stdin to DIR/current, each after a timestamp, rotating
DIR/current into DIR/@<tai64n>.s archives. DIR is created if missing and locked
(DIR/lock): a second logger on the same DIR exits 111.

  -s, --size SIZE        rotate before current would exceed SIZE bytes
                         (default 1M; suffixes k=1000, M=1000000, Ki, Mi;
                         at least 4096)
  -n, --count COUNT      keep COUNT archives, deleting older ones (default 10)
  -t, --timestamp STYLE  tai64n: @ + 24 hex digits of TAI64N, as multilog t
                         and svlogd -t (default); iso: 2026-11-22T03:00:00.123456789Z
                         (UTC); none: the line as it is
  -d, --ready-fd FD      once DIR is open and locked, write a newline on FD and
                         close it (s6-log -d); default: the fd named by the
                         notification-fd file of the current directory, if
                         the supervisor left that fd open as a pipe
  -h, --help             this text

Lines longer than 64 KiB (less for small SIZE) are split: each piece but the
last ends with \"[...]\". A last line without newline is written at end of input.
Signals: ALRM rotates now; TERM or INT writes what was read and exits, leaving
the rest in the pipe for the next logger. On a full disk or a removed DIR it
warns once and retries with back-off, never dropping a line.
Exit: 0 end of input or TERM; 100 usage; 111 DIR locked or unusable.

  --show                 print the archives, oldest first, then current, with
                         TAI64N labels as local time (like tai64nlocal);
                         DIR - converts stdin instead
  -n, --lines LINES      only the last LINES lines
  -f, --follow           then print lines as they are written, across rotations
";

pub struct WriteOptions {
    pub dir: PathBuf,
    pub limit: u64,
    pub keep: usize,
    pub stamp: StampStyle,
    /// `-d FD`: where to say ready; None: the supervisor's `notification-fd`, if any.
    pub ready_fd: Option<i32>,
}

pub enum Command {
    Write(WriteOptions),
    Show(ShowOptions),
    Help,
}

/// Parses `1000000`, `1M`, `512k`, `64Ki`, `1Mi`.
pub fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits.parse().ok()?;
    let unit = match text.get(digits.len()..)? {
        "" => 1,
        "k" | "K" => 1000,
        "M" | "m" => 1_000_000,
        "Ki" | "KiB" => 1024,
        "Mi" | "MiB" => 1024 * 1024,
        "G" | "g" => 1_000_000_000,
        "Gi" | "GiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(unit)
}

pub const MIN_SIZE: u64 = 4096;

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut show = false;
    let mut follow = false;
    let mut count: Option<usize> = None;
    let mut limit = 1_000_000;
    let mut stamp = StampStyle::Tai64n;
    let mut dir: Option<PathBuf> = None;
    let mut dash = false;
    let mut ready_fd = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("show") => show = true,
            Short('f') | Long("follow") => follow = true,
            Short('n') | Long("count") | Long("lines") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_string_lossy();
                count = Some(text.parse().map_err(|_| format!("bad count: {text}"))?);
            }
            Short('s') | Long("size") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_string_lossy();
                limit = parse_size(&text).ok_or_else(|| format!("bad size: {text}"))?;
                if limit < MIN_SIZE {
                    return Err(format!("size {limit} is below the minimum of {MIN_SIZE}"));
                }
            }
            Short('d') | Long("ready-fd") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_string_lossy();
                ready_fd = Some(
                    crate::ready::parse_fd(&text)
                        .ok_or_else(|| format!("bad fd (3 or more): {text}"))?,
                );
            }
            Short('t') | Long("timestamp") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                stamp = match value.to_string_lossy().as_ref() {
                    "tai64n" => StampStyle::Tai64n,
                    "iso" | "iso8601" => StampStyle::Iso,
                    "none" => StampStyle::None,
                    other => return Err(format!("bad timestamp style: {other}")),
                };
            }
            Value(value) if dir.is_none() && !dash => {
                if value == "-" {
                    dash = true;
                } else {
                    dir = Some(PathBuf::from(value));
                }
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if show {
        let source = match (dir, dash) {
            (Some(dir), _) => Source::Dir(dir),
            (None, true) => Source::Stdin,
            (None, false) => return Err("missing DIR".into()),
        };
        return Ok(Command::Show(ShowOptions {
            source,
            last: count,
            follow,
        }));
    }
    if follow {
        return Err("-f goes with --show".into());
    }
    let dir = dir.ok_or("missing DIR")?;
    Ok(Command::Write(WriteOptions {
        dir,
        limit,
        keep: count.unwrap_or(10),
        stamp,
        ready_fd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(|s| s.into()).collect()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M"), Some(1_000_000));
        assert_eq!(parse_size("512k"), Some(512_000));
        assert_eq!(parse_size("64Ki"), Some(65_536));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1X"), None);
        assert_eq!(parse_size("M"), None);
    }

    #[test]
    fn write_and_show_modes() {
        match parse(args(&["-s", "512k", "-n", "3", "-t", "iso", "/x"])).unwrap() {
            Command::Write(w) => {
                assert_eq!((w.limit, w.keep, w.stamp), (512_000, 3, StampStyle::Iso));
                assert_eq!(w.dir, PathBuf::from("/x"));
            }
            _ => panic!("write mode expected"),
        }
        match parse(args(&["-d", "5", "/x"])).unwrap() {
            Command::Write(w) => assert_eq!(w.ready_fd, Some(5)),
            _ => panic!("write mode expected"),
        }
        assert!(parse(args(&["-d", "1", "/x"])).is_err());
        match parse(args(&["--show", "-n", "5", "-f", "/x"])).unwrap() {
            Command::Show(s) => assert!(s.follow && s.last == Some(5)),
            _ => panic!("show mode expected"),
        }
        assert!(matches!(
            parse(args(&["--show", "-"])).unwrap(),
            Command::Show(ShowOptions {
                source: Source::Stdin,
                ..
            })
        ));
        assert!(parse(args(&["-s", "100", "/x"])).is_err());
        assert!(parse(args(&[])).is_err());
        assert!(parse(args(&["/x", "/y"])).is_err());
    }
}
