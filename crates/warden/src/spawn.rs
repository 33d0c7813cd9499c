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
//! The clone3 path ([`Method::Clone3`]) is hand-written for x86-64: the child starts on a
//! stack of its own with no Rust frame to return to, and makes raw system calls only (no
//! allocation, no lock, not even errno, which it would share with the parent's thread), on
//! memory prepared before the clone, with every signal blocked until the caught ones are back
//! at default: so, like posix_spawn, this is sound in a process of several threads too. Every
//! other architecture takes the portable path ([`Method::Fork`]): fork, then libc's
//! async-signal-safe wrappers in the child (its errno is its own), and the exec's error
//! through the close-on-exec pipe; [`Spawn::start_detached`] then waits for the exec too. On
//! x86-64 `WARDEN_SPAWN=fork` in the environment, read once at the first start, selects the
//! portable path, so that it is built and tested here: the unit tests below run every case
//! both ways, and the integration suite passes with the switch on.
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
use std::sync::OnceLock;

/// What the child leads, so that signals meant for the parent's terminal or group stay off it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A session of its own (setsid): svscan's supervisors, supervise's `./run` and `./finish`.
    NewSession,
    /// A process group of its own (setpgid).
    NewProcessGroup,
    /// The caller's process group: what `svctl -w` runs (`check`), as runit's `sv` runs it,
    /// so that in a terminal it is in the foreground with svctl (a terminal set to `tostop`
    /// would stop a background one at its first message) and a ctrl-C reaches both.
    Caller,
}

/// How children are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// clone3 with CLONE_VM on a stack of the child's own, raw system calls in the child
    /// (x86-64 only); a fork where the kernel refuses it.
    #[cfg(target_arch = "x86_64")]
    Clone3,
    /// fork, libc's wrappers in the child, a failed exec reported through a pipe: every
    /// architecture.
    Fork,
}

impl Method {
    /// Every method this architecture has.
    pub const ALL: &'static [Method] = &[
        #[cfg(target_arch = "x86_64")]
        Method::Clone3,
        Method::Fork,
    ];

    /// The method for a value of `WARDEN_SPAWN`: `fork` selects [`Method::Fork`]; anything
    /// else (or nothing) the architecture's fastest.
    pub fn from_switch(value: Option<&OsStr>) -> Method {
        match value {
            Some(v) if v.as_bytes() == b"fork" => Method::Fork,
            _ => Method::ALL.first().copied().unwrap_or(Method::Fork),
        }
    }
}

/// The method of this process: `WARDEN_SPAWN`, read once, at the first start.
pub fn method() -> Method {
    static METHOD: OnceLock<Method> = OnceLock::new();
    *METHOD.get_or_init(|| Method::from_switch(std::env::var_os("WARDEN_SPAWN").as_deref()))
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
    /// The directory to run in (chdir before anything else of this list).
    pub cwd: Option<&'a std::ffi::CStr>,
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
    /// chdir to [`Process::cwd`].
    Cwd,
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
    /// The child, which exited 127, for the caller to reap; `None` when none was made.
    pub pid: Option<u32>,
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
        Step::Cwd => 8,
        Step::Rlimit(n) => 16_i32.saturating_add(i32::try_from(n).unwrap_or(i32::MAX - 16)),
    }
}

fn decode_failure(code: i32, pid: Option<u32>) -> StartError {
    let (step, errno) = (code / STEP_UNIT, code % STEP_UNIT);
    let step = match step {
        1 => Step::Group,
        2 => Step::Fds,
        3 => Step::Cgroup,
        4 => Step::Nice,
        5 => Step::Groups,
        6 => Step::Gid,
        7 => Step::Uid,
        8 => Step::Cwd,
        n if n >= 16 => Step::Rlimit(usize::try_from(n - 16).unwrap_or(0)),
        _ => Step::Exec,
    };
    StartError {
        step,
        error: io::Error::from_raw_os_error(errno),
        pid,
    }
}

impl Spawn<'_> {
    /// Starts the child with an empty signal mask; returns its pid once it has exec'd, or the
    /// exec's error (the child, then gone, is reaped by the caller's reaper like any other).
    pub fn start(&self) -> io::Result<u32> {
        self.start_with(&Process::default()).map_err(|e| e.error)
    }

    /// [`Spawn::start`] by the method given.
    pub fn start_by(&self, method: Method) -> io::Result<u32> {
        self.start_with_by(&Process::default(), method)
            .map_err(|e| e.error)
    }

    /// [`Spawn::start`], with the child setting up `process` before its exec; the error says
    /// which step failed.
    pub fn start_with(&self, process: &Process<'_>) -> Result<u32, StartError> {
        self.start_with_by(process, method())
    }

    /// [`Spawn::start_with`] by the method given.
    pub fn start_with_by(&self, process: &Process<'_>, method: Method) -> Result<u32, StartError> {
        let exec = |error| StartError {
            step: Step::Exec,
            error,
            pid: None,
        };
        let argv = null_terminated(self.argv);
        let env = self.env.map(null_terminated);
        let failure = AtomicI32::new(0);
        let mut setup = ChildSetup::new(self, &argv, env.as_deref(), &failure).map_err(exec)?;
        setup.cwd = process.cwd.map_or(std::ptr::null(), |c| c.as_ptr());
        setup.extra_join = (process.join.as_ptr(), process.join.len());
        setup.rlimits = (process.rlimits.as_ptr(), process.rlimits.len());
        setup.nice = process.nice;
        setup.umask = process.umask;
        setup.ids = process
            .ids
            .map(|ids| (ids.uid, ids.gid, ids.groups.as_ptr(), ids.groups.len()));
        // fork_child reaps nothing; its pid is not known here: the caller's reaper of any
        // child takes it.
        let forked = |setup: &ChildSetup| {
            fork_child(self.cgroup, setup).map_err(|e| match e.raw_os_error() {
                Some(code) if code >= STEP_UNIT => decode_failure(code, None),
                _ => exec(e),
            })
        };
        match method {
            #[cfg(target_arch = "x86_64")]
            Method::Clone3 => {
                // u128 for the 16-byte alignment the ABI wants of the stack pointer at a
                // call; left uninitialised, so that only what the child touches costs memory.
                let mut stack: Vec<u128> = Vec::with_capacity(VFORK_STACK / 16);
                match x86_64::vfork_child(self.cgroup, &setup, &mut stack) {
                    Ok(pid) => match failure.load(Ordering::SeqCst) {
                        0 => Ok(pid),
                        code => Err(decode_failure(code, Some(pid))),
                    },
                    // No clone3 (Linux before 5.3, or a seccomp filter that says ENOSYS), or
                    // one that refuses these flags: the plain fork still starts the program.
                    Err(_) => forked(&setup),
                }
            }
            Method::Fork => forked(&setup),
        }
    }

    /// Starts the child as [`Spawn::start`] does, without waiting for its exec: the returned
    /// [`Launching`] holds what the child reads until then, and says whether the exec failed.
    /// `cgroup` must be `None`.
    pub fn start_detached(&self) -> io::Result<Launching> {
        self.start_detached_by(method())
    }

    /// [`Spawn::start_detached`] by the method given ([`Method::Fork`] waits for the exec).
    pub fn start_detached_by(&self, method: Method) -> io::Result<Launching> {
        if self.cgroup.is_some() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let memory = ChildMemory::new(self)?;
        match method {
            #[cfg(target_arch = "x86_64")]
            Method::Clone3 => x86_64::start_detached(memory),
            Method::Fork => forked(memory),
        }
    }
}

/// A detached start by fork, which reports its exec before returning: released at once.
fn forked(memory: ChildMemory) -> io::Result<Launching> {
    let (pid, errno) = fork_exec(None, &memory.setup)?;
    memory.words.failure.store(errno, Ordering::SeqCst);
    memory.words.tid.store(0, Ordering::SeqCst);
    Ok(Launching {
        pid,
        memory: ManuallyDrop::new(memory),
    })
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
            code => Some(decode_failure(code, None).error),
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
#[cfg(target_arch = "x86_64")]
const VFORK_STACK: usize = 64 * 1024;

/// The stack of a detached child (svscan holds at most 32 at once).
#[cfg(target_arch = "x86_64")]
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
    #[cfg(target_arch = "x86_64")]
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
            #[cfg(target_arch = "x86_64")]
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
    /// Only the exit status 127: a forked child without a pipe (no fd was left for one).
    Exit,
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
    /// A directory to change to, or null.
    cwd: *const libc::c_char,
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
            cwd: std::ptr::null(),
            extra_join: (std::ptr::null(), 0),
            rlimits: (std::ptr::null(), 0),
            nice: None,
            umask: None,
            ids: None,
        })
    }
}

/// Every signal blocked in this thread, for as long as a child may run on its memory with
/// this thread's handlers; restored on drop.
struct AllBlocked(libc::sigset_t);

impl AllBlocked {
    fn new() -> AllBlocked {
        // SAFETY: sigset_t is a plain bit set, for which all zeroes is a valid value.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: fills a sigset_t this function owns.
        unsafe { libc::sigfillset(&mut all) };
        // SAFETY: both sets are valid for the call; `old` receives the mask to restore.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
        AllBlocked(old)
    }
}

impl Drop for AllBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new().
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
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

/// The clone3 path: x86-64's system call convention, the child's first frame, raw calls.
#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use super::{child, AllBlocked, ChildCalls, ChildMemory, ChildSetup, Launching};
    use rustix::fd::{AsRawFd, BorrowedFd, RawFd};
    use std::io;
    use std::mem::ManuallyDrop;
    use std::sync::atomic::Ordering;

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

    /// [`super::Spawn::start_detached_by`] with clone3: the parent goes on at once.
    pub(super) fn start_detached(mut memory: ChildMemory) -> io::Result<Launching> {
        // Set before the child exists; the kernel writes the pid over it
        // (CLONE_PARENT_SETTID) before the child runs, and zero once the child has exec'd or
        // exited.
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
            // No clone3 here: a fork, which reports its exec before returning.
            Err(_) => super::forked(memory),
        }
    }

    /// clone3 with CLONE_VM | CLONE_VFORK on the child's own stack, into the cgroup; where
    /// the kernel will not place it there (EBUSY, say), without, and the child joins by
    /// writing `0` to cgroup.procs. Returns once the child has exec'd or exited.
    pub(super) fn vfork_child(
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
                    procs = super::open_procs(dir);
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
            // (CLONE_VFORK: clone3 returns once the child has exec'd or exited); the child
            // makes raw syscalls only (see child()).
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

    /// The raw clone3 call: the child starts on the stack given in `args`, with no Rust frame
    /// to return to, so it is sent straight into `child_entry`.
    ///
    /// # Safety
    /// `args` describes a valid stack; with CLONE_VM the caller must keep everything the
    /// child reads alive and unchanged until the child has exec'd or exited.
    unsafe fn clone3(args: &mut CloneArgs, setup: &ChildSetup) -> io::Result<u32> {
        let ret: isize;
        // SAFETY: clone3 with the caller's promises; in the child (rax 0) nothing of this
        // frame is used: it calls child_entry on its own stack, which never returns.
        unsafe {
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
        }
        match ret {
            pid if pid > 0 => Ok(pid as u32),
            errno => Err(io::Error::from_raw_os_error(-errno as i32)),
        }
    }

    /// The child's first frame.
    ///
    /// # Safety
    /// Only as clone3's child, with `setup` valid until the exec.
    unsafe extern "C" fn child_entry(setup: *const ChildSetup) -> ! {
        // SAFETY: clone3's caller keeps `setup` alive until the exec; the raw calls touch no
        // state the parent shares (no errno, no lock).
        unsafe { child::<Raw>(&*setup) }
    }

    /// A system call with up to four arguments, without libc: its result, or `-errno`.
    ///
    /// # Safety
    /// As for the system call made.
    unsafe fn syscall4(number: libc::c_long, args: [usize; 4]) -> isize {
        let ret: isize;
        // SAFETY: the `syscall` instruction with x86-64's convention; what it does is the
        // caller's to make safe.
        unsafe {
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
        }
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

    /// Raw system calls: what a child sharing its parent's memory may make.
    pub(super) struct Raw;

    impl ChildCalls for Raw {
        unsafe fn default_signal(signal: i32) {
            let default = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            let action = std::ptr::from_ref(&default) as usize;
            // SAFETY: a valid kernel sigaction, 8 bytes of mask.
            unsafe { syscall4(libc::SYS_rt_sigaction, [signal as usize, action, 0, 8]) };
        }

        unsafe fn empty_mask() {
            let empty: u64 = 0;
            let mask = std::ptr::from_ref(&empty) as usize;
            // SAFETY: an 8-byte mask that outlives the call.
            unsafe {
                syscall4(
                    libc::SYS_rt_sigprocmask,
                    [libc::SIG_SETMASK as usize, mask, 0, 8],
                )
            };
        }

        unsafe fn setsid() -> isize {
            // SAFETY: no arguments.
            unsafe { syscall4(libc::SYS_setsid, [0; 4]) }
        }

        unsafe fn setpgid() -> isize {
            // SAFETY: setpgid(0, 0): this process, its own group.
            unsafe { syscall4(libc::SYS_setpgid, [0; 4]) }
        }

        unsafe fn write(fd: RawFd, bytes: &[u8]) -> isize {
            let (ptr, len) = (bytes.as_ptr() as usize, bytes.len());
            // SAFETY: `bytes` is valid for reads of its length.
            unsafe { syscall4(libc::SYS_write, [fd as usize, ptr, len, 0]) }
        }

        unsafe fn keep_open(fd: RawFd) -> isize {
            // SAFETY: F_SETFD 0 on an fd number: no memory involved.
            unsafe { syscall4(libc::SYS_fcntl, [fd as usize, libc::F_SETFD as usize, 0, 0]) }
        }

        unsafe fn dup2(fd: RawFd, target: RawFd) -> isize {
            // SAFETY: fd numbers only.
            unsafe { syscall4(libc::SYS_dup2, [fd as usize, target as usize, 0, 0]) }
        }

        unsafe fn chdir(path: *const libc::c_char) -> isize {
            // SAFETY: the caller passes a valid NUL-terminated path.
            unsafe { syscall4(libc::SYS_chdir, [path as usize, 0, 0, 0]) }
        }

        unsafe fn prlimit(resource: i32, limit: [u64; 2]) -> isize {
            let new = limit.as_ptr() as usize;
            // SAFETY: two u64 of this frame, read by the kernel as a struct rlimit64.
            unsafe { syscall4(libc::SYS_prlimit64, [0, resource as usize, new, 0]) }
        }

        unsafe fn setpriority(nice: i32) -> isize {
            let which = libc::PRIO_PROCESS as usize;
            // SAFETY: no memory involved.
            unsafe { syscall4(libc::SYS_setpriority, [which, 0, nice as isize as usize, 0]) }
        }

        unsafe fn umask(mask: u32) {
            // SAFETY: no memory involved.
            unsafe { syscall4(libc::SYS_umask, [mask as usize, 0, 0, 0]) };
        }

        unsafe fn setgroups(groups: *const u32, count: usize) -> isize {
            // SAFETY: the caller passes `count` valid group ids.
            unsafe { syscall4(libc::SYS_setgroups, [count, groups as usize, 0, 0]) }
        }

        // Raw calls change this process only: the child is a process of its own (no
        // CLONE_THREAD), so there are no other threads to bring along as glibc does.
        unsafe fn setgid(gid: u32) -> isize {
            // SAFETY: no memory involved.
            unsafe { syscall4(libc::SYS_setgid, [gid as usize, 0, 0, 0]) }
        }

        unsafe fn setuid(uid: u32) -> isize {
            // SAFETY: no memory involved.
            unsafe { syscall4(libc::SYS_setuid, [uid as usize, 0, 0, 0]) }
        }

        unsafe fn execve(setup: &ChildSetup) -> isize {
            let args = [
                setup.program as usize,
                setup.argv as usize,
                setup.envp as usize,
                0,
            ];
            // SAFETY: the caller keeps program, argv and envp (null-terminated) alive.
            unsafe { syscall4(libc::SYS_execve, args) }
        }

        unsafe fn exit(code: i32) -> ! {
            loop {
                // SAFETY: ends the child; the loop only satisfies the type.
                unsafe { syscall4(libc::SYS_exit_group, [code as usize, 0, 0, 0]) };
            }
        }
    }
}

/// The fallback without clone3, and the portable path: fork (the child a copy, sharing no
/// memory), then the child joins the cgroup by writing `0` to its cgroup.procs; the errno of
/// a failed exec comes back through a close-on-exec pipe.
fn fork_child(cgroup: Option<BorrowedFd<'_>>, setup: &ChildSetup) -> io::Result<u32> {
    match fork_exec(cgroup, setup)? {
        (pid, 0) => Ok(pid),
        (_, errno) => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// [`fork_child`]'s fork: the child's pid and, once it has exec'd or exited, the errno of a
/// failed exec, or 0.
///
/// With no fd left for the pipe (EMFILE, ENFILE: svscan short of fds for a log pipe still
/// starts the service's supervisor, as the clone3 path does), the child is started without
/// it: a failed exec is then seen only as the child's exit 127.
fn fork_exec(cgroup: Option<BorrowedFd<'_>>, setup: &ChildSetup) -> io::Result<(u32, i32)> {
    let (report_read, report_write) = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC) {
        Ok((read, write)) => (Some(read), Some(write)),
        Err(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => (None, None),
        Err(e) => return Err(e.into()),
    };
    let procs = cgroup.and_then(open_procs);
    let setup = ChildSetup {
        report: match &report_write {
            Some(write) => Report::Pipe(write.as_raw_fd()),
            None => Report::Exit,
        },
        join: procs.as_ref().map(|fd| fd.as_raw_fd()),
        ..*setup
    };
    let blocked = AllBlocked::new();
    // SAFETY: fork has no memory preconditions; the child, a copy of this process, runs only
    // `child`, which calls async-signal-safe functions and ends in execve or _exit, as is
    // allowed after a fork even with several threads.
    let pid = match unsafe { libc::fork() } {
        // SAFETY: the forked child's copy of `setup` and all it points at stays put.
        0 => unsafe { child::<Libc>(&setup) },
        p if p > 0 => p as u32,
        _ => return Err(io::Error::last_os_error()),
    };
    drop(blocked);
    drop(report_write);
    drop(procs);
    let Some(report_read) = report_read else {
        return Ok((pid, 0));
    };
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
        return Ok((pid, i32::from_ne_bytes(errno)));
    }
    Ok((pid, 0))
}

/// The system calls the child makes: each returns its result or `-errno`.
trait ChildCalls {
    /// # Safety
    /// In a child made by this module, as every method here.
    unsafe fn default_signal(signal: i32);
    /// # Safety
    /// As above.
    unsafe fn empty_mask();
    /// # Safety
    /// As above.
    unsafe fn setsid() -> isize;
    /// # Safety
    /// As above.
    unsafe fn setpgid() -> isize;
    /// # Safety
    /// As above.
    unsafe fn write(fd: RawFd, bytes: &[u8]) -> isize;
    /// Clears FD_CLOEXEC.
    ///
    /// # Safety
    /// As above.
    unsafe fn keep_open(fd: RawFd) -> isize;
    /// # Safety
    /// As above.
    unsafe fn dup2(fd: RawFd, target: RawFd) -> isize;
    /// # Safety
    /// As above, with `path` a valid NUL-terminated string.
    unsafe fn chdir(path: *const libc::c_char) -> isize;
    /// prlimit on this process: `[soft, hard]`.
    ///
    /// # Safety
    /// As above.
    unsafe fn prlimit(resource: i32, limit: [u64; 2]) -> isize;
    /// # Safety
    /// As above.
    unsafe fn setpriority(nice: i32) -> isize;
    /// # Safety
    /// As above.
    unsafe fn umask(mask: u32);
    /// # Safety
    /// As above, with `groups` valid for `count` reads.
    unsafe fn setgroups(groups: *const u32, count: usize) -> isize;
    /// These change this process only: the child is a process of its own, one thread.
    ///
    /// # Safety
    /// As above.
    unsafe fn setgid(gid: u32) -> isize;
    /// # Safety
    /// As above.
    unsafe fn setuid(uid: u32) -> isize;
    /// # Safety
    /// As above, with `setup`'s program, argv and envp valid.
    unsafe fn execve(setup: &ChildSetup) -> isize;
    /// # Safety
    /// As above.
    unsafe fn exit(code: i32) -> !;
}

/// libc's async-signal-safe wrappers: for a forked child, whose errno is its own.
struct Libc;

impl Libc {
    /// A wrapper's result as the raw calls give it: `-errno` on failure.
    fn result(ret: libc::c_int) -> isize {
        if ret < 0 {
            -(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL) as isize)
        } else {
            ret as isize
        }
    }
}

impl ChildCalls for Libc {
    unsafe fn default_signal(signal: i32) {
        // SAFETY: a zeroed sigaction is a valid one (empty mask, no flags); SIG_DFL set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = libc::SIG_DFL;
        // SAFETY: a valid sigaction that outlives the call; the old one is not asked for.
        unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
    }

    unsafe fn empty_mask() {
        // SAFETY: all zeroes is a valid sigset_t; sigemptyset makes it empty.
        let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: fills a set this function owns.
        unsafe { libc::sigemptyset(&mut empty) };
        // SAFETY: a valid set; the old mask is not asked for.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
    }

    unsafe fn setsid() -> isize {
        // SAFETY: no arguments.
        Libc::result(unsafe { libc::setsid() })
    }

    unsafe fn setpgid() -> isize {
        // SAFETY: this process, its own group.
        Libc::result(unsafe { libc::setpgid(0, 0) })
    }

    unsafe fn write(fd: RawFd, bytes: &[u8]) -> isize {
        // SAFETY: `bytes` is valid for reads of its length.
        match unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) } {
            ret if ret < 0 => Libc::result(-1),
            ret => ret,
        }
    }

    unsafe fn keep_open(fd: RawFd) -> isize {
        // SAFETY: fd numbers only.
        Libc::result(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })
    }

    unsafe fn dup2(fd: RawFd, target: RawFd) -> isize {
        // SAFETY: fd numbers only.
        Libc::result(unsafe { libc::dup2(fd, target) })
    }

    unsafe fn chdir(path: *const libc::c_char) -> isize {
        // SAFETY: the caller passes a valid NUL-terminated path.
        Libc::result(unsafe { libc::chdir(path) })
    }

    unsafe fn prlimit(resource: i32, limit: [u64; 2]) -> isize {
        let new = libc::rlimit64 {
            rlim_cur: limit[0],
            rlim_max: limit[1],
        };
        // SAFETY: a valid rlimit64 of this frame; the old one is not asked for. The resource
        // type differs between libcs, hence the cast.
        Libc::result(unsafe { libc::prlimit64(0, resource as _, &new, std::ptr::null_mut()) })
    }

    unsafe fn setpriority(nice: i32) -> isize {
        // SAFETY: no memory involved.
        Libc::result(unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) })
    }

    unsafe fn umask(mask: u32) {
        // SAFETY: no memory involved.
        unsafe { libc::umask(mask as libc::mode_t) };
    }

    // The system calls themselves, not glibc's set*id wrappers (which signal every thread
    // to change along): a forked child has one thread.
    unsafe fn setgroups(groups: *const u32, count: usize) -> isize {
        // SAFETY: the caller passes `count` valid group ids.
        Libc::result(unsafe { libc::syscall(libc::SYS_setgroups, count, groups) } as libc::c_int)
    }

    unsafe fn setgid(gid: u32) -> isize {
        // SAFETY: no memory involved.
        Libc::result(unsafe { libc::syscall(libc::SYS_setgid, gid) } as libc::c_int)
    }

    unsafe fn setuid(uid: u32) -> isize {
        // SAFETY: no memory involved.
        Libc::result(unsafe { libc::syscall(libc::SYS_setuid, uid) } as libc::c_int)
    }

    unsafe fn execve(setup: &ChildSetup) -> isize {
        // SAFETY: the caller keeps program, argv and envp (null-terminated) alive.
        Libc::result(unsafe { libc::execve(setup.program, setup.argv, setup.envp) })
    }

    unsafe fn exit(code: i32) -> ! {
        // SAFETY: _exit runs no atexit handler and flushes nothing: it only ends the child.
        unsafe { libc::_exit(code) }
    }
}

/// In the child: caught signals back to default, then an empty mask; session or process
/// group, cgroup, fds, exec. On failure the errno goes to the parent and the child exits 127.
///
/// # Safety
/// Only in a child made by this module, with `setup` and all it points at alive until the
/// exec, and `C` the calls that child may make (raw ones where it shares this memory).
unsafe fn child<C: ChildCalls>(setup: &ChildSetup) -> ! {
    let fail_at = |step: Step, errno: isize| -> ! {
        let errno = i32::try_from(-errno)
            .ok()
            .filter(|e| (1..STEP_UNIT).contains(e))
            .unwrap_or(libc::EINVAL);
        let errno = step_code(step)
            .saturating_mul(STEP_UNIT)
            .saturating_add(errno);
        match setup.report {
            // SAFETY: the parent's word, alive until the child has exec'd or exited.
            Report::Shared(failure) => unsafe { (*failure).store(errno, Ordering::SeqCst) },
            Report::Pipe(fd) => {
                // SAFETY: a write of four bytes of this frame; a failure changes nothing.
                unsafe { C::write(fd, &errno.to_ne_bytes()) };
            }
            Report::Exit => {}
        }
        // SAFETY: ends the child.
        unsafe { C::exit(127) }
    };
    // SAFETY: the caller keeps the caught signals where `setup` says.
    let caught = unsafe { std::slice::from_raw_parts(setup.caught.0, setup.caught.1) };
    for signal in caught.iter().chain(&[Signal::PIPE]) {
        // SAFETY: a signal number; the handler it replaces is this process's.
        unsafe { C::default_signal(signal.as_raw()) };
    }
    // SAFETY: this thread's mask only.
    unsafe { C::empty_mask() };
    let grouped = match setup.group {
        // SAFETY: no memory involved.
        Group::NewSession => unsafe { C::setsid() },
        // SAFETY: no memory involved.
        Group::NewProcessGroup => unsafe { C::setpgid() },
        Group::Caller => 0,
    };
    if grouped < 0 {
        fail_at(Step::Group, grouped);
    }
    if let Some(procs) = setup.join {
        // Failure leaves the child in its process group only, which still works.
        // SAFETY: a static byte string.
        unsafe { C::write(procs, b"0") };
    }
    // SAFETY: the caller keeps the fd pairs where `setup` says.
    let fds = unsafe { std::slice::from_raw_parts(setup.fds.0, setup.fds.1) };
    for &(fd, target) in fds {
        let placed = if fd == target {
            // SAFETY: fd numbers only.
            unsafe { C::keep_open(fd) }
        } else {
            // SAFETY: fd numbers only.
            unsafe { C::dup2(fd, target) }
        };
        if placed < 0 {
            fail_at(Step::Fds, placed);
        }
    }
    if !setup.cwd.is_null() {
        // SAFETY: the caller keeps the path (NUL-terminated) alive.
        let changed = unsafe { C::chdir(setup.cwd) };
        if changed < 0 {
            fail_at(Step::Cwd, changed);
        }
    }
    if setup.extra_join.1 > 0 {
        // SAFETY: the caller keeps the fds where `setup` says.
        let joins = unsafe { std::slice::from_raw_parts(setup.extra_join.0, setup.extra_join.1) };
        for &procs in joins {
            // SAFETY: a static byte string.
            let written = unsafe { C::write(procs, b"0") };
            if written < 0 {
                fail_at(Step::Cgroup, written);
            }
        }
    }
    if setup.rlimits.1 > 0 {
        // SAFETY: the caller keeps the limits where `setup` says.
        let limits = unsafe { std::slice::from_raw_parts(setup.rlimits.0, setup.rlimits.1) };
        for (n, &(resource, soft, hard)) in limits.iter().enumerate() {
            // SAFETY: a resource number and two values of this frame.
            let set = unsafe { C::prlimit(resource, [soft, hard]) };
            if set < 0 {
                fail_at(Step::Rlimit(n), set);
            }
        }
    }
    if let Some(nice) = setup.nice {
        // SAFETY: no memory involved.
        let set = unsafe { C::setpriority(nice) };
        if set < 0 {
            fail_at(Step::Nice, set);
        }
    }
    if let Some(mask) = setup.umask {
        // SAFETY: no memory involved.
        unsafe { C::umask(mask) };
    }
    if let Some((uid, gid, groups, count)) = setup.ids {
        // Raw calls change this process only: the child is a process of its own (no
        // CLONE_THREAD), so there are no other threads to bring along as glibc does.
        // SAFETY: the caller keeps the groups where `setup` says.
        let set = unsafe { C::setgroups(groups, count) };
        if set < 0 {
            fail_at(Step::Groups, set);
        }
        // SAFETY: no memory involved.
        let set = unsafe { C::setgid(gid) };
        if set < 0 {
            fail_at(Step::Gid, set);
        }
        // SAFETY: no memory involved.
        let set = unsafe { C::setuid(uid) };
        if set < 0 {
            fail_at(Step::Uid, set);
        }
    }
    // SAFETY: the caller keeps program, argv and envp alive until the exec.
    fail_at(Step::Exec, unsafe { C::execve(setup) })
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
        let (method, detached) = WAY.with(|d| d.get());
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let fds = [(write.as_raw_fd(), 1)];
        let spawn = Spawn {
            env,
            ..plain(argv, group, &fds)
        };
        let pid = if detached {
            let launching = spawn.start_detached_by(method).unwrap();
            launching.wait_released();
            assert!(launching.exec_error().is_none());
            launching.pid()
        } else {
            spawn.start_by(method).unwrap()
        };
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
        (pid, out)
    }

    thread_local! {
        /// How `output` starts its children: the method, and whether detached.
        static WAY: std::cell::Cell<(Method, bool)> =
            const { std::cell::Cell::new((Method::Fork, false)) };
    }

    /// Runs `test` with `output` starting children by every method this architecture has
    /// (clone3 and fork on x86-64), with `start`, then with `start_detached`.
    fn both_ways(test: fn()) {
        let _serial = ONE_AT_A_TIME.lock();
        for &method in Method::ALL {
            for detached in [false, true] {
                WAY.with(|d| d.set((method, detached)));
                test();
            }
        }
    }

    #[test]
    fn the_switch_selects_the_portable_path() {
        assert_eq!(Method::from_switch(Some(OsStr::new("fork"))), Method::Fork);
        let fastest = Method::from_switch(None);
        assert_eq!(Method::from_switch(Some(OsStr::new("clone3"))), fastest);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(fastest, Method::Clone3);
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(fastest, Method::Fork);
        assert_eq!(
            Method::ALL.len(),
            if cfg!(target_arch = "x86_64") { 2 } else { 1 }
        );
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
        // This test's own group and session.
        let (pid, out) = output(&script, None, Group::Caller);
        let words: Vec<&str> = out.split_whitespace().collect();
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let own: Vec<&str> = own.rsplit_once(") ").unwrap().1.split(' ').collect();
        assert_eq!(words, [pid.to_string().as_str(), own[2], own[3]]);
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
        for &method in Method::ALL {
            let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
            let number = write.as_raw_fd();
            let argv = sh(&format!("echo through >&{number}"));
            let fds = [(number, number)];
            let pid = plain(&argv, Group::NewSession, &fds)
                .start_by(method)
                .unwrap();
            drop(write);
            let mut out = String::new();
            std::fs::File::from(read).read_to_string(&mut out).unwrap();
            assert_eq!(out, "through\n", "{method:?}");
            assert!(wait(pid).is_some_and(|s| s.exit_status() == Some(0)));
        }
    }

    #[test]
    fn a_failed_exec_is_the_error_of_the_start() {
        let _serial = ONE_AT_A_TIME.lock();
        for &method in Method::ALL {
            let argv = [CString::new("/nonexistent/program").unwrap()];
            let spawn = plain(&argv, Group::NewSession, &[]);
            let error = spawn.start_by(method).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{method:?}");
            // The child is gone and left for the caller to reap.
            let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
            assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
        }
    }

    #[test]
    fn a_failed_dup_is_the_error_of_the_start() {
        let _serial = ONE_AT_A_TIME.lock();
        for &method in Method::ALL {
            let argv = args(&["/bin/true"]);
            // An fd number far above any open one: EBADF from the child's dup2.
            let fds = [(4000, 5)];
            let error = plain(&argv, Group::NewSession, &fds)
                .start_by(method)
                .unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{method:?}");
            let status = rustix::process::wait(rustix::process::WaitOptions::empty()).unwrap();
            assert!(status.is_some_and(|(_, s)| s.exit_status() == Some(127)));
        }
    }

    #[test]
    fn a_detached_start_reports_a_failed_exec_once_the_child_is_done() {
        let _serial = ONE_AT_A_TIME.lock();
        for &method in Method::ALL {
            let argv = args(&["/nonexistent/program"]);
            let launching = Spawn {
                caught: &[Signal::CHILD, Signal::TERM],
                ..plain(&argv, Group::NewProcessGroup, &[])
            }
            .start_detached_by(method)
            .unwrap();
            launching.wait_released();
            assert!(launching.released());
            let error = launching.exec_error().unwrap();
            assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{method:?}");
            let status = wait(launching.pid());
            assert!(status.is_some_and(|s| s.exit_status() == Some(127)));
        }
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
            let method = Method::ALL[i as usize % Method::ALL.len()];
            let launching = plain(&argv, Group::NewProcessGroup, &fds)
                .start_detached_by(method)
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
    #[allow(clippy::unnecessary_cast)] // RLIMIT_* are u32 with glibc, c_int with musl
    fn issue_17_the_child_takes_limits_niceness_umask_and_ids() {
        let _serial = ONE_AT_A_TIME.lock();
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let fds = [(write.as_raw_fd(), 1)];
        let argv = sh("ulimit -n; umask; cut -d' ' -f19 /proc/$$/stat; \
             grep -E '^(Uid|Gid|Groups):' /proc/$$/status; pwd");
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
            cwd: Some(c"/proc"),
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
        assert_eq!(lines.last(), Some(&"/proc"));
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
