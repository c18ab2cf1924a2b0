//! What start-up builds once per execution environment: the adapters behind every port, and the
//! settings the deployer put in the function's environment.

use std::sync::OnceLock;

use crate::aws::cloudtrail::CloudTrailAdapter;
use crate::aws::eventbridge::EventBridgeAdapter;
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
/// The organization's status bus (an event bus ARN; empty: report nowhere), from `StatusBusArn`.
pub const STATUS_BUS_ENV: &str = "CLOUD_APP_SECURITY_STATUS_BUS";
/// Days a key may wait for its paste before the status is `PasteOverdue`, from `PasteOverdueDays`.
pub const PASTE_OVERDUE_DAYS_ENV: &str = "CLOUD_APP_SECURITY_PASTE_OVERDUE_DAYS";
/// `PasteOverdueDays` when unset or unreadable.
pub const DEFAULT_PASTE_OVERDUE_DAYS: u32 = 3;

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
#[derive(Clone, Debug)]
pub struct Settings {
    /// Hosts allowed for the call back beyond Microsoft's.
    pub allowed_hosts: AllowedHosts,
    /// The only stack this function serves; `None` (local runs, tests) serves any.
    pub stack_id: Option<String>,
    /// The partition's URL suffix, for the `ResponseURL` rule.
    pub url_suffix: String,
    /// Where to report the connector's status, if anywhere.
    pub status_bus: Option<String>,
    /// Days a key may wait for its paste before the status is `PasteOverdue`.
    pub paste_overdue_days: u32,
}

impl Default for Settings {
    /// What an empty environment gives: no allowed host beyond Microsoft's, any stack,
    /// `amazonaws.com`, no status bus, [`DEFAULT_PASTE_OVERDUE_DAYS`].
    fn default() -> Settings {
        Settings::read(|_| None).0
    }
}

impl Settings {
    /// Reads the environment: every setting it could read, and what it could not. A failed
    /// start-up still knows the stack it serves and the partition's URL suffix, so that it
    /// answers each request `FAILED` where CloudFormation waits, instead of leaving it waiting.
    pub fn from_env() -> (Settings, Result<(), StartupError>) {
        Settings::read(|name| std::env::var(name).ok())
    }

    /// `PasteOverdueDays` as a duration.
    pub fn paste_overdue(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.paste_overdue_days) * 86_400)
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
            status_bus: var(STATUS_BUS_ENV),
            // A reporting setting never stops the function: an unreadable value is the default.
            paste_overdue_days: var(PASTE_OVERDUE_DAYS_ENV)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_PASTE_OVERDUE_DAYS),
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
    status: EventBridgeAdapter,
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
            status: EventBridgeAdapter::new(config, None),
        })
    }

    /// The same services, reporting to `bus` (an event bus ARN) when one is given.
    pub fn reporting_to(self, bus: Option<String>) -> Services {
        Services {
            status: EventBridgeAdapter::new(&self.config, bus),
            ..self
        }
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
    type Status = EventBridgeAdapter;

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
    fn status(&self) -> &EventBridgeAdapter {
        &self.status
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
        assert_eq!((defaults.status_bus.as_deref(), defaults.paste_overdue_days), (None, 3));
        assert_eq!(
            Settings::default().paste_overdue_days,
            3,
            "Default is the empty environment's"
        );
        let reporting = |name: &str| match name {
            STATUS_BUS_ENV => Some("arn:aws:events:us-east-1:111111111111:event-bus/fleet".to_owned()),
            PASTE_OVERDUE_DAYS_ENV => Some("not a number".to_owned()),
            _ => None,
        };
        let (reporting, read) = Settings::read(reporting);
        assert!(read.is_ok(), "a reporting setting never stops the function");
        assert_eq!(reporting.paste_overdue_days, DEFAULT_PASTE_OVERDUE_DAYS);
        assert!(reporting.status_bus.is_some_and(|b| b.ends_with("event-bus/fleet")));
        assert_eq!(
            (defaults.url_suffix.as_str(), defaults.stack_id),
            ("amazonaws.com", None)
        );
    }
}
