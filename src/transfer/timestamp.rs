//! `created_at` between files and PostgreSQL: RFC 3339 in files, microseconds since the Unix epoch
//! in between (PostgreSQL's own precision), so that `export` then `import` loses nothing.
//! Export always writes UTC with six fractional digits, so that equal instants are equal text.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01T00:00:00Z).
pub const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Parses an RFC 3339 timestamp into microseconds since the Unix epoch; digits beyond the
/// microsecond are dropped (PostgreSQL keeps no more).
///
/// # Errors
/// The text is not RFC 3339, or its year is before 1 (PostgreSQL has no year 0).
pub fn parse(text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("is not an RFC 3339 timestamp ({e})"))?;
    if t.to_offset(time::UtcOffset::UTC).year() < 1 {
        return Err("is before the year 1".to_owned());
    }
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).map_err(|_| "is out of range".into())
}

/// Appends `micros` (since the Unix epoch) as RFC 3339 in UTC with six fractional digits, e.g.
/// `2026-11-30T16:54:49.123456Z`; with `sql`, as PostgreSQL's ISO form (`2026-11-30
/// 16:54:49.123456+00`), which it reads whatever its DateStyle.
pub fn write(micros: i64, sql: bool, out: &mut Vec<u8>) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let Ok(t) = OffsetDateTime::from_unix_timestamp(secs) else {
        // Outside the years -9999..=9999: PostgreSQL's range is wider. Never produced by parse.
        out.extend_from_slice(if sql { b"infinity" } else { b"invalid" });
        return;
    };
    let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
    let (hour, minute, second) = (t.hour(), t.minute(), t.second());
    let digits = |n: u32, width: usize, out: &mut Vec<u8>| {
        let mut buf = [b'0'; 6];
        let mut n = n;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    digits(year.unsigned_abs(), 4, out);
    out.push(b'-');
    digits(month.into(), 2, out);
    out.push(b'-');
    digits(day.into(), 2, out);
    out.push(if sql { b' ' } else { b'T' });
    digits(hour.into(), 2, out);
    out.push(b':');
    digits(minute.into(), 2, out);
    out.push(b':');
    digits(second.into(), 2, out);
    out.push(b'.');
    digits(frac as u32, 6, out);
    out.extend_from_slice(if sql { b"+00" } else { b"Z" });
}

/// [`write`] into a new string.
pub fn to_rfc3339(micros: i64) -> String {
    let mut out = Vec::with_capacity(27);
    write(micros, false, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision_in_utc() {
        let micros = parse("2026-11-30T17:54:49.000123+01:00").unwrap();
        assert_eq!(to_rfc3339(micros), "2026-11-30T16:54:49.000123Z");
        assert_eq!(parse(&to_rfc3339(micros)), Ok(micros));
    }

    #[test]
    fn digits_beyond_the_microsecond_are_dropped_and_early_times_work() {
        assert_eq!(
            to_rfc3339(parse("1969-12-31T23:59:59.9999999Z").unwrap()),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn non_rfc3339_text_is_refused() {
        for bad in [
            "2026-11-30",
            "2026-11-30 16:54:49",
            "yesterday",
            "0000-01-01T00:00:00Z",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
