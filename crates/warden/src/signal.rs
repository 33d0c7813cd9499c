//! The self-pipe through which signals wake a daemon's poll loop; the names are the
//! protocol's (`warden_protocol::signal`).

use rustix::process::Signal;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use warden_protocol::signal::{name, name_or_number, parse};

/// Signals delivered through a non-blocking, close-on-exec pipe that the poll loop watches.
/// The handlers only set a flag and write a byte (signal-hook), so nothing unsafe runs in them.
pub struct SignalPipe {
    read: OwnedFd,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
}

impl SignalPipe {
    pub fn new(signals: &[Signal]) -> io::Result<SignalPipe> {
        SignalPipe::install(signals, None)
    }

    /// As [`SignalPipe::new`], except that while `act_as_default` is true each signal takes
    /// its default action instead (svctl dies of INT as if nothing were installed, outside
    /// the waits that must clean up first). That is registered first: if a later step fails,
    /// the signal still kills.
    pub fn acting_as_default_while(
        signals: &[Signal],
        act_as_default: &Arc<AtomicBool>,
    ) -> io::Result<SignalPipe> {
        SignalPipe::install(signals, Some(act_as_default))
    }

    fn install(signals: &[Signal], act_as_default: Option<&Arc<AtomicBool>>) -> io::Result<Self> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let mut flags = Vec::with_capacity(signals.len());
        for &sig in signals {
            if let Some(condition) = act_as_default {
                signal_hook::flag::register_conditional_default(
                    sig.as_raw(),
                    Arc::clone(condition),
                )?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
