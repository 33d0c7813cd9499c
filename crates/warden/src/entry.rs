//! The C `main` of the programs that start by the thousand: `supervise`, one per service, and
//! `logger`, one per `log/`.
//!
//! Before a Rust `main` runs, Rust's runtime finds the main thread's stack by reading
//! /proc/self/maps (glibc's `pthread_getattr_np`) and sets up an alternate signal stack for
//! its stack-overflow message. On the 2-CPU VM of bench/, a loop of posix_spawn and wait of
//! the static `supervise` (exiting at its usage message) took 461-477 us per run with Rust's
//! `main` and 388-389 us with this one: a sixth of a supervisor's start. These programs do
//! without the message (their recursion is bounded; an overflow still ends in SIGSEGV) and
//! keep the two things of that runtime they rely on: see [`prepare`].

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use std::ffi::{c_char, c_int, CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

/// The command line the C `main` was given. std fills `std::env::args` from glibc's
/// `.init_array` call, which musl does not make, so with a C `main` these are the only
/// arguments there are on musl.
static ARGC: AtomicUsize = AtomicUsize::new(0);
static ARGV: AtomicPtr<*const c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Keeps the C `main`'s `argc` and `argv` for [`args_os`].
///
/// # Safety
/// `argv` must hold `argc` pointers to NUL-terminated strings that live, unchanged, as long as
/// the process: what the C runtime passes to `main`.
#[allow(unsafe_code)]
pub unsafe fn keep_arguments(argc: c_int, argv: *const *const c_char) {
    ARGC.store(usize::try_from(argc).unwrap_or(0), Ordering::Relaxed);
    ARGV.store(argv.cast_mut(), Ordering::Relaxed);
}

/// The program's arguments, `argv[0]` first: those the C `main` kept, else std's (a Rust
/// `main`, as in unit tests).
#[allow(unsafe_code)]
pub fn args_os() -> Vec<OsString> {
    let (argc, argv) = (ARGC.load(Ordering::Relaxed), ARGV.load(Ordering::Relaxed));
    if argv.is_null() {
        return std::env::args_os().collect();
    }
    (0..argc)
        .map_while(|i| {
            // SAFETY: `argv` holds `argc` pointers that live as long as the process
            // (`keep_arguments`' contract) and `i < argc`. A null entry ends it.
            let arg = unsafe { *argv.add(i) };
            // SAFETY: a non-null entry points to a NUL-terminated string that lives, unchanged,
            // as long as the process (`keep_arguments`' contract).
            (!arg.is_null()).then(|| {
                OsStr::from_bytes(unsafe { CStr::from_ptr(arg) }.to_bytes()).to_os_string()
            })
        })
        .collect()
}

/// Declares the C `main` that runs `$program: fn() -> u8` after [`prepare`], and returns its
/// exit code. The crate says `#![cfg_attr(not(test), no_main)]`; its unit tests keep the
/// test harness's entry, and a Rust `main` (which the harness replaces) keeps the program's
/// code in use there.
#[macro_export]
macro_rules! lean_main {
    ($program:path) => {
        #[cfg(not(test))]
        #[no_mangle]
        extern "C" fn main(
            argc: ::core::ffi::c_int,
            argv: *const *const ::core::ffi::c_char,
        ) -> ::core::ffi::c_int {
            // SAFETY: these are the C runtime's own argc and argv.
            #[allow(unsafe_code)]
            unsafe {
                $crate::entry::keep_arguments(argc, argv)
            };
            $crate::entry::prepare();
            let code = $program();
            $crate::entry::finish();
            ::core::ffi::c_int::from(code)
        }

        #[cfg(test)]
        fn main() {
            let _ = $program();
        }
    };
}

/// What these programs need of Rust's usual start: descriptors 0, 1 and 2 open (a closed one
/// is opened on /dev/null, so that no file the program opens lands there and reaches a child
/// as its stdin or stdout), and SIGPIPE harmless (a write to a pipe nobody reads fails with
/// EPIPE instead of killing a supervisor). SIGPIPE is caught rather than ignored: a caught
/// signal is back at its default in every program these start, an ignored one would stay
/// ignored across exec.
pub fn prepare() {
    let mut std_fds = [
        PollFd::from_borrowed_fd(rustix::stdio::stdin(), PollFlags::empty()),
        PollFd::from_borrowed_fd(rustix::stdio::stdout(), PollFlags::empty()),
        PollFd::from_borrowed_fd(rustix::stdio::stderr(), PollFlags::empty()),
    ];
    let at_once = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if poll(&mut std_fds, Some(&at_once)).is_ok() {
        let closed = std_fds
            .iter()
            .filter(|fd| fd.revents().contains(PollFlags::NVAL))
            .count();
        // open(2) takes the lowest free number: the closed ones among 0, 1 and 2, in order.
        for _ in 0..closed {
            if let Ok(null) = rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()) {
                let _kept_open_for_life = std::os::fd::IntoRawFd::into_raw_fd(null);
            }
        }
    }
    sigpipe_harmless();
}

/// Catches SIGPIPE with a handler that does nothing, so that a write to a pipe nobody reads
/// fails with EPIPE (to handle or drop) rather than killing the writer; being caught, not
/// ignored, it is back at its default in the programs exec'd after.
pub fn sigpipe_harmless() {
    let _ = signal_hook::flag::register(
        rustix::process::Signal::PIPE.as_raw(),
        Arc::new(AtomicBool::new(false)),
    );
}

/// Flushes what `print!` left in stdout's buffer, as Rust's runtime does after `main`.
pub fn finish() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
