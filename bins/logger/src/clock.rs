//! Human-readable time: UTC (pure arithmetic) for `--timestamp iso`, local time (through the C
//! library, which reads TZ and /etc/localtime) for `--show`.

use std::fmt::Write as _;

/// A broken-down civil time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// UTC civil time of Unix seconds (Howard Hinnant's days-to-civil algorithm).
pub fn utc(unix: i64) -> Civil {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
    }
}

/// Local civil time of Unix seconds, in the zone of TZ or /etc/localtime; UTC if the C
/// library cannot convert it.
pub fn local(unix: i64) -> Civil {
    local_c(unix).unwrap_or_else(|| utc(unix))
}

fn local_c(unix: i64) -> Option<Civil> {
    #[allow(clippy::useless_conversion)] // time_t is 32 bits on some targets
    let time = unix.try_into().ok()?;
    // SAFETY: `tm` is plain old data that localtime_r fully writes on success; both pointers
    // are valid for the duration of the call, and localtime_r (unlike localtime) keeps no
    // reference to them and uses no shared result buffer.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&time, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(Civil {
        year: i64::from(tm.tm_year) + 1900,
        month: u32::try_from(tm.tm_mon + 1).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
        second: u32::try_from(tm.tm_sec).ok()?,
    })
}

/// `2026-11-22 03:00:00.123456789`, as daemontools' tai64nlocal prints.
pub fn format_local(out: &mut String, unix: i64, nanos: u32) {
    let c = local(unix);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, nanos
    );
}

/// `2026-11-22T03:00:00.123456789Z`: ISO 8601 in UTC, so it needs no zone to be read.
pub fn format_iso_utc(unix: i64, nanos: u32) -> String {
    let c = utc(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, nanos
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_golden_dates() {
        assert_eq!(format_iso_utc(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_iso_utc(1_767_225_600, 500_000_000),
            "2026-01-01T00:00:00.500000000Z"
        );
        // A leap day, and a time before the epoch.
        assert_eq!(
            format_iso_utc(951_868_799, 1),
            "2000-02-29T23:59:59.000000001Z"
        );
        assert_eq!(format_iso_utc(-1, 0), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn utc_round_trips_day_by_day() {
        // Consecutive days never skip or repeat a date across 400 years.
        let mut prev = utc(-86_400 * 365 * 200);
        for day in (-365 * 200 + 1)..(365 * 200) {
            let c = utc(day * 86_400 + 3_661);
            assert_eq!((c.hour, c.minute, c.second), (1, 1, 1));
            assert!((c.year, c.month, c.day) > (prev.year, prev.month, prev.day));
            assert!(c.day == prev.day + 1 || c.day == 1);
            prev = c;
        }
    }
}
