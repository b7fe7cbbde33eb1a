//! Pipeline files: what a user writes (`PipelineFile`, deserialized strictly) and what the
//! pipeline runs (`ValidatedPipeline`, every field checked, secrets resolved).

mod destination;
mod encoding;
pub mod event_hubs;
mod file;
mod secret;
mod validate;

mod schedule;
pub use destination::{AzureAuth, AzureDestination, Destination, S3Destination};
pub use encoding::Encoding;
pub use file::PipelineFile;
pub use schedule::Schedule;
pub use secret::Secret;
pub use validate::{
    ConfigError, ConfigErrors, EventTimeFormat, FlushPolicy, LateData, MarkerSettings,
    SignalFilter, SignalSource, SinkSettings, SourceSettings, TimeKey, ValidatedPipeline,
    WindowSettings,
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

/// `std::env::var` as the secret resolver.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
