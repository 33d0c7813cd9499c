//! INT, TERM and HUP while svctl has a FIFO in `supervise/event/` to remove.
//!
//! The handlers are installed once, on the first wait that makes a FIFO, and never removed
//! (signal-hook cannot give back the default disposition). Outside such a wait they act as
//! the default action (`register_conditional_default`): svctl dies as if nothing were
//! installed. Inside, they only set a flag and write to a pipe the wait polls, so the wait
//! can remove its FIFO first and then die of the signal.

use rustix::process::Signal;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use warden::signal::SignalPipe;

pub struct Interrupts {
    pipe: SignalPipe,
    /// True outside a FIFO wait: a signal then takes its default action at once.
    act_as_default: Arc<AtomicBool>,
}

static INTERRUPTS: OnceLock<Option<Interrupts>> = OnceLock::new();

impl Interrupts {
    /// The process's handlers, installed on first use; None if they could not be.
    pub fn get() -> Option<&'static Interrupts> {
        INTERRUPTS.get_or_init(Interrupts::install).as_ref()
    }

    fn install() -> Option<Interrupts> {
        let act_as_default = Arc::new(AtomicBool::new(true));
        let pipe = SignalPipe::acting_as_default_while(&caught_signals(), &act_as_default).ok()?;
        Some(Interrupts {
            pipe,
            act_as_default,
        })
    }

    /// From now until `disarm`, a signal only wakes the poll on `self`.
    pub fn arm(&self) {
        self.act_as_default.store(false, Ordering::SeqCst);
    }

    /// Back to the default actions; a signal that came while armed takes its action now.
    pub fn disarm(&self) {
        self.act_as_default.store(true, Ordering::SeqCst);
        if let Some(signal) = self.take() {
            die_of(signal);
        }
    }

    /// The first signal caught since the last call, emptying the pipe.
    pub fn take(&self) -> Option<Signal> {
        self.pipe.take().into_iter().next()
    }
}

impl AsFd for Interrupts {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

/// Takes `signal`'s default action (terminating svctl); returns only if that fails.
pub fn die_of(signal: Signal) {
    let _ = signal_hook::low_level::emulate_default_handler(signal.as_raw());
}

/// INT, TERM and HUP, except those we inherited as ignored (a background job's INT): those
/// must stay ignored.
pub(crate) fn caught_signals() -> Vec<Signal> {
    let ignored = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    [Signal::INT, Signal::TERM, Signal::HUP]
        .into_iter()
        .filter(|signal| !is_in_mask(ignored, signal.as_raw()))
        .collect()
}

fn is_in_mask(mask: u64, raw: i32) -> bool {
    u32::try_from(raw - 1)
        .ok()
        .and_then(|bit| mask.checked_shr(bit))
        .is_some_and(|m| m & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_signals_are_read_from_the_mask() {
        // SigIgn 0x...0003: HUP (1) and INT (2) ignored, TERM (15) not.
        assert!(is_in_mask(0b11, Signal::HUP.as_raw()));
        assert!(is_in_mask(0b11, Signal::INT.as_raw()));
        assert!(!is_in_mask(0b11, Signal::TERM.as_raw()));
        assert!(!is_in_mask(u64::MAX, 0));
    }
}
