//! TAI64N timestamps as daemontools and runit write them.
//!
//! Labels are 2^62 + 10 + Unix seconds. The `tai64` crate's `Tai64N::now()` adds 37 (leap
//! seconds, as s6 does), which would make runit's `sv` show uptimes 27 s short, so every
//! timestamp here is built from Unix time through `Tai64::from_unix` (+10).

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

impl Tai64N {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let whole = -(d.as_secs() as i64);
                match d.subsec_nanos() {
                    0 => (whole, 0),
                    n => (whole - 1, 1_000_000_000 - n),
                }
            }
        };
        Tai64N {
            secs: tai64::Tai64::from_unix(secs).0,
            nanos,
        }
    }

    pub fn to_system_time(self) -> SystemTime {
        let unix = tai64::Tai64(self.secs).to_unix();
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if unix >= 0 {
            UNIX_EPOCH + Duration::from_secs(unix as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()) + nanos
        }
    }

    /// Unix seconds of this instant.
    pub fn unix_secs(self) -> i64 {
        tai64::Tai64(self.secs).to_unix()
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

    #[test]
    fn rejects_bad_labels() {
        assert_eq!(Tai64N::parse_label(b"@4000"), None);
        assert_eq!(Tai64N::parse_label(b"@400000006955b90a1dcd650g"), None);
        // nanoseconds >= 1e9
        assert_eq!(Tai64N::parse_label(b"@400000006955b90a3b9aca00"), None);
    }
}
