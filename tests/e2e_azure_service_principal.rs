//! Azure auth with a service principal (tenant id, client id, client secret — the fields of
//! the dataset-export page): the worker gets a bearer token from the Entra ID token endpoint,
//! creates the file system and lands every record in Azurite, which accepts only bearer tokens
//! and shared keys here (`--oauth basic`, over HTTPS). The token endpoint is a local stand-in
//! (`tests/entra/token_server.py`): no Azure tenant is reachable from CI.

use std::time::Duration;

use sluice_config::{AzureAuth, Destination};
use sluice_e2e::mock_hourly_head;
use sluice_lake::Lake;
use sluice_telemetry::Metrics;
use sluice_testkit::lake_files::parse_ndjson;
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{Azurite, EntraTokenServer, MockKafka, AZURITE_ACCOUNT};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c6a3a4e-8f43-4b8e-a3a5-5f2e1d6c7b90";
const SECRET: &str = "Qx18Q~not-a-real-secret~x7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_principal_creates_the_file_system_and_lands_every_record() {
    sluice_telemetry::init_logging(false, "warn");
    let azurite = Azurite::start_with_oauth();
    // Trust Azurite's self-signed certificate besides the system's (rustls reads
    // SSL_CERT_FILE); set before any HTTP client of this process exists.
    let bundle = tempfile::NamedTempFile::new().unwrap();
    let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let own = std::fs::read(&azurite.ca_file).unwrap();
    std::fs::write(bundle.path(), [system, own].concat()).unwrap();
    std::env::set_var("SSL_CERT_FILE", bundle.path());

    let entra = EntraTokenServer::start(TENANT, CLIENT, SECRET);
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(1_500, 2, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let text = mock_hourly_head("principal", &kafka.bootstrap, "signals", "principal")
        + &format!(
            r#"[sink]
url = "abfss://audiences@{AZURITE_ACCOUNT}.dfs.core.windows.net/exports/"
[sink.azure]
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret_env = "E2E_CLIENT_SECRET"
authority_host = "{}"
endpoint = "{}"
"#,
            entra.authority_host, azurite.endpoint
        );
    let env = |n: &str| (n == "E2E_CLIENT_SECRET").then(|| SECRET.to_string());
    let p = sluice_config::parse(&text, &env).unwrap();
    let Destination::Azure(az) = &p.sink.destination else {
        panic!()
    };
    assert!(matches!(az.auth, AzureAuth::ServicePrincipal { .. }));
    assert!(
        !format!("{p:?}").contains(SECRET),
        "the secret leaks into Debug"
    );
    let n = samples.len() as u64;
    let summary = sluice_pipeline::run_until(
        &p,
        Metrics::new("principal"),
        Duration::from_secs(90),
        |m| m.records_consumed.get() >= n,
    )
    .await
    .unwrap();
    assert_eq!(summary.records_landed, n);

    // Read back through the same service principal: the files are really there.
    let lake = Lake::open(&p.sink.destination).await.unwrap();
    let mut landed = 0;
    for f in lake.list("").await.unwrap() {
        landed += parse_ndjson(&lake.read(&f.path).await.unwrap(), false).len() as u64;
    }
    assert_eq!(landed, n);

    // A wrong secret is refused at start: Entra ID answers 401, and the error names the
    // file system.
    let bad = sluice_config::parse(&text, &|n: &str| {
        (n == "E2E_CLIENT_SECRET").then(|| "wrong".to_string())
    })
    .unwrap();
    let err = Lake::open(&bad.sink.destination)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("audiences"), "{err}");
    println!("wrong secret: {err}");
}
