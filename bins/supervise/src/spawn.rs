//! Starting `./run` and `./finish`: each in a new session (so a process group of its own), with
//! the supervisor's stdin, stdout and stderr, `env/` applied, the run in the service's cgroup and
//! the write end of the readiness pipe at the `notification-fd` number.

use rustix::pipe::PipeFlags;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use warden::service::{read_envdir, EnvVar};
use warden::status::Exit;

/// A started `./run`.
pub struct Started {
    pub pid: u32,
    /// Read end of the readiness pipe, when the service has a `notification-fd`.
    pub notify: Option<OwnedFd>,
}

/// Starts `./run`; the error names the file and the cause.
pub fn run(
    service: &Path,
    join_cgroup: Option<RawFd>,
    notification_fd: Option<i32>,
) -> Result<Started, String> {
    let shown = || format!("./run in {}", service.display());
    match std::fs::metadata("run") {
        Ok(meta) if meta.is_dir() => {
            return Err(format!("unable to start {}: it is a directory", shown()))
        }
        _ => {}
    }
    let env = read_envdir(Path::new(warden::service::ENV)).map_err(|e| {
        format!(
            "unable to read {}: {}",
            service.join(&e.file).display(),
            e.cause
        )
    })?;
    let notify = match notification_fd {
        Some(target) => {
            let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
                .map_err(|e| {
                format!(
                    "unable to create the notification pipe for {}: {}",
                    shown(),
                    crate::cause_errno(e)
                )
            })?;
            Some((read, write, target))
        }
        None => None,
    };
    let mut command = Command::new("./run");
    apply_env(&mut command, &env);
    let child_notify = notify
        .as_ref()
        .map(|(_, write, target)| (std::os::fd::AsRawFd::as_raw_fd(write), *target));
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe syscalls (setsid, write, dup2, fcntl) on fds that stay open until exec.
    unsafe {
        command.pre_exec(move || {
            rustix::process::setsid()?;
            if let Some(procs) = join_cgroup {
                // Writing 0 moves the writer; failure leaves the run in the process group only.
                let _ = rustix::io::write(BorrowedFd::borrow_raw(procs), b"0");
            }
            if let Some((write, target)) = child_notify {
                put_at(write, target)?;
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("unable to start {}: {}", shown(), crate::cause(&e)))?;
    Ok(Started {
        pid: child.id(),
        notify: notify.map(|(read, _, _)| read),
    })
}

/// Starts `./finish EXITCODE SIGNAL` (runit's arguments).
pub fn finish(service: &Path, exit: Exit) -> Result<u32, String> {
    let (code, signal) = exit.finish_args();
    let env = read_envdir(Path::new(warden::service::ENV)).unwrap_or_default();
    let mut command = Command::new("./finish");
    command.arg(code.to_string()).arg(signal.to_string());
    apply_env(&mut command, &env);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    command.spawn().map(|child| child.id()).map_err(|e| {
        format!(
            "unable to start ./finish in {}: {}",
            service.display(),
            crate::cause(&e)
        )
    })
}

fn apply_env(command: &mut Command, env: &[EnvVar]) {
    for var in env {
        match var {
            EnvVar::Set(name, value) => command.env(name, value),
            EnvVar::Unset(name) => command.env_remove(name),
        };
    }
}

/// Puts `fd` at the number `target`, without close-on-exec (in the child, before exec).
fn put_at(fd: RawFd, target: i32) -> std::io::Result<()> {
    // SAFETY: `fd` is open in the child (the parent keeps it until spawn returns).
    let source = unsafe { BorrowedFd::borrow_raw(fd) };
    if fd == target {
        rustix::io::fcntl_setfd(source, rustix::io::FdFlags::empty())?;
        return Ok(());
    }
    // SAFETY: `target` is a plain fd number the service expects; whatever the child had there
    // is replaced by dup2, and ManuallyDrop keeps us from closing it again.
    let mut at = std::mem::ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(target) });
    rustix::io::dup2(source, &mut at)?;
    Ok(())
}
