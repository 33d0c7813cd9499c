//! The timeout of a daemon's one poll: the time left until its nearest deadline, as the
//! kernel takes it. Saturating, so that a deadline too far to express waits as long as the
//! kernel can, and one already past does not block.

use rustix::time::Timespec;
use std::time::{Duration, Instant};

/// `left` as a poll timeout.
pub fn timeout(left: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(left.subsec_nanos()),
    }
}

/// The poll timeout for `deadline` seen at `now`: none (block) without a deadline, zero for
/// one that has passed.
pub fn until(deadline: Option<Instant>, now: Instant) -> Option<Timespec> {
    deadline.map(|at| timeout(at.saturating_duration_since(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_and_never_goes_negative() {
        let now = Instant::now();
        assert!(until(None, now).is_none());
        let past = until(Some(now), now + Duration::from_secs(3)).unwrap();
        assert_eq!((past.tv_sec, past.tv_nsec), (0, 0));
        let soon = until(Some(now + Duration::from_millis(1500)), now).unwrap();
        assert_eq!((soon.tv_sec, soon.tv_nsec), (1, 500_000_000));
        let far = timeout(Duration::MAX);
        assert_eq!(far.tv_sec, i64::MAX);
    }
}
