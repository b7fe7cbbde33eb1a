//! A file's columns settled and its lines read into them, with as few parses as it takes.
//!
//! Settling needs every line before the first chunk can be built, so lines are read twice:
//! once to settle, once into columns. With inferred columns (no declared schema, no mapping)
//! the first chunk's lines are read once, as streams, for both: each top-level field's value
//! is kept for its column and widens the field's kind (a walk of the value, not a second
//! parse). A file of at most [`CHUNK_ROWS`] lines — most files of a busy pipeline, which
//! spreads its records over signals, windows and partitions — is parsed once.

use crate::json::{self, Node};
use crate::options::EncodeOptions;
use crate::schema::{Fields, Inference, Kind};
use crate::table::{lend, lines, observe_lines, Columns, Table, CHUNK_ROWS};
use crate::EncodeError;

/// The first chunk, read while settling.
struct FirstChunk<'a> {
    /// A column per top-level field, in the order the fields were first seen.
    columns: Columns<'a>,
    rows: usize,
    /// Where the lines after it start.
    rest_at: usize,
}

pub struct Reading<'a> {
    pub table: Table,
    first: Option<FirstChunk<'a>>,
}

impl<'a> Reading<'a> {
    /// Settles the columns of `ndjson` (as [`Table::settle`]).
    pub fn settle(ndjson: &'a [u8], opts: &EncodeOptions, flat: bool) -> Result<Self, EncodeError> {
        if opts.schema.is_none() && opts.columns.is_none() {
            if let Some(reading) = Self::inferred(ndjson, opts, flat) {
                return reading;
            }
        }
        Ok(Self {
            table: Table::settle(ndjson, opts, flat)?,
            first: None,
        })
    }

    /// `None` when a line of the first chunk is no object or does not parse:
    /// `Table::settle` then says which and why, in its own words.
    fn inferred(
        ndjson: &'a [u8],
        opts: &EncodeOptions,
        flat: bool,
    ) -> Option<Result<Self, EncodeError>> {
        let mut inference = Inference::new(opts.timestamp_unit, opts.infer_timestamps);
        let mut fields = Fields::default();
        let mut columns: Columns<'a> = Vec::new();
        let (mut rows, mut rest_at) = (0, 0);
        for line in lines(ndjson).take(CHUNK_ROWS) {
            read_observing(line, rows, &mut inference, &mut fields, &mut columns)?;
            rows += 1;
            rest_at = line.as_ptr() as usize - ndjson.as_ptr() as usize + line.len();
        }
        // `observe` of a line that is an object makes the schema a struct, fields or not.
        let schema = if rows == 0 {
            Kind::Null
        } else {
            Kind::Struct(fields)
        };
        let settled = observe_lines(&mut inference, schema, &ndjson[rest_at..], rows)
            .and_then(|schema| Table::inferred(schema, inference, opts, flat));
        Some(settled.map(|table| Self {
            table,
            first: Some(FirstChunk {
                columns,
                rows,
                rest_at,
            }),
        }))
    }

    /// Calls `each` with each column's values in the next [`CHUNK_ROWS`] lines of `ndjson`
    /// (the lines settled), as [`Table::column_chunks`].
    pub fn column_chunks(
        &self,
        ndjson: &'a [u8],
        mut each: impl FnMut(&[Vec<Option<&Node<'a>>>], usize) -> Result<(), EncodeError>,
    ) -> Result<u64, EncodeError> {
        let Some(first) = &self.first else {
            return self.table.column_chunks(ndjson, each);
        };
        if first.rows > 0 {
            // Fields first seen after the first chunk are columns it has no value in.
            let width = self.table.columns.len();
            each(&lend(&first.columns, width, first.rows), first.rows)?;
        }
        let rest = self
            .table
            .column_chunks_from(&ndjson[first.rest_at..], first.rows, each)?;
        Ok(first.rows as u64 + rest)
    }
}

/// Reads line `row` as a stream: each top-level field's value goes into row `row` of its
/// column (the last of duplicate keys wins, null is absent, as `lookup`) and widens the
/// field's kind (every value, as `observe` of the whole line). `None` if the line is no
/// object or does not parse.
fn read_observing<'a>(
    line: &'a [u8],
    row: usize,
    inference: &mut Inference,
    fields: &mut Fields,
    columns: &mut Columns<'a>,
) -> Option<()> {
    let mut lex = json::lexer(line).ok()?;
    if lex.peek().ok()? != b'{' {
        return None;
    }
    for c in columns.iter_mut() {
        c.push(None);
    }
    let mut hint = 0;
    lex.object(|lex, key, first| {
        let i = fields.slot_hinted(&key, hint);
        hint = i + 1;
        let v = json::value(lex, first, 2)?;
        inference.observe_field(fields, i, &v);
        if i == columns.len() {
            columns.push(vec![None; row + 1]);
        }
        columns[i][row] = (!v.is_null()).then_some(v);
        Ok::<_, json::Failure>(())
    })
    .ok()?;
    lex.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Codec, FileFormat};
    use proptest::prelude::*;

    type Chunks<'a> = Vec<(Vec<Vec<Option<Node<'a>>>>, usize)>;

    /// What a reader hands its callback: each chunk's values, and the number of lines.
    fn chunks_of<'a>(
        read: impl FnOnce(
            &mut dyn FnMut(&[Vec<Option<&Node<'a>>>], usize) -> Result<(), EncodeError>,
        ) -> Result<u64, EncodeError>,
    ) -> (Result<u64, EncodeError>, Chunks<'a>) {
        let mut got = Vec::new();
        let n = read(&mut |columns, rows| {
            got.push((
                columns
                    .iter()
                    .map(|c| c.iter().map(|v| v.cloned()).collect())
                    .collect(),
                rows,
            ));
            Ok(())
        });
        (n, got)
    }

    /// One parse for the first chunk gives the table (columns, kinds, conflicts) and the
    /// chunks (values, rows, errors) that settling and reading every line apart give.
    fn agrees_with_two_passes(ndjson: &[u8]) -> Result<(), TestCaseError> {
        let opts = EncodeOptions::new(FileFormat::Parquet, Codec::None);
        let one = Reading::settle(ndjson, &opts, false);
        let two = Table::settle(ndjson, &opts, false);
        match (&one, &two) {
            (Ok(one), Ok(two)) => {
                prop_assert_eq!(&one.table.columns, &two.columns);
                prop_assert_eq!(&one.table.conflicts, &two.conflicts);
                let (n1, got1) = chunks_of(|each| one.column_chunks(ndjson, each));
                let (n2, got2) = chunks_of(|each| two.column_chunks(ndjson, each));
                prop_assert_eq!(format!("{n1:?}"), format!("{n2:?}"));
                prop_assert_eq!(got1, got2);
            }
            _ => prop_assert_eq!(
                format!("{:?}", one.as_ref().map(|r| &r.table.columns)),
                format!("{:?}", two.as_ref().map(|t| &t.columns))
            ),
        }
        Ok(())
    }

    proptest! {
        /// Lines with fields that come and go, change type (conflicts), nest, repeat a key,
        /// are no object, or are broken anywhere.
        #[test]
        fn one_parse_of_the_first_chunk_agrees_with_two_passes(
            rows in prop::collection::vec(
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["a", "b", "c", "a\\u0062"]),
                        prop::sample::select(vec![
                            "null", "1", "2.5", "\"x\"", "\"2024-05-01T10:00:00Z\"",
                            "{\"b\":[2,{}]}", "[null]", "true", "18446744073709551616",
                        ]),
                    ),
                    0..6,
                ),
                0..12,
            ),
            broken in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>())),
            not_object in any::<bool>(),
        ) {
            agrees_with_two_passes(&crate::table::test_lines(&rows, broken, not_object))?;
        }
    }

    /// Past the first chunk the rest is settled and read as before, and may still widen
    /// the columns the first chunk's trees are built with (a field only the last line has,
    /// an integer column that a late float turns into doubles).
    #[test]
    fn files_past_one_chunk_agree_with_two_passes() {
        let mut ndjson: String = (0..CHUNK_ROWS * 2 + 5)
            .map(|i| format!("{{\"a\":{i},\"b\":\"{i}\"}}\n"))
            .collect();
        ndjson.push_str("{\"a\":1.5,\"late\":true}\n");
        agrees_with_two_passes(ndjson.as_bytes()).unwrap();
        let broken = ndjson.replace("{\"a\":9000,", "{\"a\":9000,,");
        agrees_with_two_passes(broken.as_bytes()).unwrap();
    }
}
