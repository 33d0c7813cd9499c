//! The restart back-off: one policy, two settings. supervise throttles a service that keeps
//! dying quickly (1 s, doubling to 60 s, as runsv's fixed 1 s never does); svscan throttles
//! a supervisor that does, and its own retries of the scan directory (1 s, doubling to 30 s).

use std::time::Duration;

/// A run that lived less than this is a quick death and throttles the next start (runit's
/// 1 s); one that lived longer is not failing, and is restarted at once.
pub const QUICK_DEATH: Duration = Duration::from_secs(1);

/// Waits that start at `first` and double with each quick death in a row, up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// supervise's, for a service: 1 s, 2 s, 4 s ... 60 s.
    pub const SERVICE: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    /// svscan's, for a supervisor and for its own retries: 1 s, 2 s, 4 s ... 30 s.
    pub const SUPERVISOR: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(30),
    };

    /// The wait after `quick_deaths` quick deaths in a row: none after a good run (0), then
    /// `first`, doubling, never more than `max`.
    pub fn delay(&self, quick_deaths: u32) -> Duration {
        let mut delay = match quick_deaths {
            0 => return Duration::ZERO,
            _ => self.first.min(self.max),
        };
        for _ in 1..quick_deaths {
            if delay >= self.max {
                break;
            }
            delay = self.after(delay);
        }
        delay
    }

    /// The wait that follows `delay`: twice as long, never more than `max`.
    pub fn after(&self, delay: Duration) -> Duration {
        delay.saturating_mul(2).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let svscan = Backoff::SUPERVISOR;
        let waits: Vec<Duration> = (0..8).map(|n| svscan.delay(n)).collect();
        assert_eq!(waits, [S(0), S(1), S(2), S(4), S(8), S(16), S(30), S(30)]);
        assert_eq!(svscan.delay(u32::MAX), S(30));
        let supervise = Backoff::SERVICE;
        assert_eq!(supervise.delay(6), S(32));
        assert_eq!(supervise.delay(7), S(60));
        assert_eq!(supervise.after(S(32)), S(60));
        assert_eq!(supervise.after(S(60)), S(60));
    }

    #[test]
    fn a_delay_is_the_first_one_followed_n_minus_one_times() {
        let policy = Backoff::SERVICE;
        let mut next = policy.first;
        for n in 1..12 {
            assert_eq!(policy.delay(n), next, "after {n} quick deaths");
            next = policy.after(next);
        }
    }

    #[test]
    fn never_overflows() {
        let huge = Backoff {
            first: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(huge.delay(40), Duration::MAX);
        assert_eq!(huge.after(Duration::MAX), Duration::MAX);
    }
}
