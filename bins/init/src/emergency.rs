//! What process 1 does when it cannot go on: never exit (the kernel would panic), but put a
//! shell on the console so a human can look. In a container, or when not process 1, exiting is
//! the right thing: the runtime sees the status.

use crate::reap::{describe, Reaper};
use std::process::Command;
use std::time::{Duration, Instant};

pub const SHELL: &str = "/bin/sh";

/// Whether a fatal error may simply exit: not process 1, or process 1 of a container.
fn may_exit(container: bool) -> bool {
    rustix::process::getpid() != rustix::process::Pid::INIT || container
}

/// Installs a panic hook that reports the panic and goes to [`shell`]; with panic=abort the
/// process would otherwise die, and process 1 dying panics the kernel.
pub fn install_panic_hook(container: bool) {
    std::panic::set_hook(Box::new(move |info| {
        warden::say!("init: fatal: internal error: {info}");
        shell(container, "init panicked")
    }));
}

/// Reports `reason` and runs an emergency shell on the console, again each time it exits;
/// never returns when process 1 of a machine. Elsewhere it exits 111.
pub fn shell(container: bool, reason: &str) -> ! {
    if may_exit(container) {
        warden::say!("init: fatal: {reason}");
        std::process::exit(111);
    }
    warden::say!(
        "init: fatal: {reason}: starting an emergency shell ({SHELL}); \
         leave with `reboot -f` or `poweroff -f`"
    );
    let reaper = Reaper::new(&[]);
    loop {
        let started = Instant::now();
        match Command::new(SHELL).env("PS1", "(emergency) # ").spawn() {
            Ok(child) => {
                let pid = rustix::process::Pid::from_child(&child);
                // The Child handle is dropped without waiting: the reaper owns every exit.
                drop(child);
                match reaper.wait_for(pid) {
                    Some(status) => {
                        warden::say!(
                            "init: emergency shell {}; starting another",
                            describe(status)
                        )
                    }
                    None => warden::say!("init: emergency shell vanished; starting another"),
                }
            }
            Err(e) => {
                warden::say!(
                    "init: fatal: unable to start {SHELL}: {e}; nothing left to do but reap"
                );
                loop {
                    reaper.reap();
                    reaper.wait(None);
                }
            }
        }
        // A shell that dies at once (broken terminal) must not spin: a 1 s pause, as runsv.
        let next = started + Duration::from_secs(1);
        while Instant::now() < next {
            reaper.reap();
            reaper.wait(Some(next));
        }
    }
}
