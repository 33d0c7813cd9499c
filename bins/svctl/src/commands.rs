//! The service commands: send, wait, check, status. Each service is processed even when an
//! earlier one failed; the worst outcome is the exit code.

use crate::cli::{Form, Invocation, Verb};
use crate::goal::Goal;
use crate::outcome::{report, Outcome};
use crate::report::Entry;
use crate::wait::{holds_now, wait_for, wait_supervised, Waited};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use warden::svdir::{resolve, ClientError, Liveness, ServiceDir};
use warden::Tai64N;

/// How long a single `./check` may run for `check` without `-w` (sv's default wait).
const CHECK_ALONE: Duration = Duration::from_secs(7);

fn services(inv: &Invocation) -> impl Iterator<Item = (&str, ServiceDir)> {
    inv.services
        .iter()
        .map(|name| (name.as_str(), resolve(&inv.scandir, name)))
}

/// Sends the verb's bytes to every service, then, with `-w`, waits for each in turn against
/// one common deadline.
pub fn control(inv: &Invocation, verb: Verb) -> Outcome {
    let since = Tai64N::now();
    let deadline = inv
        .wait
        .map(|wait| warden::service::deadline(Instant::now(), wait));
    let mut worst = Outcome::Success;
    let mut targets: Vec<(String, ServiceDir)> = services(inv)
        .map(|(name, dir)| (name.to_owned(), dir))
        .collect();
    match verb.name {
        "up" => targets.extend(pulled_in(inv)),
        // Each stops the service: what needs it stops first, as at shutdown.
        "down" | "restart" | "exit" => worst = worst.max(hold_dependents(inv, deadline)),
        _ => {}
    }
    let mut sent = Vec::new();
    for (name, dir) in &targets {
        let (name, dir) = (name.as_str(), dir.clone());
        let result = match deadline {
            // Just dropped into the scan directory: with -w, give its supervisor the time to
            // start, rather than fail a script that did `cp -r svc /service/ && svctl -w up`.
            // A supervisor opens `control` before `ok`, so a send can get through while the
            // wait, which needs `ok`, would still find it "not running": wait for `ok` first.
            Some(deadline) if verb.goal.is_some_and(|goal| goal != Goal::Gone) => {
                match dir.liveness() {
                    Ok(Liveness::Running) => dir.send(verb.bytes),
                    Ok(_) => match wait_supervised(&dir, deadline) {
                        Ok(true) => dir.send(verb.bytes),
                        Ok(false) => Err(ClientError::NotSupervised(dir.path.clone())),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
            _ => dir.send(verb.bytes),
        };
        match result {
            Ok(()) => sent.push((name, dir)),
            Err(e) => worst = worst.max(report("control", &e)),
        }
    }
    if let (Some(wait), Some(goal), Some(deadline)) = (inv.wait, verb.goal, deadline) {
        // What `up` pulled in (after the named ones) first: a dependency that fails for
        // good is then known when its dependents are looked at, which end at once too.
        if verb.name == "up" {
            sent.reverse();
        }
        for (name, dir) in sent {
            worst = worst.max(wait_one(name, &dir, goal, since, deadline, wait));
        }
    }
    worst
}

/// What `up` of the named services also brings up: their needs and wants, transitively,
/// those that exist (a missing one is said, and does not fail the others).
fn pulled_in(inv: &Invocation) -> Vec<(String, ServiceDir)> {
    let named: Vec<String> = inv.services.clone();
    let scandir = inv.scandir.clone();
    let pulled = crate::graph::closure(&named, |n| {
        let dir = resolve(&scandir, n);
        let Some(deps) = warden::deps::read(&dir.path).ok() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dep in deps.pulled_in() {
            if scandir.join(dep).is_dir() {
                out.push(dep.to_owned());
            } else {
                warden::say!("svctl: warning: {n} depends on {dep}: no such service");
            }
        }
        out
    });
    pulled
        .into_iter()
        .map(|n| {
            let dir = ServiceDir::new(inv.scandir.join(&n));
            (n, dir)
        })
        .collect()
}

/// How long `down` waits for a dependent it holds, without `-w`: its `timeout-kill` (or
/// this) and a margin.
const DEPENDENT_STOP: Duration = Duration::from_secs(10);
const DEPENDENT_MARGIN: Duration = Duration::from_secs(2);

/// Before `down`, `restart` or `exit` of the named services: the running services that need
/// them (transitively, read from every service of the scan directory) are held (`H`:
/// stopped, still wanted up, started again by svscan once what they need is ready), the
/// farthest first, each waited for until it is down.
fn hold_dependents(inv: &Invocation, deadline: Option<Instant>) -> Outcome {
    let Ok(all) = scan(&inv.scandir) else {
        return Outcome::Success;
    };
    let mut needs = std::collections::BTreeMap::new();
    for (name, dir) in &all {
        if let Some(deps) = warden::deps::declares_any(&dir.path)
            .then(|| warden::deps::read(&dir.path).ok())
            .flatten()
        {
            needs.insert(name.clone(), deps.needs.into_iter().collect::<Vec<_>>());
        }
    }
    if needs.is_empty() {
        return Outcome::Success;
    }
    let mut order: Vec<String> = Vec::new();
    for target in &inv.services {
        for d in crate::graph::needing(target, &needs) {
            if !order.contains(&d) && !inv.services.contains(&d) {
                order.push(d);
            }
        }
    }
    let mut worst = Outcome::Success;
    let since = Tai64N::now();
    for name in order {
        let dir = ServiceDir::new(inv.scandir.join(&name));
        let up = crate::goal::Snapshot::take(&dir).is_ok_and(|s| !s.is_down());
        if !up {
            continue;
        }
        if let Err(e) = dir.send(&[warden::control::Command::Hold.byte()]) {
            worst = worst.max(report("hold", &e));
            continue;
        }
        let grace = warden::service::Settings::read(&dir.path)
            .0
            .timeout_kill
            .unwrap_or(DEPENDENT_STOP)
            .saturating_add(DEPENDENT_MARGIN);
        let until = deadline.unwrap_or_else(|| warden::service::deadline(Instant::now(), grace));
        let wait = until.saturating_duration_since(Instant::now());
        worst = worst.max(wait_one(&name, &dir, Goal::Down, since, until, wait));
    }
    worst
}

/// `deps`: the graph under each named service.
pub fn deps(inv: &Invocation) -> Outcome {
    let now = SystemTime::now();
    let style = crate::report::Style::for_stdout();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut worst = Outcome::Success;
    for (name, dir) in services(inv) {
        let scandir = dir.path.parent().unwrap_or(&inv.scandir).to_path_buf();
        let root_state = match crate::goal::Snapshot::take(&dir) {
            Err(e) => {
                worst = worst.max(report("get status of", &e));
                crate::report::error_words(&e)
            }
            Ok(snap) => crate::graph::from_snapshot(&snap, now).words(),
        };
        if let Err(problem) = warden::deps::read(&dir.path) {
            warden::say!("svctl: warning: {name}: {problem}");
        }
        let text = crate::graph::render_tree(
            name,
            &root_state,
            |n| crate::graph::edges_of(&scandir, n),
            |n| crate::graph::state_of(&scandir, n, now).words(),
        );
        for line in text.lines() {
            if let Err(stop) = emit(&mut out, style.text(line).as_ref()) {
                return worst.max(stop);
            }
        }
    }
    match out.flush() {
        Ok(()) => worst,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => worst,
        Err(_) => worst.max(Outcome::System),
    }
}

/// `check`: no command, only whether each service is in the state it wants.
pub fn check(inv: &Invocation) -> Outcome {
    let since = Tai64N::now();
    let start = Instant::now();
    let mut worst = Outcome::Success;
    for (name, dir) in services(inv) {
        let outcome = match inv.wait {
            Some(wait) => wait_one(name, &dir, Goal::Wanted, since, start + wait, wait),
            None => match holds_now(&dir, Goal::Wanted, since, Instant::now() + CHECK_ALONE) {
                Ok(true) => Outcome::Success,
                Ok(false) => {
                    warden::say!(
                        "svctl: warning: {name} is not {}: {}",
                        Goal::Wanted.describe(),
                        status_text(name, &dir)
                    );
                    Outcome::NotUp
                }
                Err(e) => report("check", &e),
            },
        };
        worst = worst.max(outcome);
    }
    worst
}

fn wait_one(
    name: &str,
    dir: &ServiceDir,
    goal: Goal,
    since: Tai64N,
    deadline: Instant,
    wait: Duration,
) -> Outcome {
    match wait_for(dir, goal, since, deadline) {
        Ok(Waited::Reached) => Outcome::Success,
        Ok(Waited::Failed(why)) => {
            warden::say!(
                "svctl: fatal: {name} will not be {}: {why}",
                goal.describe()
            );
            Outcome::NotUp
        }
        Ok(Waited::TimedOut) => {
            warden::say!(
                "svctl: fatal: timed out after {} waiting for {name} to be {}: {}",
                humantime::format_duration(wait),
                goal.describe(),
                status_text(name, dir)
            );
            Outcome::Timeout
        }
        Err(e) => report("wait for", &e),
    }
}

fn status_text(name: &str, dir: &ServiceDir) -> String {
    crate::report::line(
        &Entry::read(name, dir),
        SystemTime::now(),
        crate::report::Style::PLAIN,
    )
}

/// `status`: the named services, or every service of the scan directory.
/// One named service is shown at length (as `systemctl status`), several one line each,
/// unless `form` says otherwise.
pub fn status(inv: &Invocation, json: bool, form: Form) -> Outcome {
    let mut worst = Outcome::Success;
    let targets: Vec<(String, ServiceDir)> = if inv.services.is_empty() {
        match scan(&inv.scandir) {
            Ok(list) => list,
            Err(outcome) => return outcome,
        }
    } else {
        services(inv)
            .map(|(name, dir)| (name.to_owned(), dir))
            .collect()
    };
    let long = match form {
        Form::Long => true,
        Form::Short => false,
        Form::Auto => inv.services.len() == 1,
    };
    let now = SystemTime::now();
    let mut values = Vec::new();
    // Names and last_error are anyone's text: on a terminal their control characters are
    // shown escaped, and a newline in them cannot start a line of its own. Colours only
    // there too, and not with NO_COLOR.
    let style = crate::report::Style::for_stdout();
    // Buffered: stdout is line-buffered, and a write per line was a tenth of the cost of
    // `svctl status` for 10,000 services.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut first = true;
    for (name, dir) in &targets {
        let entry = Entry::read(name, dir);
        match &entry.state {
            Err(e) => worst = worst.max(report("get status of", e)),
            Ok(_) if !entry.is_up() => worst = worst.max(Outcome::NotUp),
            Ok(_) => {}
        }
        if json {
            values.push(crate::report::json(&entry, now));
        } else if entry.state.is_ok() {
            let text = if long {
                let detail = crate::detail::Detail::gather(&entry, dir);
                let text = crate::detail::render(&entry, &detail, now, style);
                // A blank line between services, none after the last.
                let gap = if first { "" } else { "\n" };
                format!("{gap}{}", text.trim_end_matches('\n'))
            } else {
                crate::report::line(&entry, now, style)
            };
            first = false;
            if let Err(stop) = emit(&mut out, &text) {
                return worst.max(stop);
            }
        }
    }
    if json {
        if let Err(stop) = emit(&mut out, &serde_json::Value::Array(values).to_string()) {
            return worst.max(stop);
        }
    }
    match out.flush() {
        Ok(()) => worst,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => worst,
        Err(e) => {
            warden::say!("svctl: fatal: unable to write to standard output: {e}");
            worst.max(Outcome::System)
        }
    }
}

/// The directory of the service's cgroup, from the name its supervisor recorded (warden's
/// supervise only; runsv keeps none), under this system's cgroup2 mount.
pub fn cgroup_dir(entry: &Entry) -> Option<std::path::PathBuf> {
    let name = entry
        .state
        .as_ref()
        .ok()?
        .extended
        .as_ref()?
        .cgroup
        .clone()?;
    let dir = warden::cgroupfs::dir(&warden::cgroupfs::mount()?, &name);
    dir.is_dir().then_some(dir)
}

/// The named services, or every service of the scan directory.
fn targets(inv: &Invocation) -> Result<Vec<(String, ServiceDir)>, Outcome> {
    if inv.services.is_empty() {
        scan(&inv.scandir)
    } else {
        Ok(services(inv)
            .map(|(name, dir)| (name.to_owned(), dir))
            .collect())
    }
}

/// `metrics`: the Prometheus text format of every (or each named) service and its logger
/// (`NAME/log`). A service without a supervisor is there with `warden_service_supervised 0`,
/// so an alert can tell "down" from "not supervised"; the exit code stays 0 for it.
pub fn metrics(inv: &Invocation) -> Outcome {
    let targets = match targets(inv) {
        Ok(list) => list,
        Err(outcome) => return outcome,
    };
    let mut entries = Vec::new();
    for (name, dir) in &targets {
        let mut entry = Entry::read(name, dir);
        if let Some(mut log) = entry.log.take() {
            log.name = format!("{name}/log");
            entries.push(entry);
            entries.push(*log);
        } else {
            entries.push(entry);
        }
    }
    let samples: Vec<crate::metrics::Sample> = entries
        .iter()
        .map(|entry| {
            let dir = cgroup_dir(entry);
            let usage = dir.as_deref().map(warden::cgroupfs::Usage::read);
            let rss = match (&dir, &usage) {
                (Some(dir), Some(u)) if u.memory_current.is_none() => {
                    let pids = warden::cgroupfs::procs_below(dir).unwrap_or_default();
                    crate::procs::read_all(&pids)
                        .iter()
                        .filter_map(|p| p.rss)
                        .reduce(u64::saturating_add)
                }
                _ => None,
            };
            crate::metrics::Sample { entry, usage, rss }
        })
        .collect();
    let text = crate::metrics::render(&samples, SystemTime::now());
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Outcome::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
        Err(e) => {
            eprintln!("svctl: fatal: unable to write to standard output: {e}");
            Outcome::System
        }
    }
}

/// Writes one line of output. A reader that went away (`svctl status | head -1`) ends the
/// output quietly; any other write error is a system error.
fn emit(out: &mut impl Write, line: &str) -> Result<(), Outcome> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Outcome::Success),
        Err(e) => {
            warden::say!("svctl: fatal: unable to write to standard output: {e}");
            Err(Outcome::System)
        }
    }
}

/// Every service of the scan directory, sorted: dot-names and non-directories skipped.
fn scan(scandir: &Path) -> Result<Vec<(String, ServiceDir)>, Outcome> {
    let fail = |e: std::io::Error| {
        warden::say!("svctl: fatal: unable to read {}: {e}", scandir.display());
        match e.kind() {
            std::io::ErrorKind::NotFound => Outcome::NoSuchService,
            std::io::ErrorKind::PermissionDenied => Outcome::PermissionDenied,
            _ => Outcome::System,
        }
    };
    let mut list = Vec::new();
    for entry in std::fs::read_dir(scandir).map_err(fail)? {
        let name = entry.map_err(fail)?.file_name();
        if !warden::service::is_service_name(&name) {
            continue;
        }
        let path = scandir.join(&name);
        if path.is_dir() {
            list.push((name.to_string_lossy().into_owned(), ServiceDir::new(path)));
        }
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(list)
}
