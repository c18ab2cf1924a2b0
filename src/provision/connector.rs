//! The call back: registers the connector with Cloud App Security after the key is stored and
//! before the old key is deleted, only when something it carries changed; removes it on Delete.

use std::collections::BTreeMap;

use reqwest::Url;
use tokio::time::Instant;

use super::ports::{SecretStore, Tags};
use super::{steps, InStep, ProvisionError, Target};
use crate::cloud_app_security::auth::Credentials;
use crate::cloud_app_security::client::{Client, RegistrationBody};
use crate::cloud_app_security::endpoint::{self, AllowedHosts, EndpointError};
use crate::cloud_app_security::{sha256_hex, Connector};
use crate::key_material::StoredKey;
use crate::properties::Properties;

/// The registration's id, kept on the secret so that a repeated request needs no call.
pub const TAG_CONNECTOR_ID: &str = "cloud-app-security:connector-id";
/// A digest of everything the registration carries: when it still matches, nothing changed.
pub const TAG_REGISTRATION: &str = "cloud-app-security:registration";

/// Where and how to call back: a validated URL and the credentials secret's ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub url: Url,
    pub credentials_arn: String,
}

impl Callback {
    /// `None` in portal mode. The URL is checked here, before any key could be sent anywhere.
    pub fn from_properties(properties: &Properties, allowed: &AllowedHosts) -> Result<Option<Callback>, EndpointError> {
        match (
            &properties.cloud_app_security_url,
            &properties.cloud_app_security_credentials,
        ) {
            (Some(url), Some(credentials)) => Ok(Some(Callback {
                url: endpoint::api_url(url, allowed)?,
                credentials_arn: credentials.clone(),
            })),
            _ => Ok(None),
        }
    }
}

/// What the call back needs from outside the request: the client, the deployer's hosts and
/// the time by which it must have finished.
pub struct CallbackContext<'a> {
    pub client: &'a Client,
    pub allowed: &'a AllowedHosts,
    pub deadline: Instant,
}

/// Reads and checks the API credentials (read-only; runs with discovery).
pub(super) async fn credentials<S: SecretStore>(
    secrets: &S,
    callback: Option<&Callback>,
    allowed: &AllowedHosts,
) -> Result<Option<Credentials>, ProvisionError> {
    let Some(callback) = callback else { return Ok(None) };
    let text = secrets
        .get_value(&callback.credentials_arn)
        .await
        .in_step(steps::CREDENTIALS)?;
    let text = text.ok_or_else(|| {
        ProvisionError::Credentials(format!(
            "secret {} was not found or has no value",
            callback.credentials_arn
        ))
    })?;
    Credentials::parse(&text, allowed)
        .map(Some)
        .map_err(|e| ProvisionError::Credentials(e.to_string()))
}

/// Everything the registration carries, for one converge.
pub(super) struct Registration<'a> {
    pub target: &'a Target,
    pub key: &'a StoredKey,
    pub trail_arn: &'a str,
    pub secret_arn: &'a str,
    /// The secret's tags before this request.
    pub secret_tags: &'a Tags,
}

pub(super) async fn register<S: SecretStore>(
    secrets: &S,
    context: &CallbackContext<'_>,
    credentials: Option<&Credentials>,
    r: Registration<'_>,
) -> Result<Connector, ProvisionError> {
    let t = r.target;
    let (Some(callback), Some(credentials)) = (&t.callback, credentials) else {
        let stale: Vec<String> = [TAG_CONNECTOR_ID, TAG_REGISTRATION]
            .into_iter()
            .filter(|k| r.secret_tags.contains_key(*k))
            .map(Into::into)
            .collect();
        if !stale.is_empty() {
            secrets.untag(r.secret_arn, &stale).await.in_step(steps::CALLBACK)?;
        }
        return Ok(Connector::pending_portal());
    };
    let connections: Vec<String> = t.connections.iter().map(|c| c.as_str().to_owned()).collect();
    let fingerprint = sha256_hex(
        &[
            callback.url.as_str(),
            &callback.credentials_arn,
            &t.connector_name,
            &connections.join(","),
            &r.key.access_key_id,
            r.trail_arn,
            &t.physical_id,
            &t.stack.region,
        ]
        .join("\n"),
    );
    if r.secret_tags.get(TAG_REGISTRATION) == Some(&fingerprint) {
        if let Some(id) = r.secret_tags.get(TAG_CONNECTOR_ID) {
            return Ok(Connector::registered(id.clone()));
        }
    }
    let body = RegistrationBody {
        name: t.connector_name.clone(),
        external_id: t.physical_id.clone(),
        aws_account_id: t.stack.account_id.clone(),
        connections,
        access_key_id: r.key.access_key_id.clone(),
        secret_access_key: r.key.secret_access_key.clone(),
        trail_arn: r.trail_arn.to_owned(),
        region: t.stack.region.clone(),
    };
    let key = sha256_hex(&t.physical_id);
    let registered = context
        .client
        .upsert(&callback.url, credentials, &key, &body, context.deadline)
        .await
        .map_err(ProvisionError::Callback)?;
    // Remember the registration only if its id can be a tag value; otherwise the next
    // request registers again, which is harmless.
    if fits_tag_value(&registered.id) {
        let tags = BTreeMap::from([
            (TAG_CONNECTOR_ID.to_owned(), registered.id.clone()),
            (TAG_REGISTRATION.to_owned(), fingerprint),
        ]);
        secrets.tag(r.secret_arn, &tags).await.in_step(steps::CALLBACK)?;
    }
    Ok(Connector::registered(registered.id))
}

fn fits_tag_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// Removes the registration of `physical_id` at `callback`'s URL. Best effort: a failure is
/// logged and never stops what follows.
pub(super) async fn unregister<S: SecretStore>(
    secrets: &S,
    context: &CallbackContext<'_>,
    callback: &Callback,
    physical_id: &str,
) {
    let result = async {
        let credentials = credentials(secrets, Some(callback), context.allowed).await?;
        let Some(credentials) = credentials else { return Ok(()) };
        let key = sha256_hex(physical_id);
        context
            .client
            .remove(&callback.url, &credentials, &key, context.deadline)
            .await
            .map_err(ProvisionError::Callback)
    };
    match result.await {
        Ok(()) => tracing::info!(url = %callback.url, "connector registration removed"),
        Err(e) => tracing::warn!(url = %callback.url, error = %e, "could not remove the connector registration"),
    }
}
