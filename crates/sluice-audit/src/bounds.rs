//! `--from` / `--to`: where an audit starts and stops, for every partition or for one,
//! as an offset or a time (`1200`, `3=1200`, `signals/3=2026-12-01T00:00:00Z`).

use std::str::FromStr;

use sluice_kafka::{OffsetRange, RangeReader};

use crate::AuditError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Offset(i64),
    /// Milliseconds since the epoch: the first record at or after it.
    Time(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub at: At,
}

impl FromStr for Bound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (target, value) = match s.split_once('=') {
            Some((t, v)) => (Some(t), v),
            None => (None, s),
        };
        let (topic, partition) = match target {
            None => (None, None),
            Some(t) => {
                let (topic, partition) = match t.rsplit_once('/') {
                    Some((topic, p)) => (Some(topic.to_string()), p),
                    None => (None, t),
                };
                let partition = partition.parse().map_err(|_| {
                    format!("'{s}': '{partition}' is no partition number (write PARTITION=VALUE or TOPIC/PARTITION=VALUE)")
                })?;
                (topic, Some(partition))
            }
        };
        let at = match value.parse::<i64>() {
            Ok(offset) if offset >= 0 => At::Offset(offset),
            Ok(_) => return Err(format!("'{s}': offsets are not negative")),
            Err(_) => At::Time(
                chrono::DateTime::parse_from_rfc3339(value)
                    .map_err(|e| {
                        format!("'{s}': '{value}' is neither an offset nor an RFC 3339 time ({e})")
                    })?
                    .timestamp_millis(),
            ),
        };
        Ok(Bound {
            topic,
            partition,
            at,
        })
    }
}

impl Bound {
    fn applies(&self, r: &OffsetRange) -> bool {
        self.topic.as_ref().is_none_or(|t| **t == *r.tp.topic)
            && self.partition.is_none_or(|p| p == r.tp.partition)
    }
}

/// The offset `bound` names in `r`'s partition, if it applies there; the most specific
/// bound wins (a partition's own over a topic's over everyone's).
fn offset(
    reader: &RangeReader,
    bounds: &[Bound],
    r: &OffsetRange,
) -> Result<Option<i64>, AuditError> {
    let best = bounds
        .iter()
        .filter(|b| b.applies(r))
        .max_by_key(|b| (b.partition.is_some(), b.topic.is_some()));
    Ok(match best.map(|b| b.at) {
        None => None,
        Some(At::Offset(o)) => Some(o),
        Some(At::Time(ms)) => Some(reader.offset_for_time(&r.tp, ms)?),
    })
}

/// Each partition's watermarks narrowed by `from` and `to`.
pub(crate) fn resolve(
    reader: &RangeReader,
    watermarks: Vec<OffsetRange>,
    from: &[Bound],
    to: &[Bound],
) -> Result<Vec<OffsetRange>, AuditError> {
    for b in from.iter().chain(to) {
        if !watermarks.iter().any(|r| b.applies(r)) {
            return Err(AuditError::Bound(format!(
                "{b:?} names no partition of the pipeline's topics"
            )));
        }
    }
    let mut out = Vec::new();
    for r in watermarks {
        let start = offset(reader, from, &r)?.map_or(r.from, |o| o.clamp(r.from, r.to));
        let end = offset(reader, to, &r)?.map_or(r.to, |o| o.clamp(start, r.to));
        out.push(OffsetRange {
            tp: r.tp,
            from: start,
            to: end,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse() {
        assert_eq!(
            "12".parse::<Bound>().unwrap(),
            Bound {
                topic: None,
                partition: None,
                at: At::Offset(12)
            }
        );
        let b: Bound = "signals-x/3=2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(b.topic.as_deref(), Some("signals-x"));
        assert_eq!(b.partition, Some(3));
        assert_eq!(b.at, At::Time(1_796_083_200_000));
        assert!("x=5".parse::<Bound>().unwrap_err().contains("no partition"));
        assert!("yesterday"
            .parse::<Bound>()
            .unwrap_err()
            .contains("RFC 3339"));
    }
}
