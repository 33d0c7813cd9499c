//! Starting `./run` and `./finish`: each in a new session (so a process group of its own), with
//! the supervisor's stdin, stdout and stderr, `env/` applied, the run born inside the service's
//! cgroup (clone3 with CLONE_INTO_CGROUP; moving a process afterwards costs the kernel an RCU
//! grace period, milliseconds on every restart) and the write end of the readiness pipe at the
//! `notification-fd` number. The child borrows the supervisor's memory until its exec (as
//! posix_spawn's does), and an exec failure comes back at once, so the caller gets the cause
//! (`No such file or directory`) from the start itself.

use rustix::fd::AsRawFd;
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::Signal;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
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
    cgroup: Option<BorrowedFd<'_>>,
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

/// The child's stack while it borrows the supervisor's memory, until its exec: its setup makes
/// a handful of syscalls and calls nothing that allocates.
const CHILD_STACK: usize = 64 * 1024;

/// The signals the supervisor catches (its signal pipe is made of these): a child that
/// borrows its memory must not run their handlers (they would set the supervisor's flags), so
/// it sets them to default first.
pub const CAUGHT: [Signal; 3] = [Signal::CHILD, Signal::TERM, Signal::HUP];

/// Starts a child that sets itself up and execs `argv[0]`; returns the pid once the exec has
/// happened, or the exec's error. The child is reaped by the supervisor's one reaper either
/// way.
///
/// The child is cloned with CLONE_VM | CLONE_VFORK, as posix_spawn does: it borrows the
/// supervisor's memory, which the supervisor does not touch until the child has exec'd or
/// exited, so no page table is copied, no page is copied on write, and there is no copy to
/// tear down at the exec. Its errno comes back through that memory. Where that clone3 fails
/// (Linux before 5.3, a seccomp filter), a plain fork reports through a close-on-exec pipe.
fn fork_exec(
    argv: &[CString],
    env: &[EnvVar],
    cgroup: Option<BorrowedFd<'_>>,
    notify: Option<(RawFd, i32)>,
) -> std::io::Result<u32> {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    // Without env/ changes the supervisor's own environment is passed as it is.
    let envp_strings = if env.is_empty() {
        Vec::new()
    } else {
        environment(env)
    };
    let mut envp_ptrs: Vec<*const libc::c_char> = envp_strings.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: environ is libc's, which the single-threaded supervisor does not change while
    // the child starts.
    let envp = if env.is_empty() {
        unsafe { environ.cast::<*const libc::c_char>() }
    } else {
        envp_ptrs.as_ptr()
    };
    let failure = AtomicI32::new(0);
    let mut setup = ChildSetup {
        argv: &argv_ptrs,
        envp,
        report: Report::Shared(&failure),
        notify,
        join: None,
        // SAFETY: sigset_t is a plain bit set, filled in before the child reads it.
        mask: unsafe { std::mem::zeroed() },
    };
    // SAFETY: the supervisor is single-threaded; the child runs only `child`, which makes
    // raw syscalls on memory prepared above and ends in execve or _exit.
    match unsafe { vfork_child(cgroup, &mut setup) } {
        Ok(pid) => match failure.load(Ordering::SeqCst) {
            0 => Ok(pid),
            errno => Err(std::io::Error::from_raw_os_error(errno)),
        },
        // No clone3 (Linux before 5.3, or a seccomp filter that says ENOSYS), or one that
        // refuses these flags: the plain fork still starts the service.
        Err(_) => fork_child(cgroup, &mut setup),
    }
}

extern "C" {
    static environ: *const *mut libc::c_char;
}

/// How a child that failed to exec tells the supervisor its errno.
enum Report<'a> {
    /// Stored in the supervisor's memory, which the child shares until it is gone.
    Shared(&'a AtomicI32),
    /// Written to the close-on-exec pipe of a forked child.
    Pipe(RawFd),
}

struct ChildSetup<'a> {
    argv: &'a [*const libc::c_char],
    envp: *const *const libc::c_char,
    report: Report<'a>,
    notify: Option<(RawFd, i32)>,
    /// cgroup.procs to write `0` to, when clone3 could not place the child itself.
    join: Option<RawFd>,
    /// The signal mask the exec'd program gets: the supervisor's own.
    mask: libc::sigset_t,
}

/// clone3 with CLONE_VM | CLONE_VFORK on a stack of the child's own, into the cgroup (given
/// as its directory fd); where the kernel will not place it there (EBUSY, say), without, and
/// the child joins by writing `0` to cgroup.procs. Returns once the child has exec'd or exited.
///
/// # Safety
/// Call only while the process is single-threaded.
unsafe fn vfork_child(
    cgroup: Option<BorrowedFd<'_>>,
    setup: &mut ChildSetup<'_>,
) -> std::io::Result<u32> {
    // u128 for the 16-byte alignment the ABI wants of the stack pointer at a call.
    let mut stack = vec![0u128; CHILD_STACK / 16];
    // Every signal blocked while a child runs on our memory; it unblocks them only once its
    // handlers are back to default.
    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut setup.mask);
    let mut result = Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
    // Opened only when the first try fails: kernfs opens are dear, and most starts never
    // need it.
    let mut procs = None;
    let tries = match cgroup {
        Some(dir) => [Some(Some(dir)), Some(None)],
        None => [Some(None), None],
    };
    for into in tries.into_iter().flatten() {
        let dir = into.map_or(-1, |dir| dir.as_raw_fd());
        if into.is_none() {
            if let Some(dir) = cgroup {
                procs = open_procs(dir);
                setup.join = procs.as_ref().map(|fd| fd.as_raw_fd());
            }
        }
        let mut args = CloneArgs {
            flags: libc::CLONE_VM as u64
                | libc::CLONE_VFORK as u64
                | if dir >= 0 { CLONE_INTO_CGROUP } else { 0 },
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: (stack.len() * 16) as u64,
            cgroup: if dir >= 0 { dir as u64 } else { 0 },
            ..CloneArgs::default()
        };
        result = clone3(&mut args, setup);
        match &result {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => break,
            Err(_) => {}
        }
    }
    libc::pthread_sigmask(libc::SIG_SETMASK, &setup.mask, std::ptr::null_mut());
    drop(stack);
    drop(procs);
    result
}

/// The cgroup's `cgroup.procs`, for a child that has to move itself there.
fn open_procs(cgroup: BorrowedFd<'_>) -> Option<OwnedFd> {
    rustix::fs::openat(
        cgroup,
        "cgroup.procs",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// The raw clone3 call: the child starts on the stack given in `args`, with no Rust frame
/// to return to, so it is sent straight into `child_entry` (x86-64 only, as the image).
///
/// # Safety
/// `args` describes a valid stack; with CLONE_VM the caller must not touch the memory the child
/// uses until clone3 returns (CLONE_VFORK sees to that).
unsafe fn clone3(args: &mut CloneArgs, setup: &ChildSetup<'_>) -> std::io::Result<u32> {
    let ret: isize;
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        // The child, on its own stack (rsp = stack + stack_size, 16-byte aligned).
        "xor ebp, ebp",
        "mov rdi, r13",
        "call r12",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 as isize => ret,
        in("rdi") args as *mut CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") child_entry as unsafe extern "C" fn(*const ChildSetup<'static>) -> !,
        in("r13") setup as *const ChildSetup<'_>,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    match ret {
        pid if pid > 0 => Ok(pid as u32),
        errno => Err(std::io::Error::from_raw_os_error(-errno as i32)),
    }
}

unsafe extern "C" fn child_entry(setup: *const ChildSetup<'static>) -> ! {
    child(&*setup)
}

/// The fallback without clone3: fork (the child a copy, sharing no memory), then the child
/// joins the cgroup by writing `0` to its cgroup.procs; the errno of a failed exec comes back
/// through a close-on-exec pipe.
fn fork_child(cgroup: Option<BorrowedFd<'_>>, setup: &mut ChildSetup<'_>) -> std::io::Result<u32> {
    let (report_read, report_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    setup.report = Report::Pipe(report_write.as_raw_fd());
    let procs = cgroup.and_then(open_procs);
    setup.join = procs.as_ref().map(|fd| fd.as_raw_fd());
    // SAFETY: the supervisor is single-threaded, so the child, a copy of it, may run the
    // setup, which makes raw syscalls only and ends in execve or _exit. The mask is read
    // before the fork so the child restores the supervisor's own.
    let pid = unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut setup.mask);
        match libc::fork() {
            0 => child(setup),
            p if p > 0 => p as u32,
            _ => return Err(std::io::Error::last_os_error()),
        }
    };
    drop(report_write);
    drop(procs);
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

/// In the child: handlers back to default (then the supervisor's mask), new session, cgroup,
/// readiness fd, exec. On failure the errno goes to the supervisor and the child exits 127.
unsafe fn child(setup: &ChildSetup<'_>) -> ! {
    let fail = || -> ! {
        let errno = *libc::__errno_location();
        match setup.report {
            Report::Shared(failure) => failure.store(errno, Ordering::SeqCst),
            Report::Pipe(fd) => {
                let bytes = errno.to_ne_bytes();
                libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            }
        }
        libc::_exit(127)
    };
    for signal in CAUGHT {
        libc::signal(signal.as_raw(), libc::SIG_DFL);
    }
    // SIGPIPE is caught too (warden::entry): its handler must not run in this borrowed
    // memory either.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    libc::pthread_sigmask(libc::SIG_SETMASK, &setup.mask, std::ptr::null_mut());
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
    if let Some(&path) = setup.argv.first() {
        libc::execve(path, setup.argv.as_ptr(), setup.envp);
    }
    fail()
}
