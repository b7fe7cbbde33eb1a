//! PGP encryption of exported files to a user's public key: files land as `.gpg`, and
//! Debian's `gpg` with the matching secret key decrypts them to the exact export.

use std::time::Duration;

use sluice_e2e::{gpg_decrypt, gpg_recipient, mock_hourly_head};
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::{assert_every_sample_hourly_once, files_under, parse_ndjson};
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::MockKafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_files_decrypt_with_gpg_to_the_export() {
    sluice_telemetry::init_logging(false, "warn");
    let work = tempfile::tempdir().unwrap();
    let (home, _) = gpg_recipient(work.path());

    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(2_000, 2, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let lake = work.path().join("lake");
    let text = mock_hourly_head("pgp", &kafka.bootstrap, "signals", "pgp")
        + &format!(
            r#"[sink]
url = "{}"
compression = "gzip"
[sink.pgp]
public_key_file = "recipient.asc"
"#,
            lake.display()
        );
    let p = sluice_config::parse_in(&text, &|_| None, work.path()).unwrap();
    assert_eq!(p.sink.encoding.options.extension(), "json.gz.gpg");
    let n = samples.len() as u64;
    sluice_pipeline::run_until(&p, Metrics::new("pgp"), Duration::from_secs(90), |m| {
        m.records_consumed.get() >= n
    })
    .await
    .unwrap();

    let encrypted = files_under(&lake, ".json.gz.gpg");
    assert!(!encrypted.is_empty());
    let mut files = Vec::new();
    for f in &encrypted {
        let raw = std::fs::read(f).unwrap();
        assert!(
            !raw.starts_with(&[0x1f, 0x8b]),
            "{} is not encrypted",
            f.display()
        );
        let plain = gpg_decrypt(&home, f);
        let rel = f.strip_prefix(&lake).unwrap().to_string_lossy().to_string();
        files.push((rel, parse_ndjson(&plain, true)));
    }
    let exported = assert_every_sample_hourly_once(&samples, &files);
    assert_eq!(exported, n);
}

/// Encryption happens while each writer writes (through a bounded pipe to the encryptor), for
/// every format: what gpg decrypts is exactly the unencrypted encoding, also for a file many
/// times larger than the pipe.
#[test]
fn every_format_decrypts_to_its_unencrypted_encoding() {
    use sluice_format::{encode, EncodeOptions, FileFormat};
    let work = tempfile::tempdir().unwrap();
    let (home, key) = gpg_recipient(work.path());
    let recipient =
        sluice_format::pgp::PgpRecipient::from_armored(&std::fs::read_to_string(key).unwrap())
            .unwrap();
    let mut lines = Vec::new();
    for s in generate(&SampleSpec::new(30_000, 1, 2)) {
        lines.extend_from_slice(s.record.payload.as_deref().unwrap());
        lines.push(b'\n');
    }
    assert!(
        lines.len() > 4 << 20,
        "larger than the pipe many times over"
    );
    for format in [
        FileFormat::Ndjson,
        FileFormat::Csv,
        FileFormat::Avro,
        FileFormat::Parquet,
    ] {
        for &codec in format.codecs() {
            let plain_opts = EncodeOptions::new(format, codec);
            let mut opts = plain_opts.clone();
            opts.pgp = Some(recipient.clone());
            let plain = encode(&lines, &plain_opts).unwrap();
            let encrypted = encode(&lines, &opts).unwrap();
            assert_eq!(encrypted.rows, plain.rows);
            let file = work.path().join("file.gpg");
            std::fs::write(&file, &encrypted.bytes).unwrap();
            assert!(
                gpg_decrypt(&home, &file) == plain.bytes,
                "{format:?} {codec:?}: decrypted bytes differ"
            );
        }
    }
}

/// Files are encrypted to the subkey the key's owner meant for it: not a subkey flagged for
/// signing only (though its algorithm could encrypt), not one that expired; a key without
/// such a subkey is refused at start.
#[test]
fn files_go_to_the_valid_encryption_subkey_only() {
    use sluice_e2e::gpg;
    use sluice_format::pgp::PgpRecipient;
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let run = |args: &[&str]| {
        let out = gpg(&home).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let uid = "Subkeys <subkeys@example.com>";
    // Made in 2020, so that a subkey made then can have expired since.
    let in_2020 = ["--faked-system-time", "20200101T000000"];
    run(&[
        &in_2020[..],
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ],
    ]
    .concat());
    let listing = String::from_utf8(run(&["--with-colons", "--list-keys", uid])).unwrap();
    let fpr = listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .map(|l| l.trim_matches(':').to_string())
        .unwrap();
    // An RSA subkey for signing only, and an encryption subkey that expired in 2020.
    run(&[
        "--passphrase",
        "",
        "--quick-add-key",
        &fpr,
        "rsa2048",
        "sign",
        "never",
    ]);
    run(&[
        &in_2020[..],
        &[
            "--passphrase",
            "",
            "--quick-add-key",
            &fpr,
            "cv25519",
            "encr",
            "1d",
        ],
    ]
    .concat());
    let export = || String::from_utf8(run(&["--armor", "--export", &fpr])).unwrap();
    let e = PgpRecipient::from_armored(&export()).expect_err("no usable encryption subkey");
    assert!(e.contains("encryption subkey"), "{e}");

    run(&[
        "--passphrase",
        "",
        "--quick-add-key",
        &fpr,
        "cv25519",
        "encr",
        "never",
    ]);
    let recipient = PgpRecipient::from_armored(&export()).unwrap();
    let mut opts = sluice_format::EncodeOptions::new(
        sluice_format::FileFormat::Ndjson,
        sluice_format::Codec::None,
    );
    opts.pgp = Some(recipient);
    let file = work.path().join("f.json.gpg");
    std::fs::write(
        &file,
        sluice_format::encode(b"{\"a\":1}\n", &opts).unwrap().bytes,
    )
    .unwrap();
    assert_eq!(gpg_decrypt(&home, &file), b"{\"a\":1}\n");
    // Addressed to the newest (valid) encryption subkey alone.
    let keys = String::from_utf8(run(&["--with-colons", "--list-keys", &fpr])).unwrap();
    let valid_sub = keys
        .lines()
        .filter(|l| l.starts_with("sub:u:") && l.contains(":e:"))
        .filter_map(|l| l.split(':').nth(4))
        .next()
        .expect("a valid encryption subkey");
    let packets = String::from_utf8(run(&["--list-packets", file.to_str().unwrap()])).unwrap();
    let addressed: Vec<_> = packets
        .lines()
        .filter(|l| l.contains("pubkey enc packet"))
        .collect();
    assert_eq!(addressed.len(), 1, "{packets}");
    assert!(addressed[0].contains(valid_sub), "{packets}");
}
