//! Starting `./run` and `./finish`: each in a new session (so a process group of its own), with
//! the supervisor's stdin, stdout and stderr, `env/` applied, the run born inside the service's
//! cgroup (clone3 with CLONE_INTO_CGROUP; moving a process afterwards costs the kernel an RCU
//! grace period, milliseconds on every restart) and the write end of the readiness pipe at the
//! `notification-fd` number. An exec failure comes back through a close-on-exec pipe, so the
//! caller gets the cause (`No such file or directory`) at once.

use rustix::fd::AsRawFd;
use rustix::pipe::PipeFlags;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use warden::service::{read_envdir, EnvVar};
use warden::status::Exit;

/// A started `./run`.
pub struct Started {
    pub pid: u32,
    /// Read end of the readiness pipe, when the service has a `notification-fd`.
    pub notify: Option<OwnedFd>,
}

/// `logger` next to supervise's own executable (svscan and the boot image keep them
/// together), else the first on PATH, else the bare name (its start then fails, reported).
pub fn find_logger() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("logger")));
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("logger"))
                .find(|p| p.is_file())
        })
    };
    beside
        .filter(|p| p.is_file())
        .or_else(on_path)
        .unwrap_or_else(|| PathBuf::from("logger"))
}

/// Starts `./run`, or, when there is none and `default_run` is given (a `log/` dir), the
/// built-in default `logger ./main`; the error names the file and the cause.
pub fn run(
    service: &Path,
    default_run: Option<&Path>,
    cgroup: Option<(RawFd, RawFd)>,
    notification_fd: Option<i32>,
) -> Result<Started, String> {
    let default_run = default_run.filter(|_| {
        std::fs::symlink_metadata("run").is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    });
    let argv = match default_run {
        Some(logger) => vec![
            CString::new(logger.as_os_str().as_bytes())
                .map_err(|_| format!("unable to start {}: NUL in its path", logger.display()))?,
            c"./main".to_owned(),
        ],
        None => vec![c"./run".to_owned()],
    };
    let shown = || match default_run {
        Some(logger) => format!("{} ./main in {}", logger.display(), service.display()),
        None => format!("./run in {}", service.display()),
    };
    if default_run.is_none() && std::fs::metadata("run").is_ok_and(|meta| meta.is_dir()) {
        return Err(format!("unable to start {}: it is a directory", shown()));
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
    let child_notify = notify
        .as_ref()
        .map(|(_, write, target)| (write.as_raw_fd(), *target));
    let pid = fork_exec(&argv, &env, cgroup, child_notify)
        .map_err(|e| format!("unable to start {}: {}", shown(), crate::cause(&e)))?;
    // The write end now lives in the service only, so its exit gives the read end EOF.
    Ok(Started {
        pid,
        notify: notify.map(|(read, _, _)| read),
    })
}

/// Starts `./finish EXITCODE SIGNAL` (runit's arguments).
pub fn finish(service: &Path, exit: Exit) -> Result<u32, String> {
    let (code, signal) = exit.finish_args();
    let env = read_envdir(Path::new(warden::service::ENV)).unwrap_or_default();
    let argv = [
        c"./finish".to_owned(),
        number(code.into()),
        number(signal.into()),
    ];
    fork_exec(&argv, &env, None, None).map_err(|e| {
        format!(
            "unable to start ./finish in {}: {}",
            service.display(),
            crate::cause(&e)
        )
    })
}

fn number(n: i64) -> CString {
    CString::new(n.to_string()).unwrap_or_default()
}

/// The supervisor's environment with the envdir applied, as `NAME=value` strings.
fn environment(changes: &[EnvVar]) -> Vec<CString> {
    let changed = |name: &OsStr| {
        changes.iter().any(|c| match c {
            EnvVar::Set(n, _) | EnvVar::Unset(n) => n == name,
        })
    };
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| !changed(name))
        .collect();
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

/// `struct clone_args` of clone3(2), up to the `cgroup` field (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks, sets the child up and execs `argv[0]`; returns the pid once the exec has happened,
/// or the exec's error. The child is reaped by the supervisor's one reaper either way.
fn fork_exec(
    argv: &[CString],
    env: &[EnvVar],
    cgroup: Option<(RawFd, RawFd)>,
    notify: Option<(RawFd, i32)>,
) -> std::io::Result<u32> {
    let envp_strings = environment(env);
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp_strings.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let (report_read, report_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let setup = ChildSetup {
        argv: &argv_ptrs,
        envp: &envp_ptrs,
        report: report_write.as_raw_fd(),
        notify,
        join: None,
    };
    // SAFETY: the supervisor is single-threaded, so the child (a copy of it, no shared memory)
    // may run the setup, which makes raw syscalls only and ends in execve or _exit.
    let pid = unsafe { clone_child(cgroup, setup)? };
    drop(report_write);
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        match rustix::io::read(&report_read, errno.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if got == errno.len() {
        return Err(std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(pid)
}

struct ChildSetup<'a> {
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    /// Write end of the close-on-exec pipe that carries an errno back to the parent.
    report: RawFd,
    notify: Option<(RawFd, i32)>,
    /// cgroup.procs to write `0` to, when clone3 could not place the child itself.
    join: Option<RawFd>,
}

/// clone3 into the cgroup (given as its directory fd and its cgroup.procs fd); where that is unavailable (old kernel, EBUSY), plain fork and the
/// child joins by writing `0` to cgroup.procs. Returns the child's pid in the parent.
///
/// # Safety
/// Call only while the process is single-threaded; the child never returns.
unsafe fn clone_child(
    cgroup: Option<(RawFd, RawFd)>,
    mut setup: ChildSetup<'_>,
) -> std::io::Result<u32> {
    if let Some((dir, procs)) = cgroup {
        let mut args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir as u64,
            ..CloneArgs::default()
        };
        let pid = libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        );
        match pid {
            0 => child(&setup),
            p if p > 0 => return Ok(p as u32),
            _ => setup.join = Some(procs),
        }
    }
    match libc::fork() {
        0 => child(&setup),
        p if p > 0 => Ok(p as u32),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// In the child: new session, cgroup, readiness fd, default SIGPIPE, exec. On failure the errno
/// goes to the parent and the child exits 127.
unsafe fn child(setup: &ChildSetup<'_>) -> ! {
    let fail = || -> ! {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(setup.report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    };
    if libc::setsid() < 0 {
        fail();
    }
    if let Some(procs) = setup.join {
        // Failure leaves the run in its process group only, which still works.
        libc::write(procs, b"0".as_ptr().cast(), 1);
    }
    if let Some((write, target)) = setup.notify {
        let placed = if write == target {
            libc::fcntl(write, libc::F_SETFD, 0)
        } else {
            libc::dup2(write, target)
        };
        if placed < 0 {
            fail();
        }
    }
    // Rust's runtime ignores SIGPIPE, and an ignored signal stays ignored across exec.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    if let Some(&path) = setup.argv.first() {
        libc::execve(path, setup.argv.as_ptr(), setup.envp.as_ptr());
    }
    fail()
}
