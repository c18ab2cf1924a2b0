//! What start-up builds once per execution environment: the adapters behind every port, and the
//! settings the deployer put in the function's environment.

use std::sync::OnceLock;

use crate::aws::cloudtrail::CloudTrailAdapter;
use crate::aws::iam::IamAdapter;
use crate::aws::kms::KmsAdapter;
use crate::aws::probe::KeyProbeAdapter;
use crate::aws::secrets_manager::SecretsManagerAdapter;
use crate::cloud_app_security::client::Client;
use crate::cloud_app_security::endpoint::{AllowedHosts, EndpointError};
use crate::http::ClientError;
use crate::ports::{Ports, SystemClock};

/// The stack the function serves, set by both templates.
pub const STACK_ID_ENV: &str = "CLOUD_APP_SECURITY_STACK_ID";
/// The partition's URL suffix (`amazonaws.com`, `amazonaws.com.cn`), set by both templates.
pub const URL_SUFFIX_ENV: &str = "CLOUD_APP_SECURITY_URL_SUFFIX";

/// Why the function could not start. Every request is then answered `FAILED` with this.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartupError {
    /// No region in the environment.
    #[error("no AWS region is configured (AWS_REGION)")]
    NoRegion,
    /// `CLOUD_APP_SECURITY_ALLOWED_HOSTS` does not parse.
    #[error("{0}")]
    AllowedHosts(#[from] EndpointError),
    /// The HTTP client could not be built.
    #[error("{0}")]
    HttpClient(#[from] ClientError),
}

/// The deployer's settings, from the function's environment.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Hosts allowed for the call back beyond Microsoft's.
    pub allowed_hosts: AllowedHosts,
    /// The only stack this function serves; `None` (local runs, tests) serves any.
    pub stack_id: Option<String>,
    /// The partition's URL suffix, for the `ResponseURL` rule.
    pub url_suffix: String,
}

impl Settings {
    /// Reads the environment.
    pub fn from_env() -> Result<Settings, StartupError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(Settings {
            allowed_hosts: AllowedHosts::from_env()?,
            stack_id: var(STACK_ID_ENV),
            url_suffix: var(URL_SUFFIX_ENV).unwrap_or_else(|| "amazonaws.com".to_owned()),
        })
    }
}

/// The production bundle of ports. KMS serves only requests that compare two names of a
/// customer key, so its client is built on first use: an SDK client costs its construction and
/// a TLS connector at start-up even if it never sends a request. (CloudTrail's is asked for by
/// every request's discovery, even with `TrailMode: Off`; built lazily it would only move.)
pub struct Services {
    config: aws_config::SdkConfig,
    iam: IamAdapter,
    secrets: SecretsManagerAdapter,
    keys: OnceLock<KmsAdapter>,
    trails: CloudTrailAdapter,
    registry: Client,
    probe: KeyProbeAdapter,
}

impl Services {
    /// The adapters over one SDK configuration.
    pub fn new(config: &aws_config::SdkConfig) -> Result<Services, StartupError> {
        if config.region().is_none() {
            return Err(StartupError::NoRegion);
        }
        Ok(Services {
            config: config.clone(),
            iam: IamAdapter::new(config),
            secrets: SecretsManagerAdapter::new(config),
            keys: OnceLock::new(),
            trails: CloudTrailAdapter::new(config),
            registry: Client::new()?,
            probe: KeyProbeAdapter::new(config),
        })
    }
}

impl Ports for Services {
    type Iam = IamAdapter;
    type Secrets = SecretsManagerAdapter;
    type Keys = KmsAdapter;
    type Trails = CloudTrailAdapter;
    type Registry = Client;
    type Probe = KeyProbeAdapter;
    type Clock = SystemClock;

    fn iam(&self) -> &IamAdapter {
        &self.iam
    }
    fn secrets(&self) -> &SecretsManagerAdapter {
        &self.secrets
    }
    fn keys(&self) -> &KmsAdapter {
        self.keys.get_or_init(|| KmsAdapter::new(&self.config))
    }
    fn trails(&self) -> &CloudTrailAdapter {
        &self.trails
    }
    fn registry(&self) -> &Client {
        &self.registry
    }
    fn probe(&self) -> &KeyProbeAdapter {
        &self.probe
    }
    fn clock(&self) -> &SystemClock {
        &SystemClock
    }
}
