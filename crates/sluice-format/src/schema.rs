//! The column types of a signal's records: inferred from the JSON itself and widened as
//! records disagree, or declared by the user and enforced.

use std::collections::HashMap;

use serde_json::Value;

use crate::json::{self, Failure, Node, NumberKind};
use crate::lexer::Lexer;
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

    /// `slot`, trying `hint` first: lines of one source mostly list their fields in one
    /// order, so the field after the last one is usually the next (hashing each key showed
    /// at ~3 % of a Parquet encode).
    pub(crate) fn slot_hinted(&mut self, name: &str, hint: usize) -> usize {
        match self.entries.get(hint) {
            Some((n, _)) if n == name => hint,
            _ => self.slot(name),
        }
    }

    /// The index of `name`, added (as `Null`) if new.
    pub(crate) fn slot(&mut self, name: &str) -> usize {
        match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.push(name, Kind::Null);
                self.entries.len() - 1
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
    let (secs, nanos) = crate::rfc3339::parse(s)?;
    match unit {
        TimeUnit::Millis => {
            (nanos % 1_000_000 == 0).then(|| secs * 1000 + i64::from(nanos) / 1_000_000)
        }
        TimeUnit::Micros => {
            (nanos % 1_000 == 0).then(|| secs * 1_000_000 + i64::from(nanos) / 1_000)
        }
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

    fn string_kind(&self, s: &str) -> Kind {
        if self.infer_timestamps && parse_timestamp(s, self.unit).is_some() {
            Kind::Timestamp
        } else {
            Kind::Str
        }
    }

    /// Widens `schema` by one value.
    pub fn observe(&mut self, schema: Kind, v: &Node, path: &str) -> Kind {
        let mut slot = schema;
        self.widen_into(&mut slot, v, &|| path.to_string());
        slot
    }

    /// Widens field `i` of a line's top-level object (its index from `Fields::slot`) by its
    /// value `v`, as `observe` of the whole line does. For a reader that keeps the values.
    pub(crate) fn observe_field(&mut self, fields: &mut Fields, i: usize, v: &Node) {
        let (name, kind) = &mut fields.entries[i];
        let name: &str = name;
        self.widen_into(kind, v, &|| name.to_string());
    }

    /// Widens `schema` by one JSON text, read as a stream: no tree is built (settling a
    /// file's columns reads every line once more than encoding it does). The same kinds,
    /// conflicts and errors as `observe` of `json::parse`.
    pub fn observe_line(&mut self, schema: Kind, line: &[u8]) -> Result<Kind, String> {
        let mut slot = schema;
        let conflicts = self.conflicts.len();
        let read: Result<(), Failure> = (|| {
            let mut lex = json::lexer(line)?;
            let first = lex.peek()?;
            self.widen_from(&mut slot, &mut lex, first, 1, &String::new)?;
            lex.finish()?;
            Ok(())
        })();
        if let Err(e) = read {
            // A line that turns out broken widened nothing, as one that is parsed first.
            self.conflicts.truncate(conflicts);
            return Err(e.describe());
        }
        Ok(slot)
    }

    /// `widen_into` for the value the lexer is at, which starts with the byte `first`.
    fn widen_from(
        &mut self,
        slot: &mut Kind,
        lex: &mut Lexer,
        first: u8,
        depth: usize,
        path: &dyn Fn() -> String,
    ) -> Result<(), Failure> {
        match first {
            b'[' => {
                if depth > json::MAX_DEPTH {
                    return Err(Failure::TooDeep);
                }
                if matches!(slot, Kind::Null) {
                    *slot = Kind::List(Box::new(Kind::Null));
                }
                // Not a list so far: this array's own kind, widened against it (a conflict).
                let mut own = Kind::List(Box::new(Kind::Null));
                let is_list = matches!(slot, Kind::List(_));
                let Kind::List(elem) = (if is_list { &mut *slot } else { &mut own }) else {
                    unreachable!("a list")
                };
                let inner = || format!("{}[]", path());
                lex.array(|lex, first| self.widen_from(elem, lex, first, depth + 1, &inner))?;
                if !is_list {
                    self.widen_slot(slot, own, path);
                }
            }
            b'{' => {
                if depth > json::MAX_DEPTH {
                    return Err(Failure::TooDeep);
                }
                if matches!(slot, Kind::Null) {
                    *slot = Kind::Struct(Fields::default());
                }
                let mut own = Kind::Struct(Fields::default());
                let is_struct = matches!(slot, Kind::Struct(_));
                let Kind::Struct(fields) = (if is_struct { &mut *slot } else { &mut own }) else {
                    unreachable!("a struct")
                };
                let mut hint = 0;
                lex.object(|lex, key, first| {
                    let i = fields.slot_hinted(&key, hint);
                    hint = i + 1;
                    let (name, kind) = &mut fields.entries[i];
                    let at = || join(&path(), name);
                    self.widen_from(kind, lex, first, depth + 1, &at)
                })?;
                if !is_struct {
                    self.widen_slot(slot, own, path);
                }
            }
            b'"' => {
                let k = self.string_kind(&lex.string()?);
                self.widen_slot(slot, k, path);
            }
            b'-' | b'0'..=b'9' => {
                let k = match json::number_kind(lex.number()?) {
                    NumberKind::Int => Kind::Int,
                    NumberKind::Float => Kind::Float,
                    // No column type holds it: kept exactly, as its text.
                    NumberKind::Text => Kind::Json,
                };
                self.widen_slot(slot, k, path);
            }
            literal => {
                lex.scalar(literal)?;
                if literal != b'n' {
                    self.widen_slot(slot, Kind::Bool, path);
                }
            }
        }
        Ok(())
    }

    /// Widens the kind in `slot` by `v`, in place: a record whose fields the schema already
    /// has costs no allocation here.
    fn widen_into(&mut self, slot: &mut Kind, v: &Node, path: &dyn Fn() -> String) {
        match v {
            Node::Array(items) => {
                if matches!(slot, Kind::Null) {
                    *slot = Kind::List(Box::new(Kind::Null));
                }
                let inner = || format!("{}[]", path());
                if let Kind::List(elem) = slot {
                    for item in items {
                        self.widen_into(elem, item, &inner);
                    }
                } else {
                    // Not a list so far: this array's own kind, widened against it (a conflict).
                    let mut own = Kind::List(Box::new(Kind::Null));
                    self.widen_into(&mut own, v, path);
                    self.widen_slot(slot, own, path);
                }
            }
            Node::Object(entries) => {
                if matches!(slot, Kind::Null) {
                    *slot = Kind::Struct(Fields::default());
                }
                if let Kind::Struct(fields) = slot {
                    let mut next = 0;
                    for (name, value) in entries {
                        let i = fields.slot_hinted(name, next);
                        next = i + 1;
                        let at = || join(&path(), name);
                        self.widen_into(&mut fields.entries[i].1, value, &at);
                    }
                } else {
                    let mut own = Kind::Struct(Fields::default());
                    self.widen_into(&mut own, v, path);
                    self.widen_slot(slot, own, path);
                }
            }
            Node::Null => {}
            Node::Bool(_) => self.widen_slot(slot, Kind::Bool, path),
            Node::Number(text) => {
                let k = match json::number_kind(text) {
                    NumberKind::Int => Kind::Int,
                    NumberKind::Float => Kind::Float,
                    // No column type holds it: kept exactly, as its text.
                    NumberKind::Text => Kind::Json,
                };
                self.widen_slot(slot, k, path);
            }
            Node::Str(s) => {
                let k = self.string_kind(s);
                self.widen_slot(slot, k, path);
            }
        }
    }

    fn widen_slot(&mut self, slot: &mut Kind, k: Kind, path: &dyn Fn() -> String) {
        // Most values are of the kind their slot already has (or it is text already): what
        // `widen` would give back is the slot as it is, so it is not taken apart and rebuilt.
        if matches!(slot, Kind::Json) || *slot == k {
            return;
        }
        let old = std::mem::replace(slot, Kind::Null);
        *slot = widen(old, k, &mut self.conflicts, path);
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
            if value_at(record, r).is_none() {
                return Err(format!(
                    "required field '{}' is missing or null",
                    r.join(".")
                ));
            }
        }
        check(&self.kind, record, unit, "")
    }
}

/// The value at a dotted path of a parsed record; absent and null are the same.
fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = v;
    for key in path {
        v = v.as_object()?.get(key)?;
    }
    (!v.is_null()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn infer(values: &[Value]) -> (Kind, Vec<String>) {
        let mut inf = Inference::new(TimeUnit::Micros, true);
        let mut k = Kind::Null;
        for v in values {
            k = inf.observe_line(k, v.to_string().as_bytes()).unwrap();
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
    fn arrays_objects_and_conflicts_widen_by_path() {
        let (k, mut conflicts) = infer(&[
            json!({"a": 1, "n": null, "l": [1, 2], "o": {"x": "2024-05-01T10:00:00Z"}}),
            json!({"a": 2.5, "b": "x", "n": {"deep": [1, {"k": 1}]}, "l": "no", "o": {"x": "s", "y": []}}),
            json!({"big": 18446744073709551615u64, "a": "str", "b\"q": true, "l": [[1], [2.5]]}),
        ]);
        conflicts.sort();
        assert_eq!(conflicts, ["a", "l", "n.deep[]"]);
        let Kind::Struct(f) = k else { panic!() };
        assert_eq!(f.get("a"), Some(&Kind::Json));
        assert_eq!(f.get("big"), Some(&Kind::Json));
        assert_eq!(f.get("b\"q"), Some(&Kind::Bool));
        let Some(Kind::Struct(o)) = f.get("o") else {
            panic!()
        };
        assert_eq!(o.get("x"), Some(&Kind::Str));
        assert_eq!(o.get("y"), Some(&Kind::List(Box::new(Kind::Null))));
    }

    /// Integers of 2^64 and beyond are JSON text, never doubles; decimals stay doubles.
    #[test]
    fn integers_no_64_bit_type_holds_are_json_text() {
        let mut inf = Inference::new(TimeUnit::Micros, true);
        let mut k = Kind::Null;
        for line in [
            &br#"{"huge":18446744073709551616,"neg":-9223372036854775809,"f":1e3,"i":-9223372036854775808}"#[..],
            br#"{"huge":1,"f":2}"#,
        ] {
            k = inf.observe_line(k, line).unwrap();
        }
        let Kind::Struct(f) = k else { panic!() };
        assert_eq!(f.get("huge"), Some(&Kind::Json));
        assert_eq!(f.get("neg"), Some(&Kind::Json));
        assert_eq!(f.get("f"), Some(&Kind::Float));
        assert_eq!(f.get("i"), Some(&Kind::Int));
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

    mod streaming {
        use super::*;
        use proptest::prelude::*;

        /// JSON texts with duplicate keys, timestamps, numbers no column holds and nesting
        /// whose kinds conflict from line to line.
        fn json_value(depth: u32) -> impl Strategy<Value = String> {
            let key = prop::sample::select(vec!["a", "b", "ts", "a\\u0062", "é"]);
            let leaf = prop_oneof![
                Just("null".to_string()),
                any::<bool>().prop_map(|b| b.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| format!("{f:e}")),
                Just("18446744073709551616".to_string()),
                Just("1e400".to_string()),
                Just("\"2024-03-05T10:00:00Z\"".to_string()),
                "[a-z\"\\\\ ]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ];
            leaf.prop_recursive(depth, 48, 5, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4)
                        .prop_map(|v| format!("[{}]", v.join(","))),
                    prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                        let body: Vec<String> =
                            kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                        format!("{{{}}}", body.join(","))
                    }),
                ]
            })
        }

        /// Widens by each line through the tree `json::parse` builds: what streaming must equal.
        fn by_tree(inf: &mut Inference, schema: Kind, line: &[u8]) -> Result<Kind, String> {
            Ok(inf.observe(schema, &json::parse(line)?, ""))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Over a sequence of lines (some broken), reading each as a stream gives the
            /// kinds, conflicts and errors that reading it as a tree does.
            #[test]
            fn streaming_inference_agrees_with_the_tree(
                lines in prop::collection::vec(json_value(4), 1..6),
                cut in any::<prop::sample::Index>(),
                byte in any::<u8>(),
                mutate in 0u8..3,
                timestamps in any::<bool>(),
            ) {
                let mut lines: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
                let last = lines.last_mut().expect("a line");
                let at = cut.index(last.len());
                match mutate {
                    1 => last[at] = byte,
                    2 => last.truncate(at),
                    _ => {}
                }
                let mut stream = Inference::new(TimeUnit::Micros, timestamps);
                let mut tree = stream.clone();
                let (mut a, mut b) = (Kind::Null, Kind::Null);
                for line in &lines {
                    let (x, y) = (stream.observe_line(a, line), by_tree(&mut tree, b, line));
                    prop_assert_eq!(&x, &y, "{}", String::from_utf8_lossy(line));
                    let (Ok(x), Ok(y)) = (x, y) else { break };
                    (a, b) = (x, y);
                }
                prop_assert_eq!(stream.conflicts, tree.conflicts);
            }
        }

        #[test]
        fn too_deep_is_refused_with_the_trees_reason() {
            let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
            let mut inf = Inference::new(TimeUnit::Micros, true);
            let got = inf.observe_line(Kind::Null, deep.as_bytes());
            let want = by_tree(&mut inf.clone(), Kind::Null, deep.as_bytes());
            assert!(got.is_err());
            assert_eq!(got, want);
        }
    }
}
