use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// How wide a time window (and so a lake file's time bucket) is. All windows are UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }
}

/// A half-open UTC time range `[start, start + granularity)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start_ms: i64,
    pub granularity: Granularity,
}

/// The times a window can hold: within what chrono can show as a calendar date (about
/// ±250,000 years), so that every window has a real path and no arithmetic on it overflows.
/// Routing refuses implausible times long before these bounds; they guard the rest (a
/// dead letter's Kafka timestamp, say) from a silent fallback to 1970.
pub const MIN_WINDOW_MS: i64 = -8_000_000_000_000_000;
pub const MAX_WINDOW_MS: i64 = 8_000_000_000_000_000;

impl Window {
    /// The window holding `ts_ms` (milliseconds since the epoch; negative values floor too),
    /// with `ts_ms` first clamped into [`MIN_WINDOW_MS`, `MAX_WINDOW_MS`].
    pub fn containing(ts_ms: i64, granularity: Granularity) -> Self {
        let width = granularity.millis();
        let ts_ms = ts_ms.clamp(MIN_WINDOW_MS, MAX_WINDOW_MS);
        Self {
            start_ms: ts_ms.div_euclid(width) * width,
            granularity,
        }
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms.saturating_add(self.granularity.millis())
    }

    pub fn start(&self) -> DateTime<Utc> {
        // Every start `containing` makes is representable; a hand-built one is clamped.
        DateTime::from_timestamp_millis(self.start_ms.clamp(MIN_WINDOW_MS, MAX_WINDOW_MS))
            .expect("within chrono's range")
    }

    /// The zero-padded calendar parts a path template uses: YYYY, MM, dd, hh, mm.
    pub fn calendar_parts(&self) -> [(&'static str, String); 5] {
        let t = self.start();
        [
            ("YYYY", format!("{:04}", t.year())),
            ("MM", format!("{:02}", t.month())),
            ("dd", format!("{:02}", t.day())),
            ("hh", format!("{:02}", t.hour())),
            ("mm", format!("{:02}", t.minute())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_to_the_window_start() {
        // 2024-03-05T14:37:12.345Z
        let ts = 1_709_649_432_345;
        let h = Window::containing(ts, Granularity::Hour);
        assert_eq!(h.start().to_rfc3339(), "2024-03-05T14:00:00+00:00");
        assert_eq!(h.end_ms() - h.start_ms, 3_600_000);
        let d = Window::containing(ts, Granularity::Day);
        assert_eq!(d.start().to_rfc3339(), "2024-03-05T00:00:00+00:00");
        let m = Window::containing(ts, Granularity::Minute);
        assert_eq!(m.start().to_rfc3339(), "2024-03-05T14:37:00+00:00");
        let parts = m.calendar_parts();
        assert_eq!(parts[0].1, "2024");
        assert_eq!(parts[1].1, "03");
        assert_eq!(parts[4].1, "37");
    }

    #[test]
    fn times_past_the_calendar_clamp_instead_of_falling_back_to_1970() {
        for ts in [i64::MAX, i64::MIN, MAX_WINDOW_MS + 1] {
            let w = Window::containing(ts, Granularity::Minute);
            assert!(
                w.start().timestamp_millis().abs() > 7_000_000_000_000_000,
                "{ts}"
            );
            assert!(w.end_ms() > w.start_ms);
            assert_ne!(w.calendar_parts()[0].1, "1970");
        }
    }

    #[test]
    fn pre_epoch_times_floor_downwards() {
        let w = Window::containing(-1, Granularity::Hour);
        assert_eq!(w.start_ms, -3_600_000);
    }
}
