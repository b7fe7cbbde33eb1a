//! Record times: reading them exactly (integers never pass through a float, an epoch's unit
//! is told by its magnitude or declared) and refusing what no clock can mean.

use std::borrow::Cow;

use sluice_config::{EventTimeFormat, PlausibleTimes};

/// A JSON number as written: integers exactly, everything else as a finite float.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i128),
    Float(f64),
}

/// Parses `text` if it is a JSON number (so `NaN`, `inf`, `0x10` or `1_000` are not).
fn json_number(text: &str) -> Option<Number> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    let integer_end = i;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    if integer_end == b.len() {
        // Past i128 no epoch in any unit is meant anyway.
        return text.parse().ok().map(Number::Int);
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::Float)
}

/// Milliseconds per unit, as a ratio: (multiply, divide).
fn unit_of(format: EventTimeFormat, magnitude: f64) -> (i128, i128) {
    const S: (i128, i128) = (1000, 1);
    const MS: (i128, i128) = (1, 1);
    const US: (i128, i128) = (1, 1000);
    const NS: (i128, i128) = (1, 1_000_000);
    match format {
        EventTimeFormat::EpochSeconds => S,
        EventTimeFormat::EpochMillis => MS,
        EventTimeFormat::EpochMicros => US,
        EventTimeFormat::EpochNanos => NS,
        // Seconds stay below 10^11 until the year 5138; milliseconds pass 10^11 in 1973 and
        // stay below 10^14 until 5138; and so on for µs and ns.
        _ if magnitude < 1e11 => S,
        _ if magnitude < 1e14 => MS,
        _ if magnitude < 1e17 => US,
        _ => NS,
    }
}

/// An epoch number in `format`'s unit (or the magnitude's, for `auto`) as milliseconds;
/// `None` when it does not fit.
fn epoch_millis(n: Number, format: EventTimeFormat) -> Option<i64> {
    match n {
        Number::Int(i) => {
            let (mul, div) = unit_of(format, i.unsigned_abs() as f64);
            i.checked_mul(mul)
                .map(|v| v.div_euclid(div))
                .and_then(|v| i64::try_from(v).ok())
        }
        Number::Float(f) => {
            let (mul, div) = unit_of(format, f.abs());
            let ms = (f * mul as f64 / div as f64).round();
            // Inside i64 with room to spare: `as` would saturate silently.
            (ms.abs() < 9.0e18).then_some(ms as i64)
        }
    }
}

fn rfc3339(s: &str) -> Option<i64> {
    let (secs, nanos) = sluice_format::rfc3339::parse(s.trim())?;
    Some(secs * 1000 + i64::from(nanos) / 1_000_000)
}

/// Reads a JSON value's text as a time in milliseconds since the epoch.
pub(crate) fn parse(raw_json: &str, format: EventTimeFormat) -> Option<i64> {
    let raw_json = raw_json.trim();
    // A string without escapes is its own text: no decoding, no allocation.
    let string: Option<Cow<str>> =
        match raw_json.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
            Some(_) => serde_json::from_str::<String>(raw_json)
                .ok()
                .map(Cow::Owned),
            None => None,
        };
    match (format, string) {
        (EventTimeFormat::Rfc3339, Some(s)) => rfc3339(&s),
        (EventTimeFormat::Rfc3339, None) => None,
        (EventTimeFormat::Auto, Some(s)) => match json_number(s.trim()) {
            Some(n) => epoch_millis(n, format),
            None => rfc3339(&s),
        },
        (_, Some(s)) => epoch_millis(json_number(s.trim())?, format),
        (_, None) => epoch_millis(json_number(raw_json)?, format),
    }
}

/// Why `ts_ms` cannot be meant, if it cannot: before the earliest time, or further ahead of
/// `reference_ms` (the record's Kafka timestamp, else the clock) than allowed.
pub(crate) fn implausible(
    ts_ms: i64,
    reference_ms: i64,
    bounds: &PlausibleTimes,
) -> Option<String> {
    let show = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339())
    };
    if ts_ms < bounds.min_ms {
        return Some(format!(
            "{} is before window.min_event_time {}",
            show(ts_ms),
            show(bounds.min_ms)
        ));
    }
    if ts_ms.saturating_sub(reference_ms) > bounds.max_future_ms {
        return Some(format!(
            "{} is more than window.max_future_secs = {} ahead of the record's Kafka timestamp {}",
            show(ts_ms),
            bounds.max_future_ms / 1000,
            show(reference_ms)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use EventTimeFormat::*;

    const T_MS: i64 = 1_709_649_432_345; // 2024-03-05T14:37:12.345Z

    #[test]
    fn epochs_are_read_in_the_unit_their_magnitude_says() {
        for text in [
            "1709649432.345",
            "1709649432345",
            "1709649432345000",
            "1709649432345000000",
            "\"1709649432345000000\"",
            "\"2024-03-05T14:37:12.345Z\"",
        ] {
            assert_eq!(parse(text, Auto), Some(T_MS), "{text}");
        }
        assert_eq!(parse("1709649432", Auto), Some(1_709_649_432_000));
        assert_eq!(parse("1709649432345000", EpochMicros), Some(T_MS));
        assert_eq!(parse("1709649432345000000", EpochNanos), Some(T_MS));
        assert_eq!(parse("1709649432", EpochSeconds), Some(1_709_649_432_000));
        assert_eq!(parse("1709649432345", EpochMillis), Some(T_MS));
    }

    #[test]
    fn what_is_not_a_number_or_does_not_fit_is_refused() {
        for text in [
            "\"NaN\"",
            "\"inf\"",
            "\"-infinity\"",
            "\"1_000\"",
            "\"0x10\"",
            "1e400",
            "true",
            "null",
            "[1]",
            "99999999999999999999999999999999999999999999",
            "\"yesterday\"",
        ] {
            assert_eq!(parse(text, Auto), None, "{text}");
        }
        assert_eq!(parse("9223372036854775807", EpochSeconds), None);
        assert_eq!(parse("1e300", EpochSeconds), None);
        assert_eq!(parse("\"2024-03-05T14:37:12Z\"", EpochMillis), None);
        assert_eq!(parse("1709649432", Rfc3339), None);
    }

    #[test]
    fn times_no_clock_can_mean_are_implausible() {
        let b = PlausibleTimes::default();
        assert_eq!(implausible(T_MS, T_MS, &b), None);
        assert_eq!(implausible(T_MS + 86_400_000, T_MS, &b), None);
        assert!(implausible(T_MS + 86_400_001, T_MS, &b)
            .unwrap()
            .contains("max_future_secs"));
        let y2999 = parse("\"2999-01-01T00:00:00Z\"", Auto).unwrap();
        assert!(implausible(y2999, T_MS, &b).is_some());
        assert!(implausible(0, T_MS, &b).unwrap().contains("min_event_time"));
        assert!(implausible(i64::MIN, i64::MAX, &b).is_some());
        assert!(implausible(i64::MAX, i64::MIN, &b).is_some());
    }

    proptest! {
        /// Integer epochs are exact in every unit and agree with their float spelling.
        #[test]
        fn integer_epochs_are_exact(ms in 946_684_800_000i64..4_102_444_800_000) {
            prop_assert_eq!(parse(&ms.to_string(), Auto), Some(ms));
            prop_assert_eq!(parse(&(ms as i128 * 1000).to_string(), Auto), Some(ms));
            prop_assert_eq!(parse(&(ms as i128 * 1_000_000).to_string(), Auto), Some(ms));
            prop_assert_eq!(parse(&(ms / 1000).to_string(), Auto), Some(ms / 1000 * 1000));
        }

        /// No input panics or overflows.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,40}", f in any::<f64>(), i in any::<i64>()) {
            for format in [Auto, Rfc3339, EpochSeconds, EpochMillis, EpochMicros, EpochNanos] {
                let _ = parse(&text, format);
                let _ = parse(&format!("{f}"), format);
                let _ = parse(&i.to_string(), format);
                let _ = parse(&format!("\"{i}\""), format);
            }
        }
    }
}
