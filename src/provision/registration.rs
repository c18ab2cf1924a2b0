//! The call back: registers the connector with Cloud App Security once the key is stored and
//! before the old key is retired, only when something it carries changed. The registration is
//! recorded in the secret's value — never in tags alone — *before* the call (it may exist from
//! then on) and completed after it; only such a record lets a Delete or a replacement remove it,
//! so a request that failed on something foreign removes nothing anywhere.

use std::time::Duration;

use super::chain::KeyState;
use super::secret::{self, At, Written};
use super::{steps, Callback, Connector, InStep, Made, ProvisionError, Provisioner, Target};
use super::{LEGACY_TAG_CONNECTOR_ID, LEGACY_TAG_REGISTRATION};
use crate::cloud_app_security::credentials::Credentials;
use crate::cloud_app_security::{endpoint, sha256_hex};
use crate::key_material::{RecordedRegistration, SecretDocument};
use crate::ports::{Ports, Registration, Registry, SecretStore, Tenant, Version, CURRENT};

/// How often a record is written again after another invocation with the same key wrote first.
const RECORD_ATTEMPTS: usize = 3;

/// A digest of everything a registration carries with `key_id` (the previous release computed
/// the same from the same parts).
pub(crate) fn fingerprint(r: &RecordedRegistration, key_id: &str) -> String {
    let parts = [
        r.url.as_str(),
        &r.credentials,
        &r.name,
        &r.connections.join(","),
        key_id,
        &r.trail_arn,
        &r.physical_id,
        &r.region,
    ];
    sha256_hex(&parts.join("\n"))
}

/// The record a registration for `key_id` makes after a rotation: a completed one gets the new
/// key's fingerprint, an intent stays an intent.
pub(crate) fn rotated(r: &RecordedRegistration, key_id: &str) -> RecordedRegistration {
    RecordedRegistration {
        fingerprint: match r.id.is_empty() {
            true => String::new(),
            false => fingerprint(r, key_id),
        },
        ..r.clone()
    }
}

/// What the target registers, before the call (no id, no fingerprint yet).
fn wanted(target: &Target, callback: &Callback, trail_arn: &str) -> RecordedRegistration {
    RecordedRegistration {
        id: String::new(),
        url: callback.url.to_string(),
        credentials: callback.credentials_arn.clone(),
        physical_id: target.physical_id.clone(),
        fingerprint: String::new(),
        name: target.connector_name.clone(),
        connections: target.connections.iter().map(|c| c.as_str().to_owned()).collect(),
        trail_arn: trail_arn.to_owned(),
        region: target.stack.region.clone(),
    }
}

impl<P: Ports> Provisioner<'_, P> {
    /// Reads and checks the API credentials (read-only; runs with discovery).
    pub(crate) async fn credentials(&self, arn: Option<&str>) -> Result<Option<Credentials>, ProvisionError> {
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
        let intent = wanted(target, callback, trail_arn);
        let fp = fingerprint(&intent, &state.doc.access_key_id);
        if let Some(same) = recorded.as_ref().filter(|r| r.fingerprint == fp && !r.id.is_empty()) {
            let id = same.id.clone();
            let state = match state.doc.bookkeeping.registration.as_ref() {
                Some(r) if r.is_complete() => state,
                // Taken over from tags, or recorded by the previous release without what a
                // rotation needs: recorded in full, without a call.
                _ => {
                    let full = RecordedRegistration {
                        id: id.clone(),
                        fingerprint: fp,
                        ..intent
                    };
                    self.record(target, state, Some(full), stale, made).await?
                }
            };
            return Ok((state, Connector::Registered(id)));
        }
        // A registration elsewhere is removed once this one exists; one at the same place is
        // simply overwritten by the upsert.
        stale.extend(recorded);
        stale.retain(|r| r.url != intent.url || r.physical_id != target.physical_id);
        // Recorded before the call: from here on the registration may exist.
        let state = self
            .record(target, state, Some(intent.clone()), stale.clone(), made)
            .await?;
        let id = self.send(&intent, credentials, &state.doc).await?;
        let left = self.unregister_all(stale).await;
        let done = RecordedRegistration {
            id: id.clone(),
            fingerprint: fp,
            ..intent
        };
        let state = self.record(target, state, Some(done), left, made).await?;
        Ok((state, Connector::Registered(id)))
    }

    /// Sends the registration `record` describes again, with the key of `doc`, reading the API
    /// credentials it names; returns its id.
    pub(crate) async fn resend(
        &self,
        record: &RecordedRegistration,
        doc: &SecretDocument,
    ) -> Result<String, ProvisionError> {
        let credentials = self.credentials(Some(&record.credentials)).await?;
        let credentials = credentials.ok_or_else(|| {
            ProvisionError::Credentials(format!("secret {} was not found or has no value", record.credentials))
        })?;
        self.send(record, &credentials, doc).await
    }

    /// Sends the registration `record` describes, with the key of `doc`; returns its id.
    pub(crate) async fn send(
        &self,
        record: &RecordedRegistration,
        credentials: &Credentials,
        doc: &SecretDocument,
    ) -> Result<String, ProvisionError> {
        let url = endpoint::api_url(&record.url, self.context.allowed)
            .map_err(|e| ProvisionError::Credentials(format!("CloudAppSecurityUrl: {e}")))?;
        let tenant = Tenant { url: &url, credentials };
        let registration = Registration {
            name: record.name.clone(),
            external_id: record.physical_id.clone(),
            aws_account_id: record.physical_id.split(':').nth(4).unwrap_or_default().to_owned(),
            connections: record.connections.clone(),
            access_key_id: doc.access_key_id.clone(),
            secret_access_key: doc.secret_access_key.clone(),
            trail_arn: record.trail_arn.clone(),
            region: record.region.clone(),
        };
        let key = sha256_hex(&record.physical_id);
        let registry = self.ports.registry();
        let result = registry
            .upsert(&tenant, &key, &registration, self.context.deadline)
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
    pub(crate) async fn unregister_all(&self, registrations: Vec<RecordedRegistration>) -> Vec<RecordedRegistration> {
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
    pub(crate) async fn unregister(&self, recorded: &RecordedRegistration) -> bool {
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
        fingerprint: tags.get(LEGACY_TAG_REGISTRATION)?.clone(),
        ..wanted(target, callback, "")
    })
}
