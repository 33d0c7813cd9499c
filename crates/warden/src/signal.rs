//! Signal names, and the self-pipe through which signals wake a daemon's poll loop.

use rustix::process::Signal;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const NAMES: &[(&str, Signal)] = &[
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("ILL", Signal::ILL),
    ("TRAP", Signal::TRAP),
    ("ABRT", Signal::ABORT),
    ("BUS", Signal::BUS),
    ("FPE", Signal::FPE),
    ("KILL", Signal::KILL),
    ("USR1", Signal::USR1),
    ("SEGV", Signal::SEGV),
    ("USR2", Signal::USR2),
    ("PIPE", Signal::PIPE),
    ("ALRM", Signal::ALARM),
    ("TERM", Signal::TERM),
    ("CHLD", Signal::CHILD),
    ("CONT", Signal::CONT),
    ("STOP", Signal::STOP),
    ("TSTP", Signal::TSTP),
    ("TTIN", Signal::TTIN),
    ("TTOU", Signal::TTOU),
    ("URG", Signal::URG),
    ("XCPU", Signal::XCPU),
    ("XFSZ", Signal::XFSZ),
    ("VTALRM", Signal::VTALARM),
    ("PROF", Signal::PROF),
    ("WINCH", Signal::WINCH),
    ("IO", Signal::IO),
    ("PWR", Signal::POWER),
    ("SYS", Signal::SYS),
];

/// Parses `SIGINT`, `INT`, `int` or `2`.
pub fn parse(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return Signal::from_named_raw(n);
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, s)| *s)
}

/// The short name (`TERM`) of a signal number.
pub fn name(raw: i32) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|(_, s)| s.as_raw() == raw)
        .map(|(n, _)| *n)
}

/// Signals delivered through a non-blocking, close-on-exec pipe that the poll loop watches.
/// The handlers only set a flag and write a byte (signal-hook), so nothing unsafe runs in them.
pub struct SignalPipe {
    read: OwnedFd,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
}

impl SignalPipe {
    pub fn new(signals: &[Signal]) -> io::Result<SignalPipe> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let mut flags = Vec::with_capacity(signals.len());
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig.as_raw(), Arc::clone(&flag))?;
            let writer = write.try_clone()?;
            signal_hook::low_level::pipe::register_raw(sig.as_raw(), writer)?;
            flags.push((sig, flag));
        }
        Ok(SignalPipe { read, flags })
    }

    /// Empties the pipe and returns the signals that arrived since the last call, in the
    /// order they were registered.
    pub fn take(&self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(&self.read, &mut buf), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(sig, _)| *sig)
            .collect()
    }
}

impl AsFd for SignalPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// `TERM` for a known signal, else its number, for messages.
pub fn name_or_number(raw: i32) -> String {
    match name(raw) {
        Some(n) => n.to_owned(),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse("SIGINT"), Some(Signal::INT));
        assert_eq!(parse("int"), Some(Signal::INT));
        assert_eq!(parse("15\n"), Some(Signal::TERM));
        assert_eq!(parse("SIGNOPE"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(name(9), Some("KILL"));
        assert_eq!(name_or_number(200), "200");
    }

    #[test]
    fn pipe_reports_signals() {
        let pipe = SignalPipe::new(&[Signal::USR2]).unwrap();
        assert!(pipe.take().is_empty());
        rustix::process::kill_process(rustix::process::getpid(), Signal::USR2).unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &pipe,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::time::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        // The signal may land on this very thread and interrupt the poll.
        let ready = loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.unwrap(),
            }
        };
        assert_eq!(ready, 1);
        assert_eq!(pipe.take(), vec![Signal::USR2]);
    }
}
