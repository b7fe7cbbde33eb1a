//! Avro object container files with a schema made from the file's columns.

use std::collections::HashSet;

use std::io::Write;

use apache_avro::{Codec as AvroCodec, DeflateSettings, Schema, ZstandardSettings};
use serde_json::{json, Value};

use crate::deflate::Deflater;
use crate::json::Node;

use crate::read::Reading;
use crate::{Codec, EncodeError, EncodeOptions, Kind, Sink, TimeUnit, Written};

/// Bigger blocks than the crate's 16 kB compress better and cost little memory.
const BLOCK_BYTES: usize = 256 * 1024;

pub(crate) fn writer_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Writer {
        format: "avro",
        detail: e.to_string(),
    }
}

pub(crate) fn codec(c: Codec) -> AvroCodec {
    match c {
        Codec::Deflate | Codec::Gzip => AvroCodec::Deflate(DeflateSettings::default()),
        Codec::Snappy => AvroCodec::Snappy,
        Codec::Zstd => AvroCodec::Zstandard(ZstandardSettings::default()),
        Codec::None | Codec::Lz4 => AvroCodec::Null,
    }
}

/// The container header, written here because the crate keeps its metadata in a HashMap
/// whose order changes from run to run; ours is fixed (schema, then codec).
pub(crate) fn header(schema: &str, c: Codec, marker: &[u8; 16]) -> Vec<u8> {
    fn bytes(b: &[u8], out: &mut Vec<u8>) {
        long(b.len() as i64, out);
        out.extend_from_slice(b);
    }
    let codec_name = match codec(c) {
        AvroCodec::Null => "null",
        AvroCodec::Deflate(_) => "deflate",
        AvroCodec::Snappy => "snappy",
        AvroCodec::Zstandard(_) => "zstandard",
    };
    let mut out = Vec::with_capacity(schema.len() + 64);
    out.extend_from_slice(b"Obj\x01");
    long(2, &mut out);
    bytes(b"avro.schema", &mut out);
    bytes(schema.as_bytes(), &mut out);
    bytes(b"avro.codec", &mut out);
    bytes(codec_name.as_bytes(), &mut out);
    long(0, &mut out);
    out.extend_from_slice(marker);
    out
}

/// An Avro `long`: zigzag, then a base-128 varint.
fn long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            break;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// The sync marker, derived from the schema and the content instead of drawn at random, so
/// the same lines always give the same file.
pub(crate) fn marker(schema: &str, ndjson: &[u8]) -> [u8; 16] {
    let fnv = |seed: u64, data: &[u8]| {
        data.iter().fold(seed, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let a = fnv(0xcbf2_9ce4_8422_2325, schema.as_bytes());
    let b = fnv(a, &ndjson[..ndjson.len().min(4096)]) ^ ndjson.len() as u64;
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&a.to_le_bytes());
    m[8..].copy_from_slice(&b.to_le_bytes());
    m
}

/// How one JSON value becomes an Avro value.
enum Plan {
    Bool,
    Int,
    Float,
    Str,
    Json,
    Timestamp(TimeUnit),
    List(Box<Plan>),
    /// (JSON key, Avro field name, plan)
    Record(Vec<(String, String, Plan)>),
}

/// Avro names are `[A-Za-z_][A-Za-z0-9_]*`; anything else becomes `_`, kept unique.
fn avro_name(raw: &str, taken: &mut HashSet<String>) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    let base = name.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

struct SchemaBuilder {
    unit: TimeUnit,
    record_names: HashSet<String>,
}

impl SchemaBuilder {
    /// The Avro type (always `["null", T]`) and the plan for one kind.
    fn nullable(&mut self, kind: &Kind, hint: &str) -> (Value, Plan) {
        let (t, plan) = self.plain(kind, hint);
        (json!(["null", t]), plan)
    }

    fn plain(&mut self, kind: &Kind, hint: &str) -> (Value, Plan) {
        match kind {
            Kind::Null | Kind::Str => (json!("string"), Plan::Str),
            Kind::Json => (json!("string"), Plan::Json),
            Kind::Bool => (json!("boolean"), Plan::Bool),
            Kind::Int => (json!("long"), Plan::Int),
            Kind::Float => (json!("double"), Plan::Float),
            Kind::Timestamp => {
                let logical = match self.unit {
                    TimeUnit::Millis => "timestamp-millis",
                    TimeUnit::Micros => "timestamp-micros",
                };
                (
                    json!({"type": "long", "logicalType": logical}),
                    Plan::Timestamp(self.unit),
                )
            }
            Kind::List(e) => {
                let (items, plan) = self.nullable(e, hint);
                (
                    json!({"type": "array", "items": items}),
                    Plan::List(Box::new(plan)),
                )
            }
            Kind::Struct(fields) => {
                let entries: Vec<(String, Vec<String>, Kind)> = fields
                    .iter()
                    .map(|(n, k)| (n.to_string(), vec![n.to_string()], k.clone()))
                    .collect();
                self.record(hint, &entries)
            }
        }
    }

    fn record(&mut self, hint: &str, entries: &[(String, Vec<String>, Kind)]) -> (Value, Plan) {
        let name = avro_name(hint, &mut self.record_names);
        let mut field_names = HashSet::new();
        let mut fields = Vec::new();
        let mut plans = Vec::new();
        for (key, _, kind) in entries {
            let field = avro_name(key, &mut field_names);
            let (t, plan) = self.nullable(kind, &format!("{name}_{field}"));
            let mut f = json!({"name": field, "type": t, "default": null});
            if field != *key {
                f["doc"] = json!(format!("JSON field \"{key}\""));
            }
            fields.push(f);
            plans.push((key.clone(), field, plan));
        }
        (
            json!({"type": "record", "name": name, "fields": fields}),
            Plan::Record(plans),
        )
    }
}

/// Writes one value of a `["null", T]` union in Avro's binary encoding, straight from the
/// parsed line: no intermediate Avro value, no validation pass (the plan is the schema).
fn encode(plan: &Plan, v: Option<&Node>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.push(0); // branch 0: null
        return;
    };
    let mark = out.len();
    out.push(2); // branch 1, zigzag-encoded
    let written = match plan {
        Plan::Bool => v.as_bool().map(|b| out.push(u8::from(b))).is_some(),
        Plan::Int => v.as_i64().map(|n| long(n, out)).is_some(),
        Plan::Float => v
            .as_f64()
            .map(|f| out.extend_from_slice(&f.to_le_bytes()))
            .is_some(),
        Plan::Str => v.as_str().map(|s| string(s, out)).is_some(),
        Plan::Json => {
            string(&v.json_text(), out);
            true
        }
        Plan::Timestamp(unit) => v
            .as_str()
            .and_then(|s| crate::schema::parse_timestamp(s, *unit))
            .map(|t| long(t, out))
            .is_some(),
        Plan::List(elem) => v
            .as_array()
            .map(|items| {
                if !items.is_empty() {
                    long(items.len() as i64, out);
                    for x in items {
                        encode(elem, (!x.is_null()).then_some(x), out);
                    }
                }
                out.push(0); // the end of the array's blocks
            })
            .is_some(),
        Plan::Record(fields) => {
            v.is_object() && {
                for (key, _, p) in fields {
                    encode(p, v.get(key).filter(|x| !x.is_null()), out);
                }
                true
            }
        }
    };
    if !written {
        // Not of the column's kind (only possible with a declared schema): null.
        out.truncate(mark);
        out.push(0);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// The container's blocks as they fill: records encoded into `block`, then compressed and
/// written with their count, size and the file's marker.
struct Blocks<'o> {
    /// The codec and its level (`sink.compression_level`, or the codec's default).
    opts: &'o EncodeOptions,
    /// Made at the first deflate block (its match tables are ~1 MB).
    deflater: Option<Deflater>,
    marker: [u8; 16],
    block: Vec<u8>,
    records: i64,
    scratch: Vec<u8>,
}

impl Blocks<'_> {
    /// Writes the open block, if it holds a record.
    fn flush(&mut self, out: &mut Sink) -> Result<(), EncodeError> {
        if self.records == 0 {
            return Ok(());
        }
        let scratch = &mut self.scratch;
        scratch.clear();
        let body: &[u8] = match codec(self.opts.codec) {
            AvroCodec::Null => &self.block,
            AvroCodec::Deflate(_) => {
                // Avro's deflate is raw RFC 1951 deflate, at level 6 unless the pipeline
                // chose another.
                self.deflater
                    .get_or_insert_with(|| Deflater::new(self.opts.deflate_level()))
                    .raw_into(&self.block, scratch);
                scratch
            }
            AvroCodec::Snappy => {
                *scratch = snap::raw::Encoder::new()
                    .compress_vec(&self.block)
                    .map_err(writer_error)?;
                scratch.extend_from_slice(&crc32fast::hash(&self.block).to_be_bytes());
                scratch
            }
            AvroCodec::Zstandard(_) => {
                *scratch = zstd::bulk::compress(&self.block, self.opts.level.unwrap_or(0))?;
                scratch
            }
        };
        let mut head = Vec::with_capacity(20);
        long(self.records, &mut head);
        long(body.len() as i64, &mut head);
        out.write_all(&head)?;
        out.write_all(body)?;
        out.write_all(&self.marker)?;
        self.block.clear();
        self.records = 0;
        Ok(())
    }
}

pub(crate) fn write(
    ndjson: &[u8],
    opts: &EncodeOptions,
    mut out: Sink,
) -> Result<Written, EncodeError> {
    let reading = Reading::settle(ndjson, opts, false)?;
    let table = &reading.table;
    let mut builder = SchemaBuilder {
        unit: table.unit,
        record_names: HashSet::new(),
    };
    let entries: Vec<(String, Vec<String>, Kind)> = table
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.path.clone(), c.kind.clone()))
        .collect();
    let (schema_json, plan) = builder.record("Record", &entries);
    let Plan::Record(top) = plan else {
        unreachable!("a record plan")
    };
    let schema_text = schema_json.to_string();
    // Parsed only to prove the schema is one Avro readers accept.
    Schema::parse_str(&schema_text).map_err(writer_error)?;
    let marker = marker(&schema_text, ndjson);
    out.write_all(&header(&schema_text, opts.codec, &marker))?;
    let mut blocks = Blocks {
        opts,
        deflater: None,
        marker,
        // A small file's block is sized to it (it grows if need be).
        block: Vec::with_capacity((BLOCK_BYTES + BLOCK_BYTES / 4).min(ndjson.len())),
        records: 0,
        scratch: Vec::new(),
    };
    let rows = reading.column_chunks(ndjson, |columns, rows| {
        for r in 0..rows {
            // The top-level record is not a union; each of its fields is.
            for ((_, _, p), values) in top.iter().zip(columns) {
                encode(p, values[r], &mut blocks.block);
            }
            blocks.records += 1;
            if blocks.block.len() >= BLOCK_BYTES {
                blocks.flush(&mut out)?;
            }
        }
        Ok(())
    })?;
    blocks.flush(&mut out)?;
    Ok(Written {
        rows,
        conflicts: reading.table.conflicts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, FileFormat};

    /// The hand-written encoder is read back by apache-avro's reader, every codec, across
    /// several blocks: unions, nested records, arrays, nulls, conflicts as JSON text.
    #[test]
    fn apache_avro_reads_every_codec_across_blocks() {
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for i in 0..6000i64 {
            let v = if i % 7 == 0 {
                json!({"id": i, "name": format!("dév-{i}"), "ok": i % 2 == 0,
                       "n": {"x": [i, -i], "s": null}, "mixed": i})
            } else {
                json!({"id": -i * 1_000_003, "f": i as f64 / 8.0, "name": "x".repeat((i % 50) as usize),
                       "n": {"x": [], "s": "s"}, "mixed": "text"})
            };
            lines.extend(serde_json::to_vec(&v).unwrap());
            lines.push(b'\n');
            want.push(v);
        }
        assert!(lines.len() > 2 * BLOCK_BYTES, "several blocks");
        for &c in FileFormat::Avro.codecs() {
            let file = encode(&lines, &EncodeOptions::new(FileFormat::Avro, c)).unwrap();
            assert_eq!(file.rows, 6000);
            let reader = apache_avro::Reader::new(&file.bytes[..]).unwrap();
            let mut n = 0;
            for (value, w) in reader.zip(&want) {
                let got = Value::try_from(value.unwrap()).unwrap();
                let field = |k: &str| got.get(k).cloned().unwrap_or(Value::Null);
                assert_eq!(field("id"), w["id"], "{c:?}");
                assert_eq!(field("name"), w["name"], "{c:?}");
                assert_eq!(field("ok"), w.get("ok").cloned().unwrap_or(Value::Null));
                assert_eq!(field("n")["x"], w["n"]["x"], "{c:?}");
                assert_eq!(field("n")["s"], w["n"]["s"], "{c:?}");
                // A column that is a number here and a string there is JSON text.
                assert_eq!(field("mixed"), Value::String(w["mixed"].to_string()));
                match w.get("f") {
                    Some(f) => assert_eq!(field("f").as_f64(), f.as_f64()),
                    None => assert_eq!(field("f"), Value::Null),
                }
                n += 1;
            }
            assert_eq!(n, 6000, "{c:?}");
        }
    }
}
