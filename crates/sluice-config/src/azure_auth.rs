//! Which of the four Azure auth modes a pipeline uses, and its secret.

use crate::validate::{Problems, DEFAULT_AZURE_KEY_ENV};
use crate::{AzureAuth, Secret};

/// How the worker authenticates to Azure: exactly one of a SAS token, a service principal,
/// the environment's credential chain, or (the default) the account's shared key.
pub(crate) fn azure_auth(
    az: &crate::file::AzureSection,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<AzureAuth> {
    let principal =
        az.tenant_id.is_some() || az.client_id.is_some() || az.client_secret_env.is_some();
    let chosen: Vec<&str> = [
        (az.sas_token_env.is_some(), "sas_token_env"),
        (az.account_key_env.is_some(), "account_key_env"),
        (principal, "tenant_id/client_id/client_secret_env"),
        (az.credential.is_some(), "credential"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if chosen.len() > 1 {
        p.add(
            "sink.azure",
            format!("sets more than one way to authenticate: {}", chosen.join(", ")),
            "keep one: a SAS token, a shared key, a service principal, or credential = \"environment\"",
        );
        return None;
    }
    if az.authority_host.is_some() && !principal {
        p.add(
            "sink.azure.authority_host",
            "is set without a service principal",
            "add tenant_id, client_id and client_secret_env, or remove authority_host",
        );
    }
    if let Some(var) = &az.sas_token_env {
        return match env(var)
            .map(|t| t.trim().trim_start_matches('?').to_string())
            .filter(|t| !t.is_empty())
        {
            Some(token) if token.contains("sig=") => Some(AzureAuth::Sas(Secret::new(token))),
            Some(_) => {
                p.add("sink.azure.sas_token_env", format!("the value of {var} is not a SAS token (no sig=)"), "copy the SAS token (sv=...&sig=...) from the portal or az storage container generate-sas");
                None
            }
            None => {
                p.unset("sink.azure.sas_token_env", var, format!("export {var}='sv=...&sig=...' (a SAS with read, write, list and create permissions)"));
                None
            }
        };
    }
    if principal {
        let mut missing = |field: &str, value: &Option<String>, fix: &str| {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                p.add(&format!("sink.azure.{field}"), "is missing: a service principal needs tenant_id, client_id and client_secret_env", fix.to_string());
            }
        };
        missing(
            "tenant_id",
            &az.tenant_id,
            "set the Directory (tenant) ID of the app registration",
        );
        missing(
            "client_id",
            &az.client_id,
            "set the Application (client) ID of the app registration",
        );
        missing("client_secret_env", &az.client_secret_env, "name the environment variable that holds the client secret, e.g. client_secret_env = \"AZURE_CLIENT_SECRET\"");
        if let Some(h) = &az.authority_host {
            if url::Url::parse(h).is_err() {
                p.add(
                    "sink.azure.authority_host",
                    format!("'{h}' is not a URL"),
                    "use e.g. https://login.microsoftonline.us, or remove it",
                );
                return None;
            }
        }
        let (Some(tenant_id), Some(client_id), Some(var)) =
            (&az.tenant_id, &az.client_id, &az.client_secret_env)
        else {
            return None;
        };
        return match env(var).filter(|v| !v.is_empty()) {
            Some(secret) => Some(AzureAuth::ServicePrincipal {
                tenant_id: tenant_id.trim().to_string(),
                client_id: client_id.trim().to_string(),
                client_secret: Secret::new(secret),
                authority_host: az.authority_host.clone(),
            }),
            None => {
                p.unset(
                    "sink.azure.client_secret_env",
                    var,
                    format!("export {var}=<the client secret of the app registration>"),
                );
                None
            }
        };
    }
    if let Some(c) = &az.credential {
        if c != "environment" {
            p.add("sink.azure.credential", format!("'{c}' is not a credential source"), "use credential = \"environment\" (managed identity, workload identity or AZURE_* variables), or another auth mode");
            return None;
        }
        return Some(AzureAuth::Environment);
    }
    let key_env = az
        .account_key_env
        .clone()
        .unwrap_or_else(|| DEFAULT_AZURE_KEY_ENV.into());
    match env(&key_env).filter(|v| !v.is_empty()) {
        Some(key) => Some(AzureAuth::SharedKey(Secret::new(key))),
        None => {
            p.unset("sink.azure.account_key_env", &key_env, format!("export {key_env}=<the storage account's access key>, or name another variable in account_key_env, or use sas_token_env, a service principal or credential = \"environment\""));
            None
        }
    }
}
