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
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Declares the C `main` that runs `$program: fn() -> u8` after [`prepare`], and returns its
/// exit code. The crate says `#![cfg_attr(not(test), no_main)]`; its unit tests keep the
/// test harness's entry, and a Rust `main` (which the harness replaces) keeps the program's
/// code in use there.
#[macro_export]
macro_rules! lean_main {
    ($program:path) => {
        #[cfg(not(test))]
        #[no_mangle]
        pub extern "C" fn main(
            _argc: ::core::ffi::c_int,
            _argv: *const *const ::core::ffi::c_char,
        ) -> ::core::ffi::c_int {
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
