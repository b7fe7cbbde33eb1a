//! Pipeline files: what a user writes (`PipelineFile`, deserialized strictly) and what the
//! pipeline runs (`ValidatedPipeline`, every field checked, secrets resolved).

mod azure_auth;
mod destination;
mod encoding;
pub mod event_hubs;
mod file;
mod secret;
mod table;
mod validate;

mod schedule;
pub use destination::{AzureAuth, AzureDestination, Destination, S3Destination};
pub use encoding::Encoding;
pub use file::PipelineFile;
pub use schedule::Schedule;
pub use secret::Secret;
pub use table::{CompactionSchedule, TablePartitioning, TableSettings};
pub use validate::{
    prefetch_kbytes, ConfigError, ConfigErrors, EventTimeFormat, FlushPolicy, LateData,
    MarkerSettings, PlausibleTimes, SignalFilter, SignalSource, SinkSettings, SourceSettings,
    TimeKey, ValidatedPipeline, WindowSettings,
};

/// Reads and validates a pipeline file; `env` resolves secrets (normally `std::env::var`).
pub fn load(
    path: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ValidatedPipeline, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(
            "(file)",
            format!("cannot read {}: {e}", path.display()),
            "pass the path of an existing pipeline file",
        )
    })?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    parse_in(&text, env, base)
}

/// Parses and validates pipeline TOML text.
pub fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ValidatedPipeline, ConfigErrors> {
    parse_in(text, env, std::path::Path::new("."))
}

/// Parses and validates pipeline TOML text whose relative file names start at `base`.
pub fn parse_in(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: &std::path::Path,
) -> Result<ValidatedPipeline, ConfigErrors> {
    let file: PipelineFile = toml::from_str(text).map_err(|e| {
        let field = e
            .span()
            .map(|s| format!("(line {})", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_else(|| "(file)".into());
        ConfigErrors::one(
            &field,
            e.message().to_string(),
            "correct the TOML; pipelines/README.md lists every field",
        )
    })?;
    file.validate_in(env, base)
}

/// The secret resolver `sluice` uses: the process environment, with files for secrets.
pub fn process_env(name: &str) -> Option<String> {
    env_or_file(name, &|n| std::env::var(n).ok(), &|path| {
        std::fs::read_to_string(path)
    })
}

/// `name`'s value, or else the content of the file that `<name>_FILE` names, without its
/// trailing newline: Docker and Kubernetes mount secrets as files (the convention of Docker's
/// official images). A named file that cannot be read is reported and counts as unset.
pub fn env_or_file(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&str) -> std::io::Result<String>,
) -> Option<String> {
    if let Some(v) = env(name) {
        return Some(v);
    }
    let path = env(&format!("{name}_FILE"))?;
    match read(&path) {
        Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => {
            eprintln!("{name}_FILE names {path}, which cannot be read: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_come_from_the_environment_or_a_named_file() {
        let env = |n: &str| match n {
            "KEY" => Some("from-env".to_string()),
            "SECRET_FILE" => Some("/run/secrets/secret".to_string()),
            "GONE_FILE" => Some("/nowhere".to_string()),
            _ => None,
        };
        let read = |p: &str| match p {
            "/run/secrets/secret" => Ok("s3cr3t\n".to_string()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        let get = |n: &str| super::env_or_file(n, &env, &read);
        assert_eq!(get("KEY").as_deref(), Some("from-env"));
        assert_eq!(get("SECRET").as_deref(), Some("s3cr3t"));
        assert_eq!(get("GONE"), None);
        assert_eq!(get("UNSET"), None);
    }
}
