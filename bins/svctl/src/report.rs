//! `svctl status`: one readable line per service, or JSON for machines. Rendering is pure
//! (a snapshot and "now" in, text out) so it is tested without processes.

use crate::goal::Snapshot;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use warden::status::{Exit, RunState, Want};
use warden::svdir::{ClientError, ServiceDir};

/// What `status` knows about one service (and its logger).
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub normally_down: bool,
    pub state: Result<Snapshot, ClientError>,
    pub log: Option<Box<Entry>>,
    /// Its dependencies, if it declares any (issue 14).
    pub deps: Option<crate::graph::DepView>,
}

impl Entry {
    pub fn read(name: &str, dir: &ServiceDir) -> Entry {
        Entry {
            name: name.to_owned(),
            path: dir.path.clone(),
            normally_down: dir.normally_down(),
            state: Snapshot::take(dir),
            log: dir.log().map(|log| Box::new(Entry::read_log(&log))),
            deps: dir.path.parent().and_then(|scandir| {
                crate::graph::DepView::read(scandir, &dir.path, SystemTime::now())
            }),
        }
    }

    fn read_log(dir: &ServiceDir) -> Entry {
        Entry {
            name: "log".to_owned(),
            path: dir.path.clone(),
            normally_down: dir.normally_down(),
            state: Snapshot::take(dir),
            log: None,
            deps: None,
        }
    }

    /// Held by svscan for its dependencies (`held 1` in its extended status).
    pub fn held(&self) -> bool {
        let x = self.state.as_ref().ok().and_then(|s| s.extended.as_ref());
        x.is_some_and(|x| x.held)
    }

    /// LSB: a service is "running" only when `run` runs (the logger does not count).
    pub fn is_up(&self) -> bool {
        self.state.as_ref().is_ok_and(Snapshot::is_up)
    }
}

/// How text is written: escaped for a terminal, coloured or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Control characters in others' text (names, `last_error`, commands, log lines) are
    /// shown as `\xNN`.
    pub terminal: bool,
    /// State words in colour (green up, yellow on the way, red down against its will).
    pub colour: bool,
}

/// Terminal colours, as SGR codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Green,
    Yellow,
    Red,
}

impl Style {
    /// Text as it is: for messages (`say!` escapes them itself) and pipes.
    pub const PLAIN: Style = Style {
        terminal: false,
        colour: false,
    };

    /// For standard output: escaped and coloured on a terminal, colourless with `NO_COLOR`
    /// set to anything but the empty string (no-color.org).
    pub fn for_stdout() -> Style {
        let terminal = warden::diag::is_terminal(std::io::stdout());
        Style {
            terminal,
            colour: colour_wanted(terminal, std::env::var_os("NO_COLOR").as_deref()),
        }
    }

    /// Someone else's text, on one line.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        warden::diag::for_terminal(text, self.terminal, warden::diag::Newlines::Escape)
    }

    /// `word` in `colour`, if colours are on.
    pub fn paint(&self, colour: Option<Colour>, word: &str) -> String {
        match colour.filter(|_| self.colour) {
            Some(c) => {
                let code = match c {
                    Colour::Green => 32,
                    Colour::Yellow => 33,
                    Colour::Red => 31,
                };
                format!("\x1b[{code}m{word}\x1b[0m")
            }
            None => word.to_owned(),
        }
    }
}

/// Colours on a terminal unless `NO_COLOR` is set and not empty.
pub fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.map_or(true, |v| v.is_empty())
}

/// `needs`, `wants`, `after` (each `{name, state}`), `waiting` (what a held service waits for,
/// with `for_secs` for one up but not ready), `cycle` and `problem`: empty lists and nulls for
/// a service without dependency files.
fn deps_json(v: &mut Value, entry: &Entry) {
    use warden::deps::Edge;
    let dep = |d: &crate::graph::Dep| {
        let mut o = json!({ "name": d.name, "state": d.state.key() });
        if let crate::graph::DepState::NotReady { secs } = d.state {
            o["for_secs"] = json!(secs);
        }
        o
    };
    let view = entry.deps.clone().unwrap_or_default();
    for (key, edge) in [
        ("needs", Edge::Needs),
        ("wants", Edge::Wants),
        ("after", Edge::After),
    ] {
        let list: Vec<Value> = view
            .deps
            .iter()
            .filter(|d| d.edge == edge)
            .map(dep)
            .collect();
        v[key] = json!(list);
    }
    let waiting: Vec<Value> = if entry.held() && !entry.is_up() {
        view.waiting().into_iter().map(dep).collect()
    } else {
        Vec::new()
    };
    v["waiting"] = json!(waiting);
    v["cycle"] = json!(view.cycle);
    v["problem"] = json!(view.problem.map(|p| p.to_string()));
}

/// The colour of a state: green when up as wanted (and ready), yellow on the way (starting,
/// not ready, finishing, stopping, paused), red when down against its want or failed
/// (restart-limit); a service down as wanted is left in the terminal's colour.
pub fn state_colour(snap: &Snapshot) -> Option<Colour> {
    let s = &snap.status;
    if is_failed(snap) && s.state == RunState::Down {
        return Some(Colour::Red);
    }
    match s.state {
        RunState::Run
            if s.want == Want::Up && !s.paused && !s.term_sent && snap.ready() != Some(false) =>
        {
            Some(Colour::Green)
        }
        RunState::Run | RunState::Finish => Some(Colour::Yellow),
        RunState::Down if s.want == Want::Up => Some(Colour::Red),
        RunState::Down => None,
    }
}

/// `up`, `down`, `finishing`, or `failed`: down because restart-limit was reached (warden's
/// supervise then stops restarting it until `svctl up`).
pub fn state_word(snap: &Snapshot) -> &'static str {
    match snap.status.state {
        RunState::Run => "up",
        RunState::Down if is_failed(snap) => "failed",
        RunState::Down => "down",
        RunState::Finish => "finishing",
    }
}

/// restart-limit was reached: `failed 1` in `supervise/warden`.
pub fn is_failed(snap: &Snapshot) -> bool {
    snap.extended.as_ref().is_some_and(|x| x.failed)
}

fn want_word(want: Want) -> &'static str {
    match want {
        Want::Up => "up",
        Want::Down | Want::Exit => "down",
    }
}

/// Time spent in the current state, in whole seconds (a clock that went back gives 0).
fn age(snap: &Snapshot, now: SystemTime) -> Duration {
    let since = snap.status.stamp.to_system_time();
    Duration::from_secs(now.duration_since(since).unwrap_or_default().as_secs())
}

fn exit_text(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => c.to_string(),
        Exit::Signal(_) => exit.to_string(),
    }
}

/// Short words for an error, as shown inside a status line (`log: not supervised`).
pub fn error_words(error: &ClientError) -> String {
    match error {
        ClientError::NoSuchService(_) => "no such service".into(),
        ClientError::NotSupervised(_) => "not supervised".into(),
        ClientError::PermissionDenied(_) => "permission denied".into(),
        ClientError::BadStatus(_, e) => format!("unreadable status: {e}"),
        ClientError::Io(p, e) => format!("{}: {e}", p.display()),
    }
}

/// `web: up (pid 1234) 2h 3m 1s, ready, normally up, restarts 2, last exit 1; log: up ...`.
/// The logger's part leaves out what merely repeats the usual (normally up, no restarts).
/// Others' text in it is escaped and the state words coloured as `style` says.
pub fn line(entry: &Entry, now: SystemTime, style: Style) -> String {
    let mut out = format!(
        "{}: {}",
        style.text(&entry.name),
        fields(entry, now, true, style)
    );
    if let Some(log) = &entry.log {
        out.push_str(&format!(
            "; {}: {}",
            style.text(&log.name),
            fields(log, now, false, style)
        ));
    }
    out
}

fn fields(entry: &Entry, now: SystemTime, full: bool, style: Style) -> String {
    let snap = match &entry.state {
        Ok(snap) => snap,
        Err(e) => return style.text(&error_words(e)).into_owned(),
    };
    let s = &snap.status;
    let mut out = style.paint(state_colour(snap), state_word(snap));
    if s.pid != 0 {
        out.push_str(&format!(" (pid {})", s.pid));
    } else if s.state == RunState::Run && snap.is_up() {
        out.push_str(" (oneshot)");
    }
    out.push_str(&format!(" {}", humantime::format_duration(age(snap, now))));
    match snap.ready() {
        Some(true) => out.push_str(", ready"),
        Some(false) if snap.is_up() => out.push_str(", not ready"),
        _ => {}
    }
    let running = s.pid != 0;
    if full || running == entry.normally_down {
        out.push_str(if entry.normally_down {
            ", normally down"
        } else {
            ", normally up"
        });
    }
    if s.paused {
        out.push_str(", paused");
    }
    match (running, s.want) {
        (false, Want::Up) => out.push_str(", want up"),
        (true, Want::Down | Want::Exit) => out.push_str(", want down"),
        _ => {}
    }
    if s.term_sent {
        out.push_str(", got TERM");
    }
    if let Some(x) = &snap.extended {
        if full || x.restarts > 0 {
            out.push_str(&format!(", restarts {}", x.restarts));
        }
        if x.failed && running {
            // Started again by hand (`svctl once`) while the supervisor still counts it failed.
            out.push_str(", failed (restart-limit)");
        } else if x.failed && x.last_error.is_none() {
            // (warden's supervise says why in last_error, shown at the end.)
            out.push_str(", restart-limit reached");
        }
        if let Some(exit) = x.last_exit {
            match &x.last_exit_oom {
                Some(limit) => {
                    let text = warden::status::oom_text(limit);
                    out.push_str(&format!(", last exit {}", style.text(&text)))
                }
                None => out.push_str(&format!(", last exit {}", exit_text(exit))),
            }
        }
        if let Some(at) = x.next_start_at.filter(|_| !running) {
            let wait = at.to_system_time().duration_since(now).unwrap_or_default();
            if !wait.is_zero() {
                let ms = Duration::from_millis(wait.as_millis() as u64);
                out.push_str(&format!(", restart in {}", humantime::format_duration(ms)));
            }
        }
        if x.held && !running {
            let why = entry.deps.as_ref().and_then(|d| d.why_held());
            match why {
                Some(why) => out.push_str(&format!(", {}", style.text(&why))),
                None => out.push_str(", held for its dependencies"),
            }
        }
        if let Some(error) = &x.last_error {
            out.push_str(&format!(", error: {}", style.text(error)));
        }
    }
    out
}

/// The same facts for machines. Absent knowledge is `null`, never a guess.
pub fn json(entry: &Entry, now: SystemTime) -> Value {
    json_of(entry, now, true)
}

/// `service`: a service (with dependencies), not its logger.
fn json_of(entry: &Entry, now: SystemTime, service: bool) -> Value {
    let mut v = json!({
        "name": entry.name,
        "path": entry.path.to_string_lossy(),
        "normally": if entry.normally_down { "down" } else { "up" },
    });
    match &entry.state {
        Err(e) => {
            v["error"] = json!(error_words(e));
            v["code"] = json!(crate::outcome::Outcome::of(e).code());
        }
        Ok(snap) => {
            let s = &snap.status;
            v["supervisor"] = json!(if snap.extended.is_some() {
                "warden"
            } else {
                "runit"
            });
            v["state"] = json!(state_word(snap));
            v["pid"] = if s.pid == 0 {
                Value::Null
            } else {
                json!(s.pid)
            };
            v["since"] = json!(s.stamp.unix_secs());
            v["seconds"] = json!(age(snap, now).as_secs());
            v["ready"] = json!(snap.ready());
            v["paused"] = json!(s.paused);
            v["want"] = json!(want_word(s.want));
            v["term_sent"] = json!(s.term_sent);
            let x = snap.extended.as_ref();
            v["restarts"] = json!(x.map(|x| x.restarts));
            v["last_exit"] = match x.and_then(|x| x.last_exit) {
                Some(Exit::Code(c)) => json!({ "code": c }),
                Some(Exit::Signal(n)) => {
                    json!({ "signal": warden::signal::name(n), "number": n })
                }
                None => Value::Null,
            };
            if let (Some(limit), Some(exit)) = (
                x.and_then(|x| x.last_exit_oom.as_ref()),
                v.get_mut("last_exit").filter(|e| e.is_object()),
            ) {
                exit["oom"] = json!(limit);
                exit["text"] = json!(warden::status::oom_text(limit));
            }
            v["failed"] = json!(x.map(|x| x.failed));
            v["last_error"] = json!(x.and_then(|x| x.last_error.clone()));
            v["held"] = json!(x.map(|x| x.held));
            v["oneshot"] = json!(x.map(|x| x.oneshot));
        }
    }
    if service {
        deps_json(&mut v, entry);
    }
    if let Some(log) = &entry.log {
        v["log"] = json_of(log, now, false);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;
    use warden::status::{Extended, Status};
    use warden::Tai64N;

    const T0: u64 = 1_700_000_000;

    fn entry(name: &str, pid: u32, state: RunState, want: Want) -> Entry {
        Entry {
            name: name.into(),
            path: PathBuf::from("/etc/service").join(name),
            normally_down: false,
            state: Ok(Snapshot {
                status: Status {
                    stamp: Tai64N::from_system_time(UNIX_EPOCH + Duration::from_secs(T0)),
                    pid,
                    paused: false,
                    want,
                    term_sent: false,
                    state,
                },
                extended: None,
                notifies: false,
            }),
            log: None,
            deps: None,
        }
    }

    fn line_plain(entry: &Entry, now: SystemTime) -> String {
        line(entry, now, Style::PLAIN)
    }

    fn now(after: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + after) + Duration::from_millis(300)
    }

    #[test]
    fn the_issue_example() {
        let mut web = entry("web", 1234, RunState::Run, Want::Up);
        if let Ok(snap) = &mut web.state {
            snap.notifies = true;
            snap.extended = Some(Extended {
                restarts: 2,
                last_exit: Some(Exit::Code(1)),
                ready_at: Some(snap.status.stamp),
                ..Extended::default()
            });
        }
        let mut log = entry("log", 1235, RunState::Run, Want::Up);
        if let Ok(snap) = &mut log.state {
            snap.extended = Some(Extended::default());
        }
        web.log = Some(Box::new(log));
        assert_eq!(
            line_plain(&web, now(7381)),
            "web: up (pid 1234) 2h 3m 1s, ready, normally up, restarts 2, last exit 1; \
             log: up (pid 1235) 2h 3m 1s"
        );
    }

    #[test]
    fn runsv_down_service_wanting_up() {
        let web = entry("web", 0, RunState::Down, Want::Up);
        assert_eq!(
            line_plain(&web, now(5)),
            "web: down 5s, normally up, want up"
        );
    }

    #[test]
    fn stopping_paused_normally_down_service() {
        let mut web = entry("web", 9, RunState::Run, Want::Down);
        web.normally_down = true;
        if let Ok(snap) = &mut web.state {
            snap.status.paused = true;
            snap.status.term_sent = true;
            snap.extended = Some(Extended {
                last_exit: Some(Exit::Signal(9)),
                ..Extended::default()
            });
        }
        assert_eq!(
            line_plain(&web, now(0)),
            "web: up (pid 9) 0s, normally down, paused, want down, got TERM, restarts 0, \
             last exit signal KILL"
        );
    }

    #[test]
    fn log_errors_and_unusual_log_states_show() {
        let mut web = entry("web", 0, RunState::Down, Want::Down);
        web.log = Some(Box::new(Entry {
            state: Err(ClientError::NotSupervised("/x/log".into())),
            ..entry("log", 0, RunState::Down, Want::Down)
        }));
        assert_eq!(
            line_plain(&web, now(1)),
            "web: down 1s, normally up; log: not supervised"
        );
        let down_log = entry("log", 0, RunState::Down, Want::Up);
        web.log = Some(Box::new(down_log));
        assert_eq!(
            line_plain(&web, now(1)),
            "web: down 1s, normally up; log: down 1s, normally up, want up"
        );
    }

    #[test]
    fn throttled_restart_and_start_error() {
        let mut web = entry("web", 0, RunState::Down, Want::Up);
        if let Ok(snap) = &mut web.state {
            snap.extended = Some(Extended {
                restarts: 4,
                next_start_at: Some(Tai64N::from_system_time(now(2))),
                last_error: Some("unable to exec ./run: Permission denied".into()),
                ..Extended::default()
            });
        }
        assert_eq!(
            line_plain(&web, now(1)),
            "web: down 1s, normally up, want up, restarts 4, restart in 1s, \
             error: unable to exec ./run: Permission denied"
        );
    }

    #[test]
    fn issue_17_oom_kill_and_failed_show() {
        let mut web = entry("web", 0, RunState::Down, Want::Down);
        if let Ok(snap) = &mut web.state {
            snap.extended = Some(Extended {
                last_exit: Some(Exit::Signal(9)),
                last_exit_oom: Some("memory.max 64M".into()),
                failed: true,
                ..Extended::default()
            });
        }
        assert_eq!(
            line_plain(&web, now(2)),
            "web: failed 2s, normally up, restarts 0, restart-limit reached, \
             last exit killed by the OOM killer (memory.max 64M)"
        );
        let coloured = Style {
            terminal: true,
            colour: true,
        };
        assert!(line(&web, now(2), coloured).starts_with("web: \x1b[31mfailed\x1b[0m 2s"));
        if let Ok(Some(x)) = web.state.as_mut().map(|s| s.extended.as_mut()) {
            x.last_exit_oom = Some("memory.max \x1b[2J".into());
        }
        assert!(line(&web, now(2), coloured).ends_with("(memory.max \\x1b[2J)"));
        if let Ok(Some(x)) = web.state.as_mut().map(|s| s.extended.as_mut()) {
            x.last_exit_oom = Some("memory.max 64M".into());
        }
        let v = json(&web, now(2));
        assert_eq!(v["state"], "failed");
        assert_eq!(v["failed"], true);
        assert_eq!(v["last_exit"]["signal"], "KILL");
        assert_eq!(v["last_exit"]["oom"], "memory.max 64M");
        assert_eq!(
            v["last_exit"]["text"],
            "killed by the OOM killer (memory.max 64M)"
        );
    }

    #[test]
    fn json_has_every_field_and_escapes() {
        let mut web = entry("we\"b\n", 77, RunState::Run, Want::Up);
        if let Ok(snap) = &mut web.state {
            snap.extended = Some(Extended {
                restarts: 1,
                last_exit: Some(Exit::Signal(15)),
                ..Extended::default()
            });
        }
        web.log = Some(Box::new(Entry {
            state: Err(ClientError::NotSupervised("/x/log".into())),
            ..entry("log", 0, RunState::Down, Want::Down)
        }));
        let text = json(&web, now(3)).to_string();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "we\"b\n");
        assert_eq!(v["state"], "up");
        assert_eq!(v["pid"], 77);
        assert_eq!(v["seconds"], 3);
        assert_eq!(v["since"], T0);
        assert_eq!(v["supervisor"], "warden");
        assert_eq!(v["ready"], Value::Null);
        assert_eq!(v["restarts"], 1);
        assert_eq!(v["last_exit"]["signal"], "TERM");
        assert_eq!(v["want"], "up");
        assert_eq!(v["normally"], "up");
        assert_eq!(v["log"]["error"], "not supervised");
        assert_eq!(v["log"]["code"], 4);
    }

    #[test]
    fn colours_follow_state_and_want_and_no_color() {
        let colour = |state, want, f: &dyn Fn(&mut Snapshot)| {
            let mut e = entry("web", 1, state, want);
            if let Ok(snap) = &mut e.state {
                f(snap);
                state_colour(snap)
            } else {
                unreachable!()
            }
        };
        let none = |_: &mut Snapshot| {};
        assert_eq!(colour(RunState::Run, Want::Up, &none), Some(Colour::Green));
        assert_eq!(
            colour(RunState::Run, Want::Down, &none),
            Some(Colour::Yellow)
        );
        assert_eq!(
            colour(RunState::Finish, Want::Up, &none),
            Some(Colour::Yellow)
        );
        assert_eq!(colour(RunState::Down, Want::Up, &none), Some(Colour::Red));
        assert_eq!(colour(RunState::Down, Want::Down, &none), None);
        let unready = |s: &mut Snapshot| {
            s.notifies = true;
            s.extended = Some(Extended::default());
        };
        assert_eq!(
            colour(RunState::Run, Want::Up, &unready),
            Some(Colour::Yellow)
        );

        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".as_ref())));
        assert!(!colour_wanted(true, Some("1".as_ref())));
        assert!(!colour_wanted(false, None));
    }

    #[test]
    fn coloured_line_escapes_the_name_but_not_its_own_colour() {
        let web = entry("we\x1b]0;x\x07b", 5, RunState::Run, Want::Up);
        let style = Style {
            terminal: true,
            colour: true,
        };
        assert_eq!(
            line(&web, now(1), style),
            "we\\x1b]0;x\\x07b: \x1b[32mup\x1b[0m (pid 5) 1s, normally up"
        );
        let down = entry("db", 0, RunState::Down, Want::Up);
        assert!(line(&down, now(1), style).starts_with("db: \x1b[31mdown\x1b[0m 1s"));
    }
}
