//! Starting `./run`, `./finish` and the `control/` hooks: each in a new session (so a process group of its own), with
//! the supervisor's stdin, stdout and stderr, `env/` applied, the run born inside the service's
//! cgroup (clone3 with CLONE_INTO_CGROUP; moving a process afterwards costs the kernel an RCU
//! grace period, milliseconds on every restart) and the write end of the readiness pipe at the
//! `notification-fd` number. The child borrows the supervisor's memory until its exec (see
//! `warden::spawn`), and an exec failure comes back at once, so the caller gets the cause
//! (`No such file or directory`) from the start itself.

use rustix::fd::AsRawFd;
use rustix::pipe::PipeFlags;
use rustix::process::Signal;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use warden::runas::Identity;
use warden::service::{read_envdir, read_envdir_reporting, EnvVar};
use warden::spawn::{Group, Ids, Process, Spawn, Step};
use warden::status::Exit;

/// A started `./run`.
pub struct Started {
    pub pid: u32,
    /// Read end of the readiness pipe, when the service has a `notification-fd`.
    pub notify: Option<OwnedFd>,
    /// `env/` entries that were skipped (a FIFO, a device, an overlong line), each naming
    /// its file: the run started without them.
    pub warnings: Vec<String>,
}

/// Warden's `logger` next to supervise's own executable (svscan, the boot image and an
/// install keep them together), never one from PATH (util-linux's `logger ./main` would exit
/// at once and drop the log); the error says why there is none.
pub fn find_logger() -> Result<PathBuf, String> {
    warden::companion::find("logger")
}

/// Starts `./run`, or, when there is none and `default_run` is given (a `log/` dir), the
/// built-in default `logger ./main`; the error names the file and the cause.
pub fn run(
    service: &Path,
    oneshot: bool,
    default_run: Option<Result<&Path, &str>>,
    cgroup: Option<BorrowedFd<'_>>,
    notification_fd: Option<i32>,
    identity: &Identity,
    join: &[RawFd],
) -> Result<Started, String> {
    let default_run = default_run.filter(|_| {
        std::fs::symlink_metadata("run").is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    });
    // Nothing else is started in its place: the log pipe stays held, its data waiting for a
    // logger (or a `run`), and the start is retried with the back-off.
    let default_run = match default_run {
        Some(Err(why)) => {
            return Err(format!(
                "unable to start the default logger ./main in {}: {why}",
                service.display()
            ))
        }
        Some(Ok(logger)) => Some(logger),
        None => None,
    };
    let argv = match default_run {
        Some(logger) => vec![
            CString::new(logger.as_os_str().as_bytes())
                .map_err(|_| format!("unable to start {}: NUL in its path", logger.display()))?,
            c"./main".to_owned(),
        ],
        // A oneshot's program is `up` (checked executable by warden::deps).
        None if oneshot => vec![c"./up".to_owned()],
        None => vec![c"./run".to_owned()],
    };
    let shown = || match default_run {
        Some(logger) => format!("{} ./main in {}", logger.display(), service.display()),
        None if oneshot => format!("./up in {}", service.display()),
        None => format!("./run in {}", service.display()),
    };
    if default_run.is_none() && std::fs::metadata("run").is_ok_and(|meta| meta.is_dir()) {
        return Err(format!("unable to start {}: it is a directory", shown()));
    }
    let (env, skipped) = read_envdir_reporting(Path::new(warden::service::ENV)).map_err(|e| {
        format!(
            "unable to read {}: {}",
            service.join(&e.file).display(),
            e.cause
        )
    })?;
    let warnings = skipped
        .iter()
        .map(|e| {
            format!(
                "unable to use {}: {}",
                service.join(&e.file).display(),
                e.cause
            )
        })
        .collect();
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
    let child_notify = notify
        .as_ref()
        .map(|(_, write, target)| (write.as_raw_fd(), *target));
    let pid = fork_exec(&argv, &env, cgroup, child_notify, identity, join)
        .map_err(|e| format!("unable to start {}: {e}", shown()))?;
    // The write end now lives in the service only, so its exit gives the read end EOF.
    Ok(Started {
        pid,
        notify: notify.map(|(read, _, _)| read),
        warnings,
    })
}

/// Starts `./finish EXITCODE SIGNAL` (runit's arguments).
pub fn finish(service: &Path, exit: Exit, identity: &Identity) -> Result<u32, String> {
    let (code, signal) = exit.finish_args();
    let env = read_envdir(Path::new(warden::service::ENV)).unwrap_or_default();
    let argv = [
        c"./finish".to_owned(),
        number(code.into()),
        number(signal.into()),
    ];
    fork_exec(&argv, &env, None, None, identity, &[])
        .map_err(|e| format!("unable to start ./finish in {}: {e}", service.display()))
}

/// Starts `./check` for the service's readiness: as `finish`, in a session of its own, with
/// `env/` and the service's user, its output where the service's goes.
pub fn check(service: &Path, identity: &Identity) -> Result<u32, String> {
    let env = read_envdir(Path::new(warden::service::ENV)).unwrap_or_default();
    fork_exec(&[c"./check".to_owned()], &env, None, None, identity, &[])
        .map_err(|e| format!("unable to start ./check in {}: {e}", service.display()))
}

/// Starts a oneshot's `./down`, as `finish`.
pub fn oneshot_down(service: &Path, identity: &Identity) -> Result<u32, String> {
    let env = read_envdir(Path::new(warden::service::ENV)).unwrap_or_default();
    fork_exec(&[c"./down".to_owned()], &env, None, None, identity, &[])
        .map_err(|e| format!("unable to start ./down in {}: {e}", service.display()))
}

/// Starts `control/<letter>` (runsv's "customize control") with the service's pid as its
/// argument (empty when none runs), if it is there and executable by its owner: `Ok(None)` when
/// it is not (the default action follows), as runsv's `stat` and `S_IXUSR` test. Like `finish`:
/// the service dir as cwd, `env/` applied, a session of its own, outside the service's cgroup.
pub fn hook(
    service: &Path,
    letter: u8,
    pid: u32,
    identity: impl FnOnce() -> Result<Identity, String>,
) -> Result<Option<u32>, String> {
    use std::os::unix::fs::PermissionsExt;
    let name = format!("control/{}", char::from(letter));
    let shown = || service.join(&name).display().to_string();
    match std::fs::metadata(&name) {
        Ok(meta) if meta.permissions().mode() & 0o100 != 0 => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(format!("unable to stat {}: {}", shown(), crate::cause(&e))),
    }
    // Read only for a hook that is there: most services have none, and `control/u` is
    // asked for before every start.
    let identity = identity()?;
    let env = read_envdir(Path::new(warden::service::ENV)).unwrap_or_default();
    let arg = if pid == 0 {
        CString::default()
    } else {
        number(pid.into())
    };
    let argv = [CString::new(name.as_bytes()).unwrap_or_default(), arg];
    fork_exec(&argv, &env, None, None, &identity, &[])
        .map(Some)
        .map_err(|e| format!("unable to start {}: {e}", shown()))
}

fn number(n: i64) -> CString {
    CString::new(n.to_string()).unwrap_or_default()
}

/// The supervisor's environment with `first` (the user's HOME, USER, LOGNAME) then the
/// envdir applied, as `NAME=value` strings.
fn environment(first: &[(String, String)], changes: &[EnvVar]) -> Vec<CString> {
    let changed = |name: &OsStr| {
        changes.iter().any(|c| match c {
            EnvVar::Set(n, _) | EnvVar::Unset(n) => n == name,
        }) || first.iter().any(|(n, _)| OsStr::new(n) == name)
    };
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| !changed(name))
        .collect();
    for (name, value) in first {
        let overridden = changes.iter().any(|c| match c {
            EnvVar::Set(n, _) | EnvVar::Unset(n) => n == OsStr::new(name),
        });
        if !overridden {
            vars.push((name.into(), value.into()));
        }
    }
    for change in changes {
        if let EnvVar::Set(name, value) = change {
            vars.push((name.clone(), value.clone()));
        }
    }
    vars.into_iter()
        .filter_map(|(name, value)| {
            let mut bytes = name.as_bytes().to_vec();
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            CString::new(bytes).ok()
        })
        .collect()
}

/// The signals the supervisor catches (its signal pipe is made of these): a child that
/// borrows its memory must not run their handlers, so it sets them to default first. CHILD
/// comes first: the signal pipe's `take` looks at them in this order (see the main loop).
pub const CAUGHT: [Signal; 3] = [Signal::CHILD, Signal::TERM, Signal::HUP];

/// Starts `argv` in a session of its own, born in the cgroup, with the readiness pipe's write
/// end at its number; returns the pid once the exec has happened, or the exec's error.
/// ... and, before the exec, the child takes `identity` (limits, niceness, umask, then the
/// user) and joins the cgroups of `join`. The error is the cause, naming the setting.
fn fork_exec(
    argv: &[CString],
    env: &[EnvVar],
    cgroup: Option<BorrowedFd<'_>>,
    notify: Option<(RawFd, i32)>,
    identity: &Identity,
    join: &[RawFd],
) -> Result<u32, String> {
    let first = identity.env();
    // Without env/ changes the supervisor's own environment is passed as it is.
    let envp = (!env.is_empty() || !first.is_empty()).then(|| environment(&first, env));
    let fds: Vec<(RawFd, RawFd)> = notify.into_iter().collect();
    let rlimits = identity.rlimits();
    let process = Process {
        cwd: None,
        join,
        rlimits: &rlimits,
        nice: identity.nice,
        umask: identity.umask,
        ids: identity.account.as_ref().map(|a| Ids {
            uid: a.uid,
            gid: a.gid,
            groups: &a.groups,
        }),
    };
    Spawn {
        argv,
        env: envp.as_deref(),
        group: Group::NewSession,
        fds: &fds,
        cgroup,
        caught: &CAUGHT,
    }
    .start_with(&process)
    .map_err(|e| {
        let cause = crate::cause(&e.error);
        let user = || {
            identity
                .account
                .as_ref()
                .map_or_else(String::new, |a| a.name.clone())
        };
        match e.step {
            Step::Exec | Step::Group | Step::Fds | Step::Cwd => cause,
            Step::Cgroup => format!("unable to join its v1 cgroup: {cause}"),
            Step::Rlimit(n) => match identity.limits.get(n) {
                Some(limit) => format!(
                    "unable to set {} ({}): {cause}",
                    warden::runas::limit_text(limit),
                    warden::runas::LIMITS
                ),
                None => format!("unable to set a limit: {cause}"),
            },
            Step::Nice => format!("unable to set nice {}: {cause}", identity.nice.unwrap_or(0)),
            Step::Groups => format!("unable to set the groups of user {}: {cause}", user()),
            Step::Gid => format!("unable to set the group of user {}: {cause}", user()),
            Step::Uid => format!("unable to become user {}: {cause}", user()),
        }
    })
}
