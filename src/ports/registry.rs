//! Cloud App Security, as the call back sees it: a registry of app connectors keyed by a digest
//! of the `PhysicalResourceId`.

use std::future::Future;

use reqwest::Url;
use serde::Serialize;
use tokio::time::Instant;

use crate::cloud_app_security::credentials::Credentials;
use crate::key_material::SecretAccessKey;

/// The connector as registered: what the upsert carries. It holds the secret access key, so it
/// has no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The connector's name (`ConnectorName`).
    pub name: String,
    /// The `PhysicalResourceId` it serves.
    pub external_id: String,
    /// The AWS account.
    pub aws_account_id: String,
    /// `SecurityAuditing` and/or `SecurityConfiguration`.
    pub connections: Vec<String>,
    /// The access key's id.
    pub access_key_id: String,
    /// The access key's secret half.
    pub secret_access_key: SecretAccessKey,
    /// The trail Cloud App Security reads (empty when `TrailMode` is `Off`).
    pub trail_arn: String,
    /// The stack's region.
    pub region: String,
}

/// Why a call to Cloud App Security (or to Entra ID for its token) did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The tenant answered with a status that is not retried (a 4xx other than 429).
    #[error("Cloud App Security answered HTTP {status}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The tenant's message, shortened and scrubbed of credentials.
        message: String,
    },
    /// The Entra token endpoint refused the client credentials.
    #[error("the Entra token endpoint answered HTTP {status}: {message}")]
    Token {
        /// The HTTP status.
        status: u16,
        /// Entra's message, shortened and scrubbed.
        message: String,
    },
    /// Retries (429, 5xx, transport errors) did not succeed before the deadline.
    #[error("{what} did not succeed before the deadline after {attempts} attempt(s); the last answer was {last}")]
    GaveUp {
        /// Who was called.
        what: &'static str,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A success answer whose body could not be read.
    #[error("{what}'s answer could not be read: {detail}")]
    BadAnswer {
        /// Who answered.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

/// Where the registry lives: a checked tenant (or relay) URL, and its credentials.
pub struct Tenant<'a> {
    /// The tenant's API URL, already held to the host allow-list.
    pub url: &'a Url,
    /// The credentials read from the `CloudAppSecurityCredentials` secret.
    pub credentials: &'a Credentials,
}

/// The app-connector registry.
pub trait Registry: Sync {
    /// `PUT …/app_connectors/aws/<key>/`: registers or updates; returns the connector's id.
    /// Retries within `deadline`.
    fn upsert(
        &self,
        tenant: &Tenant<'_>,
        key: &str,
        registration: &Registration,
        deadline: Instant,
    ) -> impl Future<Output = Result<String, RegistryError>> + Send;
    /// `DELETE …/app_connectors/aws/<key>/`; a connector already gone is success.
    fn remove(
        &self,
        tenant: &Tenant<'_>,
        key: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
}
