//! Path templates such as `{signal}/{YYYY}/{MM}/{dd}/{hh}/{topic}-{partition}-{first_offset}.json`.

use std::fmt;

use crate::{SignalName, Window};

/// Every placeholder a path template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "signal",
    "YYYY",
    "MM",
    "dd",
    "hh",
    "mm",
    "topic",
    "partition",
    "first_offset",
    "last_offset",
    "ext",
];

/// The file name of templates whose landed files can be found again after a crash: it names
/// exactly which records of its (signal, window, partition) a file holds.
pub const OFFSET_FILE_NAME: &str = "{topic}-{partition}-{first_offset}-{last_offset}.{ext}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(&'static str),
}

/// Where diverted late records land, above the usual layout.
pub const LATE_PREFIX: &str = "_late/";

/// A parsed path template. Parsing rejects unknown placeholders and unbalanced braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; known ones are {known}", known = known())]
    Unknown(String),
    #[error("unbalanced brace at byte {0}")]
    Unbalanced(usize),
    #[error("the template is empty")]
    Empty,
    #[error("it starts with '/' or contains '..' or '//'; paths are relative to the destination")]
    EscapesRoot,
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a rendered path is made of.
pub struct PathValues<'a> {
    pub signal: &'a SignalName,
    pub window: Window,
    pub topic: &'a str,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub ext: &'a str,
}

impl PathTemplate {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        if source.starts_with('/') || source.contains("..") || source.contains("//") {
            return Err(TemplateError::EscapesRoot);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match rest.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => return Err(TemplateError::Unbalanced(i)),
                            Some((_, ch)) => name.push(ch),
                        }
                    }
                    let field = PLACEHOLDERS
                        .iter()
                        .find(|p| **p == name)
                        .ok_or(TemplateError::Unknown(name))?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => return Err(TemplateError::Unbalanced(i)),
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: source.to_string(),
            parts,
        })
    }

    /// Whether the file name is `OFFSET_FILE_NAME` and the directories use no offset, so that
    /// listing one directory finds every file of a (signal, window, partition).
    pub fn is_offset_named(&self) -> bool {
        let (dir, file) = self.source.rsplit_once('/').unwrap_or(("", &self.source));
        file == OFFSET_FILE_NAME && !dir.contains("_offset}")
    }

    /// The directory (ending in `/`, or empty for the root) a file with these values lands in.
    pub fn directory(&self, v: &PathValues<'_>) -> String {
        let path = self.render(v);
        match path.rfind('/') {
            Some(i) => path[..=i].to_string(),
            None => String::new(),
        }
    }

    /// Whether `field` is used in the directories (not only in the file name).
    pub fn directory_uses(&self, field: &str) -> bool {
        let dir = self.source.rsplit_once('/').map_or("", |(d, _)| d);
        dir.contains(&format!("{{{field}}}"))
    }

    /// The directories every rendered path starts with (the literal text before the first
    /// placeholder, up to its last `/`): `_dead_letter/` for `_dead_letter/{YYYY}/...`.
    pub fn fixed_directory(&self) -> &str {
        let literal = match self.parts.first() {
            Some(Part::Literal(s)) => s.as_str(),
            _ => "",
        };
        literal.rfind('/').map_or("", |i| &literal[..=i])
    }

    pub fn uses(&self, field: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Field(f) if *f == field))
    }

    pub fn render(&self, v: &PathValues<'_>) -> String {
        let cal = v.window.calendar_parts();
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => match *f {
                    "signal" => out.push_str(v.signal.as_str()),
                    "topic" => out.push_str(v.topic),
                    "partition" => out.push_str(&v.partition.to_string()),
                    // Zero-padded so that a listing sorts files in offset order.
                    "first_offset" => out.push_str(&format!("{:012}", v.first_offset)),
                    "last_offset" => out.push_str(&format!("{:012}", v.last_offset)),
                    "ext" => out.push_str(v.ext),
                    cal_field => {
                        if let Some((_, val)) = cal.iter().find(|(k, _)| *k == cal_field) {
                            out.push_str(val);
                        }
                    }
                },
            }
        }
        out
    }
}

/// The offsets in an `OFFSET_FILE_NAME` file name of `topic`/`partition`, if it is one.
pub fn parse_offset_file_name(name: &str, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let rest = name.strip_prefix(topic)?.strip_prefix('-')?;
    let rest = rest
        .strip_prefix(&partition.to_string())?
        .strip_prefix('-')?;
    let (first, rest) = rest.split_once('-')?;
    let (last, _ext) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(last) {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// The topic, partition and offsets of an `OFFSET_FILE_NAME` file name of any of `topics`.
pub fn parse_any_offset_file_name<'t>(
    name: &str,
    topics: &'t [String],
) -> Option<(&'t str, i32, i64, i64)> {
    topics.iter().find_map(|topic| {
        let rest = name.strip_prefix(topic.as_str())?.strip_prefix('-')?;
        let (partition, _) = rest.split_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        let (first, last) = parse_offset_file_name(name, topic, partition)?;
        Some((topic.as_str(), partition, first, last))
    })
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Granularity;

    #[test]
    fn offset_file_names_of_any_topic() {
        let topics = vec!["a-b".to_string(), "a".to_string()];
        assert_eq!(
            parse_any_offset_file_name("a-b-3-10-20.ndjson", &topics),
            Some(("a-b", 3, 10, 20))
        );
        assert_eq!(
            parse_any_offset_file_name("a-1-5-5.avro", &topics),
            Some(("a", 1, 5, 5))
        );
        assert_eq!(parse_any_offset_file_name("_SUCCESS", &topics), None);
        assert_eq!(
            PathTemplate::parse("_dead_letter/{YYYY}/x.{ext}")
                .unwrap()
                .fixed_directory(),
            "_dead_letter/"
        );
        assert_eq!(
            PathTemplate::parse("{signal}/x.{ext}")
                .unwrap()
                .fixed_directory(),
            ""
        );
    }

    #[test]
    fn renders_every_placeholder() {
        let t = PathTemplate::parse(
            "x/{signal}/{YYYY}/{MM}/{dd}/{hh}/{mm}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}",
        )
        .unwrap();
        let signal = SignalName::sanitize("temp");
        let path = t.render(&PathValues {
            signal: &signal,
            window: Window::containing(1_709_649_432_345, Granularity::Minute),
            topic: "t",
            partition: 3,
            first_offset: 7,
            last_offset: 1234,
            ext: "json.gz",
        });
        assert_eq!(
            path,
            "x/temp/2024/03/05/14/37/t-3-000000000007-000000001234.json.gz"
        );
        assert!(t.uses("first_offset"));
        assert!(!PathTemplate::parse("{signal}/a").unwrap().uses("partition"));
    }

    #[test]
    fn offset_named_templates_can_be_listed_and_parsed() {
        let t = PathTemplate::parse(&format!("x/{{signal}}/{{YYYY}}/{OFFSET_FILE_NAME}")).unwrap();
        assert!(t.is_offset_named());
        assert!(!PathTemplate::parse(
            "{signal}/{first_offset}/{topic}-{partition}-{first_offset}-{last_offset}.{ext}"
        )
        .unwrap()
        .is_offset_named());
        assert!(
            !PathTemplate::parse("{signal}/{topic}-{partition}-{first_offset}.{ext}")
                .unwrap()
                .is_offset_named()
        );
        let signal = SignalName::sanitize("s");
        let v = PathValues {
            signal: &signal,
            window: Window::containing(0, Granularity::Hour),
            topic: "my-topic",
            partition: 12,
            first_offset: 5,
            last_offset: 90,
            ext: "json.gz",
        };
        assert_eq!(t.directory(&v), "x/s/1970/");
        let name = t.render(&v).rsplit('/').next().unwrap().to_string();
        assert_eq!(parse_offset_file_name(&name, "my-topic", 12), Some((5, 90)));
        assert_eq!(parse_offset_file_name(&name, "my-topic", 1), None);
        assert_eq!(parse_offset_file_name(&name, "my", 12), None);
        assert_eq!(
            parse_offset_file_name("my-topic-12-5-x.json", "my-topic", 12),
            None
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(matches!(
            PathTemplate::parse("{sgnal}/x"),
            Err(TemplateError::Unknown(n)) if n == "sgnal"
        ));
        assert!(matches!(
            PathTemplate::parse("{signal/x"),
            Err(TemplateError::Unbalanced(0))
        ));
        assert!(matches!(
            PathTemplate::parse("a}"),
            Err(TemplateError::Unbalanced(1))
        ));
        assert!(matches!(
            PathTemplate::parse("/abs/{signal}"),
            Err(TemplateError::EscapesRoot)
        ));
        assert!(matches!(
            PathTemplate::parse("a/../{signal}"),
            Err(TemplateError::EscapesRoot)
        ));
        assert!(matches!(
            PathTemplate::parse(" "),
            Err(TemplateError::Empty)
        ));
    }
}
