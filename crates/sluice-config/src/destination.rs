//! Where files land, parsed from the sink URL.

use crate::Secret;

#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// A directory on local disk.
    Fs { root: String },
    /// Azure Blob Storage or ADLS Gen2 (through its Blob endpoint, which every Gen2 account serves).
    Azure(AzureDestination),
    /// Amazon S3 or an S3-compatible store.
    S3(S3Destination),
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Destination {
    pub bucket: String,
    pub root: String,
    pub region: String,
    /// `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    /// `None`: the standard AWS credential chain (environment, profile, instance role).
    pub credentials: Option<(String, Secret)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AzureDestination {
    pub account: String,
    /// The container, called "file system" in ADLS Gen2.
    pub container: String,
    /// Directory inside the container; no leading or trailing slash.
    pub root: String,
    /// Blob service endpoint, e.g. `https://acct.blob.core.windows.net`.
    pub endpoint: String,
    pub auth: AzureAuth,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AzureAuth {
    SharedKey(Secret),
    /// A shared access signature (the query string, without a leading `?`).
    Sas(Secret),
    /// A Microsoft Entra ID service principal (app registration) with a client secret.
    ServicePrincipal {
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
        /// `None`: https://login.microsoftonline.com (set it for sovereign clouds).
        authority_host: Option<String>,
    },
    /// Azure's standard credential chain from the environment: `AZURE_TENANT_ID` /
    /// `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET`, workload identity
    /// (`AZURE_FEDERATED_TOKEN_FILE`), then the managed identity of the VM, App Service or pod.
    Environment,
}

/// The parts of an Azure URL before auth and endpoint overrides are applied.
#[derive(Debug, PartialEq)]
pub(crate) struct AzureUrl {
    pub account: String,
    pub container: String,
    pub root: String,
}

pub(crate) enum ParsedUrl {
    Fs(String),
    Azure(AzureUrl),
    /// Bucket and prefix.
    S3(String, String),
}

/// Accepts `file:///dir`, a plain path, `abfss://fs@acct.dfs.core.windows.net/dir`,
/// `wasbs://container@acct.blob.core.windows.net/dir`, and
/// `https://acct.{dfs,blob}.core.windows.net/container/dir`.
pub(crate) fn parse_url(raw: &str) -> Result<ParsedUrl, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is empty".into());
    }
    if let Some(path) = raw.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err("a file:// URL needs an absolute path (file:///data/lake)".into());
        }
        return Ok(ParsedUrl::Fs(path.to_string()));
    }
    if !raw.contains("://") {
        return Ok(ParsedUrl::Fs(raw.to_string()));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let account_of = |host: &str| -> Result<String, String> {
        host.split('.')
            .next()
            .filter(|a| !a.is_empty() && host.contains(".core.windows.net"))
            .map(str::to_string)
            .ok_or_else(|| format!("host '{host}' is not <account>.dfs.core.windows.net or <account>.blob.core.windows.net"))
    };
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    match url.scheme() {
        "s3" | "s3a" => {
            if host.is_empty() {
                return Err("needs a bucket: s3://<bucket>/<prefix>".into());
            }
            Ok(ParsedUrl::S3(host, segments.join("/")))
        }
        "abfs" | "abfss" | "wasb" | "wasbs" => {
            let container = url.username();
            if container.is_empty() {
                return Err("needs the file system before '@': abfss://<filesystem>@<account>.dfs.core.windows.net/<dir>".into());
            }
            Ok(ParsedUrl::Azure(AzureUrl {
                account: account_of(&host)?,
                container: container.to_string(),
                root: segments.join("/"),
            }))
        }
        "https" | "http" => {
            let Some((container, dir)) = segments.split_first() else {
                return Err("needs at least the file system: https://<account>.dfs.core.windows.net/<filesystem>/<dir>/".into());
            };
            Ok(ParsedUrl::Azure(AzureUrl {
                account: account_of(&host)?,
                container: (*container).to_string(),
                root: dir.join("/"),
            }))
        }
        other => Err(format!(
            "scheme '{other}' is not supported (use a path, file://, abfss://, wasbs://, https:// or s3://)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure(raw: &str) -> AzureUrl {
        match parse_url(raw).unwrap() {
            ParsedUrl::Azure(a) => a,
            ParsedUrl::Fs(p) => panic!("parsed as fs: {p}"),
            ParsedUrl::S3(b, _) => panic!("parsed as s3: {b}"),
        }
    }

    #[test]
    fn parses_the_adls_forms() {
        let want = AzureUrl {
            account: "acct".into(),
            container: "myfs".into(),
            root: "dir1/dir2".into(),
        };
        assert_eq!(
            azure("https://acct.dfs.core.windows.net/myfs/dir1/dir2/"),
            want
        );
        assert_eq!(
            azure("abfss://myfs@acct.dfs.core.windows.net/dir1/dir2"),
            want
        );
        assert_eq!(
            azure("wasbs://myfs@acct.blob.core.windows.net/dir1/dir2/"),
            want
        );
        assert_eq!(azure("https://acct.dfs.core.windows.net/myfs").root, "");
    }

    #[test]
    fn parses_s3_urls() {
        assert!(
            matches!(parse_url("s3://bucket/a/b/"), Ok(ParsedUrl::S3(b, p)) if b == "bucket" && p == "a/b")
        );
        assert!(
            matches!(parse_url("s3://bucket"), Ok(ParsedUrl::S3(b, p)) if b == "bucket" && p.is_empty())
        );
    }

    #[test]
    fn parses_local_paths() {
        assert!(matches!(parse_url("file:///tmp/lake"), Ok(ParsedUrl::Fs(p)) if p == "/tmp/lake"));
        assert!(matches!(parse_url("./lake"), Ok(ParsedUrl::Fs(p)) if p == "./lake"));
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        assert!(parse_url("https://acct.dfs.core.windows.net/").is_err());
        assert!(parse_url("abfss://acct.dfs.core.windows.net/x").is_err());
        assert!(parse_url("https://example.com/x").is_err());
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("file://relative").is_err());
    }
}
