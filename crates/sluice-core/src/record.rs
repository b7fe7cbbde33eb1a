use std::fmt;
use std::sync::Arc;

/// A Kafka topic and partition: the unit of ordering and of offset commits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Shared: a partition's name is cloned per record on the hot path.
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One consumed record, owned, detached from the Kafka client's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Shared with every record of the topic: one allocation per topic, not per record.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// The broker or producer timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// `topic/partition/offset`: how every error names the record it is about.
    pub fn coordinates(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// What routing reads of a consumed record: a [`Record`] held whole, or one whose payload
/// and headers are still in the Kafka client's buffers (copying them per record showed in
/// profiles, and most records are only read once, into their buffer).
pub trait RecordView {
    fn payload(&self) -> Option<&[u8]>;
    fn header(&self, name: &str) -> Option<&[u8]>;
    fn timestamp_ms(&self) -> Option<i64>;
}

impl RecordView for Record {
    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        Record::header(self, name)
    }

    fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
}
