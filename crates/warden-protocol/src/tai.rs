//! TAI64N timestamps as daemontools and runit write them.
//!
//! Labels are 2^62 + 10 + Unix seconds. The `tai64` crate's `Tai64N::now()` adds 37 (leap
//! seconds, as s6 does), which would make runit's `sv` show uptimes 27 s short, so every
//! timestamp here is built from Unix time with the +10 offset of `Tai64::from_unix`, in
//! arithmetic of our own that cannot overflow: a label read from a file may hold any 64 bits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A TAI64N instant: TAI64 seconds label and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tai64N {
    /// The TAI64 label: 2^62 + 10 + Unix seconds.
    pub secs: u64,
    /// Nanoseconds, below 1e9.
    pub nanos: u32,
}

/// Length of a textual label: `@` and 24 hex digits.
pub const LABEL_LEN: usize = 25;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Label of the Unix epoch: 2^62 + 10 (daemontools' and runit's offset, see above).
const UNIX_OFFSET: i128 = (1 << 62) + 10;

/// Farthest a `SystemTime` is taken from the epoch, either way (about 1.5e11 years).
const MAX_SYSTEM_SECS: i64 = 1 << 62;

impl Tai64N {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (i128::from(d.as_secs()), d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let whole = -i128::from(d.as_secs());
                match d.subsec_nanos() {
                    0 => (whole, 0),
                    n => (whole - 1, 1_000_000_000 - n),
                }
            }
        };
        let label = (secs + UNIX_OFFSET).clamp(0, i128::from(u64::MAX));
        Tai64N {
            secs: u64::try_from(label).unwrap_or(u64::MAX),
            nanos,
        }
    }

    /// The instant as a `SystemTime`; a label beyond what the system clock can represent
    /// (a foreign or corrupt record: TAI64 spans 2^63 s each way) is clamped to +-2^62 s.
    pub fn to_system_time(self) -> SystemTime {
        let unix = self.unix_secs().clamp(-MAX_SYSTEM_SECS, MAX_SYSTEM_SECS);
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        let whole = Duration::from_secs(unix.unsigned_abs());
        let base = if unix >= 0 {
            UNIX_EPOCH.checked_add(whole)
        } else {
            UNIX_EPOCH.checked_sub(whole)
        };
        base.and_then(|b| b.checked_add(nanos))
            .unwrap_or(UNIX_EPOCH)
    }

    /// Unix seconds of this instant, saturated at the ends of `i64` (labels are `u64`, so
    /// the far end of the range does not fit).
    pub fn unix_secs(self) -> i64 {
        let unix = i128::from(self.secs) - UNIX_OFFSET;
        i64::try_from(unix).unwrap_or(if unix < 0 { i64::MIN } else { i64::MAX })
    }

    /// The 12-byte external form: seconds and nanoseconds, both big-endian.
    pub fn to_bytes(self) -> [u8; 12] {
        tai64::Tai64N(tai64::Tai64(self.secs), self.nanos).to_bytes()
    }

    /// Parses the 12-byte external form; `None` if the nanoseconds are out of range.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let t = tai64::Tai64N::from_slice(bytes).ok()?;
        Some(Tai64N {
            secs: t.0 .0,
            nanos: t.1,
        })
    }

    /// The textual label `@4000000069...` (25 bytes) as multilog `t` and svlogd `-t` write it.
    pub fn label(self) -> [u8; LABEL_LEN] {
        let mut out = [b'@'; LABEL_LEN];
        for (i, byte) in self.to_bytes().iter().enumerate() {
            out[1 + 2 * i] = HEX[usize::from(byte >> 4)];
            out[2 + 2 * i] = HEX[usize::from(byte & 15)];
        }
        out
    }

    /// Parses a label with or without the leading `@` (24 hex digits, either case).
    pub fn parse_label(text: &[u8]) -> Option<Self> {
        let hex = text.strip_prefix(b"@").unwrap_or(text);
        if hex.len() != 24 {
            return None;
        }
        let mut bytes = [0u8; 12];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            bytes[i] = (hi * 16 + lo) as u8;
        }
        Self::from_bytes(&bytes)
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Tai64N) -> Duration {
        self.to_system_time()
            .duration_since(earlier.to_system_time())
            .unwrap_or(Duration::ZERO)
    }
}

impl std::fmt::Display for Tai64N {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.label()).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_is_label_plus_ten() {
        let t = Tai64N::from_system_time(UNIX_EPOCH);
        assert_eq!(t.secs, (1 << 62) + 10);
        assert_eq!(&t.label(), b"@400000000000000a00000000");
    }

    #[test]
    fn golden_label_matches_daemontools() {
        // `echo | tai64n` style label for 2026-01-01T00:00:00.5Z (Unix 1767225600).
        let t = Tai64N::from_system_time(UNIX_EPOCH + Duration::new(1_767_225_600, 500_000_000));
        assert_eq!(&t.label(), b"@400000006955b90a1dcd6500");
        assert_eq!(Tai64N::parse_label(b"@400000006955b90a1dcd6500"), Some(t));
        assert_eq!(Tai64N::parse_label(b"400000006955B90A1DCD6500"), Some(t));
    }

    #[test]
    fn round_trips() {
        let t = Tai64N::from_system_time(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789));
        assert_eq!(Tai64N::from_bytes(&t.to_bytes()), Some(t));
        assert_eq!(Tai64N::parse_label(&t.label()), Some(t));
        assert_eq!(
            t.to_system_time(),
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
        );
        assert_eq!(t.unix_secs(), 1_700_000_000);
    }

    #[test]
    fn before_the_epoch() {
        let t = Tai64N::from_system_time(UNIX_EPOCH - Duration::new(1, 250_000_000));
        assert_eq!(t.secs, (1 << 62) + 10 - 2);
        assert_eq!(t.nanos, 750_000_000);
        assert_eq!(
            t.to_system_time(),
            UNIX_EPOCH - Duration::new(1, 250_000_000)
        );
    }

    /// Found by `tests/fuzz.rs` (fuzz_tai_round_trips, fuzz_status_decode_never_panics): a
    /// label of 2^63 or more (a corrupt or foreign `status`, a log line starting with
    /// `@8...`) made `unix_secs` overflow (a panic in debug builds) and `to_system_time` panic
    /// in `SystemTime - Duration` (release builds too): `svctl status`, `logger --show`.
    #[test]
    fn labels_beyond_the_clock_saturate() {
        for secs in [1 << 63, u64::MAX, 0, (1 << 62) + 10 + (1 << 62)] {
            let t = Tai64N {
                secs,
                nanos: 999_999_999,
            };
            let _ = t.to_system_time();
            let _ = Tai64N::now().saturating_since(t);
            let _ = t.saturating_since(Tai64N::now());
            assert_eq!(Tai64N::parse_label(&t.label()), Some(t));
        }
        assert_eq!(
            Tai64N {
                secs: u64::MAX,
                nanos: 0
            }
            .unix_secs(),
            i64::MAX
        );
        assert_eq!(Tai64N { secs: 0, nanos: 0 }.unix_secs(), -(1 << 62) - 10);
        let far = Tai64N {
            secs: 1 << 63,
            nanos: 0,
        };
        assert!(far.to_system_time() > Tai64N::now().to_system_time());
        let label = b"@800000000000000000000000";
        assert_eq!(
            Tai64N::parse_label(label).map(|t| t.unix_secs()),
            Some((1 << 62) - 10)
        );
    }

    #[test]
    fn rejects_bad_labels() {
        assert_eq!(Tai64N::parse_label(b"@4000"), None);
        assert_eq!(Tai64N::parse_label(b"@400000006955b90a1dcd650g"), None);
        // nanoseconds >= 1e9
        assert_eq!(Tai64N::parse_label(b"@400000006955b90a3b9aca00"), None);
    }
}
