use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use sluice_config::FlushPolicy;
use sluice_core::{SignalName, TopicPartition, Window};

use crate::lines::{Lines, Sealer};

/// While memory is pressed, every open block is sealed once per this fraction of the budget
/// appended.
const SWEEP_EVERY: u64 = 16;

/// What a buffer's file will hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Signal {
        signal: SignalName,
        window: Window,
        /// Arrived after its window closed, and the pipeline diverts such records.
        late: bool,
    },
    /// Records that could not be exported, bucketed by the day they arrived.
    DeadLetter { window: Window },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BufferKey {
    pub tp: TopicPartition,
    pub target: Target,
}

/// Records of one partition for one target, in offset order, as NDJSON lines.
#[derive(Debug)]
pub struct Buffer {
    pub key: BufferKey,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: u64,
    /// Newline-terminated lines.
    pub lines: Lines,
    /// The offset of each line, in order: a record the format refuses is dead-lettered
    /// under its own offset.
    pub offsets: Vec<i64>,
    opened_at: Instant,
}

/// The result of appending one record.
#[derive(Debug)]
pub struct Appended {
    /// The record opened a new buffer (whose first offset must now be held).
    pub opened: bool,
    /// The buffer reached a size limit and was taken out: land it.
    pub full: Option<Buffer>,
}

/// All open buffers of this worker.
#[derive(Debug)]
pub struct Buffers {
    /// foldhash: keys are hashed once or twice per record, SipHash showed in profiles.
    open: foldhash::HashMap<BufferKey, Buffer>,
    policy: FlushPolicy,
    /// The lines' own length: what the budget and the size limits count.
    bytes: u64,
    /// Memory of the open blocks, room included: with many small buffers it is twice their
    /// lines (each buffer's first reservation, then doubling), so it presses memory too.
    open_capacity: u64,
    sealer: Sealer,
    /// Bytes appended since the last sweep sealed every open block (see `sweep`).
    since_sweep: u64,
}

impl Buffers {
    /// Buffers under `policy`, whose lines `sealer` holds compactly (and, for plain NDJSON
    /// gzip files, deflates ahead).
    pub fn new(policy: FlushPolicy, sealer: Sealer) -> Self {
        Self {
            open: foldhash::HashMap::default(),
            policy,
            bytes: 0,
            open_capacity: 0,
            sealer,
            since_sweep: 0,
        }
    }

    pub fn append(&mut self, key: BufferKey, offset: i64, line: &[u8], now: Instant) -> Appended {
        let mut opened = false;
        // One lookup per record; the key's clone for a new buffer shares its strings.
        let buf = match self.open.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                opened = true;
                let key = e.key().clone();
                // Dead letters are plain NDJSON files, never gzip.
                let gzip_file =
                    self.sealer.deflates_ahead() && matches!(key.target, Target::Signal { .. });
                e.insert(Buffer {
                    key,
                    first_offset: offset,
                    last_offset: offset,
                    records: 0,
                    lines: Lines::new(gzip_file),
                    offsets: Vec::with_capacity(16),
                    opened_at: now,
                })
            }
        };
        debug_assert!(
            opened || offset > buf.last_offset,
            "offsets arrive in order"
        );
        buf.last_offset = offset;
        buf.offsets.push(offset);
        buf.records += 1;
        // Memory is pressed from a quarter of the budget on: lines are then held compressed.
        // Open blocks count with their room: 24,000 buffers of a thousand signals held
        // 148 MB of room for 64 MB of lines before the first sweep.
        let quarter = self.policy.max_buffered_bytes / 4;
        let pressed = self.bytes >= quarter || self.open_capacity >= quarter;
        let room = buf.lines.open_capacity();
        buf.lines.push(line, &mut self.sealer, pressed);
        self.open_capacity = self.open_capacity + buf.lines.open_capacity() as u64 - room as u64;
        self.bytes += line.len() as u64 + 1;
        self.since_sweep += line.len() as u64 + 1;
        let full = (buf.records >= self.policy.max_records
            || buf.lines.len() as u64 >= self.policy.max_bytes)
            .then(|| buf.key.clone());
        let full = full.and_then(|k| self.remove(&k));
        if pressed && self.since_sweep >= self.policy.max_buffered_bytes / SWEEP_EVERY {
            self.sweep();
        }
        Appended { opened, full }
    }

    /// Seals every open block of some length: with many keys (a thousand signals, four
    /// partitions, six hours) most buffers hold a few KB and never fill a block, so without
    /// this their lines stay uncompressed. A sweep visits every buffer, hence only once per
    /// `1 / SWEEP_EVERY` of the budget appended.
    fn sweep(&mut self) {
        self.since_sweep = 0;
        self.open_capacity = 0;
        for buffer in self.open.values_mut() {
            buffer.lines.seal_open(&mut self.sealer);
            self.open_capacity += buffer.lines.open_capacity() as u64;
        }
    }

    /// Buffers whose first record arrived at least `max_age` ago.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Buffer> {
        let age = self.policy.max_age;
        self.take_where(|b| now.saturating_duration_since(b.opened_at) >= age)
    }

    /// When all buffers together hold more than the budget, the largest ones, until they hold
    /// at most three quarters of it: landing big buffers frees the most memory per file.
    pub fn take_over_budget(&mut self) -> Vec<Buffer> {
        if self.bytes <= self.policy.max_buffered_bytes {
            return Vec::new();
        }
        let target = self.policy.max_buffered_bytes / 4 * 3;
        let mut by_size: Vec<(usize, BufferKey)> = self
            .open
            .values()
            .map(|b| (b.lines.len(), b.key.clone()))
            .collect();
        by_size.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        let mut out = Vec::new();
        for (_, key) in by_size {
            if self.bytes <= target {
                break;
            }
            out.extend(self.remove(&key));
        }
        out
    }

    /// Every buffer of one partition (on revocation).
    pub fn take_partition(&mut self, tp: &TopicPartition) -> Vec<Buffer> {
        self.take_where(|b| &b.key.tp == tp)
    }

    pub fn take_all(&mut self) -> Vec<Buffer> {
        self.take_where(|_| true)
    }

    /// Whether a buffer of `key` is open.
    pub fn contains(&self, key: &BufferKey) -> bool {
        self.open.contains_key(key)
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// How long until the oldest buffer is due by age (for the flush timer).
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        self.open
            .values()
            .map(|b| (b.opened_at + self.policy.max_age).saturating_duration_since(now))
            .min()
    }

    fn remove(&mut self, key: &BufferKey) -> Option<Buffer> {
        let b = self.open.remove(key)?;
        self.bytes -= b.lines.len() as u64;
        self.open_capacity -= b.lines.open_capacity() as u64;
        Some(b)
    }

    fn take_where(&mut self, pred: impl Fn(&Buffer) -> bool) -> Vec<Buffer> {
        let keys: Vec<BufferKey> = self
            .open
            .values()
            .filter(|b| pred(b))
            .map(|b| b.key.clone())
            .collect();
        let mut out: Vec<Buffer> = keys.iter().filter_map(|k| self.remove(k)).collect();
        out.sort_by_key(|b| (b.key.tp.clone(), b.first_offset));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Granularity;

    /// Buffers with the default policy but a memory budget of `bytes`.
    fn with_budget(bytes: u64) -> Buffers {
        Buffers::new(
            FlushPolicy {
                max_buffered_bytes: bytes,
                ..FlushPolicy::default()
            },
            Sealer::default(),
        )
    }

    fn key(signal: &str, p: i32) -> BufferKey {
        BufferKey {
            tp: TopicPartition::new("t", p),
            target: Target::Signal {
                signal: SignalName::sanitize(signal),
                window: Window::containing(0, Granularity::Hour),
                late: false,
            },
        }
    }

    #[test]
    fn fills_by_count_and_expires_by_age() {
        let policy = FlushPolicy {
            max_records: 3,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(10),
            max_buffered_bytes: 1 << 30,
            ..FlushPolicy::default()
        };
        let mut b = Buffers::new(policy, Sealer::default());
        let t0 = Instant::now();
        assert!(b.append(key("a", 0), 0, b"{}", t0).opened);
        assert!(b.append(key("b", 0), 1, b"{}", t0).opened);
        assert!(!b.append(key("a", 0), 2, b"{}", t0).opened);
        let full = b.append(key("a", 0), 3, b"{\"x\":1}", t0).full.unwrap();
        assert_eq!(
            (full.first_offset, full.last_offset, full.records),
            (0, 3, 3)
        );
        assert_eq!(full.lines.into_bytes().unwrap(), b"{}\n{}\n{\"x\":1}\n");
        assert_eq!(full.offsets, [0, 2, 3]);
        assert_eq!(b.buffered_bytes(), 3);
        assert!(b.take_expired(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(b.next_due(t0), Some(Duration::from_secs(10)));
        let expired = b.take_expired(t0 + Duration::from_secs(10));
        assert_eq!(expired.len(), 1);
        assert!(b.is_empty());
        assert_eq!(b.buffered_bytes(), 0);
    }

    #[test]
    fn lands_the_largest_buffers_when_over_budget() {
        let mut b = with_budget(100);
        let t0 = Instant::now();
        b.append(key("small", 0), 0, &[b'x'; 9], t0);
        b.append(key("big", 0), 1, &[b'x'; 59], t0);
        b.append(key("mid", 0), 2, &[b'x'; 29], t0);
        assert!(
            b.take_over_budget().is_empty(),
            "100 bytes is not over the budget"
        );
        b.append(key("small", 0), 3, &[b'x'; 9], t0);
        let taken = b.take_over_budget();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].first_offset, 1);
        assert_eq!(b.buffered_bytes(), 50);
    }

    /// From a quarter of the budget on, lines are held compressed; they land as appended.
    #[test]
    fn lines_past_a_quarter_of_the_budget_are_held_compressed() {
        let mut b = with_budget(4_000_000);
        let t0 = Instant::now();
        let mut want = Vec::new();
        for i in 0..50_000 {
            let line = format!(r#"{{"device":"d-{}","value":{i}}}"#, i % 50);
            b.append(key("a", 0), i, line.as_bytes(), t0);
            want.extend_from_slice(line.as_bytes());
            want.push(b'\n');
        }
        assert_eq!(b.buffered_bytes(), want.len() as u64, "counted as lines");
        let buffer = b.take_all().pop().unwrap();
        assert!(
            buffer.lines.held() < want.len() / 2,
            "{}",
            buffer.lines.held()
        );
        assert_eq!(buffer.lines.into_bytes().unwrap(), want);
    }

    /// Appends `records` lines from `line(i)` round-robin over `signals` signals of
    /// partition 0; returns each signal's lines as appended.
    fn fill(
        b: &mut Buffers,
        signals: usize,
        records: i64,
        line: impl Fn(i64) -> String,
    ) -> Vec<Vec<u8>> {
        let mut want = vec![Vec::new(); signals];
        for i in 0..records {
            let line = line(i);
            let signal = i as usize % signals;
            b.append(
                key(&format!("s{signal}"), 0),
                i,
                line.as_bytes(),
                Instant::now(),
            );
            want[signal].extend_from_slice(line.as_bytes());
            want[signal].push(b'\n');
        }
        want
    }

    /// Every buffer reads back as the lines its signal was given.
    fn assert_read_back(buffers: Vec<Buffer>, want: &[Vec<u8>]) {
        for buffer in buffers {
            let Target::Signal { signal, .. } = &buffer.key.target else {
                unreachable!()
            };
            let i: usize = signal.as_str()[1..].parse().unwrap();
            assert_eq!(buffer.lines.into_bytes().unwrap(), want[i]);
        }
    }

    /// Many small buffers, none of which fills a block, are held compressed too.
    #[test]
    fn many_small_buffers_are_held_compressed() {
        let mut b = with_budget(16_000_000);
        let want = fill(&mut b, 500, 200_000, |i| {
            format!(r#"{{"device":"d-{}","value":{i}}}"#, i % 50)
        });
        let buffers = b.take_all();
        let held: usize = buffers.iter().map(|b| b.lines.held()).sum();
        let len: usize = want.iter().map(Vec::len).sum();
        assert!(held < len / 2, "{held} held for {len}");
        assert_read_back(buffers, &want);
    }

    /// Buffers too small to press the budget by their lines still press it by their
    /// room: with many keys each open block holds up to twice its lines.
    #[test]
    fn the_room_of_many_small_buffers_presses_memory() {
        let mut b = with_budget(32_000_000);
        let want = fill(&mut b, 2_000, 80_000, |i| {
            format!(r#"{{"device":"d-{:03}","value":{i:>60}}}"#, i % 50)
        });
        let len: usize = want.iter().map(Vec::len).sum();
        assert!(
            len < 8_000_000,
            "the lines alone stay under a quarter: {len}"
        );
        let buffers = b.take_all();
        let held: usize = buffers.iter().map(|b| b.lines.held()).sum();
        assert!(held < len, "{held} held for {len}");
        assert_read_back(buffers, &want);
    }

    #[test]
    fn takes_one_partition() {
        let mut b = Buffers::new(FlushPolicy::default(), Sealer::default());
        let t0 = Instant::now();
        b.append(key("a", 0), 0, b"{}", t0);
        b.append(key("a", 1), 0, b"{}", t0);
        b.append(key("b", 1), 1, b"{}", t0);
        let taken = b.take_partition(&TopicPartition::new("t", 1));
        assert_eq!(
            taken.iter().map(|b| b.first_offset).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(b.len(), 1);
    }
}
