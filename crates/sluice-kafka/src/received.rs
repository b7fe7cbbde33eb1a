//! Records as the source hands them out: their key, payload and headers left in the
//! client's message until a record is kept, and their topic names shared.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers, Message};
use sluice_core::{Record, RecordView};

/// The names of the topics records came from, each allocated once and shared by every
/// record and partition of its topic (a copy per record showed in profiles).
#[derive(Default)]
pub(crate) struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    /// At most this many names are kept (a pattern subscription may match many topics);
    /// past it a name is allocated per record, as before.
    const MAX: usize = 256;

    pub(crate) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|n| ***n == *name) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(name);
        if self.0.len() < Self::MAX {
            self.0.push(new.clone());
        }
        new
    }
}

/// A record as received, its key, payload and headers still in the client's message:
/// librdkafka allocates to read headers even when there are none (3 % of a drain's CPU in
/// profiles), and copying the key and payload are two more allocations per record. Routing
/// reads them in place ([`RecordView`]); they are copied only when the record is kept
/// ([`Received::whole`]): held back, waiting, or dead-lettered.
pub struct Received<'s> {
    /// Key, payload and headers empty while `message` is kept.
    record: Record,
    message: Option<BorrowedMessage<'s>>,
}

impl<'s> Received<'s> {
    pub(crate) fn new(msg: BorrowedMessage<'s>, names: &mut TopicNames) -> Self {
        Self {
            record: Record {
                topic: names.get(msg.topic()),
                partition: msg.partition(),
                offset: msg.offset(),
                key: None,
                headers: Vec::new(),
                payload: None,
                timestamp_ms: msg.timestamp().to_millis(),
            },
            message: Some(msg),
        }
    }

    /// A record that is already whole.
    pub fn owned(record: Record) -> Self {
        Self {
            record,
            message: None,
        }
    }

    pub fn topic(&self) -> &std::sync::Arc<str> {
        &self.record.topic
    }

    pub fn partition(&self) -> i32 {
        self.record.partition
    }

    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    /// `topic/partition/offset`, as [`Record::coordinates`].
    pub fn coordinates(&self) -> String {
        self.record.coordinates()
    }

    /// The whole record, key, payload and headers copied out of the client's message.
    pub fn whole(&mut self) -> &Record {
        if let Some(msg) = self.message.take() {
            self.record.key = msg.key().map(<[u8]>::to_vec);
            self.record.headers = headers(&msg);
            self.record.payload = msg.payload().map(<[u8]>::to_vec);
        }
        &self.record
    }

    /// The headers, once [`Received::whole`] has read them.
    pub fn kept_headers(&self) -> Option<&[(String, Vec<u8>)]> {
        self.message.is_none().then_some(&self.record.headers[..])
    }

    pub fn into_record(mut self) -> Record {
        self.whole();
        self.record
    }
}

impl RecordView for Received<'_> {
    fn payload(&self) -> Option<&[u8]> {
        match &self.message {
            Some(msg) => msg.payload(),
            None => self.record.payload.as_deref(),
        }
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        match &self.message {
            // As a whole record has it: the first header of that name, a null value empty.
            Some(msg) => msg
                .headers()?
                .iter()
                .find(|h| h.key == name)
                .map(|h| h.value.unwrap_or_default()),
            None => self.record.header(name),
        }
    }

    fn timestamp_ms(&self) -> Option<i64> {
        self.record.timestamp_ms
    }
}

fn headers(msg: &BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    msg.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn to_record(msg: BorrowedMessage<'_>, names: &mut TopicNames) -> Record {
    Received::new(msg, names).into_record()
}
