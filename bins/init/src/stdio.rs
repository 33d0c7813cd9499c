//! Fds 0-2 before anything else is opened.
//!
//! Started with one of them closed, the first file init opens would take its number: the
//! signal pipe would become CMD's stdin, a diagnostic could land in a file. So each closed
//! one is filled first: from /dev/null when asked (as Rust's start would do), else, or when
//! there is no /dev/null (a bare initramfs, a container without /dev), with an `O_PATH`
//! descriptor of `/`, which holds the number and on which every read and write fails
//! (EBADF), as on a closed fd. Stage 1 asks for no /dev/null: it opens the console on the
//! placeholders itself once devtmpfs is mounted (see [`is_placeholder`]).

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{BorrowedFd, IntoRawFd};

pub fn hold(dev_null: bool) {
    let std_fds = [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ];
    for fd in std_fds {
        if rustix::io::fcntl_getfd(fd) != Err(Errno::BADF) {
            continue;
        }
        // open(2) takes the lowest free number, which is this one: the lower ones are open.
        let opened = if dev_null {
            rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::NOCTTY, Mode::empty())
                .or_else(|_| placeholder())
        } else {
            placeholder()
        };
        if let Ok(fd) = opened {
            let _kept_open_for_life = fd.into_raw_fd();
        }
    }
}

fn placeholder() -> rustix::io::Result<std::os::fd::OwnedFd> {
    rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
}

/// Whether `fd` is closed or one of [`hold`]'s placeholders: no usable stdin/stdout/stderr.
pub fn is_placeholder(fd: BorrowedFd<'_>) -> bool {
    match rustix::fs::fcntl_getfl(fd) {
        Ok(flags) => flags.contains(OFlags::PATH),
        Err(_) => true,
    }
}
