//! Starting a program the way svscan starts supervisors and supervise starts `./run`: the
//! child borrows the parent's memory until its exec (clone3 with CLONE_VM | CLONE_VFORK, as
//! glibc's posix_spawn does), sets up its fds, process group or session and cgroup, and
//! execs; the exec's error comes back as the error of the start itself.
//!
//! Why not posix_spawn: before its exec, glibc's child sets every one of the 64 signals it
//! does not know to be at default, with two sigaction calls each, and the parent waits for
//! all of them; with a thousand services that was svscan's largest single cost. The child
//! here resets only the signals the caller says it catches. Why not fork: a fork copies the
//! page tables of a scanner holding a thousand entries, and every page either side then
//! writes is copied again. Where clone3 is missing (Linux before 5.3, a seccomp filter), a
//! plain fork still starts the program and reports a failed exec through a close-on-exec pipe.
//!
//! The child makes raw system calls only (no allocation, no lock), on memory prepared before
//! the clone, with every signal blocked until the caught ones are back at default: so, like
//! posix_spawn, this is sound in a process of several threads too.
#![allow(unsafe_code)]

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::Signal;
use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// What the child leads, so that signals meant for the parent's terminal or group stay off it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A session of its own (setsid): supervise's `./run` and `./finish`.
    NewSession,
    /// A process group of its own (setpgid): svscan's supervisors.
    NewProcessGroup,
}

/// A program to start.
pub struct Spawn<'a> {
    /// The program (a path: there is no PATH search) and its arguments.
    pub argv: &'a [CString],
    /// `NAME=value` strings; `None` passes this process's environment as it is.
    pub env: Option<&'a [CString]>,
    pub group: Group,
    /// `(fd, target)`: `fd` duplicated onto `target` in the child, in this order; where they
    /// are equal, `fd` is only made to survive the exec.
    pub fds: &'a [(RawFd, RawFd)],
    /// A cgroup (its directory) the child is born in; where the kernel will not place it
    /// there, the child moves itself in, and failing that stays where its parent is.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// The signals this process catches: their handlers must not run in the child, which
    /// shares this memory, so it sets them to default first. SIGPIPE is always reset too:
    /// warden's programs catch it or (std's runtime) ignore it, and an ignored signal would
    /// stay ignored across the exec.
    pub caught: &'a [Signal],
}

impl Spawn<'_> {
    /// Starts the child with an empty signal mask; returns its pid once it has exec'd, or the
    /// exec's error (the child, then gone, is reaped by the caller's reaper like any other).
    pub fn start(&self) -> io::Result<u32> {
        let argv = null_terminated(self.argv);
        let env = self.env.map(null_terminated);
        let envp = match &env {
            Some(env) => env.as_ptr(),
            // SAFETY: libc's own environment; warden's programs never change it.
            None => unsafe { environ.cast::<*const libc::c_char>() },
        };
        let Some(&program) = argv.first().filter(|p| !p.is_null()) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let failure = AtomicI32::new(0);
        let mut setup = ChildSetup {
            program,
            argv: argv.as_ptr(),
            envp,
            group: self.group,
            fds: self.fds,
            caught: self.caught,
            report: Report::Shared(&failure),
            join: None,
        };
        match vfork_child(self.cgroup, &mut setup) {
            Ok(pid) => match failure.load(Ordering::SeqCst) {
                0 => Ok(pid),
                errno => Err(io::Error::from_raw_os_error(errno)),
            },
            // No clone3 (Linux before 5.3, or a seccomp filter that says ENOSYS), or one
            // that refuses these flags: the plain fork still starts the program.
            Err(_) => fork_child(self.cgroup, &mut setup),
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

extern "C" {
    static environ: *const *mut libc::c_char;
}

/// How a child that failed to exec tells its parent the errno.
enum Report<'a> {
    /// Stored in the parent's memory, which the child shares until it is gone.
    Shared(&'a AtomicI32),
    /// Written to the close-on-exec pipe of a forked child.
    Pipe(RawFd),
}

/// Everything the child reads, prepared before the clone.
struct ChildSetup<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    group: Group,
    fds: &'a [(RawFd, RawFd)],
    caught: &'a [Signal],
    report: Report<'a>,
    /// cgroup.procs to write `0` to, when clone3 could not place the child itself.
    join: Option<RawFd>,
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

/// The child's stack while it borrows the parent's memory, until its exec: its setup makes
/// a handful of syscalls and calls nothing that allocates.
const CHILD_STACK: usize = 64 * 1024;

/// Every signal blocked in this thread, for as long as a child may run on its memory;
/// restored on drop.
struct AllBlocked(libc::sigset_t);

impl AllBlocked {
    fn new() -> AllBlocked {
        // SAFETY: sigset_t is a plain bit set that sigfillset and pthread_sigmask fill in.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            AllBlocked(old)
        }
    }
}

impl Drop for AllBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new().
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// clone3 with CLONE_VM | CLONE_VFORK on a stack of the child's own, into the cgroup; where
/// the kernel will not place it there (EBUSY, say), without, and the child joins by writing
/// `0` to cgroup.procs. Returns once the child has exec'd or exited.
fn vfork_child(cgroup: Option<BorrowedFd<'_>>, setup: &mut ChildSetup<'_>) -> io::Result<u32> {
    // u128 for the 16-byte alignment the ABI wants of the stack pointer at a call.
    let mut stack = vec![0u128; CHILD_STACK / 16];
    let _blocked = AllBlocked::new();
    let mut result = Err(io::Error::from_raw_os_error(libc::ENOSYS));
    // Opened only when the first try fails: kernfs opens are dear, and most starts never
    // need it.
    let mut procs = None;
    let tries = match cgroup {
        Some(dir) => [Some(Some(dir)), Some(None)],
        None => [Some(None), None],
    };
    for into in tries.into_iter().flatten() {
        if into.is_none() {
            if let Some(dir) = cgroup {
                procs = open_procs(dir);
                setup.join = procs.as_ref().map(|fd| fd.as_raw_fd());
            }
        }
        let mut args = CloneArgs {
            flags: libc::CLONE_VM as u64
                | libc::CLONE_VFORK as u64
                | if into.is_some() { CLONE_INTO_CGROUP } else { 0 },
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: (stack.len() * 16) as u64,
            cgroup: into.map_or(0, |dir| dir.as_raw_fd() as u64),
            ..CloneArgs::default()
        };
        // SAFETY: the stack is ours and outlives the child's use of it (CLONE_VFORK: clone3
        // returns once the child has exec'd or exited); the child reads only `setup`, which
        // lives on this frame, and makes raw syscalls (see child()).
        result = unsafe { clone3(&mut args, setup) };
        match &result {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => break,
            Err(_) => {}
        }
    }
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
/// `args` describes a valid stack; with CLONE_VM the caller must not touch the memory the
/// child uses until clone3 returns (CLONE_VFORK sees to that).
unsafe fn clone3(args: &mut CloneArgs, setup: &ChildSetup<'_>) -> io::Result<u32> {
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
        errno => Err(io::Error::from_raw_os_error(-errno as i32)),
    }
}

unsafe extern "C" fn child_entry(setup: *const ChildSetup<'static>) -> ! {
    child(&*setup)
}

/// The fallback without clone3: fork (the child a copy, sharing no memory), then the child
/// joins the cgroup by writing `0` to its cgroup.procs; the errno of a failed exec comes back
/// through a close-on-exec pipe.
fn fork_child(cgroup: Option<BorrowedFd<'_>>, setup: &mut ChildSetup<'_>) -> io::Result<u32> {
    let (report_read, report_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    setup.report = Report::Pipe(report_write.as_raw_fd());
    let procs = cgroup.and_then(open_procs);
    setup.join = procs.as_ref().map(|fd| fd.as_raw_fd());
    let blocked = AllBlocked::new();
    // SAFETY: the child, a copy of this process, runs only `child`, which makes raw syscalls
    // and ends in execve or _exit, as is allowed after a fork even with several threads.
    let pid = match unsafe { libc::fork() } {
        0 => unsafe { child(setup) },
        p if p > 0 => p as u32,
        _ => return Err(io::Error::last_os_error()),
    };
    drop(blocked);
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
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(pid)
}

/// In the child: caught signals back to default, then an empty mask; session or process
/// group, cgroup, fds, exec. On failure the errno goes to the parent and the child exits 127.
///
/// # Safety
/// Only in a child made by vfork_child or fork_child.
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
    for signal in setup.caught {
        libc::signal(signal.as_raw(), libc::SIG_DFL);
    }
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    let grouped = match setup.group {
        Group::NewSession => libc::setsid(),
        Group::NewProcessGroup => libc::setpgid(0, 0),
    };
    if grouped < 0 {
        fail();
    }
    if let Some(procs) = setup.join {
        // Failure leaves the child in its process group only, which still works.
        libc::write(procs, b"0".as_ptr().cast(), 1);
    }
    for &(fd, target) in setup.fds {
        let placed = if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        };
        if placed < 0 {
            fail();
        }
    }
    libc::execve(setup.program, setup.argv, setup.envp);
    fail()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Mutex;

    /// The tests that reap "any child" must not take each other's.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn wait(pid: u32) -> Option<rustix::process::WaitStatus> {
        let pid = rustix::process::Pid::from_raw(pid as i32)?;
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .ok()
            .flatten()
            .map(|(_, status)| status)
    }

    fn sh(script: &str) -> Vec<CString> {
        args(&["/bin/sh", "-c", script])
    }

    fn args(words: &[&str]) -> Vec<CString> {
        words.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    /// Starts `argv` with stdout on a pipe; its pid and all it wrote, once it exited 0.
    fn output(argv: &[CString], env: Option<&[CString]>, group: Group) -> (u32, String) {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let fds = [(write.as_raw_fd(), 1)];
        let pid = Spawn {
            argv,
            env,
            group,
            fds: &fds,
            cgroup: None,
            caught: &[],
        }
        .start()
        .unwrap();
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
        (pid, out)
    }

    #[test]
    fn the_child_gets_its_environment_fds_and_group() {
        let _serial = ONE_AT_A_TIME.lock();
        let env = args(&["GREETING=hello"]);
        let (_, out) = output(&args(&["/usr/bin/env"]), Some(&env), Group::NewProcessGroup);
        assert_eq!(out, "GREETING=hello\n");
        let script = sh("echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)");
        let (pid, out) = output(&script, None, Group::NewProcessGroup);
        // Group leader, in the session of this test.
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words[..2], [pid.to_string(), pid.to_string()]);
        assert_ne!(words[2], pid.to_string());
        let (pid, out) = output(&script, None, Group::NewSession);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words, [pid.to_string(), pid.to_string(), pid.to_string()]);
    }

    #[test]
    fn the_child_starts_with_nothing_blocked_and_sigpipe_at_default() {
        let _serial = ONE_AT_A_TIME.lock();
        // Everything blocked here, and SIGPIPE ignored (by the test harness's runtime).
        let _blocked = AllBlocked::new();
        let grep = args(&["/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
        let (_, out) = output(&grep, None, Group::NewSession);
        let mask = |field: &str| {
            let line = out.lines().find_map(|l| l.strip_prefix(field)).unwrap();
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0);
        assert_eq!(mask("SigIgn:") & 1 << (libc::SIGPIPE - 1), 0);
    }

    #[test]
    fn an_fd_given_at_its_own_number_survives_the_exec() {
        let _serial = ONE_AT_A_TIME.lock();
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let number = write.as_raw_fd();
        let argv = sh(&format!("echo through >&{number}"));
        let fds = [(number, number)];
        let pid = Spawn {
            argv: &argv,
            env: None,
            group: Group::NewSession,
            fds: &fds,
            cgroup: None,
            caught: &[],
        }
        .start()
        .unwrap();
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert_eq!(out, "through\n");
        assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
    }

    #[test]
    fn a_failed_exec_is_the_error_of_the_start() {
        let _serial = ONE_AT_A_TIME.lock();
        let argv = [CString::new("/nonexistent/program").unwrap()];
        let error = Spawn {
            argv: &argv,
            env: None,
            group: Group::NewSession,
            fds: &[],
            cgroup: None,
            caught: &[],
        }
        .start()
        .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        // The child is gone and left for the caller to reap.
        let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
        assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
    }

    #[test]
    fn the_fork_fallback_reports_a_failed_exec_too() {
        let _serial = ONE_AT_A_TIME.lock();
        let argv = [CString::new("/nonexistent/program").unwrap()];
        let argv_ptrs = null_terminated(&argv);
        let mut setup = ChildSetup {
            program: argv_ptrs[0],
            argv: argv_ptrs.as_ptr(),
            // SAFETY: libc's environment, unchanged by these tests.
            envp: unsafe { environ.cast() },
            group: Group::NewSession,
            fds: &[],
            caught: &[],
            report: Report::Pipe(-1),
            join: None,
        };
        let error = fork_child(None, &mut setup).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
        assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
    }
}
