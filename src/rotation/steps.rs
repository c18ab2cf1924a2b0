//! The four steps of Secrets Manager's rotation protocol, and the retirement of a key awaiting a
//! paste that both the first step and the scheduled check run.

use std::time::SystemTime;

use super::retirement::{self, Observed, Retirement, DEACTIVATED_FOR};
use super::{connections_of, RotationError, Rotator};
use crate::key_material::{AwaitingPaste, Bookkeeping, NewAccessKey, RecordedRegistration, SecretDocument};
use crate::ports::{AccessKeyInfo, AccessKeys, ErrorKind, Ports, SecretInfo, SecretStore, Version};
use crate::ports::{CURRENT, PENDING};
use crate::provision::access_key::IN_FLIGHT;
use crate::provision::registration::{fingerprint, rotated};
use crate::provision::secret::{self, Read, Written};
use crate::provision::{steps as step_names, InStep, Made, ProvisionError};

/// Whether `pending` is the document a `createSecret` made from `current`.
fn made_from(pending: &Read, current: &Read) -> bool {
    pending.doc.bookkeeping.rotated_from.as_deref() == Some(current.version.as_str())
        && pending.doc.access_key_id != current.doc.access_key_id
}

/// The document of the new key: the current one's records, the current key as `previous`, and in
/// portal mode the current key awaiting the paste of the new one.
fn next_document(current: &Read, key: NewAccessKey, now: SystemTime) -> SecretDocument {
    let books = &current.doc.bookkeeping;
    let epoch = crate::provision::epoch(now);
    let portal = books.registration.is_none();
    let bookkeeping = Bookkeeping {
        key_version: books.key_version.clone(),
        self_use_until: Some(crate::provision::epoch(now + IN_FLIGHT)),
        awaiting_paste: portal.then(|| AwaitingPaste {
            access_key_id: current.doc.access_key_id.clone(),
            since: epoch,
            deactivated_at: None,
        }),
        previous: Some(current.doc.as_previous()),
        registration: books.registration.as_ref().map(|r| rotated(r, &key.access_key_id)),
        stale_registrations: books.stale_registrations.clone(),
        settings: books.settings.clone(),
        rotated_from: Some(current.version.clone()),
        switch_unseen_since: None,
        ..books.clone()
    };
    SecretDocument::new(key, &current.doc.user_name, bookkeeping)
}

impl<P: Ports> Rotator<'_, P> {
    /// `createSecret`: a new key, stored as the `AWSPENDING` version `token`. A previous key
    /// still awaiting a paste stops it before anything is issued.
    pub(super) async fn create(
        &self,
        info: &SecretInfo,
        current: Read,
        token: &str,
        made: &Made,
    ) -> Result<(), RotationError> {
        if let Some(pending) = self.read_at(info, Version::Id(token)).await? {
            if made_from(&pending, &current) && self.alive(&pending).await? {
                return Ok(());
            }
        }
        let user = current.doc.user_name.clone();
        self.provisioner.progress.set(step_names::ACCESS_KEY);
        let iam = self.provisioner.ports.iam();
        let listed = iam.list_access_keys(&user).await.in_step(step_names::ACCESS_KEY)?;
        let (current, listed, decision) = self.retire_awaiting(current, listed, made).await?;
        self.not_blocked(&current, decision)?;
        self.clear_stale_pending(info, token).await?;
        // The same checks as every other write of a key, before one is issued.
        let settings = current.doc.bookkeeping.settings.as_ref();
        self.provisioner.secure_for_rotation(info, settings).await?;
        let stored = current.doc.access_key_id.as_str();
        let stored_created = listed.iter().find(|k| k.access_key_id == stored).map(|k| k.created);
        let key = self
            .provisioner
            .issue_key(&user, &listed, &[stored], stored_created, made)
            .await?;
        let doc = next_document(&current, key, self.provisioner.now());
        self.provisioner.progress.set(step_names::SECRET);
        let secrets = self.provisioner.ports.secrets();
        match secrets
            .put_value(&info.arn, &doc.to_secret_text(), token, &[PENDING])
            .await
        {
            // Another invocation of this step stored its key under the token first.
            Err(e) if e.kind == ErrorKind::AlreadyExists => Err(RotationError::Superseded {
                step: "createSecret",
                secret: info.arn.clone(),
            }),
            other => Ok(other.in_step(step_names::SECRET)?),
        }
    }

    /// `setSecret`: registers the new key with Cloud App Security; nothing in portal mode.
    pub(super) async fn set(&self, info: &SecretInfo, current: &Read, token: &str) -> Result<(), RotationError> {
        let Some(pending) = self.new_key(info, current, token).await? else {
            return Ok(());
        };
        self.register_new(info, &pending).await.map(drop)
    }

    /// Sends the pending document's registration with its (new) key; `true` when Cloud App
    /// Security accepted it (`false`: portal mode, nothing to send).
    async fn register_new(&self, info: &SecretInfo, pending: &Read) -> Result<bool, RotationError> {
        let Some(record) = pending.doc.bookkeeping.registration.as_ref() else {
            tracing::info!(key = %pending.doc.access_key_id, "portal mode: nothing to send; the new key waits to be pasted");
            return Ok(false);
        };
        if !record.is_complete() {
            return Err(RotationError::IncompleteRegistration(info.arn.clone()));
        }
        self.provisioner.progress.set(step_names::CALLBACK);
        let id = self.provisioner.resend(record, &pending.doc).await?;
        tracing::info!(connector = %id, key = %pending.doc.access_key_id, "Cloud App Security accepted the new key");
        Ok(true)
    }

    /// `testSecret`: the new key authenticates and can make the connector's reads, retried while
    /// IAM propagates it. A version holding no new key is Secrets Manager testing the
    /// configuration (`RotateImmediately = false`): nothing to prove.
    pub(super) async fn test(&self, info: &SecretInfo, current: &Read, token: &str) -> Result<(), RotationError> {
        let Some(pending) = self.new_key(info, current, token).await? else {
            tracing::info!("no new key in the pending version: a configuration test, passed");
            return Ok(());
        };
        let connections = connections_of(&pending);
        // Secrets Manager waits for the step: retried until the function's time is up.
        let until = self.provisioner.context.deadline;
        let proven = self.provisioner.verify_key(&pending.doc, &connections, until).await;
        proven.map_err(|source| RotationError::KeyFailed {
            key: pending.doc.access_key_id.clone(),
            source,
        })?;
        tracing::info!(key = %pending.doc.access_key_id, "the new key makes the connector's reads");
        Ok(())
    }

    /// `finishSecret`: moves `AWSCURRENT` to the new version from the one it was made from
    /// (compare-and-swap), then retires what the promotion makes obsolete.
    pub(super) async fn finish(&self, info: &SecretInfo, current: &Read, token: &str) -> Result<(), RotationError> {
        let Some(pending) = self.new_key(info, current, token).await? else {
            return Ok(());
        };
        let superseded = || RotationError::Superseded {
            step: "finishSecret",
            secret: info.arn.clone(),
        };
        let from = pending.doc.bookkeeping.rotated_from.clone().ok_or_else(superseded)?;
        if from != current.version {
            return Err(superseded());
        }
        if !self.alive(&pending).await? {
            return Err(RotationError::KeyGone(pending.doc.access_key_id.clone()));
        }
        // Whatever order the steps came in, Cloud App Security has the new key before the old
        // one can go (an idempotent upsert; portal mode: nothing).
        let accepted = self.register_new(info, &pending).await?;
        self.provisioner.progress.set(step_names::SECRET);
        let secrets = self.provisioner.ports.secrets();
        match secrets.move_stage(&info.arn, CURRENT, Some(token), Some(&from)).await {
            Err(e) if e.kind == ErrorKind::Conflict => return Err(superseded()),
            other => other.in_step(step_names::SECRET)?,
        }
        tracing::info!(key = %pending.doc.access_key_id, "the new key is current");
        self.after_promotion(info, token, accepted).await
    }

    /// After the promotion: with the call back the previous key goes (Cloud App Security
    /// accepted the new one — in this `finishSecret` when `accepted`, even if the document's
    /// record was in doubt when the rotation began); in portal mode it stays, and the
    /// description names the key to paste.
    pub(super) async fn after_promotion(
        &self,
        info: &SecretInfo,
        token: &str,
        accepted: bool,
    ) -> Result<(), RotationError> {
        let Some(promoted) = self.read_at(info, Version::Id(token)).await? else {
            return Ok(());
        };
        let doc = &promoted.doc;
        let books = &doc.bookkeeping;
        // Only what a rotation promoted, with a registration not in doubt, retires its
        // predecessor here; a key awaiting a paste stays.
        let registered = accepted || books.registration.as_ref().is_some_and(|r| !r.fingerprint.is_empty());
        let awaiting = books.awaiting_paste.as_ref().map(|a| a.access_key_id.as_str());
        let obsolete = books.previous.as_ref().filter(|p| {
            p.access_key_id != doc.access_key_id
                && p.user_name == doc.user_name
                && Some(p.access_key_id.as_str()) != awaiting
        });
        if let Some(old) = obsolete.filter(|_| registered && books.rotated_from.is_some()) {
            self.provisioner.progress.set(step_names::RETIRE);
            let iam = self.provisioner.ports.iam();
            iam.delete_access_key(&doc.user_name, &old.access_key_id)
                .await
                .in_step(step_names::RETIRE)?;
            tracing::info!(key = %old.access_key_id, "the previous key was deleted");
        }
        // A pending label left beside AWSCURRENT would make Secrets Manager refuse the next
        // rotation once a stack update moves AWSCURRENT on ("a previous rotation isn't complete").
        let secrets = self.provisioner.ports.secrets();
        match secrets.move_stage(&info.arn, PENDING, None, Some(token)).await {
            Err(e) if e.kind == ErrorKind::Conflict => {}
            other => other.in_step(step_names::SECRET)?,
        }
        let description = info.description.as_deref();
        Ok(self.provisioner.align_description(&info.arn, description, doc).await?)
    }

    /// The pending version's document, when it holds a key other than the current one.
    async fn new_key(&self, info: &SecretInfo, current: &Read, token: &str) -> Result<Option<Read>, RotationError> {
        let pending = self.read_at(info, Version::Id(token)).await?;
        Ok(pending.filter(|p| p.doc.access_key_id != current.doc.access_key_id))
    }

    /// Whether the document's key still exists (made active if it was not).
    async fn alive(&self, read: &Read) -> Result<bool, RotationError> {
        let user = &read.doc.user_name;
        Ok(self.provisioner.confirm_key(user, &read.doc.access_key_id, &[]).await?)
    }

    /// A rotation waits while the previous key awaits a paste or its deletion.
    fn not_blocked(&self, current: &Read, decision: Option<Retirement>) -> Result<(), RotationError> {
        let doc = &current.doc;
        let Some(waiting) = &doc.bookkeeping.awaiting_paste else {
            return Ok(());
        };
        let at = |s: u64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        // A retired key an administrator reactivated waits for the paste like any other.
        let retired = waiting
            .deactivated_at
            .filter(|_| !decision.is_some_and(Retirement::pending));
        match retired {
            Some(when) => Err(RotationError::Retiring {
                key: waiting.access_key_id.clone(),
                user: doc.user_name.clone(),
                until: httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(when) + DEACTIVATED_FOR,
                ),
            }),
            None => Err(RotationError::Provision(ProvisionError::PastePending {
                pending: doc.access_key_id.clone(),
                previous: waiting.access_key_id.clone(),
                user: doc.user_name.clone(),
                secret: current.arn.clone(),
                since: at(waiting.since),
            })),
        }
    }

    /// A pending label on another version (a rotation that failed before this release undid
    /// it) would make Secrets Manager refuse the next rotation: it comes off.
    async fn clear_stale_pending(&self, info: &SecretInfo, token: &str) -> Result<(), RotationError> {
        let secrets = self.provisioner.ports.secrets();
        let stale = info
            .versions
            .iter()
            .filter(|(id, stages)| id != token && stages.iter().any(|s| s == PENDING));
        for (id, _) in stale {
            match secrets.move_stage(&info.arn, PENDING, None, Some(id)).await {
                Err(e) if e.kind == ErrorKind::Conflict => {}
                other => other.in_step(step_names::SECRET)?,
            }
        }
        Ok(())
    }

    /// Applies the retirement rule to the key awaiting a paste, recording the outcome in the
    /// secret's value. Returns the current document and key listing after it.
    pub(super) async fn retire_awaiting(
        &self,
        current: Read,
        listed: Vec<AccessKeyInfo>,
        made: &Made,
    ) -> Result<(Read, Vec<AccessKeyInfo>, Option<Retirement>), RotationError> {
        let Some(waiting) = current.doc.bookkeeping.awaiting_paste.clone() else {
            return Ok((current, listed, None));
        };
        self.provisioner.progress.set(step_names::RETIRE);
        let observed = self.observe(&current, &waiting, &listed).await?;
        let grace = current.doc.bookkeeping.settings.as_ref().map_or(7, |s| s.grace_days);
        let now = self.provisioner.now();
        let decision = retirement::decide(&waiting, current.doc.bookkeeping.self_use_until, &observed, grace, now);
        tracing::info!(key = %waiting.access_key_id, decision = ?decision, "key awaiting a paste");
        let (doc, listed) = self.carry_out(&current, &waiting, decision, listed).await?;
        let Some(doc) = doc else {
            return Ok((current, listed, Some(decision)));
        };
        let current = self.record(&current, doc, made).await?;
        Ok((current, listed, Some(decision)))
    }

    /// The previous key, and both keys' last use when the previous one is still active.
    async fn observe(
        &self,
        current: &Read,
        waiting: &AwaitingPaste,
        listed: &[AccessKeyInfo],
    ) -> Result<Observed, RotationError> {
        let previous = listed
            .iter()
            .find(|k| k.access_key_id == waiting.access_key_id)
            .cloned();
        if !previous.as_ref().is_some_and(|k| k.active) {
            return Ok(Observed {
                previous,
                ..Observed::default()
            });
        }
        let iam = self.provisioner.ports.iam();
        let (previous_last_used, new_last_used) = futures::try_join!(
            iam.access_key_last_used(&waiting.access_key_id),
            iam.access_key_last_used(&current.doc.access_key_id),
        )
        .in_step(step_names::RETIRE)?;
        Ok(Observed {
            previous,
            previous_last_used,
            new_last_used,
        })
    }

    /// Acts on IAM; returns the document to record, if the record changes.
    async fn carry_out(
        &self,
        current: &Read,
        waiting: &AwaitingPaste,
        decision: Retirement,
        mut listed: Vec<AccessKeyInfo>,
    ) -> Result<(Option<SecretDocument>, Vec<AccessKeyInfo>), RotationError> {
        let iam = self.provisioner.ports.iam();
        let (user, key) = (&current.doc.user_name, &waiting.access_key_id);
        let now = crate::provision::epoch(self.provisioner.now());
        let mut doc = current.doc.clone();
        match decision {
            Retirement::Wait | Retirement::Reactivated | Retirement::Retired => return Ok((None, listed)),
            Retirement::Forget => doc.bookkeeping.awaiting_paste = None,
            Retirement::Deactivate { .. } | Retirement::NoteDeactivated => {
                if decision != Retirement::NoteDeactivated {
                    iam.set_access_key_active(user, key, false)
                        .await
                        .in_step(step_names::RETIRE)?;
                }
                listed
                    .iter_mut()
                    .filter(|k| &k.access_key_id == key)
                    .for_each(|k| k.active = false);
                let retired = AwaitingPaste {
                    deactivated_at: Some(now),
                    ..waiting.clone()
                };
                doc.bookkeeping.awaiting_paste = Some(retired);
                if decision == (Retirement::Deactivate { seen: false }) {
                    doc.bookkeeping.switch_unseen_since = Some(now);
                }
            }
            Retirement::Delete => {
                iam.delete_access_key(user, key).await.in_step(step_names::RETIRE)?;
                listed.retain(|k| &k.access_key_id != key);
                doc.bookkeeping.awaiting_paste = None;
            }
        }
        Ok((Some(doc), listed))
    }

    /// Makes `doc` current in place of `current` (compare-and-swap).
    pub(super) async fn record(&self, current: &Read, doc: SecretDocument, made: &Made) -> Result<Read, RotationError> {
        let text = doc.to_secret_text();
        // Derived from what is written: a retry of the same write is the same version, and a
        // version an earlier failed attempt left can never block a different one.
        let digest = crate::cloud_app_security::sha256_hex(text.expose());
        let token = secret::token(&current.version, &doc.access_key_id, &digest);
        let written = self
            .provisioner
            .replace_current(&current.arn, Some(&current.version), &text, token, made)
            .await?;
        match written {
            Written::Current { arn, version } => Ok(Read { arn, version, doc }),
            Written::Lost => Err(RotationError::Provision(ProvisionError::ConcurrentChange {
                secret: current.arn.clone(),
            })),
        }
    }

    /// While the previous key was retired without the switch seen: whether Cloud App Security
    /// has since been seen using the stored key; if so, that is recorded. Returns the document
    /// and whether the switch is still unseen.
    pub(super) async fn follow_switch(&self, current: Read, made: &Made) -> Result<(Read, bool), RotationError> {
        let books = &current.doc.bookkeeping;
        if books.switch_unseen_since.is_none() {
            return Ok((current, false));
        }
        let iam = self.provisioner.ports.iam();
        let used = iam
            .access_key_last_used(&current.doc.access_key_id)
            .await
            .in_step(step_names::RETIRE)?;
        let own_use_ends = books.self_use_until.unwrap_or(0);
        if !retirement::used_by_others(used, own_use_ends) {
            return Ok((current, true));
        }
        tracing::info!(key = %current.doc.access_key_id, "Cloud App Security is now seen using the stored key");
        let mut doc = current.doc.clone();
        doc.bookkeeping.switch_unseen_since = None;
        Ok((self.record(&current, doc, made).await?, false))
    }

    /// A registration in doubt — an intent whose call was never confirmed, or one a failed
    /// rotation could not take back — is sent again with the current key, and recorded.
    pub(super) async fn repair_registration(&self, current: Read, made: &Made) -> Result<Read, RotationError> {
        let books = &current.doc.bookkeeping;
        let Some(record) = books
            .registration
            .as_ref()
            .filter(|r| r.is_complete() && r.fingerprint.is_empty())
        else {
            return Ok(current);
        };
        self.provisioner.progress.set(step_names::CALLBACK);
        let id = self.provisioner.resend(record, &current.doc).await?;
        let mut doc = current.doc.clone();
        let fingerprint = fingerprint(record, &doc.access_key_id);
        doc.bookkeeping.registration = Some(RecordedRegistration {
            id,
            fingerprint,
            ..record.clone()
        });
        tracing::info!("the registration in doubt was sent again with the current key");
        self.record(&current, doc, made).await
    }

    /// The check retries the removal of registrations a Delete, a move or portal mode could not
    /// remove at the time (the tenant down, its token expired); those removed leave the record.
    pub(super) async fn retry_stale(&self, current: Read, made: &Made) -> Result<Read, RotationError> {
        let stale = current.doc.bookkeeping.stale_registrations.clone();
        if stale.is_empty() {
            return Ok(current);
        }
        self.provisioner.progress.set(step_names::CALLBACK);
        let left = self.provisioner.unregister_all(stale.clone()).await;
        if left == stale {
            return Ok(current);
        }
        tracing::info!(
            removed = stale.len() - left.len(),
            "stale registrations removed by the key check"
        );
        let mut doc = current.doc.clone();
        doc.bookkeeping.stale_registrations = left;
        self.record(&current, doc, made).await
    }
}
