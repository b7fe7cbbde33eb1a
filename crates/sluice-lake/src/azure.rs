//! Azure Blob Storage and ADLS Gen2 (through the Blob endpoint every Gen2 account serves).

use bytes::Bytes;
use opendal::Operator;
use reqsign_azure_storage::{
    ClientSecretCredentialProvider, Credential, DefaultCredentialProvider, RequestSigner,
    StaticCredentialProvider,
};
use reqsign_core::{Context, OsEnv, ProvideCredential, ProvideCredentialChain, Signer};
use reqsign_file_read_tokio::TokioFileRead;
use sluice_config::{AzureAuth, AzureDestination};

use crate::{redact, LakeError, StoreError};

pub(crate) fn operator(az: &AzureDestination, secrets: &[String]) -> Result<Operator, LakeError> {
    let builder = opendal::services::Azblob::default()
        .endpoint(&az.endpoint)
        .container(&az.container)
        .root(&format!("/{}", az.root))
        .account_name(&az.account);
    let builder = match (&az.auth, credentials(az)) {
        (AzureAuth::Sas(token), _) => builder.sas_token(token.expose()),
        (_, Some(chain)) => builder.credential_provider_chain(chain),
        (_, None) => builder,
    };
    Operator::new(builder).map_err(|e| LakeError::Open {
        what: describe(az),
        source: StoreError::new(&e, secrets),
    })
}

/// What signs requests for `az`: the shared key, or bearer tokens from Microsoft Entra ID (a
/// service principal, or the environment's chain: `AZURE_*` variables, workload identity,
/// managed identity). `None` for a SAS, which travels in the URL instead.
///
/// opendal 0.59's azblob builds its signing context without an HTTP client, so the token
/// providers it would pick on its own fail ("no HTTP client configured"); each token provider
/// here carries a context that has one.
fn credentials(az: &AzureDestination) -> Option<ProvideCredentialChain<Credential>> {
    let ctx = Context::new()
        .with_http_send(TokenHttp(reqwest::Client::new()))
        .with_env(OsEnv)
        .with_file_read(TokioFileRead);
    let chain = ProvideCredentialChain::new();
    Some(match &az.auth {
        AzureAuth::Sas(_) => return None,
        AzureAuth::SharedKey(key) => chain.push(StaticCredentialProvider::new_shared_key(
            &az.account,
            key.expose(),
        )),
        AzureAuth::ServicePrincipal {
            tenant_id,
            client_id,
            client_secret,
            authority_host,
        } => {
            let mut provider = ClientSecretCredentialProvider::new()
                .with_tenant_id(tenant_id)
                .with_client_id(client_id)
                .with_client_secret(client_secret.expose());
            if let Some(host) = authority_host {
                provider = provider.with_authority_host(host);
            }
            chain.push(WithContext { provider, ctx })
        }
        AzureAuth::Environment => chain.push(WithContext {
            provider: DefaultCredentialProvider::new(),
            ctx,
        }),
    })
}

/// A credential provider that asks with its own context instead of the caller's.
struct WithContext<P> {
    provider: P,
    ctx: Context,
}

/// reqsign logs a failing provider with `{:?}`: the client secret must not be in it.
impl<P> std::fmt::Debug for WithContext<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            std::any::type_name::<P>()
                .rsplit("::")
                .next()
                .unwrap_or("provider"),
        )
    }
}

impl<P: ProvideCredential<Credential = Credential>> ProvideCredential for WithContext<P> {
    type Credential = Credential;

    async fn provide_credential(&self, _: &Context) -> reqsign_core::Result<Option<Credential>> {
        self.provider.provide_credential(&self.ctx).await
    }
}

/// reqsign's HTTP seam, over reqwest: how token requests reach Entra ID or the metadata
/// endpoint.
#[derive(Debug)]
struct TokenHttp(reqwest::Client);

impl reqsign_core::HttpSend for TokenHttp {
    async fn http_send(
        &self,
        req: http::Request<Bytes>,
    ) -> reqsign_core::Result<http::Response<Bytes>> {
        let failed = |e: reqwest::Error| {
            reqsign_core::Error::unexpected("token request failed").with_source(e)
        };
        let (parts, body) = req.into_parts();
        let resp = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(failed)?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(headers) = out.headers_mut() {
            *headers = resp.headers().clone();
        }
        let body = resp.bytes().await.map_err(failed)?;
        out.body(body)
            .map_err(|e| reqsign_core::Error::unexpected("token response").with_source(e))
    }
}

pub(crate) fn describe(az: &AzureDestination) -> String {
    format!("{}/{}/{}", az.endpoint, az.container, az.root)
}

/// Creates the container if it does not exist. opendal cannot do this (Azurite answers its
/// `create_dir("/")` with HTTP 400), so this is the plain Create Container REST call.
pub(crate) async fn ensure_container(
    az: &AzureDestination,
    secrets: &[String],
) -> Result<(), LakeError> {
    // reqwest's errors end in the URL, where a SAS token travels: redacted here.
    let fail_as = |detail: String, retryable: bool| LakeError::CreateContainer {
        container: az.container.clone(),
        detail: redact(&detail, secrets),
        retryable,
    };
    let fail = |detail: String| fail_as(detail, false);
    let base = format!("{}/{}?restype=container", az.endpoint, az.container);
    // A SAS travels in the query string; a shared key signs the request.
    let url = match &az.auth {
        AzureAuth::Sas(token) => format!("{base}&{}", token.expose()),
        _ => base.clone(),
    };
    let (mut parts, ()) = http::Request::put(&url)
        .header("x-ms-version", "2021-08-06")
        .header("content-length", "0")
        .body(())
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    let signer =
        credentials(az).map(|chain| Signer::new(Context::new(), chain, RequestSigner::new()));
    if let Some(signer) = signer {
        signer.sign(&mut parts, None).await.map_err(|e| {
            let hint = match &az.auth {
                AzureAuth::ServicePrincipal { .. } => {
                    "; Entra ID refused the service principal's token request: check \
                         tenant_id, client_id and the client secret"
                }
                AzureAuth::Environment => {
                    "; no Azure credential in the environment: set AZURE_TENANT_ID, \
                         AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, use workload identity, or \
                         run with a managed identity"
                }
                _ => "",
            };
            fail(format!("signing the request: {e}{hint}"))
        })?;
    }
    let client = reqwest::Client::new();
    let mut req = client.put(&url);
    for (name, value) in parts.headers.iter() {
        req = req.header(name, value);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail_as(format!("{base} unreachable: {}", e.without_url()), true))?;
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
