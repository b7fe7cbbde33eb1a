//! Buffered lines read into trees that borrow from the line and keep every number as
//! written. serde_json's `Value` reads an integer of 2^64 or more as a double and gives
//! each key its own allocation; a [`Node`] keeps `18446744073709551616` as those digits (so
//! a JSON-text column writes it exactly) and borrows every key and string without escapes.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::lexer::{Lexer, SyntaxError};

/// How deep a line may nest before reading it gives up. Routing admits 24 levels
/// (`sluice_fold::MAX_NESTING`); this only keeps an unrouted line from exhausting the stack.
pub(crate) const MAX_DEPTH: usize = 128;

/// One JSON value of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// The number's text, exactly as the line has it.
    Number(&'a str),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Entries in the line's order; duplicates are kept, and [`Node::get`] takes the last.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

/// How a number is held by a column: a 64-bit integer, a double, or as its JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    Int,
    Float,
    /// An integer no 64-bit signed column holds, or a decimal beyond the range of a double
    /// (`1e400`): kept as its JSON text.
    Text,
}

/// Classifies a JSON number by its text.
pub fn number_kind(text: &str) -> NumberKind {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => NumberKind::Float,
            _ => NumberKind::Text,
        }
    } else if text.parse::<i64>().is_ok() {
        NumberKind::Int
    } else {
        NumberKind::Text
    }
}

/// Reads one JSON text (a whole line).
pub fn parse(line: &[u8]) -> Result<Node<'_>, String> {
    read(line).map_err(Failure::describe)
}

fn read(line: &[u8]) -> Result<Node<'_>, Failure> {
    let mut lex = lexer(line)?;
    let first = lex.peek()?;
    let node = value(&mut lex, first, 1)?;
    lex.finish()?;
    Ok(node)
}

/// A lexer over `line`, once the line is checked to be UTF-8 (the lexer relies on it).
pub(crate) fn lexer(line: &[u8]) -> Result<Lexer<'_>, Failure> {
    let text = std::str::from_utf8(line).map_err(|_| Failure::NotUtf8)?;
    Ok(Lexer::new(text))
}

/// Why a line could not be read.
pub(crate) enum Failure {
    Json(SyntaxError),
    NotUtf8,
    TooDeep,
}

impl Failure {
    pub(crate) fn describe(self) -> String {
        match self {
            Failure::Json(e) => e.to_string(),
            Failure::NotUtf8 => "not valid UTF-8".to_string(),
            Failure::TooDeep => format!("arrays and objects nest deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl From<SyntaxError> for Failure {
    fn from(e: SyntaxError) -> Self {
        Failure::Json(e)
    }
}

/// The value starting with the byte `first` (the lexer's `peek`), at nesting `depth`.
pub(crate) fn value<'a>(lex: &mut Lexer<'a>, first: u8, depth: usize) -> Result<Node<'a>, Failure> {
    Ok(match first {
        b'{' => {
            if depth > MAX_DEPTH {
                return Err(Failure::TooDeep);
            }
            let mut entries = Vec::new();
            lex.object(|lex, key, first| {
                if entries.is_empty() {
                    // Sized once for a typical object rather than grown 4 → 8 → 16.
                    entries.reserve(8);
                }
                entries.push((key, value(lex, first, depth + 1)?));
                Ok::<_, Failure>(())
            })?;
            Node::Object(entries)
        }
        b'[' => {
            if depth > MAX_DEPTH {
                return Err(Failure::TooDeep);
            }
            let mut items = Vec::new();
            lex.array(|lex, first| {
                if items.is_empty() {
                    // Sized once for a typical array (reallocs showed at ~10 % of a Parquet
                    // encode).
                    items.reserve(8);
                }
                items.push(value(lex, first, depth + 1)?);
                Ok::<_, Failure>(())
            })?;
            Node::Array(items)
        }
        b'"' => Node::Str(lex.string()?),
        b'-' | b'0'..=b'9' => Node::Number(lex.number()?),
        literal => {
            lex.scalar(literal)?;
            match literal {
                b't' => Node::Bool(true),
                b'f' => Node::Bool(false),
                _ => Node::Null,
            }
        }
    })
}

impl<'a> Node<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An integer that fits 64 signed bits (`1.0` and `1e3` are not integers).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Node::Number(t) => t.parse().ok(),
            _ => None,
        }
    }

    /// Any number, correctly rounded to the nearest double.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Node::Number(t) => t.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    /// The value of `key` in an object; like a map, the last duplicate wins.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Compact JSON text: numbers as written, object keys sorted and each once (the last
    /// duplicate), as serde_json writes a parsed `Value`.
    pub fn json_text(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Number(t) => out.push_str(t),
            Node::Str(s) => quote(s, out),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Node::Object(entries) => {
                let mut keyed: Vec<(&str, &Node)> = Vec::with_capacity(entries.len());
                for (k, v) in entries.iter().rev() {
                    if !keyed.iter().any(|(seen, _)| *seen == k.as_ref()) {
                        keyed.push((k, v));
                    }
                }
                keyed.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (k, v)) in keyed.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    quote(k, out);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string literal, escaped as serde_json escapes it.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The value at a dotted path; absent and null are the same.
pub fn lookup<'n, 'a>(v: &'n Node<'a>, path: &[String]) -> Option<&'n Node<'a>> {
    let mut v = v;
    for key in path {
        v = v.get(key)?;
    }
    (!v.is_null()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn integers_beyond_64_bits_keep_their_digits() {
        let n = parse(br#"{"big":18446744073709551616,"neg":-99999999999999999999,"f":1.5e3}"#)
            .unwrap();
        assert_eq!(n.get("big"), Some(&Node::Number("18446744073709551616")));
        assert_eq!(number_kind("18446744073709551616"), NumberKind::Text);
        assert_eq!(number_kind("-99999999999999999999"), NumberKind::Text);
        assert_eq!(number_kind("9223372036854775807"), NumberKind::Int);
        assert_eq!(number_kind("1.5e3"), NumberKind::Float);
        assert_eq!(number_kind("-1.5e400"), NumberKind::Text);
        assert_eq!(n.get("f").and_then(Node::as_f64), Some(1500.0));
        assert_eq!(
            n.json_text(),
            r#"{"big":18446744073709551616,"f":1.5e3,"neg":-99999999999999999999}"#
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let line = br#"{"plain":"abc","esc\"aped":"a\nb\u00e9"}"#;
        let Node::Object(entries) = parse(line).unwrap() else {
            panic!()
        };
        assert!(matches!(entries[0].0, Cow::Borrowed("plain")));
        assert!(matches!(entries[0].1, Node::Str(Cow::Borrowed("abc"))));
        assert_eq!(entries[1].0, "esc\"aped");
        assert_eq!(entries[1].1.as_str(), Some("a\nbé"));
    }

    #[test]
    fn refuses_what_is_not_one_json_text() {
        for bad in [
            &b"{"[..],
            b"{\"a\":1} x",
            b"NaN",
            b"[Infinity]",
            b"\"\xff\"",
            b"",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(deep.as_bytes()).unwrap_err().contains("deeper"));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"\\\\é]{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Every value serde_json holds exactly reads and writes back the same.
        #[test]
        fn agrees_with_serde_json(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            let node = parse(text.as_bytes()).unwrap();
            prop_assert_eq!(node.json_text(), text);
        }

        /// No input panics, and what is JSON is told from what is not as serde_json tells it
        /// (numbers beyond a double's range included, which `Value` alone refuses): valid
        /// texts with one byte changed, cut short or left as they are.
        #[test]
        fn near_json_is_read_or_refused_as_serde_json_does(
            v in json_value(),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![Just(b'"'), Just(b'\\'), Just(b'0'), Just(b'-'), Just(b'.'),
                Just(b'e'), Just(b'}'), Just(b']'), Just(b','), Just(b' '), any::<u8>()],
            how in 0..3u8,
        ) {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
            let ours = parse(&bytes).is_ok();
            // Skipping a string, serde_json does not check its UTF-8: that is asked apart.
            let theirs = std::str::from_utf8(&bytes).is_ok()
                && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
            prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}
