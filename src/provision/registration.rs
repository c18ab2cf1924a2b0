//! The call back: registers the connector with Cloud App Security once the key is stored and
//! before the old key is retired, only when something it carries changed. The registration is
//! recorded in the secret's value — never in tags alone — *before* the call (it may exist from
//! then on) and completed after it; only such a record lets a Delete or a replacement remove it,
//! so a request that failed on something foreign removes nothing anywhere.

use std::time::Duration;

use super::chain::KeyState;
use super::secret::{self, At, Written};
use super::{steps, Connector, InStep, Made, ProvisionError, Provisioner, Target};
use super::{LEGACY_TAG_CONNECTOR_ID, LEGACY_TAG_REGISTRATION};
use crate::cloud_app_security::credentials::Credentials;
use crate::cloud_app_security::{endpoint, sha256_hex};
use crate::key_material::RecordedRegistration;
use crate::ports::{Ports, Registration, Registry, SecretStore, Tenant, Version, CURRENT};

/// How often a record is written again after another invocation with the same key wrote first.
const RECORD_ATTEMPTS: usize = 3;

/// A digest of everything a registration carries (the previous release computed the same).
fn fingerprint(target: &Target, url: &str, credentials: &str, key_id: &str, trail_arn: &str) -> String {
    let connections: Vec<&str> = target.connections.iter().map(|c| c.as_str()).collect();
    let parts = [
        url,
        credentials,
        &target.connector_name,
        &connections.join(","),
        key_id,
        trail_arn,
        &target.physical_id,
        &target.stack.region,
    ];
    sha256_hex(&parts.join("\n"))
}

impl<P: Ports> Provisioner<'_, P> {
    /// Reads and checks the API credentials (read-only; runs with discovery).
    pub(super) async fn credentials(&self, arn: Option<&str>) -> Result<Option<Credentials>, ProvisionError> {
        let Some(arn) = arn else { return Ok(None) };
        let secrets = self.ports.secrets();
        let text = secrets
            .get_value(arn, Version::Staged(CURRENT))
            .await
            .in_step(steps::CREDENTIALS)?;
        let text =
            text.ok_or_else(|| ProvisionError::Credentials(format!("secret {arn} was not found or has no value")))?;
        Credentials::parse(&text.text, self.context.allowed)
            .map(Some)
            .map_err(|e| ProvisionError::Credentials(e.to_string()))
    }

    /// Registers the stored key when anything the registration carries changed, then removes
    /// the registrations recorded for another URL or physical id; in portal mode removes all.
    pub(super) async fn register(
        &self,
        target: &Target,
        credentials: Option<&Credentials>,
        state: KeyState,
        trail_arn: &str,
        made: &Made,
    ) -> Result<(KeyState, Connector), ProvisionError> {
        self.progress.set(steps::CALLBACK);
        let books = &state.doc.bookkeeping;
        let recorded = books.registration.clone().or_else(|| legacy(target, &state));
        let mut stale = books.stale_registrations.clone();
        let (Some(callback), Some(credentials)) = (&target.callback, credentials) else {
            stale.extend(recorded);
            return self.withdraw(target, state, stale, made).await;
        };
        let url = callback.url.as_str();
        let fp = fingerprint(
            target,
            url,
            &callback.credentials_arn,
            &state.doc.access_key_id,
            trail_arn,
        );
        if let Some(same) = recorded.as_ref().filter(|r| r.fingerprint == fp && !r.id.is_empty()) {
            let id = same.id.clone();
            let state = match state.doc.bookkeeping.registration.is_some() {
                true => state,
                false => self.record(target, state, recorded.clone(), stale, made).await?,
            };
            return Ok((state, Connector::Registered(id)));
        }
        // A registration elsewhere is removed once this one exists; one at the same place is
        // simply overwritten by the upsert.
        stale.extend(recorded);
        stale.retain(|r| r.url != url || r.physical_id != target.physical_id);
        let intent = RecordedRegistration {
            id: String::new(),
            url: url.to_owned(),
            credentials: callback.credentials_arn.clone(),
            physical_id: target.physical_id.clone(),
            fingerprint: String::new(),
        };
        // Recorded before the call: from here on the registration may exist.
        let state = self
            .record(target, state, Some(intent.clone()), stale.clone(), made)
            .await?;
        let tenant = Tenant {
            url: &callback.url,
            credentials,
        };
        let id = self.upsert(target, &tenant, &state, trail_arn).await?;
        let left = self.unregister_all(stale).await;
        let done = RecordedRegistration {
            id: id.clone(),
            fingerprint: fp,
            ..intent
        };
        let state = self.record(target, state, Some(done), left, made).await?;
        Ok((state, Connector::Registered(id)))
    }

    async fn upsert(
        &self,
        target: &Target,
        tenant: &Tenant<'_>,
        state: &KeyState,
        trail_arn: &str,
    ) -> Result<String, ProvisionError> {
        let registration = Registration {
            name: target.connector_name.clone(),
            external_id: target.physical_id.clone(),
            aws_account_id: target.stack.account_id.clone(),
            connections: target.connections.iter().map(|c| c.as_str().to_owned()).collect(),
            access_key_id: state.doc.access_key_id.clone(),
            secret_access_key: state.doc.secret_access_key.clone(),
            trail_arn: trail_arn.to_owned(),
            region: target.stack.region.clone(),
        };
        let key = sha256_hex(&target.physical_id);
        let registry = self.ports.registry();
        let result = registry
            .upsert(tenant, &key, &registration, self.context.deadline)
            .await;
        result.map_err(ProvisionError::Callback)
    }

    /// Portal mode: removes every recorded registration. They first become "to remove" (a
    /// removal may happen from then on); what cannot be removed now stays recorded as such.
    async fn withdraw(
        &self,
        target: &Target,
        state: KeyState,
        recorded: Vec<RecordedRegistration>,
        made: &Made,
    ) -> Result<(KeyState, Connector), ProvisionError> {
        if recorded.is_empty() {
            return Ok((state, Connector::PendingPortal));
        }
        let mut state = state;
        if state.doc.bookkeeping.registration.is_some() {
            state = self.record(target, state, None, recorded.clone(), made).await?;
        }
        let left = self.unregister_all(recorded).await;
        let state = match state.doc.bookkeeping.stale_registrations == left {
            true => state,
            false => self.record(target, state, None, left, made).await?,
        };
        Ok((state, Connector::PendingPortal))
    }

    /// Removes each registration; returns those that could not be removed now.
    pub(super) async fn unregister_all(&self, registrations: Vec<RecordedRegistration>) -> Vec<RecordedRegistration> {
        let mut left = Vec::new();
        for registration in registrations {
            if !self.unregister(&registration).await {
                left.push(registration);
            }
        }
        left
    }

    /// Writes the registration records into the secret's value. Another invocation storing the
    /// same key at the same moment (a duplicate delivery) is written over; one storing another
    /// key wins, and this request fails.
    async fn record(
        &self,
        target: &Target,
        mut state: KeyState,
        registration: Option<RecordedRegistration>,
        stale: Vec<RecordedRegistration>,
        made: &Made,
    ) -> Result<KeyState, ProvisionError> {
        for _ in 0..RECORD_ATTEMPTS {
            let mut doc = state.doc.clone();
            doc.bookkeeping.registration = registration.clone();
            doc.bookkeeping.stale_registrations = stale.clone();
            let at = At {
                arn: &state.arn,
                expected: Some(&state.version),
            };
            match self
                .write_document(target, Some(at), &doc, "registration", made)
                .await?
            {
                Written::Current { version, .. } => return Ok(KeyState { version, doc, ..state }),
                Written::Lost => state = self.rebase(target, state).await?,
            }
        }
        Err(ProvisionError::ConcurrentChange {
            secret: target.secret_name.clone(),
        })
    }

    /// After a lost write: the current version, if it still holds this request's key.
    async fn rebase(&self, target: &Target, state: KeyState) -> Result<KeyState, ProvisionError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = secret::read(self.ports.secrets(), &state.arn, Version::Staged(CURRENT)).await;
        match read.in_step(steps::CALLBACK)? {
            Some(current) if current.doc.access_key_id == state.doc.access_key_id => Ok(KeyState {
                version: current.version,
                doc: current.doc,
                ..state
            }),
            _ => Err(ProvisionError::ConcurrentChange {
                secret: target.secret_name.clone(),
            }),
        }
    }

    /// Removes a recorded registration. Best effort: a failure is logged; `false` then.
    pub(super) async fn unregister(&self, recorded: &RecordedRegistration) -> bool {
        let result = async {
            let url = endpoint::api_url(&recorded.url, self.context.allowed)
                .map_err(|e| ProvisionError::Credentials(e.to_string()))?;
            let Some(credentials) = self.credentials(Some(&recorded.credentials)).await? else {
                return Ok(());
            };
            let tenant = Tenant {
                url: &url,
                credentials: &credentials,
            };
            let key = sha256_hex(&recorded.physical_id);
            let registry = self.ports.registry();
            registry
                .remove(&tenant, &key, self.context.deadline)
                .await
                .map_err(ProvisionError::Callback)
        };
        match result.await {
            Ok(()) => {
                tracing::info!(url = %recorded.url, "connector registration removed");
                true
            }
            Err(e) => {
                tracing::warn!(url = %recorded.url, error = %e, "could not remove the connector registration");
                false
            }
        }
    }
}

/// A registration the previous release kept in the secret's tags, taken over once: it can
/// only spare a call (its fingerprint must match), never send anything anywhere.
fn legacy(target: &Target, state: &KeyState) -> Option<RecordedRegistration> {
    let tags = &state.before.as_ref()?.tags;
    let callback = target.callback.as_ref()?;
    Some(RecordedRegistration {
        id: tags.get(LEGACY_TAG_CONNECTOR_ID)?.clone(),
        url: callback.url.to_string(),
        credentials: callback.credentials_arn.clone(),
        physical_id: target.physical_id.clone(),
        fingerprint: tags.get(LEGACY_TAG_REGISTRATION)?.clone(),
    })
}
