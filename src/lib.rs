//! Backs the CloudFormation custom resource `Custom::CloudAppSecurityConnector`: connects an AWS
//! account to Microsoft Defender for Cloud Apps (formerly Cloud App Security).
//!
//! # Layout
//!
//! Dependencies point one way: `handler` → {`lifecycle`, `rotation`} → `provision` → `ports` ← adapters
//! (`aws`, `cloud_app_security::client`). The pure modules — `properties`, `ownership`,
//! `key_material`, `status`, `cloud_app_security::{endpoint, credentials}` — are used by every layer.
//!
//! - [`handler`]: the Lambda handler. Tells events apart, reads a request once, checks the stack
//!   and the `ResponseURL`, runs the lifecycle under the deadline guard and the panic catcher,
//!   answers exactly once. Builds the production [`ports::Ports`] bundle at start-up.
//! - [`cfn`]: the CloudFormation protocol — envelope and typed request, the 4096-byte answer,
//!   its delivery.
//! - [`lifecycle`]: what Create, Update and Delete each do, all or nothing, and their `Data`.
//! - [`rotation`]: Secrets Manager's four rotation steps, and the scheduled check that retires
//!   a key awaiting a paste; their metrics ([`metrics`], embedded metric format).
//! - [`provision`]: the steps — discovery, user, permissions, key, secret (compare-and-swap),
//!   trail, registration, retirement, teardown — and the undo log.
//! - [`ports`]: the traits provisioning talks to, with their data and errors.
//! - [`aws`]: one adapter per AWS service, the only code importing the SDK.
//! - [`cloud_app_security`]: where keys may be sent, the API credentials, and the HTTP adapter.
//! - [`properties`]: `ResourceProperties`, parsed and validated once, against AWS's limits.
//! - [`ownership`], [`key_material`]: who owns what; the key and the secret's document.
//! - [`http`]: the one HTTP client builder and retry policy.
//! - [`logging`], [`progress`]: JSON logs; the current step, for the deadline guard.
//! - [`status`]: the connector's status, defined once, and the report sent to the fleet's bus.
#![warn(missing_docs)]

pub mod aws;
pub mod cfn;
pub mod cloud_app_security;
pub mod handler;
pub mod http;
pub mod key_material;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod ownership;
pub mod ports;
pub mod progress;
pub mod properties;
pub mod provision;
pub mod rotation;
pub mod status;

#[cfg(test)]
mod testkit;
