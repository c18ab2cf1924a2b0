//! The fakes of what lies outside AWS's control plane: the Cloud App Security registry, the key
//! verifier and KMS's key resolution.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use super::faults::Faults;
use crate::key_material::SecretDocument;
use crate::ports::{CallError, KeyProbe, Keys, ProbeError, Registration, Registry, RegistryError, Tenant};
use crate::properties::Connection;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tenant that keeps what it was told: connector key → (url, access key id).
pub struct FakeRegistry {
    pub connectors: Mutex<BTreeMap<(String, String), String>>,
    /// Every call: `("PUT" | "DELETE", url, key)`.
    pub calls: Mutex<Vec<(&'static str, String, String)>>,
    /// The next upsert is refused with this status.
    pub refuse_next: Mutex<Option<u16>>,
    /// Connector keys whose removal was attempted and failed (removal is best effort).
    pub failed_removals: Mutex<BTreeSet<String>>,
    faults: Arc<Faults>,
}

impl FakeRegistry {
    pub fn new(faults: Arc<Faults>) -> FakeRegistry {
        FakeRegistry {
            connectors: Mutex::default(),
            calls: Mutex::default(),
            refuse_next: Mutex::default(),
            failed_removals: Mutex::default(),
            faults,
        }
    }

    pub fn calls(&self) -> Vec<(&'static str, String, String)> {
        lock(&self.calls).clone()
    }

    /// The access key registered for `key` at any URL.
    pub fn registered(&self, key: &str) -> Vec<(String, String)> {
        lock(&self.connectors)
            .iter()
            .filter(|((_, k), _)| k == key)
            .map(|((url, _), id)| (url.clone(), id.clone()))
            .collect()
    }

    async fn gate(&self, what: &'static str) -> Result<(), RegistryError> {
        match self.faults.call(what).await {
            Ok(None) => Ok(()),
            _ => Err(RegistryError::GaveUp {
                what: "Cloud App Security",
                attempts: 1,
                last: "injected failure".to_owned(),
            }),
        }
    }
}

impl Registry for FakeRegistry {
    async fn upsert(
        &self,
        tenant: &Tenant<'_>,
        key: &str,
        registration: &Registration,
        _: Instant,
    ) -> Result<String, RegistryError> {
        self.gate("cloudappsecurity:Upsert").await?;
        let url = tenant.url.to_string();
        lock(&self.calls).push(("PUT", url.clone(), key.to_owned()));
        if let Some(status) = lock(&self.refuse_next).take() {
            return Err(RegistryError::Rejected {
                status,
                message: "refused".to_owned(),
            });
        }
        lock(&self.connectors).insert((url, key.to_owned()), registration.access_key_id.clone());
        Ok(format!("conn-{}", &key[..8]))
    }
    async fn remove(&self, tenant: &Tenant<'_>, key: &str, _: Instant) -> Result<(), RegistryError> {
        if let Err(e) = self.gate("cloudappsecurity:Remove").await {
            lock(&self.failed_removals).insert(key.to_owned());
            return Err(e);
        }
        let url = tenant.url.to_string();
        lock(&self.calls).push(("DELETE", url.clone(), key.to_owned()));
        lock(&self.connectors).remove(&(url, key.to_owned()));
        Ok(())
    }
}

/// A verifier that accepts the keys IAM holds and that are active, unless told to refuse.
pub struct FakeProbe {
    pub iam: Arc<super::iam::FakeIam>,
    /// Reads refused as if a service control policy denied them.
    pub denied: Mutex<bool>,
    /// Every key probed.
    pub probed: Mutex<Vec<String>>,
}

impl KeyProbe for FakeProbe {
    async fn identity(&self, key: &SecretDocument) -> Result<String, ProbeError> {
        let user = self.iam.user(&key.user_name);
        let holder = user.filter(|u| {
            // Like STS: an inactive key signs nothing.
            u.keys.iter().any(|k| {
                k.access_key_id == key.access_key_id
                    && k.active
                    && key.secret_access_key.expose() == format!("secret-of-{}", k.access_key_id)
            })
        });
        match holder {
            Some(u) => Ok(format!("arn:aws:iam::123456789012:user{}{}", u.path, key.user_name)),
            None => Err(ProbeError::NotYetValid("SignatureDoesNotMatch".into())),
        }
    }

    async fn probe(&self, key: &SecretDocument, _: &BTreeSet<Connection>) -> Result<(), ProbeError> {
        lock(&self.probed).push(key.access_key_id.clone());
        let known = self
            .iam
            .user(&key.user_name)
            .is_some_and(|u| u.keys.iter().any(|k| k.access_key_id == key.access_key_id && k.active));
        match (known, *lock(&self.denied)) {
            (false, _) => Err(ProbeError::NotYetValid("InvalidClientTokenId".into())),
            (true, true) => Err(ProbeError::Denied(
                "cloudtrail:DescribeTrails was refused (AccessDenied)".into(),
            )),
            (true, false) => Ok(()),
        }
    }
}

/// KMS with a few aliases.
#[derive(Default)]
pub struct FakeKeys {
    /// Alias name or key id → key ARN.
    pub keys: Mutex<BTreeMap<String, String>>,
}

impl Keys for FakeKeys {
    async fn resolve(&self, key: &str) -> Result<Option<String>, CallError> {
        let keys = lock(&self.keys);
        Ok(keys
            .get(key)
            .cloned()
            .or_else(|| keys.values().find(|arn| *arn == key).cloned()))
    }
}

/// A status bus that keeps every report, as JSON (what EventBridge would carry).
#[derive(Default)]
pub struct FakeStatusBus {
    pub reports: Mutex<Vec<serde_json::Value>>,
}

impl FakeStatusBus {
    /// Every report so far.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        lock(&self.reports).clone()
    }
}

impl crate::ports::StatusBus for FakeStatusBus {
    async fn send(&self, report: &crate::status::Report) -> Result<(), CallError> {
        let json = serde_json::to_value(report).expect("a report serializes");
        lock(&self.reports).push(json);
        Ok(())
    }
}
