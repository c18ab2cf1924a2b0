//! The IAM chain: user → {permissions ‖ key → secret}. The key is kept when a stored document
//! holds one this target may keep; otherwise one is issued and stored with the compare-and-swap
//! of `secret.rs`.

use std::time::SystemTime;

use super::access_key::{fits, IN_FLIGHT};

/// How long to wait, in turn, for a duplicate delivery to store the key it issued.
const TWIN_WAITS: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
];
/// How long to wait, in turn, for a force-deleted leftover's name to come free.
const GONE_WAITS: [std::time::Duration; 5] = [
    std::time::Duration::from_millis(250),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
];
use super::secret::{self, At, Read, Standing, Written};
use super::{steps, InStep, Made, ProvisionError, Provisioner, Target, LEGACY_TAG_KEY_VERSION};
use crate::key_material::{AwaitingPaste, Bookkeeping, SecretDocument};
use crate::ownership::TAG_RELEASED;
use crate::ports::{
    AccessKeyInfo, AccessKeys, CallError, ErrorKind, Ports, SecretInfo, SecretStore, User, Version, CURRENT,
};
use crate::properties::RecoveryWindow;

/// The stored key after the chain, and what is known about the user's other keys.
pub(super) struct KeyState {
    /// The secret's ARN.
    pub arn: String,
    /// The current version (this request's, or the one it kept or adopted).
    pub version: String,
    /// The current document.
    pub doc: SecretDocument,
    /// The user's keys as listed before this request changed any (empty for a new user).
    pub listed: Vec<AccessKeyInfo>,
    /// Whether this request issued the stored key.
    pub issued: bool,
    /// Whether this request checked (and, if it was ours, re-keyed) the secret before writing.
    pub secured: bool,
    /// The key this request replaced with the call back on: retired once the new one is
    /// registered (in portal mode the replaced key waits for a paste instead).
    pub replaced: Option<String>,
    /// The secret as discovery found it (`None` when this request created it).
    pub before: Option<SecretInfo>,
}

impl KeyState {
    /// When the stored key was issued, if known.
    pub(super) fn stored_created(&self, now: SystemTime) -> Option<SystemTime> {
        match self.issued {
            true => Some(now),
            false => self
                .listed
                .iter()
                .find(|k| k.access_key_id == self.doc.access_key_id)
                .map(|k| k.created),
        }
    }
}

impl<P: Ports> Provisioner<'_, P> {
    /// Runs the chain.
    pub(super) async fn chain(
        &self,
        target: &Target,
        user: Option<User>,
        secret: Standing,
        old_secret: Option<&SecretInfo>,
        made: &Made,
    ) -> Result<(User, KeyState), ProvisionError> {
        self.progress.set(steps::USER);
        let (user, fresh) = self.converge_user(target, user).await?;
        self.progress.set(steps::PERMISSIONS);
        // Boxed, as in `converge`: the key's future is deep, and a test thread's stack is 2 MiB.
        let (permissions, state) = futures::join!(
            Box::pin(self.converge_permissions(target, fresh)),
            Box::pin(self.key(target, secret, old_secret, fresh, made)),
        );
        let (_, state) = super::both(permissions, state)?;
        Ok((user, state))
    }

    /// Keeps or issues the key, and stores it.
    async fn key(
        &self,
        target: &Target,
        standing: Standing,
        old: Option<&SecretInfo>,
        fresh: bool,
        made: &Made,
    ) -> Result<KeyState, ProvisionError> {
        let standing = self.clear_leftover(target, standing).await?;
        let iam = self.ports.iam();
        let listing = async {
            match fresh {
                true => Ok(Vec::new()),
                false => iam.list_access_keys(&target.user.name).await.in_step(steps::ACCESS_KEY),
            }
        };
        let (candidates, listed) =
            futures::try_join!(secret::candidates(self.ports.secrets(), &standing, old), listing)?;
        let legacy = standing
            .info()
            .and_then(|i| i.tags.get(LEGACY_TAG_KEY_VERSION))
            .map(String::as_str);
        let current_version = standing.info().and_then(|i| i.version_with(CURRENT));
        let current = candidates
            .iter()
            .find(|c| Some(c.version.as_str()) == current_version)
            .cloned();
        if let Some(newer) = current.as_ref().filter(|c| c.doc.is_newer()) {
            return Err(ProvisionError::NewerDocument {
                secret: newer.arn.clone(),
                writer: newer.doc.writer(),
            });
        }
        // A SecretName move whose old secret could not be read any more: a duplicate delivery
        // moved the key and scheduled the old secret's deletion meanwhile. Its key is stored in
        // the new secret — adopt it; issuing another would make room by deleting it.
        if let Some(old) = old.filter(|o| !candidates.iter().any(|c| c.arn == o.arn)) {
            if self.moved_meanwhile(old).await? {
                return self.adopt(target, listed).await;
            }
        }
        // A stored key a person deactivated (a leak): none of the documents is kept — an older
        // one would bring back a key the stored one replaced — and a new key is issued.
        let revoked = current
            .as_ref()
            .is_some_and(|c| is_inactive(&listed, &c.doc.access_key_id));
        if revoked {
            tracing::warn!(
                "the stored key was deactivated by a person: a new key is issued, the old one is never reactivated"
            );
        }
        for candidate in candidates.iter().filter(|c| !revoked && fits(target, c, legacy)) {
            if self
                .confirm_key(&target.user.name, &candidate.doc.access_key_id, &listed)
                .await?
            {
                return self
                    .keep(target, &standing, candidate, current.as_ref(), listed, made)
                    .await;
            }
        }
        let kept = listed.clone();
        match self.issue_and_store(target, &standing, current, listed, made).await {
            Err(ProvisionError::KeySlotsTaken { user }) => self.await_twin(target, kept, user).await,
            other => other,
        }
    }

    /// Whether the secret a move reads from is gone or scheduled for deletion since discovery.
    async fn moved_meanwhile(&self, old: &SecretInfo) -> Result<bool, ProvisionError> {
        let now = self
            .ports
            .secrets()
            .describe(&old.arn)
            .await
            .in_step(steps::ACCESS_KEY)?;
        Ok(now.is_none_or(|info| info.pending_deletion))
    }

    /// Both key slots were taken while this request issued its key: a duplicate delivery of the
    /// same request is issuing one. Once it stored it, its key is this request's too.
    async fn await_twin(
        &self,
        target: &Target,
        listed: Vec<AccessKeyInfo>,
        user: String,
    ) -> Result<KeyState, ProvisionError> {
        for wait in TWIN_WAITS {
            if tokio::time::Instant::now() + wait >= self.context.deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            if let Ok(state) = self.adopt(target, listed.clone()).await {
                return Ok(state);
            }
        }
        Err(ProvisionError::KeySlotsTaken { user })
    }

    /// A leftover pending deletion is force-deleted so that a new secret takes its name — when
    /// it is this resource's own or was released by the Delete that scheduled it, and has no
    /// replica. Never restored: a restored secret keeps whatever tags, versions and replicas it
    /// had, and a request that fails after restoring it leaves it alive for anyone's next move.
    async fn clear_leftover(&self, target: &Target, standing: Standing) -> Result<Standing, ProvisionError> {
        let Standing::Leftover(info) = &standing else {
            return Ok(standing);
        };
        let released = info.tags.get(TAG_RELEASED).is_some_and(|v| v == "true");
        if !released && !target.owner.owns(&info.tags) {
            return Err(secret::leftover(
                target,
                "its Delete did not release it (cloud-app-security:released), so it may still be someone's",
            ));
        }
        if info.replicated {
            return Err(secret::leftover(target, "it has replicas in other regions"));
        }
        tracing::info!(secret = %info.arn, "force-deleting a released leftover secret, to create it afresh");
        let secrets = self.ports.secrets();
        secrets
            .delete(&info.arn, RecoveryWindow::Immediate)
            .await
            .in_step(steps::SECRET)?;
        self.await_gone(&info.arn).await?;
        Ok(Standing::Absent)
    }

    /// Secrets Manager finishes a forced deletion in the background: the name is free once
    /// `DescribeSecret` no longer finds it.
    async fn await_gone(&self, arn: &str) -> Result<(), ProvisionError> {
        let secrets = self.ports.secrets();
        for wait in GONE_WAITS {
            if secrets.describe(arn).await.in_step(steps::SECRET)?.is_none() {
                return Ok(());
            }
            if tokio::time::Instant::now() + wait >= self.context.deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        Err(ProvisionError::Call {
            step: steps::SECRET,
            source: CallError::new(
                "secretsmanager:DeleteSecret",
                ErrorKind::Other,
                None,
                "the leftover secret was force-deleted but its name is not free yet; retry",
            ),
        })
    }

    /// The kept key's document is written into the target secret when it is not already its
    /// current one (a moved secret, a rollback to the previous version) or lacks bookkeeping.
    async fn keep(
        &self,
        target: &Target,
        standing: &Standing,
        kept: &Read,
        current: Option<&Read>,
        listed: Vec<AccessKeyInfo>,
        made: &Made,
    ) -> Result<KeyState, ProvisionError> {
        let info = standing.info();
        let in_place = current.is_some_and(|c| {
            c.arn == kept.arn && c.version == kept.version && c.doc.access_key_id == kept.doc.access_key_id
        });
        let books = &kept.doc.bookkeeping;
        let settings = Some(target.key_settings());
        if in_place && books.key_version.as_deref() == Some(target.key_version.as_str()) && books.settings == settings {
            return Ok(KeyState {
                arn: kept.arn.clone(),
                version: kept.version.clone(),
                doc: kept.doc.clone(),
                listed,
                issued: false,
                secured: false,
                replaced: None,
                before: info.cloned(),
            });
        }
        let mut doc = kept.doc.clone();
        doc.bookkeeping.key_version = Some(target.key_version.clone());
        doc.bookkeeping.settings = settings;
        // A current document whose key is gone (a secret restored from a deleted connector) has
        // nothing to hand over: the kept document's own records are the truth.
        let alive = |id: &str| listed.iter().any(|k| k.access_key_id == id);
        let replacing = current.filter(|c| c.doc.access_key_id != doc.access_key_id && alive(&c.doc.access_key_id));
        if let Some(current) = replacing {
            // What Cloud App Security holds is what the current document recorded, not what
            // the restored one remembers; and the current key can itself be restored later.
            let books = &current.doc.bookkeeping;
            doc.bookkeeping.registration = books.registration.clone();
            doc.bookkeeping.stale_registrations = books.stale_registrations.clone();
            doc.bookkeeping.previous = Some(current.doc.as_previous());
        }
        let (awaiting, replaced) = match replacing.filter(|c| c.doc.user_name == target.user.name) {
            // A rollback to the previous version of this user: the key stored until now takes
            // the place a rotation would give it.
            Some(current) => self.succession(target, Some(current), &doc.access_key_id, &listed)?,
            // The same key, or one restored or carried with its own records.
            None => {
                let waiting = doc
                    .bookkeeping
                    .awaiting_paste
                    .take()
                    .filter(|a| alive(&a.access_key_id));
                (waiting, None)
            }
        };
        doc.bookkeeping.awaiting_paste = awaiting;
        self.progress.set(steps::SECRET);
        let state = self.store(target, standing, doc, listed, false, made).await?;
        Ok(KeyState { replaced, ..state })
    }

    /// What becomes of the key the secret holds now, when `next` takes its place. In portal mode
    /// it stays active, awaiting a paste of `next` (while one already waits, no new rotation
    /// starts); with the call back it is retired once `next` is registered.
    fn succession(
        &self,
        target: &Target,
        current: Option<&Read>,
        next: &str,
        listed: &[AccessKeyInfo],
    ) -> Result<(Option<AwaitingPaste>, Option<String>), ProvisionError> {
        let alive = |id: &str| listed.iter().any(|k| k.access_key_id == id);
        let Some(current) = current.filter(|c| c.doc.user_name == target.user.name) else {
            return Ok((None, None));
        };
        let previous = Some(current.doc.access_key_id.clone()).filter(|id| id != next && alive(id));
        // A previous key a person deactivated is no working key: it neither waits for a paste
        // nor blocks one; it is recorded as deactivated, and the key check deletes it a week on.
        if let Some(revoked) = previous.clone().filter(|id| is_inactive(listed, id)) {
            let waiting = current.doc.bookkeeping.awaiting_paste.clone();
            let waiting = waiting.filter(|a| a.access_key_id != next && alive(&a.access_key_id));
            let now = epoch(self.now());
            return Ok((
                waiting.or(Some(AwaitingPaste {
                    access_key_id: revoked,
                    since: now,
                    deactivated_at: Some(now),
                })),
                None,
            ));
        }
        let waiting = current
            .doc
            .bookkeeping
            .awaiting_paste
            .clone()
            .filter(|a| a.access_key_id != next && alive(&a.access_key_id));
        match (previous, waiting, &target.callback) {
            (Some(previous), _, Some(_)) => Ok((None, Some(previous))),
            (Some(previous), Some(waiting), None) => Err(self.paste_pending(target, &previous, &waiting)),
            (Some(previous), None, None) => Ok((
                Some(AwaitingPaste {
                    access_key_id: previous,
                    since: epoch(self.now()),
                    deactivated_at: None,
                }),
                None,
            )),
            (None, waiting, _) => Ok((waiting, None)),
        }
    }

    /// Issues a key and stores it.
    async fn issue_and_store(
        &self,
        target: &Target,
        standing: &Standing,
        current: Option<Read>,
        listed: Vec<AccessKeyInfo>,
        made: &Made,
    ) -> Result<KeyState, ProvisionError> {
        self.progress.set(steps::ACCESS_KEY);
        let now = self.now();
        // Checked before a key is issued: a rotation that must wait makes nothing.
        let (awaiting, _) = self.succession(target, current.as_ref(), "", &listed)?;
        let stored = current.as_ref().filter(|c| c.doc.user_name == target.user.name);
        // A deactivated stored key protects nothing: it gives up its slot first.
        let protected: Vec<&str> = stored
            .map(|c| c.doc.access_key_id.as_str())
            .filter(|id| !is_inactive(&listed, id))
            .into_iter()
            .chain(awaiting.as_ref().map(|a| a.access_key_id.as_str()))
            .collect();
        let stored_created = stored
            .and_then(|c| listed.iter().find(|k| k.access_key_id == c.doc.access_key_id))
            .map(|k| k.created);
        let key = self
            .issue_key(&target.user.name, &listed, &protected, stored_created, made)
            .await?;
        let (awaiting_paste, replaced) = self.succession(target, current.as_ref(), &key.access_key_id, &listed)?;
        let bookkeeping = Bookkeeping {
            key_version: Some(target.key_version.clone()),
            self_use_until: Some(epoch(now + IN_FLIGHT)),
            awaiting_paste,
            previous: current.as_ref().map(|c| c.doc.as_previous()),
            settings: Some(target.key_settings()),
            rotated_from: None,
            switch_unseen_since: None,
            ..current.map(|c| c.doc.bookkeeping).unwrap_or_default()
        };
        let doc = SecretDocument::new(key, &target.user.name, bookkeeping);
        self.progress.set(steps::SECRET);
        let state = self.store(target, standing, doc, listed, true, made).await?;
        Ok(KeyState {
            replaced: replaced.filter(|_| state.issued),
            ..state
        })
    }

    fn paste_pending(&self, target: &Target, pending: &str, waiting: &AwaitingPaste) -> ProvisionError {
        ProvisionError::PastePending {
            pending: pending.to_owned(),
            previous: waiting.access_key_id.clone(),
            user: target.user.name.clone(),
            secret: target.secret_name.clone(),
            since: httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(waiting.since)),
        }
    }

    /// Writes `doc` as the secret's current value. Losing the race to another invocation
    /// deletes this request's key and adopts the winner's, when it is one this target may keep.
    async fn store(
        &self,
        target: &Target,
        standing: &Standing,
        doc: SecretDocument,
        listed: Vec<AccessKeyInfo>,
        issued: bool,
        made: &Made,
    ) -> Result<KeyState, ProvisionError> {
        self.secure(target, standing).await?;
        let info = standing.info();
        let at = info.map(At::of);
        match self.write_document(target, at, &doc, "key", made).await? {
            Written::Current { arn, version } => Ok(KeyState {
                arn,
                version,
                doc,
                listed,
                issued,
                secured: info.is_some(),
                replaced: None,
                before: info.cloned(),
            }),
            Written::Lost => {
                if issued {
                    let iam = self.ports.iam();
                    iam.delete_access_key(&target.user.name, &doc.access_key_id)
                        .await
                        .in_step(steps::ACCESS_KEY)?;
                    made.deleted_key(&doc.access_key_id);
                }
                self.adopt(target, listed).await
            }
        }
    }

    /// After a lost race: the winner's document, if this target may keep its key.
    async fn adopt(&self, target: &Target, listed: Vec<AccessKeyInfo>) -> Result<KeyState, ProvisionError> {
        let secrets = self.ports.secrets();
        let concurrent = || ProvisionError::ConcurrentChange {
            secret: target.secret_name.clone(),
        };
        let info = secrets.describe(&target.secret_name).await.in_step(steps::SECRET)?;
        let Some(info) = info else { return Err(concurrent()) };
        let winner = secret::read(secrets, &info.arn, Version::Staged(CURRENT))
            .await
            .in_step(steps::SECRET)?
            .filter(|w| fits(target, w, None));
        let Some(winner) = winner else { return Err(concurrent()) };
        if !self
            .confirm_key(&target.user.name, &winner.doc.access_key_id, &listed)
            .await?
        {
            return Err(concurrent());
        }
        tracing::info!(key = %winner.doc.access_key_id, "another invocation stored the key first; adopted it");
        // What the winner replaced, this request retires as the winner will: with the call back
        // once the key is registered (in portal mode it is awaiting a paste, and stays).
        let books = &winner.doc.bookkeeping;
        let awaiting = books.awaiting_paste.as_ref().map(|a| a.access_key_id.as_str());
        let replaced = books
            .previous
            .as_ref()
            .filter(|p| p.user_name == target.user.name && p.access_key_id != winner.doc.access_key_id)
            .map(|p| p.access_key_id.clone())
            .filter(|p| Some(p.as_str()) != awaiting && target.callback.is_some());
        Ok(KeyState {
            arn: winner.arn,
            version: winner.version,
            doc: winner.doc,
            listed,
            issued: false,
            secured: false,
            replaced,
            before: Some(info),
        })
    }
}

/// Seconds since the epoch.
/// Whether `listed` shows the key `id` as inactive.
fn is_inactive(listed: &[AccessKeyInfo], id: &str) -> bool {
    listed.iter().any(|k| k.access_key_id == id && !k.active)
}

pub(crate) fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
