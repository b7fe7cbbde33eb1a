//! The column types of a signal's records: inferred from the JSON itself and widened as
//! records disagree, or declared by the user and enforced.

use std::collections::HashMap;

use serde::de::DeserializeSeed;
use serde_json::Value;

use crate::options::TimeUnit;

/// The type of one value or column. Every column is nullable: JSON fields come and go.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Only nulls seen so far (written as an all-null string column).
    Null,
    Bool,
    /// Fits a signed 64-bit integer.
    Int,
    Float,
    Str,
    /// An RFC 3339 string with a zone, no finer than the pipeline's timestamp unit.
    Timestamp,
    /// Values whose types conflict (or integers beyond 64 bits): each kept as its JSON text.
    Json,
    List(Box<Kind>),
    Struct(Fields),
}

/// Named kinds in the order they were first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    entries: Vec<(String, Kind)>,
    index: HashMap<String, usize>,
}

impl Fields {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Kind)> {
        self.entries.iter().map(|(n, k)| (n.as_str(), k))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Kind> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    pub fn push(&mut self, name: impl Into<String>, kind: Kind) {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = kind,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, kind));
            }
        }
    }

    /// Widens each field by the same-named one of `other`; fields only `other` has are added.
    fn merge(&mut self, other: Fields, conflicts: &mut Vec<String>, at: &dyn Fn() -> String) {
        for (name, kind) in other.entries {
            match self.index.get(&name) {
                Some(&i) => {
                    let path = || join(&at(), &name);
                    let old = std::mem::replace(&mut self.entries[i].1, Kind::Null);
                    self.entries[i].1 = widen(old, kind, conflicts, &path);
                }
                None => self.push(name, kind),
            }
        }
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// The narrowest kind holding both; a conflict (recorded by path) falls back to JSON text.
/// The path is rendered only for a conflict: building it per field per record was a hot spot.
pub fn widen(a: Kind, b: Kind, conflicts: &mut Vec<String>, path: &dyn Fn() -> String) -> Kind {
    use Kind::*;
    match (a, b) {
        (Null, k) | (k, Null) => k,
        (Json, _) | (_, Json) => Json,
        (Int, Float) | (Float, Int) => Float,
        (Timestamp, Str) | (Str, Timestamp) => Str,
        (List(a), List(b)) => List(Box::new(widen(*a, *b, conflicts, &|| {
            format!("{}[]", path())
        }))),
        (Struct(mut a), Struct(b)) => {
            a.merge(b, conflicts, path);
            Struct(a)
        }
        (a, b) if a == b => a,
        _ => {
            let path = path();
            if !conflicts.contains(&path) {
                conflicts.push(path);
            }
            Json
        }
    }
}

/// Parses an RFC 3339 timestamp into `unit`s since the epoch, refusing strings whose
/// precision the unit would cut (so the column never silently loses digits).
pub fn parse_timestamp(s: &str, unit: TimeUnit) -> Option<i64> {
    // Cheap shape check first: most strings are not timestamps.
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let micros = t.timestamp_micros();
    let nanos = t.timestamp_subsec_nanos();
    match unit {
        TimeUnit::Millis => (nanos % 1_000_000 == 0).then(|| t.timestamp_millis()),
        TimeUnit::Micros => (nanos % 1_000 == 0).then_some(micros),
    }
}

/// Infers the kind of each value and widens a running schema.
#[derive(Debug, Clone)]
pub struct Inference {
    unit: TimeUnit,
    infer_timestamps: bool,
    pub conflicts: Vec<String>,
}

impl Inference {
    pub fn new(unit: TimeUnit, infer_timestamps: bool) -> Self {
        Self {
            unit,
            infer_timestamps,
            conflicts: Vec::new(),
        }
    }

    pub fn kind_of(&mut self, v: &Value, path: &dyn Fn() -> String) -> Kind {
        match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() => Kind::Int,
            // Beyond i64 (serde_json keeps u64 exact): kept exactly, as text.
            Value::Number(n) if n.is_u64() => Kind::Json,
            Value::Number(_) => Kind::Float,
            Value::String(s) => self.string_kind(s),
            Value::Array(items) => {
                let inner = || format!("{}[]", path());
                let mut elem = Kind::Null;
                for item in items {
                    let k = self.kind_of(item, &inner);
                    elem = widen(elem, k, &mut self.conflicts, &inner);
                }
                Kind::List(Box::new(elem))
            }
            Value::Object(map) => {
                let mut fields = Fields::default();
                for (name, value) in map {
                    let k = self.kind_of(value, &|| join(&path(), name));
                    fields.push(name.clone(), k);
                }
                Kind::Struct(fields)
            }
        }
    }

    fn string_kind(&self, s: &str) -> Kind {
        if self.infer_timestamps && parse_timestamp(s, self.unit).is_some() {
            Kind::Timestamp
        } else {
            Kind::Str
        }
    }

    /// Widens `schema` by one value.
    pub fn observe(&mut self, schema: Kind, v: &Value, path: &str) -> Kind {
        let k = self.kind_of(v, &|| path.to_string());
        widen(schema, k, &mut self.conflicts, &|| path.to_string())
    }

    /// Widens `schema` by one JSON text, read straight from its bytes: no `Value` tree is
    /// built (this pass reads every line of a file once more than the writers do).
    pub fn observe_line(&mut self, schema: Kind, line: &[u8]) -> Result<Kind, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let mut schema = schema;
        WidenSeed {
            inference: self,
            slot: &mut schema,
            path: &String::new,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(schema)
    }
}

/// Widens the kind in `slot` by the value being deserialized, in place: known fields are
/// found without allocating, so a record that matches the schema so far costs no allocation.
struct WidenSeed<'i, 's, 'p> {
    inference: &'i mut Inference,
    slot: &'s mut Kind,
    path: &'p dyn Fn() -> String,
}

impl WidenSeed<'_, '_, '_> {
    fn scalar(self, k: Kind) {
        let old = std::mem::replace(self.slot, Kind::Null);
        *self.slot = widen(old, k, &mut self.inference.conflicts, self.path);
    }
}

impl<'de> DeserializeSeed<'de> for WidenSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for WidenSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.scalar(Kind::Bool);
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.scalar(Kind::Int);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(if i64::try_from(v).is_ok() {
            Kind::Int
        } else {
            Kind::Json
        });
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.scalar(Kind::Float);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let k = self.inference.string_kind(v);
        self.scalar(k);
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if matches!(self.slot, Kind::Null) {
            *self.slot = Kind::List(Box::new(Kind::Null));
        }
        let path = self.path;
        let inner = || format!("{}[]", path());
        match self.slot {
            Kind::List(elem) => {
                while seq
                    .next_element_seed(WidenSeed {
                        inference: &mut *self.inference,
                        slot: elem,
                        path: &inner,
                    })?
                    .is_some()
                {}
                Ok(())
            }
            _ => {
                // Not a list so far: infer this array's kind on its own, then widen (conflict).
                let mut elem = Kind::Null;
                while let Some(k) = seq.next_element_seed(KindSeed {
                    inference: &mut *self.inference,
                    path: &inner,
                })? {
                    elem = widen(elem, k, &mut self.inference.conflicts, &inner);
                }
                self.scalar(Kind::List(Box::new(elem)));
                Ok(())
            }
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if matches!(self.slot, Kind::Null) {
            *self.slot = Kind::Struct(Fields::default());
        }
        let path = self.path;
        match self.slot {
            Kind::Struct(fields) => {
                while let Some(name) = map.next_key::<BorrowedKey<'de>>()? {
                    let i = match fields.index.get(name.0.as_ref()) {
                        Some(&i) => i,
                        None => {
                            fields.push(name.0.as_ref(), Kind::Null);
                            fields.entries.len() - 1
                        }
                    };
                    let at = || join(&path(), &name.0);
                    map.next_value_seed(WidenSeed {
                        inference: &mut *self.inference,
                        slot: &mut fields.entries[i].1,
                        path: &at,
                    })?;
                }
                Ok(())
            }
            _ => {
                let k = KindSeed {
                    inference: &mut *self.inference,
                    path,
                }
                .visit_map(map)?;
                self.scalar(k);
                Ok(())
            }
        }
    }
}

/// A map key borrowed from the input when it has no escapes.
struct BorrowedKey<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<BorrowedKey<'de>, E> {
                Ok(BorrowedKey(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<BorrowedKey<'de>, E> {
                Ok(BorrowedKey(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Infers a kind while deserializing, without materializing the value.
struct KindSeed<'i, 'p> {
    inference: &'i mut Inference,
    path: &'p dyn Fn() -> String,
}

impl<'de> serde::de::DeserializeSeed<'de> for KindSeed<'_, '_> {
    type Value = Kind;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KindSeed<'_, '_> {
    type Value = Kind;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Int)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(if i64::try_from(v).is_ok() {
            Kind::Int
        } else {
            Kind::Json
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(self.inference.string_kind(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let path = self.path;
        let inner = || format!("{}[]", path());
        let mut elem = Kind::Null;
        while let Some(k) = seq.next_element_seed(KindSeed {
            inference: &mut *self.inference,
            path: &inner,
        })? {
            elem = widen(elem, k, &mut self.inference.conflicts, &inner);
        }
        Ok(Kind::List(Box::new(elem)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let path = self.path;
        let mut fields = Fields::default();
        while let Some(name) = map.next_key::<BorrowedKey<'de>>()? {
            let name = name.0;
            let at = || join(&path(), &name);
            let k = map.next_value_seed(KindSeed {
                inference: &mut *self.inference,
                path: &at,
            })?;
            fields.push(name.as_ref(), k);
        }
        Ok(Kind::Struct(fields))
    }
}

/// Replaces what a file format cannot hold: objects without fields become JSON text (Parquet
/// has no empty groups), and `flat` turns every nested column into JSON text (CSV).
pub fn finalize(kind: Kind, flat: bool) -> Kind {
    finalize_with(kind, flat, usize::MAX)
}

/// The widest nested struct an inferred schema keeps as columns. A wider one — a map keyed by
/// device id, say — is one JSON text column: as columns, every key of every record would be
/// one, each costing a slot per row of every chunk, and memory would grow with the keys.
pub const MAX_INFERRED_STRUCT_FIELDS: usize = 256;

/// `finalize` for inferred schemas: nested structs wider than `MAX_INFERRED_STRUCT_FIELDS`
/// become JSON text.
pub fn finalize_inferred(kind: Kind, flat: bool) -> Kind {
    finalize_with(kind, flat, MAX_INFERRED_STRUCT_FIELDS)
}

fn finalize_with(kind: Kind, flat: bool, widest: usize) -> Kind {
    match kind {
        Kind::Struct(f) if f.is_empty() => Kind::Json,
        Kind::Struct(f) if f.len() > widest => Kind::Json,
        Kind::Struct(_) | Kind::List(_) if flat => Kind::Json,
        Kind::Struct(f) => {
            let mut out = Fields::default();
            for (n, k) in f.entries {
                out.push(n, finalize_with(k, false, widest));
            }
            Kind::Struct(out)
        }
        Kind::List(e) => Kind::List(Box::new(finalize_with(*e, false, widest))),
        k => k,
    }
}

/// Whether `v` fits a declared `kind`; `Err` says where and why not.
pub fn check(kind: &Kind, v: &Value, unit: TimeUnit, path: &str) -> Result<(), String> {
    let fits = match (kind, v) {
        (_, Value::Null) | (Kind::Json, _) => true,
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Int, Value::Number(n)) => n.is_i64(),
        (Kind::Float, Value::Number(_)) => true,
        (Kind::Str, Value::String(_)) => true,
        (Kind::Timestamp, Value::String(s)) => parse_timestamp(s, unit).is_some(),
        (Kind::List(e), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check(e, item, unit, &format!("{path}[{i}]"))?;
            }
            true
        }
        (Kind::Struct(fields), Value::Object(map)) => {
            for (name, k) in fields.iter() {
                if let Some(item) = map.get(name) {
                    check(k, item, unit, &join(path, name))?;
                }
            }
            true
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "field '{path}' is {}, the declared schema says {}",
            describe(v),
            kind.name()
        ))
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        format!("{}…", &text[..text.floor_char_boundary_compat(60)])
    } else {
        text
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

impl Kind {
    /// The declared-schema spelling of this kind.
    pub fn name(&self) -> String {
        match self {
            Kind::Null => "null".into(),
            Kind::Bool => "boolean".into(),
            Kind::Int => "long".into(),
            Kind::Float => "double".into(),
            Kind::Str => "string".into(),
            Kind::Timestamp => "timestamp".into(),
            Kind::Json => "json".into(),
            Kind::List(e) => format!("array<{}>", e.name()),
            Kind::Struct(_) => "record".into(),
        }
    }

    /// Parses a declared type: `string`, `long`/`int`, `double`/`float`, `boolean`,
    /// `timestamp`, `json`, or `array<T>`.
    pub fn parse_name(s: &str) -> Option<Kind> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("array<").and_then(|r| r.strip_suffix('>')) {
            return Kind::parse_name(inner).map(|k| Kind::List(Box::new(k)));
        }
        Some(match s {
            "string" => Kind::Str,
            "long" | "int" | "integer" => Kind::Int,
            "double" | "float" => Kind::Float,
            "boolean" | "bool" => Kind::Bool,
            "timestamp" => Kind::Timestamp,
            "json" => Kind::Json,
            _ => return None,
        })
    }
}

/// Reads a declared schema from an Avro schema (`.avsc`) document: a record whose fields use
/// primitive types, nested records, arrays, maps (kept as JSON text) and `["null", T]` unions;
/// `long` with `timestamp-millis`/`-micros` is a timestamp.
pub fn from_avro_schema(doc: &Value) -> Result<Kind, String> {
    fn kind(t: &Value, at: &str) -> Result<Kind, String> {
        match t {
            Value::String(s) => match s.as_str() {
                "null" => Ok(Kind::Null),
                "boolean" => Ok(Kind::Bool),
                "int" | "long" => Ok(Kind::Int),
                "float" | "double" => Ok(Kind::Float),
                "string" | "bytes" => Ok(Kind::Str),
                other => Err(format!("{at}: type '{other}' is not supported")),
            },
            Value::Array(branches) => {
                let non_null: Vec<&Value> = branches.iter().filter(|b| *b != "null").collect();
                match non_null.as_slice() {
                    [one] => kind(one, at),
                    _ => Ok(Kind::Json),
                }
            }
            Value::Object(o) => {
                let logical = o.get("logicalType").and_then(Value::as_str);
                match (o.get("type").and_then(Value::as_str), logical) {
                    (Some("long"), Some("timestamp-millis" | "timestamp-micros")) => {
                        Ok(Kind::Timestamp)
                    }
                    (Some("string"), Some("timestamp")) => Ok(Kind::Timestamp),
                    (Some("record"), _) => {
                        let fields = o
                            .get("fields")
                            .and_then(Value::as_array)
                            .ok_or(format!("{at}: a record needs \"fields\""))?;
                        let mut out = Fields::default();
                        for f in fields {
                            let name = f
                                .get("name")
                                .and_then(Value::as_str)
                                .ok_or(format!("{at}: a field needs a \"name\""))?;
                            let t = f
                                .get("type")
                                .ok_or(format!("{at}.{name}: the field needs a \"type\""))?;
                            out.push(name, kind(t, &join(at, name))?);
                        }
                        Ok(Kind::Struct(out))
                    }
                    (Some("array"), _) => {
                        let items = o
                            .get("items")
                            .ok_or(format!("{at}: an array needs \"items\""))?;
                        Ok(Kind::List(Box::new(kind(items, &format!("{at}[]"))?)))
                    }
                    (Some("map"), _) => Ok(Kind::Json),
                    (Some("enum"), _) => Ok(Kind::Str),
                    (Some(_), _) => kind(o.get("type").expect("checked"), at),
                    (None, _) => Err(format!("{at}: the type needs a \"type\"")),
                }
            }
            _ => Err(format!("{at}: {t} is not an Avro type")),
        }
    }
    match kind(doc, "")? {
        k @ Kind::Struct(_) => Ok(k),
        _ => Err("the schema must be a record".into()),
    }
}

/// A user's schema for one signal: its columns and types, and the fields every record
/// must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredSchema {
    pub kind: Kind,
    /// Dotted paths that must be present and not null.
    pub required: Vec<Vec<String>>,
}

impl DeclaredSchema {
    /// From an Avro schema document: a top-level field is required unless its type is a
    /// union with `null`.
    pub fn from_avro(doc: &Value) -> Result<Self, String> {
        let kind = from_avro_schema(doc)?;
        let required = doc
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| {
                let nullable = match f.get("type") {
                    Some(Value::Array(branches)) => branches.iter().any(|b| b == "null"),
                    Some(t) => t == "null",
                    None => true,
                };
                !nullable
            })
            .filter_map(|f| f.get("name").and_then(Value::as_str))
            .map(|n| vec![n.to_string()])
            .collect();
        Ok(Self { kind, required })
    }

    /// From `field = "type"` pairs; dotted field names nest (`"device.id" = "string"`).
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        required: &[String],
    ) -> Result<Self, String> {
        fn insert(into: &mut Fields, path: &[&str], kind: Kind) -> Result<(), String> {
            match path {
                [last] => {
                    into.push(*last, kind);
                    Ok(())
                }
                [first, rest @ ..] => {
                    let mut inner = match into.get(first) {
                        Some(Kind::Struct(f)) => f.clone(),
                        None => Fields::default(),
                        Some(_) => return Err(format!("'{first}' is both a field and a record")),
                    };
                    insert(&mut inner, rest, kind)?;
                    into.push(*first, Kind::Struct(inner));
                    Ok(())
                }
                [] => Err("an empty field name".into()),
            }
        }
        let mut top = Fields::default();
        for (name, type_name) in fields {
            let kind = Kind::parse_name(type_name).ok_or_else(|| {
                format!("field '{name}' has type '{type_name}'; use string, long, double, boolean, timestamp, json or array<T>")
            })?;
            let path: Vec<&str> = name.split('.').collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(format!("field '{name}' is not a dotted name"));
            }
            insert(&mut top, &path, kind)?;
        }
        let kind = Kind::Struct(top);
        let required = required
            .iter()
            .map(|r| r.split('.').map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>();
        for r in &required {
            if crate::table::declared_at(&kind, r).is_none() {
                return Err(format!(
                    "required field '{}' is not among the fields",
                    r.join(".")
                ));
            }
        }
        Ok(Self { kind, required })
    }

    /// Whether a record fits: required fields present, every declared field of its type.
    pub fn check(&self, record: &Value, unit: TimeUnit) -> Result<(), String> {
        for r in &self.required {
            if crate::table::lookup(record, r).is_none() {
                return Err(format!(
                    "required field '{}' is missing or null",
                    r.join(".")
                ));
            }
        }
        check(&self.kind, record, unit, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn infer(values: &[Value]) -> (Kind, Vec<String>) {
        let mut inf = Inference::new(TimeUnit::Micros, true);
        let mut k = Kind::Null;
        for v in values {
            k = inf.observe(k, v, "");
        }
        (k, inf.conflicts)
    }

    #[test]
    fn widens_ints_to_floats_and_adds_fields() {
        let (k, conflicts) = infer(&[
            json!({"a": 1, "n": null}),
            json!({"a": 2.5, "b": "x", "n": {"deep": [1, 2]}}),
        ]);
        let Kind::Struct(f) = k else { panic!() };
        assert_eq!(f.get("a"), Some(&Kind::Float));
        assert_eq!(f.get("b"), Some(&Kind::Str));
        let Some(Kind::Struct(n)) = f.get("n") else {
            panic!()
        };
        assert_eq!(n.get("deep"), Some(&Kind::List(Box::new(Kind::Int))));
        assert!(conflicts.is_empty());
        assert_eq!(
            f.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["a", "n", "b"],
            "first-seen order"
        );
    }

    #[test]
    fn reading_lines_infers_what_reading_values_does() {
        let values = [
            json!({"a": 1, "n": null, "l": [1, 2], "o": {"x": "2024-05-01T10:00:00Z"}}),
            json!({"a": 2.5, "b": "x", "n": {"deep": [1, {"k": 1}]}, "l": "no", "o": {"x": "s", "y": []}}),
            json!({"big": 18446744073709551615u64, "a": "str", "b\"q": true, "l": [[1], [2.5]]}),
        ];
        let (by_values, conflicts) = infer(&values);
        let mut inf = Inference::new(TimeUnit::Micros, true);
        let mut by_lines = Kind::Null;
        for v in &values {
            by_lines = inf
                .observe_line(by_lines, v.to_string().as_bytes())
                .unwrap();
        }
        assert_eq!(by_lines, by_values);
        let (mut a, mut b) = (inf.conflicts, conflicts);
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(a, ["a", "l", "n.deep[]"]);
    }

    #[test]
    fn conflicts_become_json_text_and_are_named() {
        let (k, conflicts) = infer(&[
            json!({"a": 1, "b": {"x": 1}, "big": 18446744073709551615u64}),
            json!({"a": "one", "b": 3}),
        ]);
        let Kind::Struct(f) = k else { panic!() };
        assert_eq!(f.get("a"), Some(&Kind::Json));
        assert_eq!(f.get("b"), Some(&Kind::Json));
        assert_eq!(f.get("big"), Some(&Kind::Json));
        assert_eq!(conflicts, ["a", "b"]);
    }

    #[test]
    fn timestamps_are_inferred_only_when_exact() {
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00.123456Z", TimeUnit::Micros),
            Some(1_714_557_600_123_456)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00.123456Z", TimeUnit::Millis),
            None
        );
        assert_eq!(parse_timestamp("2024-05-01", TimeUnit::Millis), None);
        let (k, _) = infer(&[json!({"t": "2024-05-01T10:00:00Z"}), json!({"t": "soon"})]);
        let Kind::Struct(f) = k else { panic!() };
        assert_eq!(f.get("t"), Some(&Kind::Str));
    }

    #[test]
    fn declared_schemas_check_values() {
        let k = from_avro_schema(&json!({"type": "record", "name": "r", "fields": [
            {"name": "id", "type": "string"},
            {"name": "v", "type": ["null", "double"]},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "tags", "type": {"type": "array", "items": "string"}}
        ]}))
        .unwrap();
        let ok =
            json!({"id": "d1", "v": 3, "at": "2024-05-01T10:00:00Z", "tags": ["a"], "extra": 1});
        assert_eq!(check(&k, &ok, TimeUnit::Millis, ""), Ok(()));
        let bad = json!({"id": "d1", "v": "warm"});
        assert_eq!(
            check(&k, &bad, TimeUnit::Millis, ""),
            Err("field 'v' is \"warm\", the declared schema says double".into())
        );
        let bad = json!({"id": "d1", "tags": [1]});
        assert!(check(&k, &bad, TimeUnit::Millis, "")
            .unwrap_err()
            .contains("tags[0]"));
    }
}
