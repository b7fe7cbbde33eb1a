//! Pipeline files: what a user writes (`PipelineFile`, deserialized strictly) and what the
//! pipeline runs (`ValidatedPipeline`, every field checked, secrets resolved).

mod destination;
mod file;
mod secret;
mod validate;

pub use destination::{AzureAuth, AzureDestination, Destination};
pub use file::PipelineFile;
pub use secret::Secret;
pub use validate::{
    Compression, ConfigError, ConfigErrors, EventTimeFormat, FlushPolicy, Format, LateData,
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
    parse(&text, env)
}

/// Parses and validates pipeline TOML text.
pub fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
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
    file.validate(env)
}

/// `std::env::var` as the secret resolver.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
