//! Stage 3: svscan has stopped the services and drained the loggers, then exec'd
//! `init --stage3 ACTION` as process 1. Stop whatever is left, sync, unmount, reboot(2).

use crate::config::Config;
use crate::mounts::{self, Unmounted};
use crate::reap::Reaper;
use crate::{emergency, hook, stage1};
use rustix::process::{getpid, kill_process_group, Pid, Signal};
use rustix::system::{reboot, RebootCommand};
use std::time::{Duration, Instant};
use warden::service::deadline;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Poweroff,
    Reboot,
    Halt,
}

impl Action {
    pub fn parse(word: &str) -> Option<Action> {
        match word {
            "poweroff" => Some(Action::Poweroff),
            "reboot" => Some(Action::Reboot),
            "halt" => Some(Action::Halt),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Poweroff => "poweroff",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
        }
    }

    fn command(self) -> RebootCommand {
        match self {
            Action::Poweroff => RebootCommand::PowerOff,
            Action::Reboot => RebootCommand::Restart,
            Action::Halt => RebootCommand::Halt,
        }
    }
}

/// How long the KILLed may take to be reaped (a process in D state may never go).
const KILL_GRACE: Duration = Duration::from_secs(2);

pub fn run(action: Action) -> u8 {
    if getpid() != Pid::INIT {
        warden::say!(
            "init: fatal: --stage3 must run as process 1 (svscan execs it at shutdown; \
             to shut down use `svctl {}` or `{}`)",
            action.name(),
            action.name()
        );
        return 100;
    }
    // Point of no return: from here every error is a warning and the machine goes down
    // whatever happens on the way.
    let container = stage1::probe_container();
    emergency::install_panic_hook(container);
    let cmdline = if container {
        None
    } else {
        std::fs::read_to_string("/proc/cmdline").ok()
    };
    let config = Config::load(cmdline.as_deref());
    warden::say!("init: stage 3: {}", action.name());
    let reaper = Reaper::new(&[]);
    // Bounded by the grace: services are already gone, the machine must go down.
    hook::run(
        &config.shutdown_hook,
        &[action.name()],
        None,
        &reaper,
        Some(config.grace),
    );
    let all_stopped = stop_everything(&reaper, config.grace);
    if container {
        // The container's filesystems and its end belong to the runtime: exit and let it see.
        warden::say!("init: container stopped ({})", action.name());
        // svscan passes the status of a `container-exit` service that ended the tree: the
        // container ends with it, whatever the sweep found.
        let passed = std::env::var("WARDEN_EXIT_STATUS")
            .ok()
            .and_then(|s| s.parse::<u8>().ok());
        return passed.unwrap_or(if all_stopped { 0 } else { 1 });
    }
    rustix::fs::sync();
    unmount_everything();
    rustix::fs::sync();
    warden::say!("init: {}", action.name());
    let err = match reboot(action.command()) {
        Ok(()) => "reboot(2) returned".to_string(),
        Err(e) => e.to_string(),
    };
    emergency::shell(container, &format!("unable to {}: {err}", action.name()))
}

/// TERM and CONT to every process, reap until none is left or the grace ends, then KILL what
/// is left. Only process 1 gets here (kill(-1) from anywhere else would hit the whole
/// machine). Returns whether everything went within the grace.
fn stop_everything(reaper: &Reaper, grace: Duration) -> bool {
    let started = Instant::now();
    signal_all(Signal::TERM);
    signal_all(Signal::CONT);
    if reaper.wait_all_gone(warden::service::deadline(started, grace)) {
        warden::say!(
            "init: every process exited after TERM ({} ms)",
            started.elapsed().as_millis()
        );
        return true;
    }
    warden::say!(
        "init: warning: processes still alive after {} ms: sending KILL",
        grace.as_millis()
    );
    signal_all(Signal::KILL);
    if !reaper.wait_all_gone(deadline(Instant::now(), KILL_GRACE)) {
        warden::say!("init: warning: processes survived KILL (stuck in the kernel?): going on");
    }
    false
}

fn signal_all(sig: Signal) {
    if getpid() != Pid::INIT {
        return;
    }
    match kill_process_group(Pid::INIT, sig) {
        // ESRCH: nobody left to signal.
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => warden::say!(
            "init: warning: unable to send {} to every process: {e}",
            warden::signal::name_or_number(sig.as_raw())
        ),
    }
}

fn unmount_everything() {
    let table = match mounts::read_mountinfo() {
        Ok(table) => table,
        Err(e) => {
            warden::say!("init: warning: unable to read /proc/self/mountinfo: {e}; remounting / read-only only");
            Vec::new()
        }
    };
    let mut unmounted = Vec::new();
    let mut trouble = 0;
    for (path, outcome) in mounts::unmount_all(&table) {
        match outcome {
            Unmounted::Done => unmounted.push(path),
            Unmounted::Detached { read_only } if path != "/" => {
                trouble += 1;
                warden::say!(
                    "init: warning: {path} busy: {}detached lazily",
                    if read_only {
                        "remounted read-only, "
                    } else {
                        ""
                    }
                )
            }
            Unmounted::Detached { .. } => {}
            // The initramfs root cannot be remounted read-only, and need not be.
            Unmounted::Failed(_) if path == "/" => {}
            Unmounted::Failed(e) => {
                trouble += 1;
                warden::say!("init: warning: unable to unmount {path}: {e}")
            }
        }
    }
    warden::say!("init: unmounted {}", unmounted.join(" "));
    if trouble == 0 {
        warden::say!("init: every filesystem unmounted");
    }
}
