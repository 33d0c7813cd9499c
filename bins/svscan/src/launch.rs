//! Starting a supervisor with posix_spawn(3).
//!
//! glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK: the child borrows svscan's memory
//! until its exec, so nothing of svscan is copied (a fork copies its page tables, and every
//! page either side then writes is copied again), and svscan waits only until the exec has
//! replaced the child's memory, not until `supervise` is loaded. With a thousand services the
//! copies a fork makes cost more than the rest of starting them; std's Command forks when asked
//! for a process group. An exec that fails is returned here as the error, as with a fork.

use rustix::fd::{AsRawFd, OwnedFd, RawFd};
use rustix::process::Pid;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// What the child's fd 0, or fds 1 and 2, are made of.
pub enum Stdio<'a> {
    Inherit,
    /// The write end of a log pipe, as stdout and stderr.
    Output(&'a OwnedFd),
    /// The read end of a log pipe, as stdin.
    Input(&'a OwnedFd),
}

extern "C" {
    static environ: *const *mut libc::c_char;
}

/// Starts `program args...` (looked for on PATH when `program` has no slash) in a process
/// group of its own, with `stdio` in place, default SIGPIPE (std's runtime ignores it, and an
/// ignored signal stays ignored across exec) and an empty signal mask.
pub fn spawn(program: &OsStr, args: &[&OsStr], stdio: Stdio<'_>) -> io::Result<Pid> {
    let c = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let argv: Vec<CString> = std::iter::once(program)
        .chain(args.iter().copied())
        .map(c)
        .collect::<io::Result<_>>()?;
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let (fd, targets): (RawFd, &[RawFd]) = match stdio {
        Stdio::Inherit => (-1, &[]),
        Stdio::Output(write) => (write.as_raw_fd(), &[1, 2]),
        Stdio::Input(read) => (read.as_raw_fd(), &[0]),
    };
    let mut spawn = Spawn::new()?;
    for &target in targets {
        // Also when `fd` already is `target` (svscan started with that fd closed): glibc then
        // clears close-on-exec, as POSIX asks since 2017.
        spawn.dup2(fd, target)?;
    }
    spawn.run(&argv_ptrs)
}

/// posix_spawn's attributes and file actions, destroyed on drop.
struct Spawn {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

impl Spawn {
    fn new() -> io::Result<Spawn> {
        // SAFETY: both are plain C structs that their init functions fill in (glibc's file
        // actions point at a heap array, so they may be moved once initialised).
        let mut spawn = unsafe {
            let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
            check(libc::posix_spawnattr_init(&mut attr))?;
            let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            if let Err(e) = check(libc::posix_spawn_file_actions_init(&mut actions)) {
                libc::posix_spawnattr_destroy(&mut attr);
                return Err(e);
            }
            Spawn { attr, actions }
        };
        // SAFETY: sigset_t is a plain bit set that sigemptyset fills in; the attribute setters
        // only copy what they are given into the initialised attributes.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut default: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut default);
            libc::sigaddset(&mut default, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigmask(&mut spawn.attr, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(
                &mut spawn.attr,
                &default,
            ))?;
            // Process group 0: the child's own. A ctrl-C at the terminal svscan runs in then
            // reaches svscan alone, which stops the tree in order (runsvdir -P does the same).
            check(libc::posix_spawnattr_setpgroup(&mut spawn.attr, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(
                &mut spawn.attr,
                flags as libc::c_short,
            ))?;
        }
        Ok(spawn)
    }

    fn dup2(&mut self, fd: RawFd, target: RawFd) -> io::Result<()> {
        // SAFETY: the file actions were initialised in new(); adddup2 records two integers.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.actions, fd, target) })
    }

    /// `argv` ends with a null pointer; its strings outlive the call.
    fn run(&self, argv: &[*mut libc::c_char]) -> io::Result<Pid> {
        let Some(&program) = argv.first() else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let mut pid: libc::pid_t = 0;
        // SAFETY: argv is null-terminated and points at live CStrings; environ is libc's own
        // environment, which svscan never changes; attr and actions are initialised.
        check(unsafe {
            libc::posix_spawnp(
                &mut pid,
                program,
                &self.actions,
                &self.attr,
                argv.as_ptr(),
                environ,
            )
        })?;
        Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }
}

impl Drop for Spawn {
    fn drop(&mut self) {
        // SAFETY: both were initialised in new(), which returns no Spawn otherwise.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}
