//! Azure Blob Storage and ADLS Gen2 (through the Blob endpoint every Gen2 account serves).

use opendal::Operator;
use reqsign_azure_storage::{RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, Signer};
use sluice_config::{AzureAuth, AzureDestination};

use crate::LakeError;

pub(crate) fn operator(az: &AzureDestination) -> Result<Operator, LakeError> {
    let builder = opendal::services::Azblob::default()
        .endpoint(&az.endpoint)
        .container(&az.container)
        .root(&format!("/{}", az.root))
        .account_name(&az.account);
    let builder = match &az.auth {
        AzureAuth::SharedKey(key) => builder.account_key(key.expose()),
        AzureAuth::Sas(token) => builder.sas_token(token.expose()),
    };
    Operator::new(builder).map_err(|e| LakeError::Open {
        what: describe(az),
        source: Box::new(e),
    })
}

pub(crate) fn describe(az: &AzureDestination) -> String {
    format!("{}/{}/{}", az.endpoint, az.container, az.root)
}

/// Creates the container if it does not exist. opendal cannot do this (Azurite answers its
/// `create_dir("/")` with HTTP 400), so this is the plain Create Container REST call.
pub(crate) async fn ensure_container(az: &AzureDestination) -> Result<(), LakeError> {
    let fail_as = |detail: String, retryable: bool| LakeError::CreateContainer {
        container: az.container.clone(),
        detail,
        retryable,
    };
    let fail = |detail: String| fail_as(detail, false);
    let base = format!("{}/{}?restype=container", az.endpoint, az.container);
    // A SAS travels in the query string; a shared key signs the request.
    let url = match &az.auth {
        AzureAuth::Sas(token) => format!("{base}&{}", token.expose()),
        AzureAuth::SharedKey(_) => base.clone(),
    };
    let (mut parts, ()) = http::Request::put(&url)
        .header("x-ms-version", "2021-08-06")
        .header("content-length", "0")
        .body(())
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    if let AzureAuth::SharedKey(key) = &az.auth {
        let signer = Signer::new(
            Context::new(),
            StaticCredentialProvider::new_shared_key(&az.account, key.expose()),
            RequestSigner::new(),
        );
        signer
            .sign(&mut parts, None)
            .await
            .map_err(|e| fail(format!("signing the request: {e}")))?;
    }
    let client = reqwest::Client::new();
    let mut req = client.put(&url);
    for (name, value) in parts.headers.iter() {
        req = req.header(name, value);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail_as(format!("{base} unreachable: {e}"), true))?;
    match resp.status().as_u16() {
        201 => {
            tracing::info!(container = %az.container, "created container");
            Ok(())
        }
        409 => Ok(()), // ContainerAlreadyExists
        status => {
            let body = resp.text().await.unwrap_or_default();
            let detail = format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            );
            Err(fail_as(detail, status == 429 || status >= 500))
        }
    }
}
