//! Storage errors as they leave the lake layer: their text with every URL query string and
//! every known secret cut out, so no SAS signature, presigned-URL credential or key reaches a
//! log line, an error or a metric, whatever the transport put into the message.

use std::fmt;

use opendal::ErrorKind;

/// What replaces a secret.
const REDACTED: &str = "<redacted>";

/// An opendal error reduced to what the pipeline needs: its kind, whether trying again may
/// help, and its message, redacted. Holding no `source`, it cannot leak through an error chain.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: ErrorKind,
    temporary: bool,
    message: String,
}

impl StoreError {
    pub(crate) fn new(e: &opendal::Error, secrets: &[String]) -> Self {
        Self {
            kind: e.kind(),
            temporary: e.is_temporary(),
            message: redact(&e.to_string(), secrets),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_temporary(&self) -> bool {
        self.temporary
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// `text` with the query string of every URL in it replaced (SAS tokens and presigned S3
/// credentials travel there) and every occurrence of a known secret replaced.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')' | ','))
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        match url.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push('?');
                out.push_str(REDACTED);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

fn find_url(text: &str) -> Option<usize> {
    ["https://", "http://"]
        .iter()
        .filter_map(|scheme| text.find(scheme))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_and_known_secrets_are_cut() {
        let text = "send failed, context: { url: https://acct.blob.core.windows.net/c/x?sv=2022&sig=AbC%2Bdef, called: send } key=supersecretkey";
        let out = redact(text, &["supersecretkey".into()]);
        assert!(!out.contains("sig="), "{out}");
        assert!(!out.contains("AbC"), "{out}");
        assert!(!out.contains("supersecretkey"), "{out}");
        assert!(out.contains("https://acct.blob.core.windows.net/c/x?<redacted>"));
        assert!(out.ends_with("key=<redacted>"));
    }

    #[test]
    fn text_without_urls_is_unchanged() {
        assert_eq!(redact("plain (no url)", &[]), "plain (no url)");
        assert_eq!(
            redact("see http://h:1/p, then", &[]),
            "see http://h:1/p, then"
        );
    }
}
