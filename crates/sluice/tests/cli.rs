//! The `sluice` command as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Each broken file, the field its message must name, and a word of the fix.
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "unknown_field.toml",
        "(line 12)",
        "unknown field `granularty`",
    ),
    (
        "bad_granularity.toml",
        "window.granularity",
        "\"minute\", \"hour\" or \"day\"",
    ),
    (
        "missing_event_time_field.toml",
        "window.event_time_field",
        "time = \"ingestion\"",
    ),
    ("overwriting_path.toml", "sink.path", "{first_offset}"),
    ("unsupported_url.toml", "sink.url", "abfss://"),
    (
        "missing_account_key.toml",
        "sink.azure.account_key_env",
        "export SLUICE_TEST_UNSET_KEY=",
    ),
    ("no_topics.toml", "source.topics", "name at least one topic"),
    (
        "empty_signal_list.toml",
        "route.signals",
        "remove the field to export all",
    ),
    (
        "unknown_placeholder.toml",
        "sink.path",
        "unknown placeholder {yyyy}",
    ),
    (
        "compression_not_for_format.toml",
        "sink.compression",
        "\"none\", \"gzip\", \"zstd\"",
    ),
    (
        "envelope_not_avro.toml",
        "sink.envelope",
        "format = \"avro\"",
    ),
];

#[test]
fn validate_names_the_field_and_the_fix_for_each_broken_file() {
    let mut messages = Vec::new();
    for (file, field, fix) in BROKEN {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/broken")
            .join(file);
        let out = sluice()
            .arg("validate")
            .arg(&path)
            .env_remove("SLUICE_TEST_UNSET_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{file} should have exactly one problem: {stderr}"
        );
        assert!(
            stderr.contains(&format!(": {field}: ")),
            "{file}: no field {field} in: {stderr}"
        );
        assert!(stderr.contains(fix), "{file}: no '{fix}' in: {stderr}");
        assert!(stderr.contains("Fix: "), "{file}: {stderr}");
        let message = stderr.split_once(": ").unwrap().1.to_string();
        assert!(
            !messages.contains(&message),
            "{file} repeats a message: {message}"
        );
        messages.push(message);
    }
}

/// Every pipeline file under `pipelines/`, sorted.
fn shipped_pipelines() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn validate_accepts_the_shipped_pipelines() {
    let files = shipped_pipelines();
    assert!(files.len() >= 2, "{files:?}");
    let out = sluice()
        .arg("validate")
        .args(&files)
        .env("AZURE_STORAGE_KEY", "c2hhcmVkIGtleQ==")
        .env("AZURE_CLIENT_SECRET", "client secret")
        .env(
            "IOTHUB_EVENTHUB_CONNECTION_STRING",
            "Endpoint=sb://ihsuprod.servicebus.windows.net/;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5;EntityPath=myhub",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(": ok").count(),
        files.len()
    );
}

/// In CI without the secrets, `--no-env` checks every shipped pipeline, naming the variables
/// it did not read, and still names every other mistake.
#[test]
fn validate_without_the_environment_checks_all_but_the_secrets() {
    let files = shipped_pipelines();
    let out = sluice()
        .arg("validate")
        .arg("--no-env")
        .args(&files)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": ok").count(), files.len(), "{stdout}");
    assert!(
        stdout.contains("secrets not checked: AZURE_STORAGE_KEY"),
        "{stdout}"
    );
    // Without --no-env the same files fail for their unset secrets.
    let strict = sluice()
        .arg("validate")
        .args(&files)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(2));

    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    for (file, field, _) in BROKEN {
        let out = sluice()
            .arg("validate")
            .arg("--no-env")
            .arg(broken.join(file))
            .env_clear()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if *file == "missing_account_key.toml" {
            assert!(
                out.status.success(),
                "{file}: only its secret is missing: {stderr}"
            );
        } else {
            assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
            assert!(stderr.contains(&format!(": {field}: ")), "{file}: {stderr}");
        }
    }
}

#[test]
fn demo_lands_readable_files_and_commits_everything() {
    let lake = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["demo", "--records", "5000", "--lake"])
        .arg(lake.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5000 consumed, 5000 landed"), "{stdout}");
    assert!(
        stdout.contains("offsets committed to the end of every partition: yes"),
        "{stdout}"
    );
    let files = sluice_testkit::lake_files::read_ndjson_tree(lake.path());
    let lines: usize = files.iter().map(|(_, l)| l.len()).sum();
    assert_eq!(lines, 5000);
    assert!(files.iter().all(|(p, l)| l
        .iter()
        .all(|r| p.starts_with(r["signal"].as_str().unwrap()))));
}

#[test]
fn inspect_describes_every_format() {
    use sluice_format::{encode, Codec, EncodeOptions, FileFormat};
    let dir = tempfile::tempdir().unwrap();
    let lines = b"{\"id\":\"d1\",\"t\":\"2026-11-22T10:00:00Z\",\"v\":1.5}\n{\"id\":\"d2\",\"t\":\"2026-11-22T10:00:01Z\",\"v\":2}\n";
    for (format, codec, schema_word) in [
        (FileFormat::Parquet, Codec::Zstd, "Timestamp(µs, \"UTC\")"),
        (FileFormat::Avro, Codec::Deflate, "timestamp-micros"),
        (FileFormat::Csv, Codec::Gzip, "id: Utf8"),
        (FileFormat::Ndjson, Codec::Zstd, "v: Float64"),
    ] {
        let opts = EncodeOptions::new(format, codec);
        let path = dir.path().join(format!("f.{}", opts.extension()));
        std::fs::write(&path, encode(lines, &opts).unwrap().bytes).unwrap();
        let out = sluice().arg("inspect").arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{format:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("format:      {}", format.name())),
            "{stdout}"
        );
        assert!(stdout.contains("rows:        2"), "{stdout}");
        assert!(
            stdout.contains("d2"),
            "{format:?}: first rows missing: {stdout}"
        );
        assert!(
            stdout.contains(schema_word),
            "{format:?}: schema missing {schema_word}: {stdout}"
        );
    }
    let out = sluice()
        .arg("inspect")
        .arg(dir.path().join("absent.parquet"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
