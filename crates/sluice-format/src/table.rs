//! A file's columns (inferred, declared or mapped) and the Arrow batches built from its lines.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{new_null_array, ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields as ArrowFields, Schema, SchemaRef};

use crate::json::{self, Node};
use crate::options::{EncodeOptions, TimeUnit};
use crate::schema::{finalize, finalize_inferred, parse_timestamp, Inference, Kind};
use crate::EncodeError;

/// The columns of each top-level field, looked up per field per line (SipHash showed there).
type FieldColumns<'t> = foldhash::HashMap<&'t str, Vec<usize>>;

/// Lines parsed at a time: bounds how many parsed lines exist at once.
pub const CHUNK_ROWS: usize = 8192;

/// Rows a chunk of `ndjson` will hold, at most: a small file's columns are sized to it, not
/// to a whole chunk (with 1,000 signals most files hold a few dozen lines, and 8,192-row
/// columns were mapped and unmapped per file: 7 % of that run's CPU in `munmap`).
fn chunk_capacity(ndjson: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', ndjson).take(CHUNK_ROWS).count() + 1
}

/// Values of one chunk, a vector per column.
pub(crate) type Columns<'a> = Vec<Vec<Option<Node<'a>>>>;

/// A chunk's values as its readers' callbacks take them, for `width` columns: a column the
/// chunk has none of (a field first seen after it) is all absent.
pub(crate) fn lend<'n, 'a>(
    columns: &'n Columns<'a>,
    width: usize,
    rows: usize,
) -> Vec<Vec<Option<&'n Node<'a>>>> {
    (0..width)
        .map(|i| match columns.get(i) {
            Some(c) => c.iter().map(Option::as_ref).collect(),
            None => vec![None; rows],
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub path: Vec<String>,
    pub kind: Kind,
}

/// The columns of one file.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<ColumnDef>,
    pub unit: TimeUnit,
    /// Fields whose types conflicted and were written as JSON text.
    pub conflicts: Vec<String>,
}

/// Each non-empty line, in order. Found with memchr: splitting with a closure per byte
/// showed at ~8 % of an uncompressed NDJSON run, just to count the rows.
pub fn lines(ndjson: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = ndjson;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (line, after) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        if !line.is_empty() {
            return Some(line);
        }
    })
}

pub fn parse_line(line: &[u8], row: usize) -> Result<Node<'_>, EncodeError> {
    json::parse(line).map_err(|detail| EncodeError::Line { row, detail })
}

pub use json::lookup;

/// Widens `schema` by each line of `ndjson`, read as a stream; `first_row` numbers the first.
pub(crate) fn observe_lines(
    inference: &mut Inference,
    mut schema: Kind,
    ndjson: &[u8],
    first_row: usize,
) -> Result<Kind, EncodeError> {
    for (row, line) in lines(ndjson).enumerate() {
        schema = inference
            .observe_line(schema, line)
            .map_err(|detail| EncodeError::Line {
                row: first_row + row,
                detail,
            })?;
    }
    Ok(schema)
}

impl Table {
    /// Reads every line once to settle the columns (unless a schema is declared). `flat`
    /// makes nested values JSON text, for formats without nesting (CSV).
    pub fn settle(ndjson: &[u8], opts: &EncodeOptions, flat: bool) -> Result<Table, EncodeError> {
        let unit = opts.timestamp_unit;
        let mut inference = Inference::new(unit, opts.infer_timestamps);
        let columns: Vec<ColumnDef> = match (&opts.schema, &opts.columns) {
            (Some(declared), mapping) => {
                let declared = &declared.kind;
                let Kind::Struct(fields) = declared else {
                    return Err(EncodeError::Schema(
                        "a declared schema must be a record".into(),
                    ));
                };
                match mapping {
                    None => top_level_columns(fields),
                    Some(cols) => cols
                        .iter()
                        .map(|c| ColumnDef {
                            name: c.name.clone(),
                            path: c.path.clone(),
                            kind: declared_at(declared, &c.path).unwrap_or(Kind::Json),
                        })
                        .collect(),
                }
            }
            (None, Some(cols)) => {
                let mut kinds = vec![Kind::Null; cols.len()];
                for (row, line) in lines(ndjson).enumerate() {
                    let v = parse_line(line, row)?;
                    for (c, kind) in cols.iter().zip(kinds.iter_mut()) {
                        if let Some(x) = lookup(&v, &c.path) {
                            let k = std::mem::replace(kind, Kind::Null);
                            *kind = inference.observe(k, x, &c.name);
                        }
                    }
                }
                cols.iter()
                    .zip(kinds)
                    .map(|(c, kind)| ColumnDef {
                        name: c.name.clone(),
                        path: c.path.clone(),
                        kind,
                    })
                    .collect()
            }
            (None, None) => {
                let schema = observe_lines(&mut inference, Kind::Null, ndjson, 0)?;
                return Self::inferred(schema, inference, opts, flat);
            }
        };
        Ok(Self::finalized(columns, inference, opts, flat))
    }

    /// The table of an inferred schema: a column per top-level field.
    pub(crate) fn inferred(
        schema: Kind,
        inference: Inference,
        opts: &EncodeOptions,
        flat: bool,
    ) -> Result<Table, EncodeError> {
        let columns = match schema {
            Kind::Struct(fields) => top_level_columns(&fields),
            Kind::Null => Vec::new(),
            _ => return Err(EncodeError::Schema("lines must be JSON objects".into())),
        };
        Ok(Self::finalized(columns, inference, opts, flat))
    }

    fn finalized(
        columns: Vec<ColumnDef>,
        inference: Inference,
        opts: &EncodeOptions,
        flat: bool,
    ) -> Table {
        let declared = opts.schema.is_some();
        let columns = columns
            .into_iter()
            .map(|c| ColumnDef {
                kind: if declared {
                    finalize(c.kind, flat)
                } else {
                    finalize_inferred(c.kind, flat)
                },
                ..c
            })
            .collect();
        Table {
            columns,
            unit: opts.timestamp_unit,
            conflicts: inference.conflicts,
        }
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, data_type(&c.kind, self.unit), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// One Arrow batch of `rows` rows from each column's values.
    pub fn batch(
        &self,
        schema: &SchemaRef,
        columns: &[Vec<Option<&Node>>],
        rows: usize,
    ) -> Result<RecordBatch, EncodeError> {
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .zip(&self.columns)
            .map(|(vals, c)| build(&c.kind, vals, self.unit))
            .collect();
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
            .map_err(|e| EncodeError::Schema(e.to_string()))
    }

    /// Each column's value in each row (`lookup` of its path). Top-level fields are found in
    /// one pass over each row's entries rather than a search per column (a search per column
    /// per row showed at ~4 % of a Parquet encode); as in `lookup`, the last of duplicate
    /// keys wins and null is absent.
    pub(crate) fn column_values<'n, 'a>(
        &self,
        rows: &'n [Node<'a>],
    ) -> Vec<Vec<Option<&'n Node<'a>>>> {
        let mut vals = vec![vec![None; rows.len()]; self.columns.len()];
        for (c, slots) in self.columns.iter().zip(vals.iter_mut()) {
            if c.path.len() != 1 {
                for (slot, row) in slots.iter_mut().zip(rows) {
                    *slot = lookup(row, &c.path);
                }
            }
        }
        let top = self.field_columns();
        for (r, row) in rows.iter().enumerate() {
            let Node::Object(entries) = row else { continue };
            for (key, v) in entries {
                for &i in top.get(key.as_ref()).map_or(&[][..], Vec::as_slice) {
                    vals[i][r] = (!v.is_null()).then_some(v);
                }
            }
        }
        vals
    }

    /// The columns of each top-level field (a column whose path is one field).
    fn field_columns(&self) -> FieldColumns<'_> {
        let mut top = FieldColumns::default();
        for (i, c) in self.columns.iter().enumerate() {
            if let [field] = c.path.as_slice() {
                top.entry(field.as_str()).or_default().push(i);
            }
        }
        top
    }

    /// Calls `each` with each column's values in the next [`CHUNK_ROWS`] lines of `ndjson`
    /// (`lookup` of its path; and the number of lines). When every column is a top-level
    /// field, a line is read as a stream and only the fields that are columns become values
    /// (building a tree of every line showed at ~17 % of a Parquet encode); otherwise each
    /// line is parsed whole.
    pub fn column_chunks<'a>(
        &self,
        ndjson: &'a [u8],
        each: impl FnMut(&[Vec<Option<&Node<'a>>>], usize) -> Result<(), EncodeError>,
    ) -> Result<u64, EncodeError> {
        self.column_chunks_from(ndjson, 0, each)
    }

    /// `column_chunks` of lines whose first is row `first_row` of the file (for errors).
    pub(crate) fn column_chunks_from<'a>(
        &self,
        ndjson: &'a [u8],
        first_row: usize,
        mut each: impl FnMut(&[Vec<Option<&Node<'a>>>], usize) -> Result<(), EncodeError>,
    ) -> Result<u64, EncodeError> {
        if self.columns.iter().any(|c| c.path.len() != 1) {
            return Self::chunks_from(ndjson, first_row, |rows| {
                let columns = self.column_values(rows);
                each(&columns, rows.len())
            });
        }
        let top = self.field_columns();
        let capacity = chunk_capacity(ndjson);
        let mut columns: Columns<'a> = (0..self.columns.len())
            .map(|_| Vec::with_capacity(capacity))
            .collect();
        // The lines counted, not a column's length: a file of `{}` lines has no column, and
        // its rows must still be written (Avro and CSV wrote none while counting them).
        let mut hand = |columns: &mut Columns<'a>, rows: usize| {
            each(&lend(columns, columns.len(), rows), rows)
        };
        let mut n = 0u64;
        let mut rows = 0usize;
        for line in lines(ndjson) {
            for c in columns.iter_mut() {
                c.push(None);
            }
            read_columns(line, &top, &mut columns).map_err(|f| EncodeError::Line {
                row: first_row + n as usize,
                detail: f.describe(),
            })?;
            n += 1;
            rows += 1;
            if rows == CHUNK_ROWS {
                hand(&mut columns, rows)?;
                columns.iter_mut().for_each(Vec::clear);
                rows = 0;
            }
        }
        if rows > 0 {
            hand(&mut columns, rows)?;
        }
        Ok(n)
    }

    /// Calls `each` with the parsed rows of `ndjson`, [`CHUNK_ROWS`] at a time.
    pub fn chunks<'a>(
        ndjson: &'a [u8],
        each: impl FnMut(&[Node<'a>]) -> Result<(), EncodeError>,
    ) -> Result<u64, EncodeError> {
        Self::chunks_from(ndjson, 0, each)
    }

    fn chunks_from<'a>(
        ndjson: &'a [u8],
        first_row: usize,
        mut each: impl FnMut(&[Node<'a>]) -> Result<(), EncodeError>,
    ) -> Result<u64, EncodeError> {
        let mut rows = Vec::with_capacity(chunk_capacity(ndjson));
        let mut n = 0u64;
        for line in lines(ndjson) {
            rows.push(parse_line(line, first_row + n as usize)?);
            n += 1;
            if rows.len() == CHUNK_ROWS {
                each(&rows)?;
                rows.clear();
            }
        }
        if !rows.is_empty() {
            each(&rows)?;
        }
        Ok(n)
    }
}

/// A column per field, each named as and holding its field.
fn top_level_columns(fields: &crate::schema::Fields) -> Vec<ColumnDef> {
    fields
        .iter()
        .map(|(n, k)| ColumnDef {
            name: n.into(),
            path: vec![n.into()],
            kind: k.clone(),
        })
        .collect()
}

/// Reads one line into the last slot of each column that is one of its top-level fields: as
/// `lookup`, the last of duplicate keys wins and null is absent. Fields that are no column
/// are read too (not skipped), so a line fails exactly as `json::parse` would fail it.
fn read_columns<'a>(
    line: &'a [u8],
    top: &FieldColumns,
    columns: &mut [Vec<Option<Node<'a>>>],
) -> Result<(), json::Failure> {
    let mut lex = json::lexer(line)?;
    let first = lex.peek()?;
    if first != b'{' {
        json::value(&mut lex, first, 1)?;
        return Ok(lex.finish()?);
    }
    lex.object(|lex, key, first| {
        let at = top.get(key.as_ref());
        let v = json::value(lex, first, 2)?;
        if let Some((&last, more)) = at.and_then(|at| at.split_last()) {
            let v = (!v.is_null()).then_some(v);
            // A field two columns map is copied; the usual one is moved.
            for &i in more {
                *columns[i].last_mut().expect("a slot per line") = v.clone();
            }
            *columns[last].last_mut().expect("a slot per line") = v;
        }
        Ok::<_, json::Failure>(())
    })?;
    Ok(lex.finish()?)
}

/// The declared kind at a dotted path, if the schema has it.
pub fn declared_at(declared: &Kind, path: &[String]) -> Option<Kind> {
    let mut k = declared;
    for key in path {
        match k {
            Kind::Struct(f) => k = f.get(key)?,
            _ => return None,
        }
    }
    Some(k.clone())
}

pub fn data_type(kind: &Kind, unit: TimeUnit) -> DataType {
    match kind {
        Kind::Null | Kind::Str | Kind::Json => DataType::Utf8,
        Kind::Bool => DataType::Boolean,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Timestamp => DataType::Timestamp(
            match unit {
                TimeUnit::Millis => arrow_schema::TimeUnit::Millisecond,
                TimeUnit::Micros => arrow_schema::TimeUnit::Microsecond,
            },
            Some("UTC".into()),
        ),
        Kind::List(e) => DataType::List(Arc::new(Field::new("item", data_type(e, unit), true))),
        Kind::Struct(f) => DataType::Struct(struct_fields(f, unit)),
    }
}

fn struct_fields(f: &crate::schema::Fields, unit: TimeUnit) -> ArrowFields {
    f.iter()
        .map(|(n, k)| Field::new(n, data_type(k, unit), true))
        .collect()
}

/// The JSON text of a value for a JSON-text column (numbers exactly as written); strings
/// stay unquoted only in string columns.
fn json_text(v: &Node) -> String {
    v.json_text()
}

/// Builds one column. A value that does not fit its column's kind (only possible with a
/// declared schema, whose violations the router dead-letters) is written as null.
pub fn build(kind: &Kind, vals: &[Option<&Node>], unit: TimeUnit) -> ArrayRef {
    match kind {
        Kind::Null => new_null_array(&DataType::Utf8, vals.len()),
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(vals.len());
            vals.iter()
                .for_each(|v| b.append_option(v.and_then(Node::as_bool)));
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::with_capacity(vals.len());
            vals.iter()
                .for_each(|v| b.append_option(v.and_then(Node::as_i64)));
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::with_capacity(vals.len());
            vals.iter()
                .for_each(|v| b.append_option(v.and_then(Node::as_f64)));
            Arc::new(b.finish())
        }
        Kind::Str => {
            let mut b = StringBuilder::with_capacity(vals.len(), vals.len() * 16);
            vals.iter()
                .for_each(|v| b.append_option(v.and_then(Node::as_str)));
            Arc::new(b.finish())
        }
        Kind::Json => {
            let mut b = StringBuilder::with_capacity(vals.len(), vals.len() * 16);
            vals.iter().for_each(|v| b.append_option(v.map(json_text)));
            Arc::new(b.finish())
        }
        Kind::Timestamp => {
            let ts = |v: &Option<&Node>| {
                v.and_then(Node::as_str)
                    .and_then(|s| parse_timestamp(s, unit))
            };
            match unit {
                TimeUnit::Millis => {
                    let mut b = TimestampMillisecondBuilder::with_capacity(vals.len());
                    vals.iter().for_each(|v| b.append_option(ts(v)));
                    Arc::new(b.finish().with_timezone("UTC"))
                }
                TimeUnit::Micros => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(vals.len());
                    vals.iter().for_each(|v| b.append_option(ts(v)));
                    Arc::new(b.finish().with_timezone("UTC"))
                }
            }
        }
        Kind::List(elem) => {
            let mut offsets = Vec::with_capacity(vals.len() + 1);
            offsets.push(0i32);
            let mut items: Vec<Option<&Node>> = Vec::new();
            let mut valid = Vec::with_capacity(vals.len());
            for v in vals {
                match v.and_then(Node::as_array) {
                    Some(a) => {
                        items.extend(a.iter().map(|x| (!x.is_null()).then_some(x)));
                        valid.push(true);
                    }
                    None => valid.push(false),
                }
                offsets.push(items.len() as i32);
            }
            let child = build(elem, &items, unit);
            let field = Arc::new(Field::new("item", data_type(elem, unit), true));
            Arc::new(ListArray::new(
                field,
                OffsetBuffer::new(offsets.into()),
                child,
                Some(NullBuffer::from(valid)),
            ))
        }
        Kind::Struct(fields) => {
            let valid: Vec<bool> = vals
                .iter()
                .map(|v| v.is_some_and(Node::is_object))
                .collect();
            let children: Vec<ArrayRef> = fields
                .iter()
                .map(|(name, k)| {
                    let sub: Vec<Option<&Node>> = vals
                        .iter()
                        .map(|v| v.and_then(|v| v.get(name)).filter(|x| !x.is_null()))
                        .collect();
                    build(k, &sub, unit)
                })
                .collect();
            Arc::new(StructArray::new(
                struct_fields(fields, unit),
                children,
                Some(NullBuffer::from(valid)),
            ))
        }
    }
}

/// NDJSON for property tests: a line per row of key/value texts, then a line that is no
/// object if asked, and a byte of one line replaced if asked (so it may be broken anywhere).
#[cfg(test)]
pub(crate) fn test_lines(
    rows: &[Vec<(&str, &str)>],
    broken: Option<(proptest::sample::Index, proptest::sample::Index, u8)>,
    not_object: bool,
) -> Vec<u8> {
    let mut lines: Vec<String> = rows
        .iter()
        .map(|kv| {
            let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        })
        .collect();
    if not_object {
        lines.push("[1,{\"a\":2}]".into());
    }
    let mut ndjson = lines.join("\n").into_bytes();
    if let (Some((line, at, byte)), false) = (broken, lines.is_empty()) {
        let line = line.index(lines.len());
        let start: usize = lines[..line].iter().map(|l| l.len() + 1).sum();
        ndjson[start + at.index(lines[line].len())] = byte;
    }
    ndjson
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn column(path: &[&str]) -> ColumnDef {
        ColumnDef {
            name: path.join("."),
            path: path.iter().map(|p| p.to_string()).collect(),
            kind: Kind::Json,
        }
    }

    proptest! {
        /// The one-pass gathering of top-level fields finds what `lookup` of each column's
        /// path finds: duplicates (the last wins), nulls, nested paths, a field two columns map.
        #[test]
        fn column_values_are_each_paths_lookup(
            rows in prop::collection::vec(
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["a", "b", "c"]),
                        prop::sample::select(vec!["null", "1", "\"x\"", "{\"b\":2}", "{\"b\":null}"]),
                    ),
                    0..6,
                ),
                0..8,
            ),
        ) {
            let lines: Vec<String> = rows
                .iter()
                .map(|kv| {
                    let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                })
                .collect();
            let parsed: Vec<Node> = lines.iter().map(|l| parse_line(l.as_bytes(), 0).unwrap()).collect();
            let table = Table {
                columns: vec![column(&["a"]), column(&["b"]), column(&["a"]), column(&["c", "b"]), column(&["d"])],
                unit: TimeUnit::Micros,
                conflicts: Vec::new(),
            };
            let got = table.column_values(&parsed);
            for (c, vals) in table.columns.iter().zip(&got) {
                let want: Vec<Option<&Node>> = parsed.iter().map(|r| lookup(r, &c.path)).collect();
                prop_assert_eq!(vals, &want, "{}", c.name);
            }
        }
    }

    proptest! {
        /// The memchr line splitter finds the lines a split on every newline finds.
        #[test]
        fn lines_are_the_non_empty_pieces_between_newlines(
            text in prop::collection::vec(prop::sample::select(vec![b'\n', b'a', b'{', b'\r']), 0..40),
        ) {
            let want: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
            prop_assert_eq!(lines(&text).collect::<Vec<_>>(), want);
        }
    }

    fn values_of<'a>(columns: &[Vec<Option<&Node<'a>>>]) -> Vec<Vec<Option<Node<'a>>>> {
        columns
            .iter()
            .map(|c| c.iter().map(|v| v.cloned()).collect())
            .collect()
    }

    proptest! {
        /// Reading lines as streams gives each column the values, and each broken line the
        /// error (row and reason), that parsing every line whole does.
        #[test]
        fn streamed_columns_are_what_whole_lines_give(
            rows in prop::collection::vec(
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["a", "b", "c", "a\\u0062"]),
                        prop::sample::select(vec!["null", "1", "\"x\"", "{\"b\":[2,{}]}", "[null]"]),
                    ),
                    0..6,
                ),
                1..12,
            ),
            broken in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>())),
            not_object in any::<bool>(),
        ) {
            let ndjson = test_lines(&rows, broken, not_object);
            let table = Table {
                columns: vec![column(&["a"]), column(&["b"]), column(&["ab"]), column(&["a"]), column(&["d"])],
                unit: TimeUnit::Micros,
                conflicts: Vec::new(),
            };
            let mut streamed = Vec::new();
            let got = table.column_chunks(&ndjson, |c, n| {
                streamed.push((values_of(c), n));
                Ok(())
            });
            let mut whole = Vec::new();
            let want = Table::chunks(&ndjson, |rows| {
                whole.push((values_of(&table.column_values(rows)), rows.len()));
                Ok(())
            });
            prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
            if got.is_ok() {
                prop_assert_eq!(streamed, whole);
            }
        }
    }

    #[test]
    fn streamed_columns_cut_chunks_where_whole_lines_do() {
        let ndjson: String = (0..CHUNK_ROWS * 2 + 5)
            .map(|i| format!("{{\"a\":{i},\"b\":\"{i}\"}}\n"))
            .collect();
        let table = Table {
            columns: vec![column(&["a"]), column(&["b"])],
            unit: TimeUnit::Micros,
            conflicts: Vec::new(),
        };
        let (mut streamed, mut whole) = (Vec::new(), Vec::new());
        let n = table
            .column_chunks(ndjson.as_bytes(), |c, n| {
                streamed.push((values_of(c), n));
                Ok(())
            })
            .unwrap();
        Table::chunks(ndjson.as_bytes(), |rows| {
            whole.push((values_of(&table.column_values(rows)), rows.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n as usize, CHUNK_ROWS * 2 + 5);
        assert_eq!(streamed.len(), 3);
        assert_eq!(streamed, whole);
    }
}
