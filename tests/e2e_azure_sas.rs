//! Azure auth with a SAS token instead of the shared key: an account SAS (signed here the
//! way the portal and `az storage account generate-sas` sign it) is enough to create the file
//! system and land every record in Azurite.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sluice_config::{AzureAuth, Destination};
use sluice_e2e::mock_hourly_head;
use sluice_lake::Lake;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::parse_ndjson;
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{Azurite, MockKafka, AZURITE_ACCOUNT, AZURITE_KEY};

/// An account SAS for the Blob service: read, write, delete, list, add, create on service,
/// container and object level, valid until 2099.
fn account_sas(account: &str, key_b64: &str) -> String {
    let (sp, ss, srt, se, spr, sv) = (
        "rwdlac",
        "b",
        "sco",
        "2099-01-01T00:00:00Z",
        "https,http",
        "2020-02-10",
    );
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{sv}\n");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    format!("sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={se}&spr={spr}&sig={sig}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_token_creates_the_file_system_and_lands_every_record() {
    sluice_telemetry::init_logging(false, "warn");
    let azurite = Azurite::start();
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(1_500, 2, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let sas = account_sas(AZURITE_ACCOUNT, AZURITE_KEY);
    let text = mock_hourly_head("sas", &kafka.bootstrap, "signals", "sas")
        + &format!(
            r#"[sink]
url = "abfss://sasfs@{AZURITE_ACCOUNT}.dfs.core.windows.net/exports/"
[sink.azure]
sas_token_env = "E2E_SAS"
endpoint = "{}"
"#,
            azurite.endpoint
        );
    let env = |n: &str| (n == "E2E_SAS").then(|| format!("?{sas}"));
    let p = sluice_config::parse(&text, &env).unwrap();
    let Destination::Azure(az) = &p.sink.destination else {
        panic!()
    };
    assert!(matches!(az.auth, AzureAuth::Sas(_)));
    assert!(
        !format!("{p:?}").contains("sig="),
        "the token leaks into Debug"
    );
    let n = samples.len() as u64;
    let summary =
        sluice_pipeline::run_until(&p, Metrics::new("sas"), Duration::from_secs(90), |m| {
            m.records_consumed.get() >= n
        })
        .await
        .unwrap();
    assert_eq!(summary.records_landed, n);

    // Read back with the shared key: the files are really there.
    let mut with_key = az.clone();
    with_key.auth = AzureAuth::SharedKey(sluice_config::Secret::new(AZURITE_KEY));
    let lake = Lake::open(&Destination::Azure(with_key)).await.unwrap();
    let mut landed = 0;
    for f in lake.list("").await.unwrap() {
        landed += parse_ndjson(&lake.read(&f.path).await.unwrap(), false).len() as u64;
    }
    assert_eq!(landed, n);

    // A wrong signature is refused at start, naming the file system.
    let bad = sluice_config::parse(&text, &|n: &str| {
        (n == "E2E_SAS").then(|| sas.replace("sig=", "sig=AAAA"))
    })
    .unwrap();
    let err = Lake::open(&bad.sink.destination)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sasfs"), "{err}");
}
