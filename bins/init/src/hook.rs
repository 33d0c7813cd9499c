//! Site hooks: stage 1's boot hook (fsck, `mount -a`, modules) and stage 3's shutdown hook
//! (save the clock, stop a network share). Both run with `/` as cwd and are waited for on the
//! one reaper; a failure is reported and the stage goes on.

use crate::reap::{describe, Reaper, Waited};
use rustix::process::Pid;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `hook ARGS...` if it exists and waits for it, up to `limit` if one is given.
pub fn run(
    hook: &Path,
    args: &[&str],
    path_env: Option<&str>,
    reaper: &Reaper,
    limit: Option<Duration>,
) {
    match std::fs::metadata(hook) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warden::say!("init: warning: unable to run {}: {e}", hook.display());
            return;
        }
    }
    warden::say!("init: running {} {}", hook.display(), args.join(" "));
    let mut command = Command::new(hook);
    command.args(args).current_dir("/");
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warden::say!("init: warning: unable to run {}: {e}", hook.display());
            return;
        }
    };
    // The reaper, not Child::wait, collects it: init reaps in one place.
    let pid = Pid::from_child(&child);
    drop(child);
    let deadline = limit.map(|limit| warden::service::deadline(Instant::now(), limit));
    match reaper.wait_for_until(pid, deadline) {
        Waited::Exited(status) if status.exit_status() == Some(0) => {}
        Waited::Exited(status) => {
            warden::say!(
                "init: warning: {} {}; going on",
                hook.display(),
                describe(status)
            )
        }
        Waited::Vanished => warden::say!("init: warning: lost track of {}", hook.display()),
        Waited::TimedOut => warden::say!(
            "init: warning: {} still running after {:?}: going on",
            hook.display(),
            limit.unwrap_or_default()
        ),
    }
}
