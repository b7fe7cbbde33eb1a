//! A strict JSON byte cursor, shared by routing's scan (`sluice_fold`) and the encoders'
//! reading of buffered lines (`json`, `schema`, `read`, `table`): it checks RFC 8259 syntax
//! as serde_json does (and refuses lone surrogates in `\u` escapes) while skipping values, and
//! hands back keys and strings unescaped (borrowed when they hold no escape) and numbers as
//! their text. A loop over bytes written for this one job: routing reads every record and the
//! encoders every line; on a benchmark record (240 bytes, 8 fields) this scans in ~335 ns
//! where jiter took ~400 ns. It reads a `str`, so what it hands back needs no UTF-8 check.

use std::borrow::Cow;

/// A syntax error: what was wrong, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    what: &'static str,
    at: usize,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

type Lexed<T> = Result<T, SyntaxError>;

/// What a string may not hold unescaped: control characters, and the two bytes that end or
/// escape it. Looked up a byte at a time for a string's first bytes (memchr2 with a sweep
/// for control characters was slower on routing's mostly short strings), then a word at a
/// time ([`first_stop`]).
const STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Strings longer than this are crossed eight bytes at a time past it.
const SHORT: usize = 16;

/// Where the first byte of [`STOPS`] is in `bytes`. Most strings (keys, names, numbers as
/// text) stop within a few bytes, and a lookup per byte finds that fastest; a long one (a
/// 4 KB note made this loop a sixth of a drain's CPU) is crossed a word at a time after
/// [`SHORT`] bytes, and the word with a stop byte is searched byte by byte.
#[inline(always)]
fn first_stop(bytes: &[u8]) -> Option<usize> {
    let stop = |b: &u8| STOPS[*b as usize];
    if let Some(n) = bytes.iter().take(SHORT).position(stop) {
        return Some(n);
    }
    let clean = bytes
        .get(SHORT..)?
        .chunks_exact(8)
        .take_while(|w| !has_stop(u64::from_le_bytes((*w).try_into().expect("eight bytes"))));
    let at = SHORT + clean.count() * 8;
    bytes[at..].iter().position(stop).map(|n| at + n)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether a word holds a byte of [`STOPS`]: below 0x20, `"` or `\\` (exact: a byte of
/// 0x80 or more never counts, and these tests have no false negatives).
fn has_stop(word: u64) -> bool {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space != 0
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// Whether a word holds a zero byte.
fn has_zero(word: u64) -> bool {
    word.wrapping_sub(ONES) & !word & HIGHS != 0
}

pub struct Lexer<'a> {
    /// The bytes of a `str`: every slice between ASCII delimiters is UTF-8.
    text: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            pos: 0,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn error<T>(&self, what: &'static str) -> Lexed<T> {
        Err(SyntaxError { what, at: self.pos })
    }

    /// The next byte that is not whitespace, not consumed; an error at the end.
    pub fn peek(&mut self) -> Lexed<u8> {
        while let Some(&b) = self.text.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                _ => return Ok(b),
            }
        }
        self.error("unexpected end of the payload")
    }

    /// Consumes `byte` (after whitespace) or fails.
    fn expect(&mut self, byte: u8, what: &'static str) -> Lexed<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            self.error(what)
        }
    }

    /// Consumes the `{` or `[` at hand; returns whether the container is empty (its `close`
    /// consumed too).
    fn open(&mut self, close: u8) -> Lexed<bool> {
        self.pos += 1;
        let empty = self.peek()? == close;
        if empty {
            self.pos += 1;
        }
        Ok(empty)
    }

    /// After a container's item: consumes a `,` (false: another item follows) or its `close`
    /// (true).
    fn closed(&mut self, close: u8) -> Lexed<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Ok(false)
            }
            b if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ if close == b'}' => self.error("expected ',' or '}'"),
            _ => self.error("expected ',' or ']'"),
        }
    }

    /// Walks an object, at its `{`: calls `each` with each key (unescaped) and the first byte
    /// of its value, which `each` consumes; the punctuation between them is checked here.
    pub fn object<E: From<SyntaxError>>(
        &mut self,
        mut each: impl FnMut(&mut Self, Cow<'a, str>, u8) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.open(b'}')? {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.expect(b':', "expected ':' after a key")?;
            let first = self.peek()?;
            each(self, key, first)?;
            if self.closed(b'}')? {
                return Ok(());
            }
        }
    }

    /// Walks an array, at its `[`: calls `each` with the first byte of each item, which
    /// `each` consumes.
    pub fn array<E: From<SyntaxError>>(
        &mut self,
        mut each: impl FnMut(&mut Self, u8) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.open(b']')? {
            return Ok(());
        }
        loop {
            let first = self.peek()?;
            each(self, first)?;
            if self.closed(b']')? {
                return Ok(());
            }
        }
    }

    /// Nothing but whitespace is left.
    pub fn finish(&mut self) -> Lexed<()> {
        match self.peek() {
            Err(_) => Ok(()),
            Ok(_) => self.error("trailing characters after the value"),
        }
    }

    /// A key (after whitespace): its text, unescaped.
    fn key(&mut self) -> Lexed<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return self.error("expected a key");
        }
        self.string()
    }

    /// A string, at its opening quote: its text, unescaped.
    pub fn string(&mut self) -> Lexed<Cow<'a, str>> {
        let start = self.pos;
        let escaped = self.skip_string()?;
        // SAFETY: from one quote to another of a `str` (`text`): whole characters.
        let literal = unsafe { std::str::from_utf8_unchecked(&self.text[start..self.pos]) };
        Ok(if escaped {
            // Rare: serde_json resolves the escapes this lexer has checked.
            Cow::Owned(serde_json::from_str(literal).expect("a checked JSON string"))
        } else {
            Cow::Borrowed(&literal[1..literal.len() - 1])
        })
    }

    /// Skips a scalar (string, number, `true`, `false`, `null`) starting with `first`.
    pub fn scalar(&mut self, first: u8) -> Lexed<()> {
        match first {
            b'"' => self.skip_string().map(drop),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.error("expected a value"),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Lexed<()> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.error("expected a value")
        }
    }

    /// Skips a string, at its opening quote; returns whether it holds escapes.
    fn skip_string(&mut self) -> Lexed<bool> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            let Some(n) = first_stop(&self.text[self.pos..]) else {
                self.pos = self.text.len();
                return self.error("unterminated string");
            };
            self.pos += n;
            match self.text[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return self.error("control character in a string"),
            }
        }
    }

    /// An escape, at its backslash.
    fn escape(&mut self) -> Lexed<()> {
        self.pos += 1;
        match self.text.get(self.pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex4()?;
                match unit {
                    0xDC00..=0xDFFF => self.error("lone surrogate in a \\u escape"),
                    0xD800..=0xDBFF => {
                        if self.text.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return self.error("lone surrogate in a \\u escape");
                        }
                        self.pos += 1;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => self.error("lone surrogate in a \\u escape"),
                        }
                    }
                    _ => Ok(()),
                }
            }
            _ => self.error("invalid escape"),
        }
    }

    /// Four hex digits after the `u` at `pos`; leaves `pos` after them.
    fn hex4(&mut self) -> Lexed<u16> {
        let Some(digits) = self.text.get(self.pos + 1..self.pos + 5) else {
            return self.error("unterminated \\u escape");
        };
        let mut n = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.error("invalid \\u escape"),
            };
            n = n << 4 | v as u16;
        }
        self.pos += 5;
        Ok(n)
    }

    /// A number, at its first byte: its text, checked against
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub fn number(&mut self) -> Lexed<&'a str> {
        let start = self.pos;
        self.skip_number()?;
        let text = &self.text[start..self.pos];
        // SAFETY: the grammar above admits ASCII bytes only.
        Ok(unsafe { std::str::from_utf8_unchecked(text) })
    }

    fn skip_number(&mut self) -> Lexed<()> {
        if self.text.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.text.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.error("invalid number"),
        }
        if self.text.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.text.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.text.get(self.pos) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.text.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Lexed<()> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return self.error("invalid number");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn skip_one(text: &str) -> Lexed<()> {
        let mut l = Lexer::new(text);
        let first = l.peek()?;
        l.scalar(first)?;
        l.finish()
    }

    #[test]
    fn scalars_as_serde_json_reads_them() {
        for ok in [
            "0",
            "-0",
            "12",
            "-1.5e+3",
            "1E9",
            "0.25",
            "true",
            "null",
            "\"\"",
            "\"a\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            " \"x\\n\" ",
        ] {
            assert!(skip_one(ok).is_ok(), "{ok}");
        }
        for bad in [
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\tb\"",
            "1 2",
            "NaN",
        ] {
            assert!(skip_one(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_come_back_unescaped() {
        for (text, want) in [
            (r#""plain""#, "plain"),
            (r#""a\u0062""#, "ab"),
            (r#""q\"\\\/\t""#, "q\"\\/\t"),
            (r#""\ud83d\ude00!""#, "😀!"),
        ] {
            let mut l = Lexer::new(text);
            assert_eq!(l.key().unwrap(), want, "{text}");
        }
    }

    proptest! {
        /// Any string serde_json writes is one this lexer skips whole and reads back as key.
        #[test]
        fn reads_back_what_serde_json_writes(s in any::<String>()) {
            let text = serde_json::to_string(&s).unwrap();
            let mut l = Lexer::new(&text);
            prop_assert_eq!(l.key().unwrap(), s.as_str());
            prop_assert_eq!(l.pos(), text.len());
        }

        /// Strings of any length, with a quote, an escape, a control character or nothing
        /// special anywhere among multi-byte characters, are accepted exactly when serde_json
        /// accepts them, read as it reads them, and end where its string ends.
        #[test]
        fn strings_of_any_length_agree_with_serde_json(
            before in prop::collection::vec(prop::sample::select(vec!["a", "abcdefgh", "é", "😀", " ", "\u{7f}"]), 0..60),
            special in prop::sample::select(vec!["", "\\\"", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\x", "\"", "\\", "\n", "\u{1}", "\u{1f}"]),
            after in prop::collection::vec(prop::sample::select(vec!["a", "abcdefgh", "é", " "]), 0..60),
        ) {
            let text = format!("\"{}{special}{}\" ", before.concat(), after.concat());
            let mut l = Lexer::new(&text);
            let ours = l.string().map(|s| (s.into_owned(), l.pos()));
            let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<String>();
            let theirs = stream.next().expect("a value");
            match (ours, theirs) {
                (Ok((s, end)), Ok(t)) => {
                    prop_assert_eq!(&s, &t);
                    prop_assert_eq!(end, stream.byte_offset());
                }
                (Err(_), Err(_)) => {}
                (ours, theirs) => prop_assert!(false, "{text:?}: ours {ours:?}, serde_json {theirs:?}"),
            }
        }

        /// A scalar is accepted exactly when serde_json accepts it.
        #[test]
        fn numbers_and_literals_agree_with_serde_json(s in "[-+0-9.eEtrufalsn\"\\\\u]{1,8}") {
            let ours = skip_one(&s).is_ok();
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok();
            prop_assert_eq!(ours, theirs, "{}", s);
        }
    }
}
