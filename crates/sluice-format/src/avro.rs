//! Avro object container files with a schema made from the file's columns.

use std::collections::HashSet;

use apache_avro::types::Value as Avro;
use apache_avro::{Codec as AvroCodec, DeflateSettings, Schema, Writer, ZstandardSettings};
use serde_json::{json, Value};

use crate::json::Node;

use crate::table::{lookup, Table};
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

fn nullable(v: Option<Avro>) -> Avro {
    match v {
        Some(v) => Avro::Union(1, Box::new(v)),
        None => Avro::Union(0, Box::new(Avro::Null)),
    }
}

fn convert(plan: &Plan, v: Option<&Node>) -> Avro {
    let inner = v.and_then(|v| match plan {
        Plan::Bool => v.as_bool().map(Avro::Boolean),
        Plan::Int => v.as_i64().map(Avro::Long),
        Plan::Float => v.as_f64().map(Avro::Double),
        Plan::Str => v.as_str().map(|s| Avro::String(s.to_string())),
        Plan::Json => Some(Avro::String(v.json_text())),
        Plan::Timestamp(unit) => v
            .as_str()
            .and_then(|s| crate::schema::parse_timestamp(s, *unit))
            .map(|t| match unit {
                TimeUnit::Millis => Avro::TimestampMillis(t),
                TimeUnit::Micros => Avro::TimestampMicros(t),
            }),
        Plan::List(elem) => v.as_array().map(|items| {
            Avro::Array(
                items
                    .iter()
                    .map(|x| convert(elem, (!x.is_null()).then_some(x)))
                    .collect(),
            )
        }),
        Plan::Record(fields) => v.is_object().then(|| {
            Avro::Record(
                fields
                    .iter()
                    .map(|(key, name, p)| {
                        (
                            name.clone(),
                            convert(p, v.get(key).filter(|x| !x.is_null())),
                        )
                    })
                    .collect(),
            )
        }),
    });
    nullable(inner)
}

pub(crate) fn write(
    ndjson: &[u8],
    opts: &EncodeOptions,
    out: Sink,
) -> Result<Written, EncodeError> {
    let table = Table::settle(ndjson, opts, false)?;
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
    let schema = Schema::parse_str(&schema_text).map_err(writer_error)?;
    let marker = marker(&schema_text, ndjson);
    out.write_all(&header(&schema_text, opts.codec, &marker))?;
    let mut writer = Writer::builder()
        .schema(&schema)
        .writer(out)
        .codec(codec(opts.codec))
        .block_size(BLOCK_BYTES)
        .marker(marker)
        .has_header(true)
        .build();
    let rows = Table::chunks(ndjson, |rows| {
        for row in rows {
            let record = Avro::Record(
                top.iter()
                    .zip(&table.columns)
                    .map(|((_, name, p), c)| {
                        let v = lookup(row, &c.path);
                        // Top-level fields are unions too: unwrap nothing, `convert` wraps.
                        (name.clone(), convert(p, v))
                    })
                    .collect(),
            );
            writer.append_value_ref(&record).map_err(writer_error)?;
        }
        Ok(())
    })?;
    writer.into_inner().map_err(writer_error)?;
    Ok(Written {
        rows,
        conflicts: table.conflicts,
    })
}
