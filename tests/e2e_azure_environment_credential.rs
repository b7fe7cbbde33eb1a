//! `credential = "environment"`: Azure's own credential chain finds the identity the platform
//! put in the environment. Two of its ways run end to end, each in a `sluice run` process
//! given only that environment: workload identity (AKS: a federated token file exchanged at
//! Entra ID) and a managed identity (the instance metadata service). Entra ID and IMDS are the
//! local stand-in `tests/entra/token_server.py`; the lake is Azurite over HTTPS, which accepts
//! the bearer tokens.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_e2e::{mock_hourly_head, sigterm_and_wait, sluice_bin};
use sluice_lake::Lake;
use sluice_testkit::lake_files::parse_ndjson;
use sluice_testkit::sample::{generate, outgoing, SampleSpec};
use sluice_testkit::services::{
    free_port, Azurite, EntraTokenServer, MockKafka, AZURITE_ACCOUNT, AZURITE_KEY,
};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5b1e7f0c-2d3a-4c55-9e61-0f7a8b9c1d2e";
/// What the workload's federated token file holds (on AKS, a projected service account token).
const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig";
/// Variables of the chain that must not leak in from the machine running the test.
const AZURE_VARIABLES: &[&str] = &[
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_IMDS_ENDPOINT",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_BEARER_TOKEN",
    "AZBLOB_ENDPOINT",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_and_managed_identities_land_every_record() {
    let azurite = Azurite::start_with_oauth();
    // The workers and this test trust Azurite's test CA besides the system's (rustls reads
    // SSL_CERT_FILE); set before any HTTP client of this process exists.
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("ca-bundle.pem");
    let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let own = std::fs::read(&azurite.ca_file).unwrap();
    std::fs::write(&bundle, [system, own].concat()).unwrap();
    std::env::set_var("SSL_CERT_FILE", &bundle);
    let token_file = work.path().join("azure-identity-token");
    std::fs::write(&token_file, FEDERATED_TOKEN).unwrap();

    let entra = EntraTokenServer::start(TENANT, CLIENT, FEDERATED_TOKEN);
    let kafka = MockKafka::start(1);
    kafka.create_topic("signals", 2);
    let samples = generate(&SampleSpec::new(1_200, 2, 2));
    sluice_testkit::produce(&kafka.bootstrap, "signals", &outgoing(&samples)).unwrap();
    let n = samples.len();

    let identities: [(&str, Vec<(&str, String)>); 2] = [
        (
            "workload",
            vec![
                ("AZURE_TENANT_ID", TENANT.to_string()),
                ("AZURE_CLIENT_ID", CLIENT.to_string()),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    token_file.display().to_string(),
                ),
                ("AZURE_AUTHORITY_HOST", entra.authority_host.clone()),
            ],
        ),
        (
            "managed",
            vec![
                ("AZURE_CLIENT_ID", CLIENT.to_string()),
                (
                    "AZURE_IMDS_ENDPOINT",
                    format!("{}/metadata/identity/oauth2/token", entra.authority_host),
                ),
            ],
        ),
    ];
    // Without any identity in the environment the worker stops at start and says what to set.
    let lone = work.path().join("none.toml");
    std::fs::write(
        &lone,
        mock_hourly_head("none", &kafka.bootstrap, "signals", "none")
            + &format!(
                "[sink]\nurl = \"abfss://none@{AZURITE_ACCOUNT}.dfs.core.windows.net/x/\"\n[sink.azure]\ncredential = \"environment\"\nendpoint = \"{}\"\n",
                azurite.endpoint
            ),
    )
    .unwrap();
    let mut cmd = Command::new(sluice_bin());
    for var in AZURE_VARIABLES {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg(&lone)
        .env("SSL_CERT_FILE", &bundle)
        // No instance metadata service answers here either.
        .env(
            "AZURE_IMDS_ENDPOINT",
            format!("{}/no-such-service", entra.authority_host),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no Azure credential in the environment"),
        "{stderr}"
    );

    for (identity, env) in identities {
        let container = format!("{identity}-identity");
        let sink = |auth: &str| {
            mock_hourly_head(identity, &kafka.bootstrap, "signals", identity)
                + &format!(
                    "[sink]\nurl = \"abfss://{container}@{AZURITE_ACCOUNT}.dfs.core.windows.net/exports/\"\n[sink.azure]\n{auth}\nendpoint = \"{}\"\n[flush]\nmax_age_secs = 1\n",
                    azurite.endpoint
                )
        };
        let pipeline = work.path().join(format!("{identity}.toml"));
        std::fs::write(&pipeline, sink("credential = \"environment\"")).unwrap();
        let log = std::fs::File::create(work.path().join(format!("{identity}.log"))).unwrap();
        let mut cmd = Command::new(sluice_bin());
        for var in AZURE_VARIABLES {
            cmd.env_remove(var);
        }
        let mut worker = cmd
            .args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg(&pipeline)
            .envs(env)
            .env("SSL_CERT_FILE", &bundle)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();

        // Read back with the account's shared key, which Azurite also accepts.
        let reader = sluice_config::parse(&sink("account_key_env = \"KEY\""), &|k: &str| {
            (k == "KEY").then(|| AZURITE_KEY.to_string())
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let landed = loop {
            let landed = match Lake::open(&reader.sink.destination).await {
                Ok(lake) => {
                    let mut lines = 0;
                    for f in lake.list("").await.unwrap_or_default() {
                        let raw = lake.read(&f.path).await.unwrap();
                        lines += parse_ndjson(&raw, false).len();
                    }
                    lines
                }
                Err(_) => 0,
            };
            if landed >= n || Instant::now() > deadline {
                break landed;
            }
            if let Ok(Some(status)) = worker.try_wait() {
                panic!("the {identity} worker exited early with {status}; see its log");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let log = std::fs::read_to_string(work.path().join(format!("{identity}.log"))).unwrap();
        assert_eq!(
            landed, n,
            "{identity} identity: records landed; log:\n{log}"
        );
        sigterm_and_wait(worker);
    }
}
