//! `init -- CMD`: a container's entry point, as tini and catatonit are. Runs CMD, forwards
//! the signals a runtime sends to it, reaps every orphan, and when CMD exits stops what is
//! left and exits with CMD's status. Not process 1: it becomes a child subreaper, so the
//! orphans of CMD come to it instead.

use crate::config::Config;
use crate::reap::{describe, exit_code, Reaper};
use rustix::process::{getpid, kill_process, kill_process_group, Pid, Signal};
use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

/// Forwarded to CMD, as tini does; CHLD is init's own.
const FORWARDED: &[Signal] = &[
    Signal::TERM,
    Signal::INT,
    Signal::HUP,
    Signal::QUIT,
    Signal::USR1,
    Signal::USR2,
    Signal::WINCH,
    Signal::ALARM,
];

pub fn run(cmd: &[OsString]) -> u8 {
    let Some((program_word, args)) = cmd.split_first() else {
        return 100;
    };
    let program = crate::shown(program_word);
    let is_init = getpid() == Pid::INIT;
    if !is_init {
        if let Err(e) = rustix::process::set_child_subreaper(Some(getpid())) {
            warden::say!("init: warning: unable to become a child subreaper: {e}; orphans will not be reaped");
        }
    }
    let config = Config::load(None);
    let reaper = Reaper::new(FORWARDED);
    let child = match Command::new(program_word).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            warden::say!("init: fatal: unable to run {program}: {e}");
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return code;
        }
    };
    let main = Pid::from_child(&child);
    drop(child);
    let status = loop {
        let reaped = reaper.reap();
        if let Some((_, status)) = reaped.exited.iter().find(|(p, _)| *p == main) {
            break Some(*status);
        }
        if reaped.none_left {
            break None;
        }
        for sig in reaper.wait(None) {
            if let Err(e) = kill_process(main, sig) {
                warden::say!(
                    "init: warning: unable to forward {} to {program}: {e}",
                    warden::signal::name_or_number(sig.as_raw())
                );
            }
        }
    };
    let code = match status {
        Some(status) => {
            if status.exit_status() != Some(0) {
                warden::say!("init: {program} {}", describe(status));
            }
            exit_code(status)
        }
        None => 111,
    };
    stop_the_rest(&reaper, is_init, config.grace);
    code
}

/// TERM + CONT to what CMD left behind, KILL after the grace. As process 1 that is every
/// process of the namespace; as a subreaper only its own children (kill(-1) would reach every
/// process of the user).
fn stop_the_rest(reaper: &Reaper, is_init: bool, grace: Duration) {
    if reaper.reap().none_left {
        return;
    }
    for sig in [Signal::TERM, Signal::CONT] {
        signal_rest(is_init, sig);
    }
    if reaper.wait_all_gone(warden::service::deadline(Instant::now(), grace)) {
        return;
    }
    warden::say!(
        "init: warning: processes left after {} ms: sending KILL",
        grace.as_millis()
    );
    signal_rest(is_init, Signal::KILL);
    if !reaper.wait_all_gone(Instant::now() + Duration::from_secs(2)) {
        warden::say!(
            "init: warning: processes survived KILL (stuck in the kernel?): exiting anyway"
        );
    }
}

fn signal_rest(is_init: bool, sig: Signal) {
    let report = |result: rustix::io::Result<()>| match result {
        // ESRCH: it is gone already, which is the point.
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => warden::say!(
            "init: warning: unable to send {} to what is left: {e}",
            warden::signal::name_or_number(sig.as_raw())
        ),
    };
    if is_init {
        report(kill_process_group(Pid::INIT, sig));
        return;
    }
    for pid in own_children() {
        report(kill_process(pid, sig));
    }
}

/// The children of this process, from /proc (a subreaper's orphans included).
fn own_children() -> Vec<Pid> {
    let me = getpid().as_raw_nonzero().get();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(") ")?;
        let ppid: i32 = rest.split(' ').nth(1)?.parse().ok()?;
        (ppid == me).then(|| Pid::from_raw(pid)).flatten()
    })
    .collect()
}
