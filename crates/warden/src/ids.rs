//! Session and process-group ids as the kernel gives them, 0 included.
//!
//! rustix returns these as `Pid`, which cannot be 0, and asserts on it; but 0 is what the
//! kernel answers when the session or group leader lives outside the caller's pid namespace
//! (a test run under `unshare --pid`, a container whose init never called setsid). The
//! daemons ask these questions on their runtime paths, so they ask libc and keep the 0.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

/// The caller's session id; 0 when its leader is in another pid namespace.
pub fn session() -> Option<i32> {
    // SAFETY: getsid(0) only reads the calling process's session id.
    let sid = unsafe { libc::getsid(0) };
    (sid >= 0).then_some(sid)
}

/// The caller's process group id; 0 when its leader is in another pid namespace.
pub fn process_group() -> i32 {
    // SAFETY: getpgrp takes no argument and cannot fail.
    unsafe { libc::getpgrp() }
}

/// The session that `terminal` is the controlling terminal of.
pub fn terminal_session(terminal: impl AsFd) -> Option<i32> {
    // SAFETY: tcgetsid only reads the terminal's session; a bad fd gives -1.
    let sid = unsafe { libc::tcgetsid(terminal.as_fd().as_raw_fd()) };
    (sid >= 0).then_some(sid)
}

/// The foreground process group of `terminal`.
pub fn terminal_foreground(terminal: impl AsFd) -> Option<i32> {
    // SAFETY: tcgetpgrp only reads the terminal's foreground group; a bad fd gives -1.
    let pgrp = unsafe { libc::tcgetpgrp(terminal.as_fd().as_raw_fd()) };
    (pgrp >= 0).then_some(pgrp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_caller_has_a_session_and_a_group() {
        assert!(super::session().is_some());
        assert!(super::process_group() >= 0);
    }
}
