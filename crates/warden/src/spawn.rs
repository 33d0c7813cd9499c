//! Starting a program the way svscan starts supervisors and supervise starts `./run`: the
//! child borrows the parent's memory until its exec (clone3 with CLONE_VM, as glibc's
//! posix_spawn does), sets up its fds, process group or session and cgroup, and execs.
//!
//! [`Spawn::start`] waits until the child has exec'd (CLONE_VFORK), so the exec's error is the
//! error of the start. [`Spawn::start_detached`] does not wait: the parent goes on while the
//! child execs, and keeps what the child reads (a [`Launching`]) until the kernel says the
//! child is done with its memory (CLONE_CHILD_CLEARTID, cleared at the exec or the exit).
//! svscan starts its supervisors so: with a thousand to start at boot, waiting for each exec
//! left a CPU idle whenever the child waited its turn behind the supervisors already started.
//!
//! Why not posix_spawn: before its exec, glibc's child sets every one of the 64 signals it
//! does not know to be at default, with two sigaction calls each, and the parent waits for
//! all of them. The child here resets only the signals the caller says it catches. Why not
//! fork: a fork copies the page tables of a scanner holding a thousand entries, and every page
//! either side then writes is copied again. Where clone3 is missing (Linux before 5.3, a
//! seccomp filter), a plain fork still starts the program and reports a failed exec through a
//! close-on-exec pipe.
//!
//! The child makes raw system calls only (no allocation, no lock, not even errno, which it
//! would share with the parent's thread), on memory prepared before the clone, with every
//! signal blocked until the caught ones are back at default: so, like posix_spawn, this is
//! sound in a process of several threads too.
#![allow(unsafe_code)]

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::Signal;
use std::ffi::{CString, OsStr};
use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

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
    /// there, the child moves itself in, and failing that stays where its parent is. Only
    /// [`Spawn::start`] places children in a cgroup.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// The signals this process catches: their handlers must not run in the child, which
    /// shares this memory, so it sets them to default first. SIGPIPE is always reset too:
    /// warden's programs catch it or (std's runtime) ignore it, and an ignored signal would
    /// stay ignored across the exec.
    pub caught: &'a [Signal],
}

/// What the child sets up for itself after its fds, before its exec: resource limits,
/// niceness, umask, then (last, as it may give up the rights the others need) its groups, gid
/// and uid, and extra cgroups to join (v1 hierarchies). All of it prepared by the parent:
/// users and groups are resolved there, the child makes raw syscalls only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Process<'a> {
    /// `cgroup.procs` fds (opened for writing) the child writes `0` to.
    pub join: &'a [RawFd],
    /// `(resource, soft, hard)` for prlimit, RLIM_INFINITY as `u64::MAX`.
    pub rlimits: &'a [(i32, u64, u64)],
    /// setpriority(PRIO_PROCESS, 0, nice).
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    pub ids: Option<Ids<'a>>,
}

/// The credentials the child takes: setgroups, setgid, setuid, in that order.
#[derive(Clone, Copy, Debug)]
pub struct Ids<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

/// The step of the child's setup that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Exec,
    /// setsid or setpgid.
    Group,
    Fds,
    /// Writing to one of [`Process::join`].
    Cgroup,
    /// The n-th of [`Process::rlimits`].
    Rlimit(usize),
    Nice,
    Groups,
    Gid,
    Uid,
}

/// A start that failed in the child: at which step, with the kernel's error.
#[derive(Debug)]
pub struct StartError {
    pub step: Step,
    pub error: io::Error,
}

/// The child's report: the errno plus the step times this (errnos are below 4096).
const STEP_UNIT: i32 = 4096;

fn step_code(step: Step) -> i32 {
    match step {
        Step::Exec => 0,
        Step::Group => 1,
        Step::Fds => 2,
        Step::Cgroup => 3,
        Step::Nice => 4,
        Step::Groups => 5,
        Step::Gid => 6,
        Step::Uid => 7,
        Step::Rlimit(n) => 16_i32.saturating_add(i32::try_from(n).unwrap_or(i32::MAX - 16)),
    }
}

fn decode_failure(code: i32) -> StartError {
    let (step, errno) = (code / STEP_UNIT, code % STEP_UNIT);
    let step = match step {
        1 => Step::Group,
        2 => Step::Fds,
        3 => Step::Cgroup,
        4 => Step::Nice,
        5 => Step::Groups,
        6 => Step::Gid,
        7 => Step::Uid,
        n if n >= 16 => Step::Rlimit(usize::try_from(n - 16).unwrap_or(0)),
        _ => Step::Exec,
    };
    StartError {
        step,
        error: io::Error::from_raw_os_error(errno),
    }
}

impl Spawn<'_> {
    /// Starts the child with an empty signal mask; returns its pid once it has exec'd, or the
    /// exec's error (the child, then gone, is reaped by the caller's reaper like any other).
    pub fn start(&self) -> io::Result<u32> {
        self.start_with(&Process::default()).map_err(|e| e.error)
    }

    /// [`Spawn::start`], with the child setting up `process` before its exec; the error says
    /// which step failed.
    pub fn start_with(&self, process: &Process<'_>) -> Result<u32, StartError> {
        let exec = |error| StartError {
            step: Step::Exec,
            error,
        };
        let argv = null_terminated(self.argv);
        let env = self.env.map(null_terminated);
        let failure = AtomicI32::new(0);
        let mut setup = ChildSetup::new(self, &argv, env.as_deref(), &failure).map_err(exec)?;
        setup.extra_join = (process.join.as_ptr(), process.join.len());
        setup.rlimits = (process.rlimits.as_ptr(), process.rlimits.len());
        setup.nice = process.nice;
        setup.umask = process.umask;
        setup.ids = process
            .ids
            .map(|ids| (ids.uid, ids.gid, ids.groups.as_ptr(), ids.groups.len()));
        // u128 for the 16-byte alignment the ABI wants of the stack pointer at a call; left
        // uninitialised, so that only what the child touches costs memory.
        let mut stack: Vec<u128> = Vec::with_capacity(VFORK_STACK / 16);
        match vfork_child(self.cgroup, &setup, &mut stack) {
            Ok(pid) => match failure.load(Ordering::SeqCst) {
                0 => Ok(pid),
                code => Err(decode_failure(code)),
            },
            // No clone3 (Linux before 5.3, or a seccomp filter that says ENOSYS), or one
            // that refuses these flags: the plain fork still starts the program.
            Err(_) => fork_child(self.cgroup, &setup).map_err(|e| match e.raw_os_error() {
                Some(code) if code >= STEP_UNIT => decode_failure(code),
                _ => exec(e),
            }),
        }
    }

    /// Starts the child as [`Spawn::start`] does, without waiting for its exec: the returned
    /// [`Launching`] holds what the child reads until then, and says whether the exec failed.
    /// `cgroup` must be `None`.
    pub fn start_detached(&self) -> io::Result<Launching> {
        if self.cgroup.is_some() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut memory = ChildMemory::new(self)?;
        // Set before the child exists; the kernel writes the pid over it (CLONE_PARENT_SETTID)
        // before the child runs, and zero once the child has exec'd or exited.
        memory.words.tid.store(u32::MAX, Ordering::SeqCst);
        let tid = std::ptr::from_ref(&memory.words.tid) as u64;
        let mut args = CloneArgs {
            flags: libc::CLONE_VM as u64
                | libc::CLONE_PARENT_SETTID as u64
                | libc::CLONE_CHILD_CLEARTID as u64,
            parent_tid: tid,
            child_tid: tid,
            exit_signal: libc::SIGCHLD as u64,
            stack: memory.stack.as_mut_ptr() as u64,
            stack_size: (memory.stack.capacity() * 16) as u64,
            ..CloneArgs::default()
        };
        let blocked = AllBlocked::new();
        // SAFETY: the stack and everything `setup` points at are heap memory owned by
        // `memory`, which the Launching keeps (and leaks rather than frees while the child
        // may still read it); the child makes raw syscalls only (see child()).
        let cloned = unsafe { clone3(&mut args, &memory.setup) };
        drop(blocked);
        match cloned {
            Ok(pid) => Ok(Launching {
                pid,
                memory: ManuallyDrop::new(memory),
            }),
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => Err(e),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(e),
            Err(_) => {
                // No clone3 here: a fork, which reports its exec before returning.
                let pid = fork_child(None, &memory.setup)?;
                memory.words.tid.store(0, Ordering::SeqCst);
                Ok(Launching {
                    pid,
                    memory: ManuallyDrop::new(memory),
                })
            }
        }
    }
}

/// A child started by [`Spawn::start_detached`] that may not have exec'd yet. Keep it until
/// [`Launching::released`]: one dropped before that leaks what the child reads rather than
/// free it under the child.
pub struct Launching {
    pid: u32,
    memory: ManuallyDrop<ChildMemory>,
}

impl Launching {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the child is done with this process's memory: it has exec'd, or exited.
    pub fn released(&self) -> bool {
        self.memory.words.tid.load(Ordering::Acquire) == 0
    }

    /// Blocks until [`Launching::released`].
    pub fn wait_released(&self) {
        let tid = &self.memory.words.tid;
        loop {
            let seen = tid.load(Ordering::Acquire);
            if seen == 0 {
                return;
            }
            // Not FUTEX_PRIVATE: the kernel's wake at the child's exec or exit is a shared
            // one. The timeout only guards against a wake that never comes: the word is
            // looked at again every 10 ms whatever happens.
            let again = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            let flags = rustix::thread::futex::Flags::empty();
            if rustix::thread::futex::wait(tid, flags, seen, Some(&again)).is_err() {
                // Changed already, timed out, interrupted, or no futex to wait on (a seccomp
                // filter): the loop looks again, and the kernel clears the word anyway.
                std::thread::yield_now();
            }
        }
    }

    /// Once released: the exec's error, when it failed (the child then exited 127).
    pub fn exec_error(&self) -> Option<io::Error> {
        if !self.released() {
            return None;
        }
        match self.memory.words.failure.load(Ordering::SeqCst) {
            0 => None,
            errno => Some(io::Error::from_raw_os_error(errno)),
        }
    }
}

impl Drop for Launching {
    fn drop(&mut self) {
        if self.released() {
            // SAFETY: the child no longer reads this memory, and it is dropped only here.
            unsafe { ManuallyDrop::drop(&mut self.memory) };
        }
    }
}

/// The stack of a child started by [`Spawn::start`], which waits for the exec; its setup
/// makes a handful of raw syscalls.
const VFORK_STACK: usize = 64 * 1024;

/// The stack of a detached child (svscan holds at most 32 at once).
const DETACHED_STACK: usize = 16 * 1024;

/// What a detached child reads (and, for its errno, writes), copied to heap addresses that
/// stay put while the struct itself moves.
struct ChildMemory {
    _argv: Vec<CString>,
    _argv_ptrs: Vec<*const libc::c_char>,
    _env: Option<(Vec<CString>, Vec<*const libc::c_char>)>,
    _fds: Vec<(RawFd, RawFd)>,
    _caught: Vec<Signal>,
    /// The child's stack: capacity only, uninitialised (nothing reads it from here).
    stack: Vec<u128>,
    words: Box<Words>,
    /// Boxed, as all the rest: the child reads it while this struct moves.
    setup: Box<ChildSetup>,
}

struct Words {
    /// The child's tid until it is done with this memory.
    tid: AtomicU32,
    /// The errno of a failed exec, or 0.
    failure: AtomicI32,
}

impl ChildMemory {
    fn new(spawn: &Spawn<'_>) -> io::Result<ChildMemory> {
        let argv = spawn.argv.to_vec();
        let argv_ptrs = null_terminated(&argv);
        let env = spawn.env.map(|env| {
            let env = env.to_vec();
            let ptrs = null_terminated(&env);
            (env, ptrs)
        });
        let fds = spawn.fds.to_vec();
        let caught = spawn.caught.to_vec();
        let words = Box::new(Words {
            tid: AtomicU32::new(0),
            failure: AtomicI32::new(0),
        });
        let copy = Spawn {
            argv: &argv,
            env: None,
            group: spawn.group,
            fds: &fds,
            cgroup: None,
            caught: &caught,
        };
        let env_ptrs = env.as_ref().map(|(_, ptrs)| ptrs.as_slice());
        let setup = Box::new(ChildSetup::new(
            &copy,
            &argv_ptrs,
            env_ptrs,
            &words.failure,
        )?);
        Ok(ChildMemory {
            _argv: argv,
            _argv_ptrs: argv_ptrs,
            _env: env,
            _fds: fds,
            _caught: caught,
            stack: Vec::with_capacity(DETACHED_STACK / 16),
            words,
            setup,
        })
    }
}

/// `program` as a path: as given when it has a slash, else the first file of that name in a
/// directory of PATH.
pub fn on_path(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
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
#[derive(Clone, Copy)]
enum Report {
    /// Stored in the parent's memory, which the child shares until it is gone.
    Shared(*const AtomicI32),
    /// Written to the close-on-exec pipe of a forked child.
    Pipe(RawFd),
}

/// Everything the child reads, prepared before the clone: raw pointers into a ChildMemory.
#[derive(Clone, Copy)]
struct ChildSetup {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    group: Group,
    fds: (*const (RawFd, RawFd), usize),
    caught: (*const Signal, usize),
    report: Report,
    /// cgroup.procs to write `0` to, when clone3 could not place the child itself.
    join: Option<RawFd>,
    /// Further cgroup.procs to write `0` to (see [`Process`]).
    extra_join: (*const RawFd, usize),
    rlimits: (*const (i32, u64, u64), usize),
    nice: Option<i32>,
    umask: Option<u32>,
    /// uid, gid, supplementary groups.
    ids: Option<(u32, u32, *const u32, usize)>,
}

impl ChildSetup {
    /// Points at `spawn`'s fds and caught signals, `argv` and `env` (null-terminated), and
    /// `failure`: all must stay where they are until the child has exec'd or exited.
    fn new(
        spawn: &Spawn<'_>,
        argv: &[*const libc::c_char],
        env: Option<&[*const libc::c_char]>,
        failure: &AtomicI32,
    ) -> io::Result<ChildSetup> {
        let Some(&program) = argv.first().filter(|p| !p.is_null()) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let envp = match env {
            Some(env) => env.as_ptr(),
            // SAFETY: libc's own environment; warden's programs never change it.
            None => unsafe { environ.cast::<*const libc::c_char>() },
        };
        Ok(ChildSetup {
            program,
            argv: argv.as_ptr(),
            envp,
            group: spawn.group,
            fds: (spawn.fds.as_ptr(), spawn.fds.len()),
            caught: (spawn.caught.as_ptr(), spawn.caught.len()),
            report: Report::Shared(std::ptr::from_ref(failure)),
            join: None,
            extra_join: (std::ptr::null(), 0),
            rlimits: (std::ptr::null(), 0),
            nice: None,
            umask: None,
            ids: None,
        })
    }
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

/// Every signal blocked in this thread, for as long as a child may run on its memory with
/// this thread's handlers; restored on drop.
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

/// clone3 with CLONE_VM | CLONE_VFORK on the child's own stack, into the cgroup; where the
/// kernel will not place it there (EBUSY, say), without, and the child joins by writing `0`
/// to cgroup.procs. Returns once the child has exec'd or exited.
fn vfork_child(
    cgroup: Option<BorrowedFd<'_>>,
    setup: &ChildSetup,
    stack: &mut Vec<u128>,
) -> io::Result<u32> {
    let mut setup = *setup;
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
            stack_size: (stack.capacity() * 16) as u64,
            cgroup: into.map_or(0, |dir| dir.as_raw_fd() as u64),
            ..CloneArgs::default()
        };
        // SAFETY: the stack and what `setup` points at outlive the child's use of them
        // (CLONE_VFORK: clone3 returns once the child has exec'd or exited); the child makes
        // raw syscalls only (see child()).
        result = unsafe { clone3(&mut args, &setup) };
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
/// `args` describes a valid stack; with CLONE_VM the caller must keep everything the child
/// reads alive and unchanged until the child has exec'd or exited.
unsafe fn clone3(args: &mut CloneArgs, setup: &ChildSetup) -> io::Result<u32> {
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
        in("r12") child_entry as unsafe extern "C" fn(*const ChildSetup) -> !,
        in("r13") setup as *const ChildSetup,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    match ret {
        pid if pid > 0 => Ok(pid as u32),
        errno => Err(io::Error::from_raw_os_error(-errno as i32)),
    }
}

unsafe extern "C" fn child_entry(setup: *const ChildSetup) -> ! {
    child(&*setup)
}

/// The fallback without clone3: fork (the child a copy, sharing no memory), then the child
/// joins the cgroup by writing `0` to its cgroup.procs; the errno of a failed exec comes back
/// through a close-on-exec pipe.
fn fork_child(cgroup: Option<BorrowedFd<'_>>, setup: &ChildSetup) -> io::Result<u32> {
    let (report_read, report_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let procs = cgroup.and_then(open_procs);
    let setup = ChildSetup {
        report: Report::Pipe(report_write.as_raw_fd()),
        join: procs.as_ref().map(|fd| fd.as_raw_fd()),
        ..*setup
    };
    let blocked = AllBlocked::new();
    // SAFETY: the child, a copy of this process, runs only `child`, which makes raw syscalls
    // and ends in execve or _exit, as is allowed after a fork even with several threads.
    let pid = match unsafe { libc::fork() } {
        0 => unsafe { child(&setup) },
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

/// A system call with up to four arguments, without libc: its result, or `-errno`.
///
/// # Safety
/// As for the system call made.
unsafe fn syscall4(number: libc::c_long, args: [usize; 4]) -> isize {
    let ret: isize;
    std::arch::asm!(
        "syscall",
        inlateout("rax") number as isize => ret,
        in("rdi") args[0],
        in("rsi") args[1],
        in("rdx") args[2],
        in("r10") args[3],
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

/// The kernel's `struct sigaction` on x86-64.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// In the child: caught signals back to default, then an empty mask; session or process
/// group, cgroup, fds, exec. On failure the errno goes to the parent and the child exits 127.
///
/// # Safety
/// Only in a child made by vfork_child, start_detached or fork_child, with `setup` and all it
/// points at alive until the exec.
unsafe fn child(setup: &ChildSetup) -> ! {
    let fail_at = |step: Step, errno: isize| -> ! {
        let errno = i32::try_from(-errno)
            .ok()
            .filter(|e| (1..STEP_UNIT).contains(e))
            .unwrap_or(libc::EINVAL);
        let errno = step_code(step)
            .saturating_mul(STEP_UNIT)
            .saturating_add(errno);
        match setup.report {
            Report::Shared(failure) => (*failure).store(errno, Ordering::SeqCst),
            Report::Pipe(fd) => {
                let bytes = errno.to_ne_bytes();
                syscall4(
                    libc::SYS_write,
                    [fd as usize, bytes.as_ptr() as usize, 4, 0],
                );
            }
        }
        loop {
            syscall4(libc::SYS_exit_group, [127, 0, 0, 0]);
        }
    };
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let caught = std::slice::from_raw_parts(setup.caught.0, setup.caught.1);
    for signal in caught.iter().chain(&[Signal::PIPE]) {
        let action = std::ptr::from_ref(&default) as usize;
        syscall4(
            libc::SYS_rt_sigaction,
            [signal.as_raw() as usize, action, 0, 8],
        );
    }
    let empty: u64 = 0;
    let mask = std::ptr::from_ref(&empty) as usize;
    syscall4(
        libc::SYS_rt_sigprocmask,
        [libc::SIG_SETMASK as usize, mask, 0, 8],
    );
    let grouped = match setup.group {
        Group::NewSession => syscall4(libc::SYS_setsid, [0; 4]),
        Group::NewProcessGroup => syscall4(libc::SYS_setpgid, [0; 4]),
    };
    if grouped < 0 {
        fail_at(Step::Group, grouped);
    }
    if let Some(procs) = setup.join {
        // Failure leaves the child in its process group only, which still works.
        syscall4(
            libc::SYS_write,
            [procs as usize, b"0".as_ptr() as usize, 1, 0],
        );
    }
    for &(fd, target) in std::slice::from_raw_parts(setup.fds.0, setup.fds.1) {
        let placed = if fd == target {
            syscall4(libc::SYS_fcntl, [fd as usize, libc::F_SETFD as usize, 0, 0])
        } else {
            syscall4(libc::SYS_dup2, [fd as usize, target as usize, 0, 0])
        };
        if placed < 0 {
            fail_at(Step::Fds, placed);
        }
    }
    if setup.extra_join.1 > 0 {
        for &procs in std::slice::from_raw_parts(setup.extra_join.0, setup.extra_join.1) {
            let written = syscall4(
                libc::SYS_write,
                [procs as usize, b"0".as_ptr() as usize, 1, 0],
            );
            if written < 0 {
                fail_at(Step::Cgroup, written);
            }
        }
    }
    if setup.rlimits.1 > 0 {
        let limits = std::slice::from_raw_parts(setup.rlimits.0, setup.rlimits.1);
        for (n, &(resource, soft, hard)) in limits.iter().enumerate() {
            let limit = [soft, hard];
            let set = syscall4(
                libc::SYS_prlimit64,
                [0, resource as usize, limit.as_ptr() as usize, 0],
            );
            if set < 0 {
                fail_at(Step::Rlimit(n), set);
            }
        }
    }
    if let Some(nice) = setup.nice {
        let set = syscall4(
            libc::SYS_setpriority,
            [libc::PRIO_PROCESS as usize, 0, nice as isize as usize, 0],
        );
        if set < 0 {
            fail_at(Step::Nice, set);
        }
    }
    if let Some(mask) = setup.umask {
        syscall4(libc::SYS_umask, [mask as usize, 0, 0, 0]);
    }
    if let Some((uid, gid, groups, count)) = setup.ids {
        // Raw calls change this process only: the child is a process of its own (no
        // CLONE_THREAD), so there are no other threads to bring along as glibc does.
        let steps = [
            (Step::Groups, libc::SYS_setgroups, [count, groups as usize]),
            (Step::Gid, libc::SYS_setgid, [gid as usize, 0]),
            (Step::Uid, libc::SYS_setuid, [uid as usize, 0]),
        ];
        for (step, number, [a, b]) in steps {
            let set = syscall4(number, [a, b, 0, 0]);
            if set < 0 {
                fail_at(step, set);
            }
        }
    }
    let args = [
        setup.program as usize,
        setup.argv as usize,
        setup.envp as usize,
        0,
    ];
    fail_at(Step::Exec, syscall4(libc::SYS_execve, args))
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

    /// A start with nothing but `argv`, `group` and `fds`.
    fn plain<'a>(argv: &'a [CString], group: Group, fds: &'a [(RawFd, RawFd)]) -> Spawn<'a> {
        Spawn {
            argv,
            env: None,
            group,
            fds,
            cgroup: None,
            caught: &[],
        }
    }

    fn args(words: &[&str]) -> Vec<CString> {
        words.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    /// Starts `argv` with stdout on a pipe, detached or not; its pid and all it wrote, once
    /// it exited 0.
    fn output(argv: &[CString], env: Option<&[CString]>, group: Group) -> (u32, String) {
        let detached = DETACHED.with(|d| d.get());
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let fds = [(write.as_raw_fd(), 1)];
        let spawn = Spawn {
            env,
            ..plain(argv, group, &fds)
        };
        let pid = if detached {
            let launching = spawn.start_detached().unwrap();
            launching.wait_released();
            assert!(launching.exec_error().is_none());
            launching.pid()
        } else {
            spawn.start().unwrap()
        };
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
        (pid, out)
    }

    thread_local! {
        static DETACHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `test` with `output` starting children with `start`, then with `start_detached`.
    fn both_ways(test: fn()) {
        let _serial = ONE_AT_A_TIME.lock();
        for detached in [false, true] {
            DETACHED.with(|d| d.set(detached));
            test();
        }
    }

    #[test]
    fn the_child_gets_its_environment_fds_and_group() {
        both_ways(environment_fds_and_group);
    }

    fn environment_fds_and_group() {
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
        both_ways(nothing_blocked_and_sigpipe_at_default);
    }

    fn nothing_blocked_and_sigpipe_at_default() {
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
        let pid = plain(&argv, Group::NewSession, &fds).start().unwrap();
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
        let error = plain(&argv, Group::NewSession, &[]).start().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        // The child is gone and left for the caller to reap.
        let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
        assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
    }

    #[test]
    fn a_detached_start_reports_a_failed_exec_once_the_child_is_done() {
        let _serial = ONE_AT_A_TIME.lock();
        let argv = args(&["/nonexistent/program"]);
        let launching = Spawn {
            caught: &[Signal::CHILD, Signal::TERM],
            ..plain(&argv, Group::NewProcessGroup, &[])
        }
        .start_detached()
        .unwrap();
        launching.wait_released();
        assert!(launching.released());
        let error = launching.exec_error().unwrap();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        let status = wait(launching.pid());
        assert!(status.is_some_and(|s| s.exit_status() == Some(127)));
    }

    #[test]
    fn a_detached_child_still_starting_keeps_what_it_reads() {
        let _serial = ONE_AT_A_TIME.lock();
        // Many at once, each dropped at once: those not yet exec'd must keep (leak) their
        // memory rather than have it freed and reused under them. Every child must still
        // run its own arguments.
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let fds = [(write.as_raw_fd(), 1)];
        let mut pids = Vec::new();
        for i in 0..50 {
            let argv = sh(&format!("echo {i}"));
            let launching = plain(&argv, Group::NewProcessGroup, &fds)
                .start_detached()
                .unwrap();
            pids.push(launching.pid());
            // Scribbles over freed heap memory, as the rest of a program would.
            drop(launching);
            drop(argv);
            let _noise: Vec<Vec<u8>> = (0..8).map(|n| vec![0xa5; 64 << n]).collect();
        }
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        for pid in pids {
            assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
        }
        let mut said: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
        said.sort_unstable();
        assert_eq!(said, (0..50).collect::<Vec<u32>>());
    }

    #[test]
    fn issue_17_the_child_takes_limits_niceness_umask_and_ids() {
        let _serial = ONE_AT_A_TIME.lock();
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let fds = [(write.as_raw_fd(), 1)];
        let argv = sh("ulimit -n; umask; cut -d' ' -f19 /proc/$$/stat; \
             grep -E '^(Uid|Gid|Groups):' /proc/$$/status");
        let root = rustix::process::getuid().is_root();
        let groups = [65534, 1];
        let process = Process {
            rlimits: &[(libc::RLIMIT_NOFILE as i32, 77, 77)],
            nice: Some(5),
            umask: Some(0o27),
            ids: root.then_some(Ids {
                uid: 65534,
                gid: 65534,
                groups: &groups,
            }),
            join: &[],
        };
        let pid = plain(&argv, Group::NewSession, &fds)
            .start_with(&process)
            .unwrap();
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..3], ["77", "0027", "5"], "{out}");
        if root {
            let words = |l: &str| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
            assert_eq!(words(lines[3]), "65534 65534 65534 65534");
            assert_eq!(words(lines[4]), "65534 65534 65534 65534");
            assert_eq!(words(lines[5]), "1 65534");
        }
        // A limit the kernel refuses (soft above hard) is the error of the start, by step.
        let bad = Process {
            rlimits: &[
                (libc::RLIMIT_CORE as i32, 0, 0),
                (libc::RLIMIT_NOFILE as i32, 10, 5),
            ],
            ..Process::default()
        };
        let error = plain(&argv, Group::NewSession, &[])
            .start_with(&bad)
            .unwrap_err();
        assert_eq!(error.step, Step::Rlimit(1));
        assert_eq!(error.error.raw_os_error(), Some(libc::EINVAL));
        let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
        assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
    }

    #[test]
    fn the_fork_fallback_reports_a_failed_exec_too() {
        let _serial = ONE_AT_A_TIME.lock();
        let argv = args(&["/nonexistent/program"]);
        let spawn = plain(&argv, Group::NewSession, &[]);
        let memory = ChildMemory::new(&spawn).unwrap();
        let error = fork_child(None, &memory.setup).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
        assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
    }
}
