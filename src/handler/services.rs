//! What start-up builds once per execution environment: the adapters behind every port, and the
//! settings the deployer put in the function's environment.

use std::sync::OnceLock;

use crate::aws::cloudtrail::CloudTrailAdapter;
use crate::aws::iam::IamAdapter;
use crate::aws::kms::KmsAdapter;
use crate::aws::probe::KeyProbeAdapter;
use crate::aws::secrets_manager::SecretsManagerAdapter;
use crate::cloud_app_security::client::Client;
use crate::cloud_app_security::endpoint::{AllowedHosts, EndpointError, ALLOWED_HOSTS_ENV};
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
    /// Reads the environment: every setting it could read, and what it could not. A failed
    /// start-up still knows the stack it serves and the partition's URL suffix, so that it
    /// answers each request `FAILED` where CloudFormation waits, instead of leaving it waiting.
    pub fn from_env() -> (Settings, Result<(), StartupError>) {
        Settings::read(|name| std::env::var(name).ok())
    }

    /// [`Settings::from_env`] over any source of variables.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> (Settings, Result<(), StartupError>) {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let (allowed_hosts, problem) = match AllowedHosts::parse(&var(ALLOWED_HOSTS_ENV).unwrap_or_default()) {
            Ok(hosts) => (hosts, Ok(())),
            Err(e) => (AllowedHosts::default(), Err(StartupError::from(e))),
        };
        let settings = Settings {
            allowed_hosts,
            stack_id: var(STACK_ID_ENV),
            url_suffix: var(URL_SUFFIX_ENV).unwrap_or_else(|| "amazonaws.com".to_owned()),
        };
        (settings, problem)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_up_that_fails_keeps_the_stack_and_the_url_suffix_it_could_read() {
        let env = |name: &str| match name {
            ALLOWED_HOSTS_ENV => Some("relay.example.com,not a host".to_owned()),
            STACK_ID_ENV => Some("arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/1".to_owned()),
            URL_SUFFIX_ENV => Some("amazonaws.com.cn".to_owned()),
            _ => None,
        };
        let (settings, read) = Settings::read(env);
        assert!(read.is_err_and(|e| e.to_string().contains("not a host")));
        assert_eq!(settings.url_suffix, "amazonaws.com.cn");
        assert_eq!(
            settings.stack_id.as_deref(),
            Some("arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/1")
        );
        let (defaults, read) = Settings::read(|_| None);
        assert!(read.is_ok());
        assert_eq!(
            (defaults.url_suffix.as_str(), defaults.stack_id),
            ("amazonaws.com", None)
        );
    }
}
