//! The capabilities the lifecycle needs from the outside world, as small traits with their data
//! and their errors. Provisioning depends on these and on nothing else outside the crate's pure
//! modules; `crate::aws` and `crate::cloud_app_security::client` implement them; the unit tests
//! implement them in memory (`crate::testkit`).
//!
//! Every method is an `async fn` in a trait (static dispatch, no boxing); every call an adapter
//! makes is bounded in time.

mod error;
mod iam;
mod probe;
mod registry;
mod secrets;
mod status;
mod trails;

use std::collections::BTreeMap;
use std::time::SystemTime;

pub use error::{CallError, ErrorKind};
pub use iam::{AccessKeyInfo, AccessKeys, Attachment, Attachments, Depth, Iam, User, UserPolicies, Users};
pub use probe::{KeyProbe, ProbeError};
pub use registry::{Registration, Registry, RegistryError, Tenant};
pub use secrets::{
    Keys, NewSecret, SecretInfo, SecretStore, SecretValue, Version, CURRENT, PENDING, PREVIOUS, WRITING,
};
pub use status::StatusBus;
pub use trails::{TrailInfo, TrailSettings, Trails};

/// Tags, by key.
pub type Tags = BTreeMap<String, String>;

/// The outcome of a create that may meet something of the same name.
pub enum Created<T> {
    /// Made by this call.
    New(T),
    /// The name was taken (by a duplicate delivery of the same request, or by someone else).
    AlreadyExists,
}

/// The time. A port so that the tests can move it.
pub trait Clock: Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Every port, bundled, so that the layers above take one type parameter. The production
/// bundle holds the AWS adapters and the Cloud App Security client; the tests' holds fakes.
pub trait Ports: Sync {
    /// IAM.
    type Iam: Iam;
    /// Secrets Manager.
    type Secrets: SecretStore;
    /// KMS.
    type Keys: Keys;
    /// CloudTrail.
    type Trails: Trails;
    /// Cloud App Security.
    type Registry: Registry;
    /// The key verifier.
    type Probe: KeyProbe;
    /// The clock.
    type Clock: Clock;
    /// The organization's status bus.
    type Status: StatusBus;
    /// IAM.
    fn iam(&self) -> &Self::Iam;
    /// Secrets Manager.
    fn secrets(&self) -> &Self::Secrets;
    /// KMS.
    fn keys(&self) -> &Self::Keys;
    /// CloudTrail.
    fn trails(&self) -> &Self::Trails;
    /// Cloud App Security.
    fn registry(&self) -> &Self::Registry;
    /// The key verifier.
    fn probe(&self) -> &Self::Probe;
    /// The clock.
    fn clock(&self) -> &Self::Clock;
    /// The organization's status bus.
    fn status(&self) -> &Self::Status;
}
