//! Commands for the whole tree rather than one service: svscan's control FIFO, and the
//! `poweroff`/`reboot`/`halt` names, which signal PID 1 directly.

use crate::outcome::Outcome;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};
use std::path::Path;
use std::time::{Duration, Instant};
use warden::svdir::{scan_control, CONTROL, LOCK, SVSCAN_DIR};

/// A request to the whole system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Poweroff,
    Reboot,
    Halt,
}

impl Power {
    /// The program names (symlinks to svctl) that act at once through PID 1.
    pub fn from_program_name(name: &str) -> Option<Power> {
        match name {
            "poweroff" => Some(Power::Poweroff),
            "reboot" => Some(Power::Reboot),
            "halt" => Some(Power::Halt),
            _ => None,
        }
    }

    pub fn scan_byte(self) -> u8 {
        match self {
            Power::Poweroff => scan_control::POWEROFF,
            Power::Reboot => scan_control::REBOOT,
            Power::Halt => scan_control::HALT,
        }
    }

    /// What warden's svscan as PID 1 (and s6-linux-init, and the usual container inits)
    /// take as this request: DESIGN.md section 4.
    pub fn init_signal(self) -> Signal {
        match self {
            Power::Poweroff => Signal::USR1,
            Power::Reboot => Signal::INT,
            Power::Halt => Signal::USR2,
        }
    }
}

/// Writes one byte to `SCANDIR/.svscan/control` without blocking. With `wait`, a teardown
/// request then waits for svscan to exit (found as the holder of `.svscan/lock`, watched
/// through a pidfd); as PID 1 svscan execs `init` instead, so there it can only time out.
pub fn tell_svscan(scandir: &Path, byte: u8, wait: Option<Duration>) -> Outcome {
    let svscan_dir = scandir.join(SVSCAN_DIR);
    let fifo = svscan_dir.join(CONTROL);
    let fail = |cause: &str, outcome: Outcome| {
        warden::say!(
            "svctl: fatal: unable to control {}: {cause}",
            fifo.display()
        );
        outcome
    };
    let tears_down = byte != scan_control::RESCAN;
    // Taken before the byte is sent, so the pid cannot be reused under us.
    let svscan = match wait.filter(|_| tears_down) {
        Some(wait) => {
            let deadline = warden::service::deadline(Instant::now(), wait);
            let pidfd = crate::locks::flock_holder(&svscan_dir.join(LOCK))
                .and_then(|pid| Pid::from_raw(i32::try_from(pid).ok()?))
                .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
            Some((pidfd, deadline, wait))
        }
        None => None,
    };
    let fd = match rustix::fs::open(
        &fifo,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NXIO) | Err(Errno::NOENT) => {
            return fail("svscan not running", Outcome::NotSupervised)
        }
        Err(Errno::ACCESS) | Err(Errno::PERM) => {
            return fail("permission denied", Outcome::PermissionDenied)
        }
        Err(e) => return fail(&e.to_string(), Outcome::System),
    };
    loop {
        match rustix::io::write(&fd, &[byte]) {
            Ok(1) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return fail("control FIFO is full", Outcome::System),
            Err(e) => return fail(&e.to_string(), Outcome::System),
        }
    }
    match svscan {
        // Not found: svscan was already on its way out.
        None | Some((None, _, _)) => Outcome::Success,
        Some((Some(pidfd), deadline, wait)) => match crate::wait::poll_until(&pidfd, deadline) {
            Ok(true) => Outcome::Success,
            Ok(false) => {
                warden::say!(
                    "svctl: fatal: timed out after {} waiting for svscan on {} to exit",
                    humantime::format_duration(wait),
                    scandir.display()
                );
                Outcome::Timeout
            }
            Err(e) => fail(&e.to_string(), Outcome::System),
        },
    }
}

/// Asks PID 1 for a power action by signal. Only ever run as `poweroff`/`reboot`/`halt`:
/// tests do it inside a PID namespace whose PID 1 they started.
pub fn tell_init(power: Power) -> Outcome {
    match rustix::process::kill_process(Pid::INIT, power.init_signal()) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            warden::say!("svctl: fatal: unable to signal PID 1: {e}");
            match e {
                Errno::PERM => Outcome::PermissionDenied,
                _ => Outcome::System,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bytes_and_signals_agree_with_design() {
        assert_eq!(Power::from_program_name("reboot"), Some(Power::Reboot));
        assert_eq!(Power::from_program_name("svctl"), None);
        assert_eq!(Power::Poweroff.init_signal(), Signal::USR1);
        assert_eq!(Power::Reboot.init_signal(), Signal::INT);
        assert_eq!(Power::Halt.init_signal(), Signal::USR2);
        assert_eq!(Power::Reboot.scan_byte(), b'r');
    }

    #[test]
    fn no_svscan_is_not_supervised() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(tell_svscan(dir.path(), b'a', None), Outcome::NotSupervised);
        std::fs::create_dir(dir.path().join(SVSCAN_DIR)).unwrap();
        let fifo = dir.path().join(SVSCAN_DIR).join(CONTROL);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(tell_svscan(dir.path(), b'a', None), Outcome::NotSupervised);
        let reader =
            rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
        assert_eq!(tell_svscan(dir.path(), b'a', None), Outcome::Success);
        let mut buf = [0u8; 4];
        assert_eq!(rustix::io::read(&reader, &mut buf), Ok(1));
        assert_eq!(buf[0], b'a');
    }
}
