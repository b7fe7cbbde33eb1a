//! The audit's arithmetic: which records each lake file claims, how often each record was
//! found, and which copies a repair may remove. No Kafka and no lake here.
//!
//! A data file's name (`{topic}-{partition}-{first}-{last}`) and directory (one buffer key:
//! signal and window, validation makes sure) say which records it can hold: those of its
//! key between its offsets. Dead letters are read, so they say exactly which records they
//! hold. A record routed to a key but diverted (late, or refused by the format) still lies
//! inside the range of that key's files without being in them, so a dead letter outweighs
//! the file names, and on-time and `_late/` files of one key count as one place. Row counts
//! check the names: a file may not hold more rows than its name claims, nor fewer than the
//! records only it can hold.

use std::collections::{BTreeMap, HashMap};

use sluice_core::TopicPartition;

use crate::report::{Duplicate, PartitionReport, Report, RowMismatch, Unexplained};

/// What routing says of a source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// In a file of this buffer key (an interned directory).
    Data(u32),
    /// Its signal is not exported.
    Filtered,
    /// In the dead letters.
    Dead,
}

/// Whether a data file sits in its key's own directory or under `_late/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    OnTime,
    Late,
}

struct Partition {
    tp: TopicPartition,
    from: i64,
    to: i64,
    offsets: Vec<i64>,
    expect: Vec<Expect>,
    /// Per record: on-time files, `_late/` files and dead-letter lines naming it.
    on_time: Vec<u16>,
    late: Vec<u16>,
    dead: Vec<u16>,
}

impl Partition {
    fn index(&self, offset: i64) -> Option<usize> {
        self.offsets.binary_search(&offset).ok()
    }

    fn found(&self, i: usize) -> u16 {
        if self.dead[i] > 0 {
            self.dead[i]
        } else {
            self.on_time[i].max(self.late[i])
        }
    }

    fn coverage(&mut self, place: Place) -> &mut Vec<u16> {
        match place {
            Place::OnTime => &mut self.on_time,
            Place::Late => &mut self.late,
        }
    }
}

/// A data file as the lake lists it.
pub struct FoundFile<'a> {
    pub path: &'a str,
    pub place: Place,
    /// Its directory, without `_late/`.
    pub dir: &'a str,
    pub tp: &'a TopicPartition,
    /// The offsets its name gives, inclusive.
    pub range: (i64, i64),
    /// When it landed (the store's time): a repair keeps the earliest copy.
    pub modified_ms: i64,
    /// Its rows, when the file could be read.
    pub rows: Option<u64>,
}

/// A data file the audit counts.
#[derive(Debug, Clone)]
struct DataFile {
    path: String,
    place: Place,
    /// When it landed (the store's time): a repair keeps the earliest copy.
    modified_ms: i64,
    /// Its rows, when the file could be read.
    rows: Option<u64>,
    partition: usize,
    /// The records of its key inside its name's range (indexes into the partition).
    claims: Vec<usize>,
    /// Its range lies wholly inside the audited offsets.
    whole: bool,
    removed: bool,
}

#[derive(Default)]
pub struct Tally {
    partitions: Vec<Partition>,
    by_tp: HashMap<TopicPartition, usize>,
    dirs: HashMap<String, u32>,
    /// Per (partition, key): its records' indexes, ascending.
    by_key: HashMap<(usize, u32), Vec<usize>>,
    files: Vec<DataFile>,
    /// Files no audited record explains, with why.
    unexplained: Vec<(String, String)>,
    /// Dead-letter lines of audited records: (partition, record, file path).
    dead_lines: Vec<(usize, usize, u32)>,
    dead_paths: Vec<String>,
}

impl Tally {
    /// Audits offsets `[from, to)` of `tp`.
    pub fn add_partition(&mut self, tp: TopicPartition, from: i64, to: i64) {
        self.by_tp.insert(tp.clone(), self.partitions.len());
        self.partitions.push(Partition {
            tp,
            from,
            to,
            offsets: Vec::new(),
            expect: Vec::new(),
            on_time: Vec::new(),
            late: Vec::new(),
            dead: Vec::new(),
        });
    }

    /// The key id of a data directory, for `Expect::Data`.
    pub fn key(&mut self, dir: &str) -> u32 {
        let next = self.dirs.len() as u32;
        *self.dirs.entry(dir.to_string()).or_insert(next)
    }

    /// Whether a file of `tp` named `first..=last` holds any audited offsets.
    pub fn touches(&self, tp: &TopicPartition, first: i64, last: i64) -> bool {
        self.by_tp.get(tp).is_none_or(|&p| {
            let part = &self.partitions[p];
            last >= part.from && first < part.to
        })
    }

    /// A source record, in offset order per partition.
    pub fn add_record(&mut self, tp: &TopicPartition, offset: i64, expect: Expect) {
        let Some(&p) = self.by_tp.get(tp) else { return };
        let part = &mut self.partitions[p];
        if offset < part.from || offset >= part.to || part.offsets.last() >= Some(&offset) {
            return;
        }
        let i = part.offsets.len();
        part.offsets.push(offset);
        part.expect.push(expect);
        part.on_time.push(0);
        part.late.push(0);
        part.dead.push(0);
        if let Expect::Data(key) = expect {
            self.by_key.entry((p, key)).or_default().push(i);
        }
    }

    /// A data file found in the lake.
    pub fn add_data_file(&mut self, found: FoundFile<'_>) {
        let FoundFile {
            path,
            place,
            dir,
            tp,
            range: (first, last),
            modified_ms,
            rows,
        } = found;
        let Some(&p) = self.by_tp.get(tp) else {
            return self.unexplain(path, "its topic partition is not a source of this pipeline");
        };
        let part = &self.partitions[p];
        if last < part.from || first >= part.to {
            return; // outside what is audited
        }
        let whole = first >= part.from && last < part.to;
        let claims: Vec<usize> = self
            .dirs
            .get(dir)
            .and_then(|key| self.by_key.get(&(p, *key)))
            .map(|records| {
                let start = records.partition_point(|&i| part.offsets[i] < first);
                let end = records.partition_point(|&i| part.offsets[i] <= last);
                records[start..end].to_vec()
            })
            .unwrap_or_default();
        if claims.is_empty() {
            if whole {
                self.unexplain(
                    path,
                    "no record of its directory's signal and window lies in its offsets",
                );
            }
            return;
        }
        let part = &mut self.partitions[p];
        for &i in &claims {
            part.coverage(place)[i] += 1;
        }
        self.files.push(DataFile {
            path: path.to_string(),
            place,
            modified_ms,
            rows,
            partition: p,
            claims,
            whole,
            removed: false,
        });
    }

    /// A dead-letter line naming a record.
    pub fn add_dead_letter(&mut self, path: &str, tp: &TopicPartition, offset: i64) {
        let Some(&p) = self.by_tp.get(tp) else { return };
        let Some(i) = self.partitions[p].index(offset) else {
            return;
        };
        self.partitions[p].dead[i] += 1;
        if self.dead_paths.last().map(String::as_str) != Some(path) {
            self.dead_paths.push(path.to_string());
        }
        self.dead_lines
            .push((p, i, self.dead_paths.len() as u32 - 1));
    }

    /// A file that is no data file of any audited record (an unparseable name, say).
    pub fn unexplain(&mut self, path: &str, why: &str) {
        self.unexplained.push((path.to_string(), why.to_string()));
    }

    /// Row-count problems: files holding more rows than their names claim, or fewer than
    /// the records only they can hold.
    fn row_mismatches(&self) -> Vec<RowMismatch> {
        let mut out = Vec::new();
        for f in self.files.iter().filter(|f| f.whole && !f.removed) {
            let Some(rows) = f.rows else { continue };
            let part = &self.partitions[f.partition];
            let other = |i: usize| match f.place {
                Place::OnTime => part.late[i],
                Place::Late => part.on_time[i],
            };
            let claimed = f.claims.len() as u64;
            let sure = f
                .claims
                .iter()
                .filter(|&&i| part.dead[i] == 0 && other(i) == 0)
                .count() as u64;
            if rows > claimed || rows < sure {
                out.push(RowMismatch {
                    path: f.path.clone(),
                    rows,
                    claimed,
                    only_here: sure,
                });
            }
        }
        out
    }

    /// Removes every file whose records are all also in another file of the same place,
    /// latest-landed first, so the copy that landed first stays: every run of the audit on
    /// the same lake chooses the same files. Returns their paths; the caller deletes them.
    pub fn plan_repair(&mut self) -> Vec<String> {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        order.sort_by(|&a, &b| {
            let (fa, fb) = (&self.files[a], &self.files[b]);
            (fb.modified_ms, &fb.path).cmp(&(fa.modified_ms, &fa.path))
        });
        let mismatched: std::collections::HashSet<String> =
            self.row_mismatches().into_iter().map(|m| m.path).collect();
        let mut removed = Vec::new();
        for f in order {
            let file = &self.files[f];
            if !file.whole || mismatched.contains(&file.path) {
                continue;
            }
            let part = &self.partitions[file.partition];
            let place = file.place;
            let held = |i: usize| match place {
                Place::OnTime => part.on_time[i],
                Place::Late => part.late[i],
            };
            if !file.claims.iter().all(|&i| held(i) >= 2) {
                continue;
            }
            let claims = file.claims.clone();
            let p = file.partition;
            for i in claims {
                self.partitions[p].coverage(place)[i] -= 1;
            }
            self.files[f].removed = true;
            removed.push(self.files[f].path.clone());
        }
        removed
    }

    /// What the audit found.
    pub fn report(&self) -> Report {
        let mut holders: HashMap<(usize, usize), Vec<&str>> = HashMap::new();
        let mut partitions = Vec::new();
        for (p, part) in self.partitions.iter().enumerate() {
            let mut r = PartitionReport {
                topic: part.tp.topic.to_string(),
                partition: part.tp.partition,
                from: part.from,
                to: part.to,
                records: part.offsets.len() as u64,
                ..Default::default()
            };
            let mut missing = Ranges::default();
            for (i, &offset) in part.offsets.iter().enumerate() {
                let found = part.found(i);
                match (part.expect[i], found) {
                    (Expect::Filtered, 0) => r.filtered += 1,
                    (_, 0) => missing.push(offset),
                    (_, 1) => r.once += 1,
                    _ => {
                        r.duplicated += 1;
                        holders.insert((p, i), Vec::new());
                    }
                }
                if part.dead[i] > 0 {
                    r.dead_lettered += 1;
                }
            }
            r.missing = missing.count;
            r.missing_offsets = missing.ranges;
            partitions.push(r);
        }
        for f in self.files.iter().filter(|f| !f.removed) {
            for &i in &f.claims {
                if let Some(h) = holders.get_mut(&(f.partition, i)) {
                    if self.partitions[f.partition].dead[i] == 0 {
                        h.push(&f.path);
                    }
                }
            }
        }
        for &(p, i, path) in &self.dead_lines {
            if let Some(h) = holders.get_mut(&(p, i)) {
                h.push(&self.dead_paths[path as usize]);
            }
        }
        // Duplicates grouped by the files that hold them.
        let mut groups: BTreeMap<(usize, Vec<&str>), Ranges> = BTreeMap::new();
        let mut keys: Vec<_> = holders.into_iter().collect();
        keys.sort();
        for ((p, i), mut paths) in keys {
            paths.sort();
            groups
                .entry((p, paths))
                .or_default()
                .push(self.partitions[p].offsets[i]);
        }
        for ((p, paths), ranges) in groups {
            partitions[p].duplicates.push(Duplicate {
                records: ranges.count,
                offsets: ranges.ranges,
                paths: paths.into_iter().map(str::to_string).collect(),
            });
        }
        Report {
            partitions,
            unexplained_files: self
                .unexplained
                .iter()
                .map(|(path, reason)| Unexplained {
                    path: path.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            row_mismatches: self.row_mismatches(),
            files_checked: self.files.iter().filter(|f| !f.removed).count() as u64,
            repaired: Vec::new(),
        }
    }
}

/// Offsets as inclusive ranges, for reports.
#[derive(Debug, Default)]
struct Ranges {
    count: u64,
    ranges: Vec<(i64, i64)>,
}

impl Ranges {
    fn push(&mut self, offset: i64) {
        self.count += 1;
        match self.ranges.last_mut() {
            Some((_, last)) if *last + 1 == offset => *last = offset,
            _ => self.ranges.push((offset, offset)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// Offsets 0..10 alternate between keys "a/" and "b/"; offset 9 is a dead letter.
    fn tally() -> Tally {
        let mut t = Tally::default();
        t.add_partition(tp(), 0, 10);
        let (a, b) = (t.key("a/"), t.key("b/"));
        for o in 0..9 {
            t.add_record(&tp(), o, Expect::Data(if o % 2 == 0 { a } else { b }));
        }
        t.add_record(&tp(), 9, Expect::Dead);
        t
    }

    fn add(t: &mut Tally, dir: &str, range: (i64, i64), modified: i64, rows: u64) {
        let path = format!("{dir}t-0-{}-{}.ndjson", range.0, range.1);
        add_at(t, &path, Place::OnTime, dir, (range, modified, rows));
    }

    fn add_at(t: &mut Tally, path: &str, place: Place, dir: &str, at: ((i64, i64), i64, u64)) {
        t.add_data_file(FoundFile {
            path,
            place,
            dir,
            tp: &tp(),
            range: at.0,
            modified_ms: at.1,
            rows: Some(at.2),
        });
    }

    #[test]
    fn every_record_once() {
        let mut t = tally();
        add(&mut t, "a/", (0, 8), 1, 5);
        add(&mut t, "b/", (1, 7), 1, 4);
        t.add_dead_letter("_dead_letter/t-0-9-9.ndjson", &tp(), 9);
        let r = t.report();
        assert!(r.clean(), "{r:?}");
        assert_eq!(
            (r.partitions[0].once, r.partitions[0].dead_lettered),
            (10, 1)
        );
    }

    #[test]
    fn a_deleted_file_is_missing_and_a_copy_duplicated_until_repaired() {
        let mut t = tally();
        add(&mut t, "a/", (0, 4), 1, 3);
        add(&mut t, "a/", (6, 8), 1, 2);
        // b/'s file was deleted; a copy of a/'s first file lands later under a wider name.
        add(&mut t, "a/", (0, 5), 2, 3);
        let r = t.report();
        let p = &r.partitions[0];
        assert_eq!((p.missing, p.duplicated, p.once), (5, 3, 2), "{p:?}");
        assert_eq!(
            p.missing_offsets,
            vec![(1, 1), (3, 3), (5, 5), (7, 7), (9, 9)]
        );
        assert_eq!(
            p.duplicates[0].paths,
            ["a/t-0-0-4.ndjson", "a/t-0-0-5.ndjson"]
        );
        let text = r.to_string();
        assert!(text.contains("missing: 1, 3, 5, 7, 9"), "{text}");
        assert!(
            text.contains(
                "3 records in 2 places: offsets 0, 2, 4 in a/t-0-0-4.ndjson, a/t-0-0-5.ndjson"
            ),
            "{text}"
        );
        assert!(text.contains("NOT CLEAN"), "{text}");
        assert_eq!(t.plan_repair(), ["a/t-0-0-5.ndjson"]);
        assert_eq!(t.report().partitions[0].duplicated, 0);
    }

    #[test]
    fn a_refused_record_inside_a_files_range_is_found_once() {
        let mut t = tally();
        // Offset 4 was refused by the format: dead-lettered, yet inside a/'s range.
        add(&mut t, "a/", (0, 8), 1, 4);
        add(&mut t, "b/", (1, 7), 1, 4);
        t.add_dead_letter("_dead_letter/t-0-4-4.ndjson", &tp(), 4);
        t.add_dead_letter("_dead_letter/t-0-9-9.ndjson", &tp(), 9);
        let r = t.report();
        assert!(r.clean(), "{r:?}");
        // Holding the refused record as well shows in the rows.
        let mut t = tally();
        add(&mut t, "a/", (0, 8), 1, 6);
        assert_eq!(t.report().row_mismatches.len(), 1);
    }

    #[test]
    fn files_nothing_explains_and_short_files_are_reported() {
        let mut t = tally();
        add(&mut t, "c/", (0, 3), 1, 2);
        add(&mut t, "a/", (0, 8), 1, 4);
        let r = t.report();
        assert_eq!(r.unexplained_files[0].path, "c/t-0-0-3.ndjson");
        assert_eq!(r.row_mismatches[0].only_here, 5);
        assert!(!r.clean());
    }

    #[test]
    fn late_and_on_time_files_of_one_key_count_as_one_place() {
        let mut t = tally();
        // Offset 4 of a/ was late: diverted under _late/, inside the on-time file's range.
        add(&mut t, "a/", (0, 8), 1, 4);
        add_at(
            &mut t,
            "_late/a/t-0-4-4.ndjson",
            Place::Late,
            "a/",
            ((4, 4), 1, 1),
        );
        add(&mut t, "b/", (1, 7), 1, 4);
        t.add_dead_letter("_dead_letter/t-0-9-9.ndjson", &tp(), 9);
        assert!(t.report().clean());
    }
}
