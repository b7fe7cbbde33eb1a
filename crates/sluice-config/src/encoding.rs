//! `[sink]` format, compression and per-format options, `[[sink.columns]]` and
//! `[schema.<signal>]`, validated into `sluice_format::EncodeOptions`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sluice_core::SignalName;
use sluice_format::{
    Codec, Column, CsvOptions, DeclaredSchema, EncodeOptions, Envelope, FileFormat, TimeUnit,
};

use crate::file::{PipelineFile, SchemaSection};
use crate::validate::Problems;

/// How signal files are written, and the declared schemas by (sanitized) signal name.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub options: EncodeOptions,
    pub schemas: HashMap<SignalName, Arc<DeclaredSchema>>,
}

impl Encoding {
    /// The options for one signal's files (its declared schema, if any).
    pub fn for_signal(&self, signal: &SignalName) -> EncodeOptions {
        let mut o = self.options.clone();
        o.schema = self.schemas.get(signal).cloned();
        o
    }
}

fn one_char(field: &str, raw: &Option<String>, default: u8, p: &mut Problems) -> Option<u8> {
    match raw.as_deref() {
        None => Some(default),
        Some(s) if s.len() == 1 && s.is_ascii() => Some(s.as_bytes()[0]),
        Some("\\t") => Some(b'\t'),
        Some(s) => {
            p.add(
                field,
                format!("'{s}' is not one ASCII character"),
                "use one character, e.g. \",\", \";\", \"|\" or \"\\t\"",
            );
            None
        }
    }
}

fn pgp_recipient(
    file: &PipelineFile,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<Option<sluice_format::pgp::PgpRecipient>> {
    let Some(section) = &file.sink.pgp else {
        return Some(None);
    };
    let (field, text) = match (&section.public_key_file, &section.public_key_env) {
        (Some(f), None) => {
            let path = base.join(f);
            match std::fs::read_to_string(&path) {
                Ok(t) => ("sink.pgp.public_key_file", t),
                Err(e) => {
                    p.add("sink.pgp.public_key_file", format!("cannot read {}: {e}", path.display()), "give the path of the recipient's armored public key (gpg --armor --export <id>), relative to the pipeline file");
                    return None;
                }
            }
        }
        (None, Some(var)) => match env(var) {
            Some(t) => ("sink.pgp.public_key_env", t),
            None => {
                p.unset(
                    "sink.pgp.public_key_env",
                    var,
                    format!("export {var}=\"$(gpg --armor --export <id>)\""),
                );
                return None;
            }
        },
        _ => {
            p.add(
                "sink.pgp",
                "needs exactly one of public_key_file and public_key_env",
                "name the file or the variable holding the recipient's armored public key",
            );
            return None;
        }
    };
    match sluice_format::pgp::PgpRecipient::from_armored(&text) {
        Ok(r) => Some(Some(r)),
        Err(e) => {
            p.add(
                field,
                e,
                "export the key with gpg --armor --export <id>; it needs an encryption subkey",
            );
            None
        }
    }
}

pub(crate) fn validate(
    file: &PipelineFile,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<Encoding> {
    let pgp = pgp_recipient(file, base, env, p);
    let k = &file.sink;
    // Tables are Parquet: it is their default, and the only format `table` accepts.
    let default_format = if k.table.is_some() {
        "parquet"
    } else {
        "ndjson"
    };
    let format = match FileFormat::parse(k.format.as_deref().unwrap_or(default_format)) {
        Some(f) => Some(f),
        None => {
            p.add(
                "sink.format",
                format!(
                    "'{}' is not a supported format",
                    k.format.as_deref().unwrap_or_default()
                ),
                "use \"ndjson\", \"csv\", \"avro\" or \"parquet\"",
            );
            None
        }
    };
    let codec = format.and_then(|f| {
        let allowed = f.codecs();
        let names = || {
            allowed
                .iter()
                .map(|c| format!("\"{}\"", c.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match k.compression.as_deref() {
            None => Some(allowed[0]),
            Some(raw) => match Codec::parse(raw).filter(|c| allowed.contains(c)) {
                Some(c) => Some(c),
                None => {
                    p.add(
                        "sink.compression",
                        format!("'{raw}' is not a compression {} files support", f.name()),
                        format!("use one of {} (default \"{}\")", names(), allowed[0].name()),
                    );
                    None
                }
            },
        }
    });
    let level = match (k.compression_level, codec) {
        (None, _) => Some(None),
        (Some(l), Some(c)) => match c.levels() {
            Some(range) if range.contains(&l) => Some(Some(l)),
            Some(range) => {
                p.add(
                    "sink.compression_level",
                    format!("{l} is not a {} level", c.name()),
                    format!(
                        "use {} to {} (higher is smaller and slower), or remove it for the default",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            None => {
                p.add(
                    "sink.compression_level",
                    format!("\"{}\" has no level", c.name()),
                    "remove sink.compression_level, or choose gzip, deflate or zstd",
                );
                None
            }
        },
        // The compression itself is wrong, and said so.
        (Some(_), None) => Some(None),
    };
    let timestamp_unit = match k.timestamp_unit.as_deref().unwrap_or("micros") {
        "millis" | "ms" => Some(TimeUnit::Millis),
        "micros" | "us" => Some(TimeUnit::Micros),
        other => {
            p.add(
                "sink.timestamp_unit",
                format!("'{other}' is not a timestamp unit"),
                "use \"millis\" or \"micros\" (Spark, Athena and DuckDB read both; nanoseconds are not offered)",
            );
            None
        }
    };
    let envelope = match k.envelope.as_deref() {
        None => Some(None),
        Some("iothub") => Some(Some(Envelope::IotHub)),
        Some("capture") => Some(Some(Envelope::Capture)),
        Some(other) => {
            p.add(
                "sink.envelope",
                format!("'{other}' is not an envelope"),
                "use \"iothub\" (IoT Hub routing / IoT Central export) or \"capture\" (Event Hubs Capture), or remove it",
            );
            None
        }
    };
    if envelope.flatten().is_some() {
        if format != Some(FileFormat::Avro) {
            p.add(
                "sink.envelope",
                "is set but sink.format is not avro",
                "set format = \"avro\", or remove envelope",
            );
        }
        if k.columns.is_some() || !file.schema.is_empty() {
            p.add(
                "sink.envelope",
                "writes each record whole as Body, so [[sink.columns]] and [schema.*] do not apply",
                "remove the columns and schemas, or the envelope",
            );
        }
    }
    let csv = match &k.csv {
        None => Some(CsvOptions::default()),
        Some(c) => {
            if format != Some(FileFormat::Csv) {
                p.add(
                    "sink.csv",
                    "is set but sink.format is not csv",
                    "set format = \"csv\", or remove [sink.csv]",
                );
            }
            let d = CsvOptions::default();
            let delimiter = one_char("sink.csv.delimiter", &c.delimiter, d.delimiter, p);
            let quote = one_char("sink.csv.quote", &c.quote, d.quote, p);
            let escape = match &c.escape {
                None => Some(None),
                e => one_char("sink.csv.escape", e, 0, p).map(Some),
            };
            match (delimiter, quote, escape) {
                (Some(delimiter), Some(quote), Some(escape)) => Some(CsvOptions {
                    delimiter,
                    quote,
                    escape,
                    header: c.header.unwrap_or(true),
                    null_value: c.null_value.clone().unwrap_or_default(),
                }),
                _ => None,
            }
        }
    };
    let columns = match &k.columns {
        None => Some(None),
        Some(cols) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, c) in cols.iter().enumerate() {
                let path: Vec<String> = c.from.split('.').map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    p.add(
                        &format!("sink.columns[{i}].from"),
                        format!("'{}' is not a dotted field path", c.from),
                        "name a JSON field, e.g. \"deviceId\" or \"payload.temperature\"",
                    );
                    ok = false;
                    continue;
                }
                let name = c.to.clone().unwrap_or_else(|| c.from.clone());
                if name.trim().is_empty() {
                    p.add(
                        &format!("sink.columns[{i}].to"),
                        "is empty",
                        "give the column a name, or remove `to` to keep the field's name",
                    );
                    ok = false;
                } else if out.iter().any(|o: &Column| o.name == name) {
                    p.add(
                        &format!("sink.columns[{i}].to"),
                        format!("column '{name}' appears twice"),
                        "give every column its own name",
                    );
                    ok = false;
                }
                out.push(Column { name, path });
            }
            if out.is_empty() && ok {
                p.add(
                    "sink.columns",
                    "selects no columns",
                    "list at least one [[sink.columns]], or remove it to keep every field",
                );
                ok = false;
            }
            ok.then_some(Some(out))
        }
    };
    let mut schemas = HashMap::new();
    let mut schemas_ok = true;
    for (signal, section) in &file.schema {
        let field = format!("schema.{signal}");
        if let Some(listed) = &file.route.signals {
            if !listed.contains(signal) {
                p.add(&field, format!("signal '{signal}' is not in route.signals, so this schema would never apply"), "add the signal to route.signals, or fix the name");
            }
        }
        match declared(section, base, &field) {
            Ok(s) => {
                schemas.insert(SignalName::sanitize(signal), Arc::new(s));
            }
            Err((field, problem, fix)) => {
                p.add(&field, problem, fix);
                schemas_ok = false;
            }
        }
    }
    let options = EncodeOptions {
        format: format?,
        codec: codec?,
        level: level?,
        timestamp_unit: timestamp_unit?,
        infer_timestamps: k.infer_timestamps.unwrap_or(true),
        csv: csv?,
        envelope: envelope?,
        columns: columns?,
        schema: None,
        pgp: pgp?,
    };
    schemas_ok.then_some(Encoding { options, schemas })
}

fn declared(
    s: &SchemaSection,
    base: &Path,
    field: &str,
) -> Result<DeclaredSchema, (String, String, String)> {
    match (&s.avro_file, &s.fields) {
        (Some(file), None) => {
            let at = format!("{field}.avro_file");
            if s.required.is_some() {
                return Err((format!("{field}.required"), "is set with avro_file".into(), "in an Avro schema a field is required unless its type is a union with \"null\"; remove `required`".into()));
            }
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                (at.clone(), format!("cannot read {}: {e}", path.display()), "give the path of an .avsc file, relative to the pipeline file".into())
            })?;
            let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                (at.clone(), format!("{} is not JSON: {e}", path.display()), "fix the Avro schema document".into())
            })?;
            DeclaredSchema::from_avro(&doc).map_err(|e| {
                (at.clone(), format!("{}: {e}", path.display()), "use a record schema with primitive, record, array, map, enum or [\"null\", T] types".into())
            })
        }
        (None, Some(fields)) => DeclaredSchema::from_fields(
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            s.required.as_deref().unwrap_or_default(),
        )
        .map_err(|e| (format!("{field}.fields"), e, "declare each field as name = \"string\" | \"long\" | \"double\" | \"boolean\" | \"timestamp\" | \"json\" | \"array<T>\"".into())),
        _ => Err((
            field.to_string(),
            "needs exactly one of avro_file and fields".into(),
            "set avro_file = \"schemas/<signal>.avsc\" or a fields table".into(),
        )),
    }
}
