//! No secret leaves the lake layer in an error: a SAS-signed Azure destination against a
//! store that refuses connections, and against one that answers 403 and echoes the request
//! (URL and headers, as a confused proxy might) in its error body.

use std::time::Duration;

use sluice_config::{AzureAuth, AzureDestination, Destination, Secret};
use sluice_lake::{Lake, LakeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SIGNATURE: &str = "c2VjcmV0LXNpZ25hdHVyZS1vZi10aGUtc2Fz%3D";

fn sas_destination(endpoint: String) -> Destination {
    Destination::Azure(AzureDestination {
        account: "devstoreaccount1".into(),
        container: "lake".into(),
        root: "export".into(),
        endpoint,
        auth: AzureAuth::Sas(Secret::new(format!(
            "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&sig={SIGNATURE}"
        ))),
    })
}

/// Everything an error shows: its text, its debug form and its whole source chain.
fn all_text(e: &LakeError) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    out
}

fn assert_redacted(e: &LakeError) {
    let text = all_text(e);
    assert!(!text.contains(SIGNATURE), "the signature leaked: {text}");
    assert!(
        !text.contains("c2VjcmV0"),
        "part of the signature leaked: {text}"
    );
    assert!(!text.contains("sig="), "a sig parameter leaked: {text}");
}

#[tokio::test]
async fn a_store_that_refuses_connections_gets_no_secret_into_errors() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = Lake::open(&sas_destination(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("nothing listens there");
    assert!(e.is_retryable(), "a refused connection is temporary: {e}");
    assert_redacted(&e);
}

/// Answers the container creation with 201 and the start-up probe of write-if-absent as a
/// real store would (when `open_ok`), and everything else with 403, echoing the request line
/// and headers in the body.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    ForbidAll,
    ForbidData,
    /// Ignores If-None-Match: every probe write succeeds.
    Overwrite,
}

async fn fake_store(mode: Mode) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let probes = probes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let Ok(n) = sock.read(&mut buf).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let head = request.split("\r\n\r\n").next().unwrap_or_default();
                let first = head.lines().next().unwrap_or_default();
                let forbidden = format!(
                    "<Error><Code>AuthenticationFailed</Code><Message>{head}</Message></Error>"
                );
                let (status, body) = match () {
                    _ if mode == Mode::ForbidAll => ("403 Forbidden", forbidden),
                    _ if first.contains("restype=container") => ("201 Created", String::new()),
                    _ if first.contains("_sluice_probe") && first.starts_with("PUT") => {
                        match probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                            _ if mode == Mode::Overwrite => ("201 Created", String::new()),
                            0 => ("201 Created", String::new()),
                            _ => (
                                "412 Condition Not Met",
                                "<Error><Code>ConditionNotMet</Code></Error>".to_string(),
                            ),
                        }
                    }
                    _ if first.contains("_sluice_probe") => ("202 Accepted", String::new()),
                    _ => ("403 Forbidden", forbidden),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/xml\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_store_that_answers_403_gets_no_secret_into_errors() {
    // Refused at start: the container creation.
    let e = Lake::open(&sas_destination(fake_store(Mode::ForbidAll).await))
        .await
        .expect_err("403");
    assert!(!e.is_retryable(), "a 403 is permanent: {e}");
    assert_redacted(&e);

    // Refused later: every write, read and listing goes through opendal's transport.
    let lake = Lake::open(&sas_destination(fake_store(Mode::ForbidData).await))
        .await
        .expect("the container answers");
    let write = tokio::time::timeout(Duration::from_secs(20), lake.land("a/b.json", "x"))
        .await
        .expect("no hang")
        .expect_err("403");
    assert_redacted(&write);
    assert_redacted(&lake.list("a/").await.expect_err("403"));
    assert_redacted(&lake.read("a/b.json").await.expect_err("403"));
    assert_redacted(&lake.claim_partition("t", 0, "me").await.expect_err("403"));
}

/// A store that ignores If-None-Match would let two workers land one file or share a lease:
/// refused at start, naming the store.
#[tokio::test]
async fn a_store_without_write_if_absent_is_refused_at_start() {
    let endpoint = fake_store(Mode::Overwrite).await;
    let e = Lake::open(&sas_destination(endpoint.clone()))
        .await
        .expect_err("the probe's second write succeeded");
    assert!(matches!(e, LakeError::NoWriteIfAbsent { .. }), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(&endpoint), "{e}");
    assert_redacted(&e);
}
