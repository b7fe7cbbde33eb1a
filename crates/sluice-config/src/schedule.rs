//! Batch schedules: `flush.every` (a fixed period, at multiples of it since midnight UTC) or
//! `flush.cron` (a five-field cron expression evaluated in UTC), as the dataset-export page
//! offers fixed intervals and custom schedules.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron {
        pattern: String,
        cron: Box<croner::Cron>,
    },
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            (Schedule::Cron { pattern: a, .. }, Schedule::Cron { pattern: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Schedule {
    /// A cron expression: minute, hour, day of month, month, day of week (UTC).
    pub fn cron(pattern: &str) -> Result<Self, String> {
        let fields = pattern.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "has {fields} fields; a schedule has five: minute hour day-of-month month day-of-week"
            ));
        }
        let cron = croner::Cron::from_str(pattern).map_err(|e| e.to_string())?;
        // A pattern that never matches (30 February) would never land anything.
        cron.find_next_occurrence(&Utc::now(), false)
            .map_err(|e| format!("never comes round: {e}"))?;
        Ok(Schedule::Cron {
            pattern: pattern.to_string(),
            cron: Box::new(cron),
        })
    }

    /// The latest scheduled time at or before `now_ms` (milliseconds since the epoch).
    pub fn latest_due(&self, now_ms: i64) -> i64 {
        match self {
            Schedule::Every(every) => now_ms - now_ms.rem_euclid(every.as_millis() as i64),
            Schedule::Cron { cron, .. } => {
                let now = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
                cron.find_previous_occurrence(&now, true)
                    .map_or(i64::MIN, |t| t.timestamp_millis())
            }
        }
    }

    /// The longest wait between two runs (over the next few of them, for cron).
    pub fn longest_gap(&self) -> Duration {
        match self {
            Schedule::Every(every) => *every,
            Schedule::Cron { cron, .. } => {
                let times: Vec<_> = cron
                    .iter_after(Utc::now())
                    .take(32)
                    .map(|t| t.timestamp())
                    .collect();
                let gap = times
                    .windows(2)
                    .map(|w| w[1] - w[0])
                    .max()
                    .unwrap_or(86_400);
                Duration::from_secs(gap.max(60) as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn runs_fall_on_the_schedule() {
        let six = Schedule::Every(Duration::from_secs(6 * 3600));
        assert_eq!(
            six.latest_due(ms("2026-03-05T13:59:00Z")),
            ms("2026-03-05T12:00:00Z")
        );
        // Weekdays at 02:30 and 14:30.
        let cron = Schedule::cron("30 2,14 * * 1-5").unwrap();
        // Thursday 2026-03-05, 13:00 -> that morning; Sunday 03-08 -> Friday afternoon.
        assert_eq!(
            cron.latest_due(ms("2026-03-05T13:00:00Z")),
            ms("2026-03-05T02:30:00Z")
        );
        assert_eq!(
            cron.latest_due(ms("2026-03-05T14:30:00Z")),
            ms("2026-03-05T14:30:00Z")
        );
        assert_eq!(
            cron.latest_due(ms("2026-03-08T10:00:00Z")),
            ms("2026-03-06T14:30:00Z")
        );
        assert_eq!(cron.longest_gap(), Duration::from_secs((12 + 48) * 3600));
        for bad in [
            "0 */6 * *",
            "0 0 */6 * * *",
            "61 * * * *",
            "0 0 30 2 *",
            "often",
        ] {
            assert!(Schedule::cron(bad).is_err(), "{bad}");
        }
    }
}
