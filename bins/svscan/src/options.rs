//! Command line: `svscan [-g GRACE] [-u DIR | -U] [SCANDIR]`.

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "usage: svscan [-g GRACE] [-u DIR | -U] [SCANDIR]";

/// Where the catch-all logger runs when svscan is PID 1 and no `-u` says otherwise.
pub const DEFAULT_UNCAUGHT: &str = "/run/warden/uncaught";

/// How long a shutdown waits for services (and then for loggers) before it sends KILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A longer grace is taken as "wait as good as forever", and keeps deadline arithmetic safe.
pub const MAX_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub scandir: PathBuf,
    pub grace: Duration,
    /// The catch-all logger's directory (`-u DIR`); `Default` is [`DEFAULT_UNCAUGHT`] as
    /// PID 1 and none otherwise; `Off` (`-U`) is none even as PID 1.
    pub uncaught: Uncaught,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Uncaught {
    Default,
    Off,
    Dir(PathBuf),
}

pub enum Parsed {
    Run(Options),
    Help,
}

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut scandir = None;
    let mut grace = DEFAULT_GRACE;
    let mut uncaught = Uncaught::Default;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('g') | Long("grace") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_string_lossy();
                grace = warden::service::parse_duration(&text)
                    .map_err(|e| format!("bad grace time: {e}"))?
                    .min(MAX_GRACE);
            }
            Short('u') | Long("uncaught") => {
                let dir = PathBuf::from(parser.value().map_err(|e| e.to_string())?);
                if dir.as_os_str().is_empty() {
                    return Err("-u needs a directory".into());
                }
                uncaught = Uncaught::Dir(dir);
            }
            Short('U') | Long("no-uncaught") => uncaught = Uncaught::Off,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(dir) if scandir.is_none() => scandir = Some(PathBuf::from(dir)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Parsed::Run(Options {
        scandir: scandir.unwrap_or_else(|| PathBuf::from(".")),
        grace,
        uncaught,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|a| a.into()))? {
            Parsed::Run(o) => Ok(o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_to_the_current_directory_like_daemontools() {
        let o = run(&[]).unwrap();
        assert_eq!(o.scandir, PathBuf::from("."));
        assert_eq!(o.grace, DEFAULT_GRACE);
    }

    #[test]
    fn grace_takes_humantime_or_milliseconds() {
        assert_eq!(
            run(&["-g", "1500ms", "/srv"]).unwrap().grace,
            Duration::from_millis(1500)
        );
        assert_eq!(
            run(&["--grace=250", "/srv"]).unwrap().grace,
            Duration::from_millis(250)
        );
        assert_eq!(run(&["-g", "5000y"]).unwrap().grace, MAX_GRACE);
        assert!(run(&["-g", "soon"]).is_err());
        assert!(run(&["a", "b"]).is_err());
        assert!(run(&["-x"]).is_err());
    }

    #[test]
    fn the_catch_all_logger_is_chosen_by_u_or_turned_off_by_capital_u() {
        assert_eq!(run(&[]).unwrap().uncaught, Uncaught::Default);
        assert_eq!(
            run(&["-u", "/run/x", "/srv"]).unwrap().uncaught,
            Uncaught::Dir(PathBuf::from("/run/x"))
        );
        assert_eq!(run(&["-U"]).unwrap().uncaught, Uncaught::Off);
        assert!(run(&["-u", ""]).is_err());
    }
}
