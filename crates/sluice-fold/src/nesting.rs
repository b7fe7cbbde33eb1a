//! The pipeline's one nesting limit, checked once at routing: every encoder after it can take
//! any record that passed. What sets it: an Avro schema nests about four JSON levels per
//! nested record, and apache-avro parses it with serde_json's 128-level limit (objects 32 deep
//! fail); Parquet's writer recurses per level (debug builds overflow a 2 MiB stack near 60).

/// The deepest nesting of arrays and objects a record may have; the record's own top-level
/// object is level 1. `fuzz_tests` in sluice-pipeline encodes records this deep in every
/// format.
pub const MAX_NESTING: usize = 24;

/// Whether `json` nests arrays and objects deeper than `limit`. Scans bytes once, skipping
/// strings; stops at the first level past the limit. Meant for text that is valid JSON (a
/// malformed payload is refused by the parser anyway).
pub fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    }

    #[test]
    fn counts_arrays_and_objects_outside_strings() {
        assert!(!nests_deeper_than(
            nested(MAX_NESTING).as_bytes(),
            MAX_NESTING
        ));
        assert!(nests_deeper_than(
            nested(MAX_NESTING + 1).as_bytes(),
            MAX_NESTING
        ));
        assert!(!nests_deeper_than(br#"{"s":"[[[[[[\"{{{{"}"#, 2));
        assert!(nests_deeper_than(br#"{"s":"\\","t":[[1]]}"#, 2));
        assert!(!nests_deeper_than(br#"{"a":[1],"b":{"c":2}}"#, 2));
    }
}
