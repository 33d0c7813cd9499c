//! The command line: `svctl [-d SCANDIR] [-w DURATION] COMMAND [SERVICE...]`. Options may
//! come before or after the command (`svctl log web -n 20 -f`); `--` ends them.

use crate::goal::Goal;
use crate::logview::LogView;
use crate::system::Power;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use warden::svdir::{scan_control, DEFAULT_SCANDIR};

/// A command sent to a service's supervisor: its control bytes and what `-w` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verb {
    pub name: &'static str,
    pub bytes: &'static [u8],
    /// `None`: nothing to wait for, `-w` returns once the bytes are written.
    pub goal: Option<Goal>,
}

/// Every service command. `restart` is `d` then `u`: the supervisor stops the run with the
/// service's `down-signal` (TERM by default, then CONT) and, wanting it up again, starts a
/// new one once it has exited. runit's `sv restart` writes `tcu`, which is the same for a
/// service without `down-signal`.
pub const VERBS: &[Verb] = &[
    verb("up", b"u", Some(Goal::Up)),
    verb("down", b"d", Some(Goal::Down)),
    verb("once", b"o", Some(Goal::Once)),
    verb("restart", b"du", Some(Goal::NewRun)),
    verb("pause", b"p", Some(Goal::Paused)),
    verb("cont", b"c", Some(Goal::Continued)),
    verb("hup", b"h", None),
    verb("alarm", b"a", None),
    verb("interrupt", b"i", None),
    verb("quit", b"q", None),
    verb("usr1", b"1", None),
    verb("usr2", b"2", None),
    verb("term", b"t", Some(Goal::RunEnded)),
    verb("kill", b"k", Some(Goal::RunEnded)),
    verb("exit", b"x", Some(Goal::Gone)),
];

/// runit's `sv` spellings that mean the same.
const ALIASES: &[(&str, &str)] = &[("start", "up"), ("stop", "down"), ("alrm", "alarm")];

const fn verb(name: &'static str, bytes: &'static [u8], goal: Option<Goal>) -> Verb {
    Verb { name, bytes, goal }
}

#[derive(Debug)]
pub enum Action {
    Control(Verb),
    Check,
    /// The dependency graph under each service.
    Deps,
    /// Every service in the Prometheus text format.
    Metrics,
    Status {
        json: bool,
        form: Form,
    },
    Log(LogView),
    /// A byte for svscan's control FIFO.
    Svscan(u8),
    /// Invoked as `poweroff`, `reboot` or `halt`: signal PID 1.
    Init(Power),
    Help,
    Version,
}

/// How `status` shows services (its JSON aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// One service named: at length; several, or all: one line each.
    Auto,
    /// `--short`: one line each, even for one.
    Short,
    /// `-l`: each at length.
    Long,
}

#[derive(Debug)]
pub struct Invocation {
    pub scandir: PathBuf,
    pub wait: Option<Duration>,
    pub action: Action,
    pub services: Vec<String>,
}

/// `sv -v` waits this long, unless `-w` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(7);

pub const USAGE: &str = "usage: svctl [-d SCANDIR] [-w DURATION | -v] COMMAND [SERVICE...]";

pub fn help() -> String {
    format!(
        "{USAGE}

Control services supervised by warden's supervise (or runit's runsv).

SERVICE is a name in SCANDIR (-d, else $SVDIR, else {DEFAULT_SCANDIR}), or a path when it
starts with / or . or ends with /.

Service commands (several services may be given; each is processed):
  up | start     want up, start if down, and what it needs and wants (needs/, wants/)
                                               -w: running (ready if notification-fd), ./check ok
  down | stop    want down, send down-signal; first stop (hold) what needs it
                                               -w: nothing runs
  once           start once, do not restart    -w: a run started after the command
  restart        down-signal, then up again    -w: a run started after the command, ./check ok
  pause | cont   send STOP | CONT              -w: paused | not paused
  hup alarm interrupt quit usr1 usr2           send HUP ALRM INT QUIT USR1 USR2
  term | kill    send TERM | KILL              -w: restarted (want up) or down (want down)
  exit           stop the service, supervisor exits   -w: the supervisor is gone
  check          no command; is the service in the state it wants (up, or down)?
  deps           the dependency graph under SERVICE: needs, wants, after, with states
  status         one line per service (all of SCANDIR without SERVICE); --json for machines;
                 one SERVICE (or -l): at length, with memory, CPU, tasks, process tree,
                 settings and the last log lines
  log SERVICE [-n N] [-f]   show SERVICE/log/main through `logger --show`
  log .uncaught  the catch-all log: services without a log/ (svscan as PID 1, or svscan -u)
  metrics        every service (or SERVICE...) in the Prometheus text format, with memory,
                 CPU and tasks of its cgroup: for node_exporter's textfile collector

svscan commands (to SCANDIR/.svscan/control):
  rescan         scan SCANDIR now
  shutdown       stop every service and its logger, then svscan exits
  poweroff | reboot | halt   stop everything, then power off, reboot or halt
                 -w: until svscan (not PID 1) has exited
Invoked as `poweroff`, `reboot` or `halt` (a symlink to svctl), it signals PID 1 instead
(USR1, INT, USR2), whatever the scan directory.

Options:
  -d, --scandir DIR    the scan directory
  -w, --wait DURATION  wait for the command's goal: `5` (seconds, as sv), `500ms`, `1m 30s`
  -v, --verbose        wait {}s (sv's default)
      --json           status: JSON array, one object per service
  -l, --long           status: every service at length
      --short          status: one line, even for one SERVICE
  -n, --lines N        log: last N lines
  -f, --follow         log: keep showing new lines
  -h, --help           this text
  -V, --version        svctl's version

{}",
        DEFAULT_WAIT.as_secs(),
        crate::outcome::TABLE
    )
}

/// `-w 5` is five seconds, as with runit's `sv -w`; `-w 1.5` too; anything else is humantime.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{text:?} is not a duration"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// Parses the arguments (without the program name); `program` is argv[0]'s basename.
pub fn parse(program: &str, args: Vec<OsString>) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut scandir: Option<PathBuf> = None;
    let mut wait = None;
    let mut json = false;
    let mut long = false;
    let mut short = false;
    let mut lines = None;
    let mut follow = false;
    let mut positional: Vec<String> = Vec::new();
    let mut help_wanted = false;
    let mut version_wanted = false;
    let text = |v: OsString| v.into_string().map_err(|v| format!("{v:?} is not UTF-8"));
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('d') | Long("scandir") => {
                scandir = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Short('w') | Long("wait") => {
                let value = text(parser.value().map_err(|e| e.to_string())?)?;
                wait = Some(parse_wait(&value)?);
            }
            Short('v') | Long("verbose") => wait = wait.or(Some(DEFAULT_WAIT)),
            Long("json") => json = true,
            Short('l') | Long("long") => long = true,
            Long("short") => short = true,
            Short('n') | Long("lines") => {
                let value = text(parser.value().map_err(|e| e.to_string())?)?;
                lines = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("-n wants a number of lines, not {value:?}"))?,
                );
            }
            Short('f') | Long("follow") => follow = true,
            Short('h') | Long("help") => help_wanted = true,
            Short('V') | Long("version") => version_wanted = true,
            Value(v) => positional.push(text(v)?),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let scandir = scandir
        .or_else(|| {
            std::env::var_os("SVDIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SCANDIR));

    if let Some(power) = Power::from_program_name(program) {
        if !positional.is_empty()
            || wait.is_some()
            || json
            || long
            || short
            || lines.is_some()
            || follow
        {
            return Err(format!("usage: {program} (no arguments)"));
        }
        let action = if help_wanted {
            Action::Help
        } else {
            Action::Init(power)
        };
        return Ok(Invocation {
            scandir,
            wait: None,
            action,
            services: Vec::new(),
        });
    }
    if help_wanted || version_wanted {
        let action = if help_wanted {
            Action::Help
        } else {
            Action::Version
        };
        return Ok(Invocation {
            scandir,
            wait,
            action,
            services: Vec::new(),
        });
    }

    let mut rest = positional.into_iter();
    let command = rest.next().ok_or_else(|| "no command given".to_owned())?;
    let services: Vec<String> = rest.collect();
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == command)
        .map_or(command.as_str(), |(_, name)| name);
    let action = match name {
        "status" => Action::Status {
            json,
            form: match (long, short) {
                (true, false) => Form::Long,
                (false, true) => Form::Short,
                (false, false) => Form::Auto,
                (true, true) => return Err("-l and --short exclude each other".into()),
            },
        },
        "check" => Action::Check,
        "deps" => Action::Deps,
        "metrics" => Action::Metrics,
        "log" => Action::Log(LogView { lines, follow }),
        "rescan" => Action::Svscan(scan_control::RESCAN),
        "shutdown" => Action::Svscan(scan_control::TEARDOWN),
        "poweroff" => Action::Svscan(Power::Poweroff.scan_byte()),
        "reboot" => Action::Svscan(Power::Reboot.scan_byte()),
        "halt" => Action::Svscan(Power::Halt.scan_byte()),
        other => match VERBS.iter().find(|v| v.name == other) {
            Some(verb) => Action::Control(*verb),
            None => return Err(format!("unknown command {command:?}")),
        },
    };

    if json && !matches!(action, Action::Status { .. }) {
        return Err("--json applies to status only".into());
    }
    if (long || short) && !matches!(action, Action::Status { json: false, .. }) {
        return Err("-l and --short apply to status without --json only".into());
    }
    if (lines.is_some() || follow) && !matches!(action, Action::Log(_)) {
        return Err("-n and -f apply to log only".into());
    }
    if wait.is_some()
        && !matches!(
            action,
            Action::Control(_) | Action::Check | Action::Svscan(_)
        )
    {
        return Err(format!("-w does not apply to {command}"));
    }
    match &action {
        Action::Control(_) | Action::Check | Action::Deps if services.is_empty() => {
            return Err(format!("{command} needs at least one SERVICE"))
        }
        Action::Log(_) if services.len() != 1 => return Err("log takes one SERVICE".into()),
        Action::Svscan(_) if !services.is_empty() => {
            return Err(format!("{command} takes no SERVICE"))
        }
        _ => {}
    }
    Ok(Invocation {
        scandir,
        wait,
        action,
        services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(program: &str, args: &[&str]) -> Result<Invocation, String> {
        parse(program, args.iter().map(OsString::from).collect())
    }

    #[test]
    fn wait_durations() {
        assert_eq!(parse_wait("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_wait("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_wait("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_wait("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_wait("-1").is_err());
        assert!(parse_wait("soon").is_err());
    }

    #[test]
    fn options_before_and_after_the_command() {
        let inv = parse_str("svctl", &["-d", "/tmp/s", "-w", "2", "restart", "a", "b"]).unwrap();
        assert_eq!(inv.scandir, PathBuf::from("/tmp/s"));
        assert_eq!(inv.wait, Some(Duration::from_secs(2)));
        assert_eq!(inv.services, vec!["a", "b"]);
        match inv.action {
            Action::Control(v) => assert_eq!(v.bytes, b"du"),
            other => panic!("{other:?}"),
        }
        let inv = parse_str("svctl", &["log", "web", "-n", "20", "-f"]).unwrap();
        match inv.action {
            Action::Log(view) => assert_eq!((view.lines, view.follow), (Some(20), true)),
            other => panic!("{other:?}"),
        }
        let inv = parse_str("svctl", &["stop", "x", "-v"]).unwrap();
        assert_eq!(inv.wait, Some(DEFAULT_WAIT));
        assert!(matches!(inv.action, Action::Control(v) if v.bytes == b"d"));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &[][..],
            &["frobnicate", "x"],
            &["up"],
            &["status", "--json", "-n", "3"],
            &["up", "x", "--json"],
            &["rescan", "x"],
            &["-w", "2", "status"],
            &["log"],
            &["-w"],
            &["--bogus", "up", "x"],
            &["status", "-l", "--short"],
            &["status", "-l", "--json"],
            &["up", "x", "-l"],
        ] {
            assert!(parse_str("svctl", args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn svscan_commands_and_power_names() {
        let inv = parse_str("svctl", &["reboot"]).unwrap();
        assert!(matches!(inv.action, Action::Svscan(b'r')));
        let inv = parse_str("svctl", &["shutdown"]).unwrap();
        assert!(matches!(inv.action, Action::Svscan(b't')));
        let inv = parse_str("reboot", &[]).unwrap();
        assert!(matches!(inv.action, Action::Init(Power::Reboot)));
        assert!(parse_str("poweroff", &["now"]).is_err());
    }

    #[test]
    fn status_without_services_is_allowed() {
        let inv = parse_str("svctl", &["status", "--json"]).unwrap();
        assert!(matches!(inv.action, Action::Status { json: true, .. }));
        assert!(inv.services.is_empty());
    }

    #[test]
    fn status_forms() {
        let form = |args: &[&str]| match parse_str("svctl", args).unwrap().action {
            Action::Status { form, .. } => form,
            other => panic!("{other:?}"),
        };
        assert_eq!(form(&["status", "web"]), Form::Auto);
        assert_eq!(form(&["status", "-l"]), Form::Long);
        assert_eq!(form(&["status", "web", "--long"]), Form::Long);
        assert_eq!(form(&["status", "--short", "web"]), Form::Short);
    }

    #[test]
    fn help_shows_every_command_and_the_exit_codes() {
        let text = help();
        for v in VERBS {
            assert!(text.contains(v.name), "{} missing from --help", v.name);
        }
        assert!(text.contains(crate::outcome::TABLE));
    }
}
