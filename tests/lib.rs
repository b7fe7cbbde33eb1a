//! Helpers shared by the end-to-end tests: pipeline files for Tansu, the `sluice` binary,
//! and waiting on a consumer group's committed offsets.

pub mod chaos;
pub mod sasl_gateway;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Settings every pipeline against Tansu uses. Tansu holds each fetch for the full
/// `fetch.wait.max.ms` even when data is ready (see shared FACTS), so keep it short.
pub const TANSU_PROPERTIES: &str = r#"properties = { "fetch.wait.max.ms" = "10" }"#;

/// The `sluice` binary built next to this test (or chaos binary).
pub fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps, binaries such as sluice-chaos from target/<profile>.
    let mut dir = exe.parent().expect("executable dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let bin = dir.join("sluice");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p sluice` (scripts/test does)",
        bin.display()
    );
    bin
}

/// The end offset of each partition of a fresh topic after producing `records` to it.
///
/// Tests count these rather than ask the broker: Tansu 0.6 answers ListOffsets(latest) with
/// the base offset of the last batch, below the true end (seen here: 3763 for 4975 records).
pub fn end_offsets(records: &[sluice_testkit::Outgoing]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for r in records {
        *ends.entry(r.partition).or_default() += 1;
    }
    ends
}

/// Whether the group's committed offsets are exactly `ends`.
pub fn fully_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> bool {
    committed(bootstrap, group, topic)
        == ends
            .iter()
            .map(|(p, e)| (*p, Some(*e)))
            .collect::<BTreeMap<_, _>>()
}

/// Committed offset of every partition of `topic` for `group`.
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, Option<i64>> {
    sluice_kafka::group_progress(bootstrap, group, topic, Duration::from_secs(10))
        .expect("group progress")
        .into_iter()
        .map(|(p, (c, _))| (p, c))
        .collect()
}

/// Polls `cond` every 200 ms for up to `timeout`; panics with `what` when it never holds.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The number after `name` on the command line (`--records 1000`), or `default`.
pub fn number_arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// The head of a pipeline file for librdkafka's mock cluster: `[source]` (short sessions, as
/// the mock cluster makes a rejoining group wait out the old member's) and hourly event-time
/// windows on the `timestamp` field. The caller appends `[sink]`.
pub fn mock_hourly_head(name: &str, bootstrap: &str, topic: &str, group: &str) -> String {
    format!(
        r#"
name = "{name}"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
"#
    )
}

/// A pipeline file reading `topic` on Tansu as `group`: signals by the samples' `signal`
/// field, hourly windows on their `timestamp`, files under `lake`. `extra` follows `url` in
/// `[sink]` as it is (more sink options, then e.g. a `[flush]` table).
pub fn hourly_tansu_pipeline(
    bootstrap: &str,
    topic: &str,
    group: &str,
    lake: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        r#"
name = "{group}"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
{TANSU_PROPERTIES}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "{}"
{extra}
"#,
        lake.display()
    )
}

/// Debian's `gpg` with its own home, quiet and non-interactive.
pub fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--quiet"]);
    c
}

/// A fresh gpg home with one key pair; returns the home and the armored public key's path.
pub fn gpg_recipient(work: &Path) -> (PathBuf, PathBuf) {
    let home = work.join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let made = gpg(&home)
        .args([
            "--passphrase",
            "",
            "--quick-gen-key",
            "Sluice Test <export@example.com>",
            "default",
            "default",
            "never",
        ])
        .status()
        .expect("Debian's gpg (apt-get install gnupg)");
    assert!(made.success());
    let key = gpg(&home)
        .args(["--armor", "--export", "export@example.com"])
        .output()
        .unwrap();
    assert!(key.status.success());
    let path = work.join("recipient.asc");
    std::fs::write(&path, &key.stdout).unwrap();
    (home, path)
}

pub fn gpg_decrypt(home: &Path, file: &Path) -> Vec<u8> {
    let out = gpg(home).arg("--decrypt").arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Stops a worker as an orchestrator does (SIGTERM) and checks that it exited cleanly.
pub fn sigterm_and_wait(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "worker exited with {exit} after SIGTERM");
}
