//! Routing's one pass over a payload: it checks that the payload is one JSON object no
//! deeper than the pipeline's nesting limit, and keeps the raw text of the few values routing
//! needs (the signal field, the event time field). Nothing else is decoded and nothing is
//! allocated on the way (unless a key holds an escape): strings and numbers elsewhere are
//! only checked and skipped by the [`Lexer`]; UTF-8 is checked once for the whole payload.

use sluice_format::lexer::{Lexer, SyntaxError};

/// Why a payload cannot be routed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ScanError {
    NotUtf8,
    /// Valid JSON, but not an object.
    NotAnObject,
    TooDeep,
    Invalid(String),
}

impl From<SyntaxError> for ScanError {
    fn from(e: SyntaxError) -> Self {
        ScanError::Invalid(e.to_string())
    }
}

/// At most this many paths are looked for (routing needs two).
pub(crate) const MAX_PATHS: usize = 2;

/// The raw JSON text of the value at each of `paths` (dotted paths as key lists), or `None`
/// where a key is absent, a value on the way is not an object, or the value is `null`. As
/// in a map, the last of duplicate keys wins at every level.
pub(crate) fn scan<'a>(
    payload: &'a [u8],
    paths: &[&[String]],
    max_nesting: usize,
) -> Result<[Option<&'a str>; MAX_PATHS], ScanError> {
    assert!(paths.len() <= MAX_PATHS, "scan looks for at most two paths");
    let text = std::str::from_utf8(payload).map_err(|_| ScanError::NotUtf8)?;
    let mut lexer = Lexer::new(text);
    let mut walk = Walk {
        text,
        paths,
        found: [None; MAX_PATHS],
        max_nesting,
    };
    let first = lexer.peek()?;
    if first != b'{' {
        walk.value(&mut lexer, first, 1, 0, 0)?;
        lexer.finish()?;
        return Err(ScanError::NotAnObject);
    }
    let all = (1u8 << paths.len()) - 1;
    walk.value(&mut lexer, first, 1, all, 0)?;
    lexer.finish()?;
    Ok(walk.found)
}

struct Walk<'a, 'p> {
    text: &'a str,
    paths: &'p [&'p [String]],
    found: [Option<&'a str>; MAX_PATHS],
    max_nesting: usize,
}

impl<'a> Walk<'a, '_> {
    /// Walks one value, starting with the byte `first`, at nesting `depth`. `on_path` has a
    /// bit per path whose first `level` keys lead here; only objects are searched further.
    fn value(
        &mut self,
        lexer: &mut Lexer<'a>,
        first: u8,
        depth: usize,
        on_path: u8,
        level: usize,
    ) -> Result<(), ScanError> {
        match first {
            b'{' => {
                self.check_depth(depth)?;
                lexer.object(|lexer, key, next| {
                    let matched = matching(self.paths, &key, on_path, level);
                    // A later duplicate replaces what an earlier one found.
                    for i in bits(matched) {
                        self.found[i] = None;
                    }
                    let ends: u8 = bits(matched)
                        .filter(|&i| self.paths[i].len() == level + 1)
                        .fold(0, |m, i| m | 1 << i);
                    let start = lexer.pos();
                    self.value(lexer, next, depth + 1, matched & !ends, level + 1)?;
                    if ends != 0 && next != b'n' {
                        let raw = &self.text[start..lexer.pos()];
                        for i in bits(ends) {
                            self.found[i] = Some(raw);
                        }
                    }
                    Ok(())
                })
            }
            b'[' => {
                self.check_depth(depth)?;
                lexer.array(|lexer, next| self.value(lexer, next, depth + 1, 0, level))
            }
            scalar => Ok(lexer.scalar(scalar)?),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), ScanError> {
        if depth > self.max_nesting {
            Err(ScanError::TooDeep)
        } else {
            Ok(())
        }
    }
}

/// The paths among `on_path` whose key at `level` is `key`.
fn matching(paths: &[&[String]], key: &str, on_path: u8, level: usize) -> u8 {
    bits(on_path)
        .filter(|&i| paths[i][level] == key)
        .fold(0, |m, i| m | 1 << i)
}

fn bits(mask: u8) -> impl Iterator<Item = usize> {
    (0..MAX_PATHS).filter(move |i| mask & (1 << i) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::IgnoredAny;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    /// What routing read before this scanner: serde_json into a map of raw values, then a
    /// map lookup per key (the last duplicate wins), null as absent.
    fn oracle(
        payload: &[u8],
        paths: &[&[String]],
        max: usize,
    ) -> Result<Vec<Option<String>>, &'static str> {
        type Raw<'a> = BTreeMap<String, &'a RawValue>;
        if std::str::from_utf8(payload).is_err() {
            return Err("not_utf8");
        }
        if crate::nesting::nests_deeper_than(payload, max) {
            return Err("too_deep");
        }
        let top: Raw = match serde_json::from_slice(payload) {
            Ok(top) => top,
            Err(_) if serde_json::from_slice::<IgnoredAny>(payload).is_ok() => {
                return Err("not_an_object")
            }
            Err(_) => return Err("invalid"),
        };
        Ok(paths
            .iter()
            .map(|p| {
                let mut v = *top.get(&p[0])?;
                for k in &p[1..] {
                    v = *serde_json::from_str::<Raw>(v.get()).ok()?.get(k)?;
                }
                (v.get() != "null").then(|| v.get().to_string())
            })
            .collect())
    }

    fn scanned(
        payload: &[u8],
        paths: &[&[String]],
        max: usize,
    ) -> Result<Vec<Option<String>>, &'static str> {
        match scan(payload, paths, max) {
            Ok(found) => Ok(found[..paths.len()]
                .iter()
                .map(|raw| raw.map(str::to_string))
                .collect()),
            Err(ScanError::NotUtf8) => Err("not_utf8"),
            Err(ScanError::TooDeep) => Err("too_deep"),
            Err(ScanError::NotAnObject) => Err("not_an_object"),
            Err(ScanError::Invalid(_)) => Err("invalid"),
        }
    }

    #[test]
    fn finds_nested_fields_and_the_last_duplicate() {
        let (sig, ts) = (path("meta.name"), path("ts"));
        let paths: &[&[String]] = &[&sig, &ts];
        let got = scan(
            br#" {"meta": {"name": "a\"b", "x": [1]}, "ts" : 17 } "#,
            paths,
            24,
        )
        .unwrap();
        assert_eq!(got, [Some(r#""a\"b""#), Some("17")]);
        let got = scan(
            br#"{"meta":{"name":"a"},"meta":{"other":1},"ts":null}"#,
            paths,
            24,
        )
        .unwrap();
        assert_eq!(got, [None, None]);
        let got = scan(br#"{"meta":"flat","ts":[1,{"ts":2}],"ts":"t"}"#, paths, 24).unwrap();
        assert_eq!(got, [None, Some(r#""t""#)]);
        // One path may be a prefix of the other, or the same.
        let (a, ab) = (path("a"), path("a.b"));
        let got = scan(br#"{"a":{"b":true}}"#, &[&a, &ab], 24).unwrap();
        assert_eq!(got, [Some(r#"{"b":true}"#), Some("true")]);
        let got = scan(br#"{"a":1}"#, &[&a, &a], 24).unwrap();
        assert_eq!(got, [Some("1"), Some("1")]);
    }

    #[test]
    fn refuses_what_routing_refuses() {
        let p = path("a");
        let paths: &[&[String]] = &[&p];
        assert_eq!(scan(b"[1,2]", paths, 24), Err(ScanError::NotAnObject));
        assert_eq!(scan(b"\"s\"", paths, 24), Err(ScanError::NotAnObject));
        assert_eq!(
            scan(b"{\"a\":\"\xff\"}", paths, 24),
            Err(ScanError::NotUtf8)
        );
        assert_eq!(scan(br#"{"a":[[1]]}"#, paths, 2), Err(ScanError::TooDeep));
        assert!(scan(br#"{"a":[[1]]}"#, paths, 3).is_ok());
        for bad in [
            &b"{\"a\":1"[..],
            b"{\"a\":1}x",
            b"{\"a\":NaN}",
            b"{\"a\":01}",
            b"{a:1}",
            b"{\"a\":\"\\x\"}",
        ] {
            assert!(
                matches!(scan(bad, paths, 24), Err(ScanError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// JSON built from a few keys so that paths hit, miss, repeat and nest.
    fn json_value(depth: u32) -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec!["a", "b", "ts", "name", "a\\u0062", "é"]);
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            Just("18446744073709551616".to_string()),
            "[a-z\"\\\\ {}\\[\\]]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        leaf.prop_recursive(depth, 48, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[ {} ]", v.join(" , "))),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                    let body: Vec<String> =
                        kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every object the full parser reads gives the same fields, and everything it
        /// refuses is refused, with the same reason.
        #[test]
        fn agrees_with_serde_json(
            body in json_value(6),
            wrap in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            mutate in 0u8..4,
            max in 2usize..8,
        ) {
            let text = if wrap { format!("{{\"a\":{body},\"ts\":{body}}}") } else { body };
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                let at = cut.index(bytes.len());
                match mutate {
                    1 => bytes[at] = byte,
                    2 => bytes.truncate(at),
                    3 => bytes.insert(at, byte),
                    _ => {}
                }
            }
            let (a, ab, ts) = (path("a"), path("a.b"), path("ts"));
            for paths in [&[&a[..], &ts[..]][..], &[&ab[..], &a[..]][..], &[&ts[..]][..]] {
                let (got, want) = (scanned(&bytes, paths, max), oracle(&bytes, paths, max));
                // Too deep *and* broken (or not an object): either fault may be named first.
                let either = want == Err("too_deep")
                    && (got == Err("invalid") && serde_json::from_slice::<IgnoredAny>(&bytes).is_err()
                        || got == Err("not_an_object") && bytes.trim_ascii_start().first() != Some(&b'{'));
                prop_assert!(either || got == want, "{}: {:?} vs {:?}", String::from_utf8_lossy(&bytes), got, want);
            }
        }
    }
}
