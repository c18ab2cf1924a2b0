//! The secret that holds the key: found, restored when it is a leftover of ours, checked before
//! a key goes in, written with a compare-and-swap on its `AWSCURRENT` label, tagged, and deleted
//! only when it serves the resource being deleted.
//!
//! # Concurrency
//!
//! Lambda delivers at least once, so two invocations may change the key at the same time. The
//! secret's `AWSCURRENT` label is the lock: a new document is added as a version (its id derived
//! from the request and the key, so a retried write is a no-op) and then becomes current only by
//! moving `AWSCURRENT` *from the version this invocation read* — Secrets Manager refuses the move
//! if another invocation moved the label first. A new secret is the same race, decided by
//! `CreateSecret`. The invocation that loses deletes the key it issued and adopts the winner's.

use aws_lc_rs::digest;

use super::{steps, InStep, Kind, Made, ProvisionError, Provisioner, Target};
use super::{LEGACY_TAG_CONNECTOR_ID, LEGACY_TAG_KEY_VERSION, LEGACY_TAG_REGISTRATION};
use crate::key_material::{Bookkeeping, KeySettings, RecordedRegistration, SecretDocument, SecretText};
use crate::ownership::{Owner, UserRef, TAG_LOGICAL_ID, TAG_PHYSICAL_ID, TAG_RELEASED, TAG_STACK_ID};
use crate::ports::{AccessKeys, CURRENT, PENDING, WRITING};
use crate::ports::{CallError, Created, ErrorKind, Keys, NewSecret, Ports, SecretInfo, SecretStore, Users, Version};
use crate::properties::RecoveryWindow;

/// The secret's description: what it is, for a person browsing Secrets Manager.
pub const DESCRIPTION: &str = "Access key of the IAM user that Microsoft Defender for Cloud Apps uses to read this \
                               account (managed by the Custom::CloudAppSecurityConnector resource)";
/// The description while a key waits to be pasted (portal mode): a person browsing Secrets
/// Manager sees which key and since when.
pub(crate) fn description_for(doc: &SecretDocument) -> String {
    match &doc.bookkeeping.awaiting_paste {
        Some(waiting) if waiting.deactivated_at.is_none() => format!(
            "{DESCRIPTION}. Key {new} waits to be pasted into Cloud App Security since {since}; the previous key \
             {old} stays active until Cloud App Security is seen using the new one or the grace period ends",
            new = doc.access_key_id,
            since = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(waiting.since)),
            old = waiting.access_key_id,
        ),
        _ => DESCRIPTION.to_owned(),
    }
}

/// The tags a Delete adds to the secret it schedules for deletion: this stack's (every tag call
/// of the role carries it) and [`TAG_RELEASED`].
fn released(owner: &Owner) -> crate::ports::Tags {
    [(TAG_STACK_ID, owner.stack_id.as_str()), (TAG_RELEASED, "true")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The alias of the AWS managed key Secrets Manager uses when none is named.
pub(crate) const DEFAULT_KEY_ALIAS: &str = "alias/aws/secretsmanager";

/// How the target secret relates to this resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// None of that name.
    Absent,
    /// Ours by its tags, and live.
    Ours(SecretInfo),
    /// Pending deletion, met by a Create: a leftover of a deleted connector. Never restored or
    /// taken over — force-deleted and replaced by a new secret when it is this resource's own or
    /// was released by the Delete that scheduled it ([`TAG_RELEASED`]); otherwise the request
    /// fails naming it.
    Leftover(SecretInfo),
}

impl Standing {
    /// Judges what discovery found; a secret of someone else fails the request.
    pub(super) fn judge(target: &Target, info: Option<SecretInfo>) -> Result<Standing, ProvisionError> {
        let buried = |i: &SecretInfo| buried(target, i);
        match info {
            None => Ok(Standing::Absent),
            // This resource's own Delete, after the request was signed: a late delivery.
            Some(i) if buried(&i) => Err(ProvisionError::Superseded(format!(
                "secret {} was scheduled for deletion by this resource's Delete after this request was sent",
                target.secret_name
            ))),
            // Only a Create (a connector deployed again) clears a leftover: an Update meeting
            // one is a late delivery, or a SecretName change onto another connector's remains.
            Some(i) if i.pending_deletion && target.before.is_none() => Ok(Standing::Leftover(i)),
            Some(i) if i.pending_deletion => {
                Err(leftover(target, "an Update never replaces a secret pending deletion"))
            }
            Some(i) if target.owner.owns(&i.tags) => Ok(Standing::Ours(i)),
            Some(_) => Err(ProvisionError::Foreign {
                kind: Kind::Secret,
                name: target.secret_name.clone(),
            }),
        }
    }

    /// The secret's metadata, if it exists.
    pub(super) fn info(&self) -> Option<&SecretInfo> {
        match self {
            Standing::Absent => None,
            Standing::Ours(i) | Standing::Leftover(i) => Some(i),
        }
    }
}

/// Why a secret must not receive a key, if it must not: a resource policy (it could grant others
/// access), a replica (a copy under policies this function never sees), or a tag this stack did
/// not set and `accepted` does not name (an attribute-based policy could grant its reader access).
pub(crate) fn unfit(info: &SecretInfo, policy: Option<&str>, accepted: &[String]) -> Option<String> {
    if policy.is_some() {
        return Some(
            "has a resource policy (it could grant others access); remove it (aws secretsmanager \
             delete-resource-policy) or choose another SecretName"
                .to_owned(),
        );
    }
    if info.replicated {
        return Some(
            "is replicated to other regions (each replica is a copy of the key under its own policies); remove \
             the replicas (aws secretsmanager remove-regions-from-replication) or choose another SecretName"
                .to_owned(),
        );
    }
    let unexpected = unexpected_tags(&info.tags, accepted);
    (!unexpected.is_empty()).then(|| {
        format!(
            "carries tags this stack did not set ({}): one could grant access through an attribute-based policy. \
             Remove them, or list their keys in ToleratedTagKeys if your organization's tagging puts them there",
            unexpected.join(", ")
        )
    })
}

/// The keys of `tags` that are neither this function's own, nor AWS's (`aws:`, which no one else
/// can set), nor named by `accepted` (a trailing `*` matches a prefix).
pub(crate) fn unexpected_tags(tags: &crate::ports::Tags, accepted: &[String]) -> Vec<String> {
    const OWN: [&str; 7] = [
        TAG_STACK_ID,
        TAG_LOGICAL_ID,
        TAG_PHYSICAL_ID,
        TAG_RELEASED,
        LEGACY_TAG_KEY_VERSION,
        LEGACY_TAG_CONNECTOR_ID,
        LEGACY_TAG_REGISTRATION,
    ];
    let matches = |pattern: &String, key: &str| match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => pattern == key,
    };
    tags.keys()
        .filter(|k| !OWN.contains(&k.as_str()) && !k.starts_with("aws:"))
        .filter(|k| !accepted.iter().any(|a| matches(a, k)))
        .cloned()
        .collect()
}

/// The error for a secret pending deletion that this request may not replace.
pub(super) fn leftover(target: &Target, problem: &str) -> ProvisionError {
    ProvisionError::LeftoverSecret {
        name: target.secret_name.clone(),
        problem: problem.to_owned(),
    }
}

/// Whether `info` is this resource's secret, scheduled for deletion by its own Delete after
/// `target`'s request was signed: a tombstone a late delivery must leave alone.
pub(super) fn buried(target: &Target, info: &SecretInfo) -> bool {
    let deleted_later = info.deleted_at.zip(target.signed_at).is_some_and(|(d, s)| s < d);
    info.pending_deletion && deleted_later && target.owner.owns(&info.tags)
}

/// A document read from a secret, and where.
#[derive(Clone)]
pub(crate) struct Read {
    /// The secret's ARN.
    pub arn: String,
    /// The version read.
    pub version: String,
    /// Its document.
    pub doc: SecretDocument,
}

/// Reads one version's document; `None` if absent or not in our format.
pub(crate) async fn read<S: SecretStore>(
    secrets: &S,
    arn: &str,
    version: Version<'_>,
) -> Result<Option<Read>, CallError> {
    let Some(value) = secrets.get_value(arn, version).await? else {
        return Ok(None);
    };
    Ok(SecretDocument::from_secret_text(&value.text).map(|doc| Read {
        arn: arn.to_owned(),
        version: value.version_id,
        doc,
    }))
}

/// The documents that may hold a key this resource can keep, best first: the secret's current
/// one, the one it replaced (a rollback returns to it), and, after a `SecretName` change, the old
/// secret's. A replaced document is read from the current one's records, at the current version.
pub(super) async fn candidates<S: SecretStore>(
    secrets: &S,
    standing: &Standing,
    old: Option<&SecretInfo>,
) -> Result<Vec<Read>, ProvisionError> {
    let current = async {
        match standing.info() {
            Some(i) if i.version_with(CURRENT).is_some() => read(secrets, &i.arn, Version::Staged(CURRENT)).await,
            _ => Ok(None),
        }
    };
    let moved = async {
        match old {
            Some(i) => read(secrets, &i.arn, Version::Staged(CURRENT)).await,
            None => Ok(None),
        }
    };
    let (current, moved) = futures::try_join!(current, moved).in_step(steps::ACCESS_KEY)?;
    let previous = current.as_ref().and_then(|c| {
        Some(Read {
            arn: c.arn.clone(),
            version: c.version.clone(),
            doc: c.doc.restore_previous()?,
        })
    });
    Ok([current, previous, moved].into_iter().flatten().collect())
}

/// A version id for a write: derived from the request, the key and what the write is for, so
/// that Secrets Manager treats a retry of the same write as the same version.
pub(crate) fn token(request_id: &str, key_id: &str, purpose: &str) -> String {
    let d = digest::digest(&digest::SHA256, format!("{request_id}\n{key_id}\n{purpose}").as_bytes());
    let h: String = d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// An existing secret, and the version this invocation read as current.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    /// The secret's ARN.
    pub arn: &'a str,
    /// The version read as current (`None`: the secret had no value).
    pub expected: Option<&'a str>,
}

impl<'a> At<'a> {
    /// The secret as discovery saw it.
    pub(super) fn of(info: &'a SecretInfo) -> At<'a> {
        At {
            arn: &info.arn,
            expected: info.version_with(CURRENT),
        }
    }
}

/// The outcome of a write.
pub(crate) enum Written {
    /// The document is current, in this version.
    Current {
        /// The secret's ARN.
        arn: String,
        /// The new current version.
        version: String,
    },
    /// Another invocation changed the secret first; nothing of this write became current.
    Lost,
}

impl<P: Ports> Provisioner<'_, P> {
    /// Makes `doc` the secret's current value: creates the secret, or adds a version and moves
    /// `AWSCURRENT` to it from `expected` (the version this invocation read).
    pub(super) async fn write_document(
        &self,
        target: &Target,
        at: Option<At<'_>>,
        doc: &SecretDocument,
        purpose: &str,
        made: &Made,
    ) -> Result<Written, ProvisionError> {
        // Each write of a request gets its own version id; a retry of the same write, the same.
        let purpose = format!("{purpose} {}", made.writes());
        let token = token(self.context.request_id, &doc.access_key_id, &purpose);
        let text = doc.to_secret_text();
        let Some(At { arn, expected }) = at else {
            return self.create_secret(target, &text, &token).await;
        };
        self.replace_current(arn, expected, &text, token, made).await
    }

    /// Adds `text` as version `token` and moves `AWSCURRENT` to it from `expected`; `Lost` when
    /// another writer moved the label first or used the same token for another value.
    pub(crate) async fn replace_current(
        &self,
        arn: &str,
        expected: Option<&str>,
        text: &SecretText,
        token: String,
        made: &Made,
    ) -> Result<Written, ProvisionError> {
        let secrets = self.ports.secrets();
        // Recorded before the calls: a call can fail after its effect took place.
        made.staged(arn, &token);
        match secrets.put_value(arn, text, &token, &[WRITING]).await {
            // A duplicate delivery of this request wrote another value under the same id first.
            Err(e) if e.kind == ErrorKind::AlreadyExists => return Ok(Written::Lost),
            other => other.in_step(steps::SECRET)?,
        }
        match secrets.move_stage(arn, CURRENT, Some(&token), expected).await {
            Ok(()) => Ok(Written::Current {
                arn: arn.to_owned(),
                version: token,
            }),
            Err(e) if e.kind == ErrorKind::Conflict => {
                // Our version stays behind without a reader; take our label off it.
                let _ = secrets.move_stage(arn, WRITING, None, Some(&token)).await;
                Ok(Written::Lost)
            }
            Err(e) => Err(e).in_step(steps::SECRET),
        }
    }

    async fn create_secret(&self, target: &Target, text: &SecretText, token: &str) -> Result<Written, ProvisionError> {
        let tags = target.secret_tags();
        let secret = NewSecret {
            name: &target.secret_name,
            value: text,
            kms_key_id: target.secret_kms_key_id.as_deref(),
            tags: &tags,
            token,
            description: DESCRIPTION,
        };
        match self.ports.secrets().create(&secret).await.in_step(steps::SECRET)? {
            Created::New(arn) => Ok(Written::Current {
                arn,
                version: token.to_owned(),
            }),
            Created::AlreadyExists => Ok(Written::Lost),
        }
    }

    /// Before a key goes into a secret this request did not create: no resource policy, no
    /// replica, no tag this stack did not set or the deployer does not tolerate, and the KMS key
    /// the properties name — our own secret is brought to that key, a leftover of a deleted stack
    /// must already have it. A tag alone never earns a secret the key.
    pub(super) async fn secure(&self, target: &Target, standing: &Standing) -> Result<(), ProvisionError> {
        let Some(info) = standing.info() else { return Ok(()) };
        let secrets = self.ports.secrets();
        let (policy, same_key) = futures::try_join!(
            async { secrets.resource_policy(&info.arn).await.in_step(steps::SECRET) },
            self.same_kms_key(target.secret_kms_key_id.as_deref(), info.kms_key_id.as_deref()),
        )?;
        if let Some(problem) = unfit(info, policy.as_deref(), &target.accepted_tags()) {
            return Err(ProvisionError::UnsafeSecret {
                name: target.secret_name.clone(),
                problem,
            });
        }
        match (same_key, standing) {
            (true, _) => Ok(()),
            (false, Standing::Ours(_)) => secrets
                .set_kms_key(&info.arn, target.secret_kms_key_id.as_deref())
                .await
                .in_step(steps::SECRET),
            (false, _) => {
                let wanted = target.secret_kms_key_id.as_deref().unwrap_or(DEFAULT_KEY_ALIAS);
                let found = info.kms_key_id.as_deref().unwrap_or(DEFAULT_KEY_ALIAS);
                Err(ProvisionError::UnsafeSecret {
                    name: target.secret_name.clone(),
                    problem: format!("is encrypted with KMS key {found}, not {wanted} as SecretKmsKeyId says"),
                })
            }
        }
    }

    /// The same checks for a rotation's write, against the settings the last Create or Update
    /// recorded: the tags it accepted, the KMS key it named.
    pub(crate) async fn secure_for_rotation(
        &self,
        info: &SecretInfo,
        settings: Option<&KeySettings>,
    ) -> Result<(), ProvisionError> {
        let secrets = self.ports.secrets();
        let wanted = settings.and_then(|s| s.kms_key.as_deref());
        let (policy, same_key) = futures::try_join!(
            async { secrets.resource_policy(&info.arn).await.in_step(steps::SECRET) },
            async {
                match wanted {
                    Some(wanted) => self.same_kms_key(Some(wanted), info.kms_key_id.as_deref()).await,
                    None => Ok(true),
                }
            },
        )?;
        let accepted = settings.map(|s| s.accepted_tags.as_slice()).unwrap_or_default();
        let problem = unfit(info, policy.as_deref(), accepted).or_else(|| {
            (!same_key).then(|| {
                let found = info.kms_key_id.as_deref().unwrap_or(DEFAULT_KEY_ALIAS);
                let wanted = wanted.unwrap_or(DEFAULT_KEY_ALIAS);
                format!("is encrypted with KMS key {found}, not {wanted} as SecretKmsKeyId says")
            })
        });
        match problem {
            Some(problem) => Err(ProvisionError::UnsafeSecret {
                name: info.arn.clone(),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// Whether two key references (`None`: the AWS managed key) name the same key: equal
    /// strings, or the same key once KMS resolved both.
    pub(super) async fn same_kms_key(&self, wanted: Option<&str>, found: Option<&str>) -> Result<bool, ProvisionError> {
        let wanted = wanted.unwrap_or(DEFAULT_KEY_ALIAS);
        let found = found.unwrap_or(DEFAULT_KEY_ALIAS);
        if wanted == found || found.ends_with(&format!(":{wanted}")) || wanted.ends_with(&format!(":{found}")) {
            return Ok(true);
        }
        let keys = self.ports.keys();
        let (a, b) = futures::try_join!(keys.resolve(wanted), keys.resolve(found)).in_step(steps::SECRET)?;
        Ok(a.is_some() && a == b)
    }

    /// Sets the description [`description_for`] gives `doc`, when `current` differs.
    pub(crate) async fn align_description(
        &self,
        arn: &str,
        current: Option<&str>,
        doc: &SecretDocument,
    ) -> Result<(), ProvisionError> {
        let wanted = description_for(doc);
        if current == Some(wanted.as_str()) {
            return Ok(());
        }
        let secrets = self.ports.secrets();
        secrets.set_description(arn, &wanted).await.in_step(steps::SECRET)
    }

    /// Brings the secret's tags and KMS key in line; removes the previous release's tags.
    /// `info` is the secret as it was before this request's writes.
    pub(super) async fn tidy_secret(
        &self,
        target: &Target,
        info: &SecretInfo,
        kms_done: bool,
    ) -> Result<(), ProvisionError> {
        let secrets = self.ports.secrets();
        let tags = target.secret_tags();
        let changed = tags.iter().any(|(k, v)| info.tags.get(k) != Some(v));
        let present = |keys: &mut dyn Iterator<Item = &str>| -> Vec<String> {
            keys.filter(|k| info.tags.contains_key(*k)).map(str::to_owned).collect()
        };
        // Two calls: the role allows removing the deployer's tags and the first release's
        // bookkeeping tags by separate statements, and one request must fit one statement.
        let removed = present(&mut target.removed_tags.iter().map(String::as_str));
        let legacy =
            present(&mut [LEGACY_TAG_KEY_VERSION, LEGACY_TAG_CONNECTOR_ID, LEGACY_TAG_REGISTRATION].into_iter());
        let rekey = !kms_done
            && !self
                .same_kms_key(target.secret_kms_key_id.as_deref(), info.kms_key_id.as_deref())
                .await?;
        futures::try_join!(
            async {
                if changed {
                    secrets.tag(&info.arn, &tags).await
                } else {
                    Ok(())
                }
            },
            async {
                match removed.is_empty() {
                    true => Ok(()),
                    false => secrets.untag(&info.arn, &removed).await,
                }
            },
            async {
                match legacy.is_empty() {
                    true => Ok(()),
                    false => secrets.untag(&info.arn, &legacy).await,
                }
            },
            async {
                match rekey {
                    true => {
                        secrets
                            .set_kms_key(&info.arn, target.secret_kms_key_id.as_deref())
                            .await
                    }
                    false => Ok(()),
                }
            },
        )
        .in_step(steps::SECRET)?;
        Ok(())
    }
}

impl<P: Ports> Provisioner<'_, P> {
    /// Deletes the secret `name` if it is ours, not already scheduled for deletion, and serves
    /// one of `served` — or, by its physical-id tag, a user that no longer exists. A secret
    /// another resource now uses is left alone. When it deleted it, returns the records it
    /// held, for the clean-ups that depend on them: `recorded` (what the request read before it
    /// started), or else read now. A secret that moved (`moved`) still serves the resource: a
    /// rotation in progress in it is abandoned first, and its document is not needed.
    pub(super) async fn delete_secret_if_ours(
        &self,
        owner: &Owner,
        name: &str,
        served: &[&str],
        window: RecoveryWindow,
        (recorded, moved): (Option<&Bookkeeping>, bool),
    ) -> Result<Option<Bookkeeping>, ProvisionError> {
        let step = match moved {
            true => steps::OLD_SECRET,
            false => steps::DELETE_SECRET,
        };
        let secrets = self.ports.secrets();
        let Some(info) = secrets.describe(name).await.in_step(step)? else {
            return Ok(None);
        };
        let tag = info.tags.get(TAG_PHYSICAL_ID).map(String::as_str);
        let serves = match tag {
            Some(id) if served.contains(&id) => true,
            Some(id) => !self.serves_a_live_user(owner, id).await.in_step(step)?,
            None => false,
        };
        if !owner.owns(&info.tags) || !serves || info.pending_deletion {
            tracing::info!(secret = name, "secret is not this resource's to delete; left in place");
            return Ok(None);
        }
        let doc = match (recorded, moved) {
            (Some(books), _) => Some(books.clone()),
            (None, true) => None,
            (None, false) => read(secrets, &info.arn, Version::Staged(CURRENT))
                .await
                .in_step(step)?
                .map(|r| r.doc.bookkeeping),
        };
        if moved {
            self.abandon_rotation(&info).await?;
        }
        if let RecoveryWindow::Days(_) = window {
            // Secrets Manager refuses every tag call once the deletion is scheduled.
            secrets.tag(&info.arn, &released(owner)).await.in_step(step)?;
        }
        secrets.delete(&info.arn, window).await.in_step(step)?;
        Ok(doc)
    }

    /// A rotation left in the secret is abandoned: Cloud App Security gets the current key
    /// again (the rotation's `setSecret` may have sent its own), the key of the pending version
    /// — held nowhere else — is deleted, and the pending label comes off, so that Secrets Manager
    /// starts the next rotation. For a secret about to be deleted after a move, for rotation
    /// turned off, and before it is turned on.
    pub(super) async fn abandon_rotation(&self, info: &SecretInfo) -> Result<(), ProvisionError> {
        let pending = info
            .versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == PENDING) && !stages.iter().any(|s| s == CURRENT));
        let Some((version, _)) = pending else { return Ok(()) };
        let secrets = self.ports.secrets();
        let (pending, current) = futures::try_join!(
            read(secrets, &info.arn, Version::Id(version)),
            read(secrets, &info.arn, Version::Staged(CURRENT)),
        )
        .in_step(steps::SECRET)?;
        let issued = pending.filter(|p| {
            current
                .as_ref()
                .is_none_or(|c| c.doc.access_key_id != p.doc.access_key_id)
        });
        if let Some(pending) = issued {
            self.take_back_rotation(&pending, current.as_ref()).await?;
        }
        match secrets.move_stage(&info.arn, PENDING, None, Some(version)).await {
            Err(e) if e.kind == ErrorKind::Conflict => Ok(()),
            other => other.in_step(steps::SECRET),
        }
    }

    /// Re-sends the current key where the abandoned rotation may have sent its own, then
    /// deletes the rotation's key.
    async fn take_back_rotation(&self, pending: &Read, current: Option<&Read>) -> Result<(), ProvisionError> {
        if let Some(current) = current {
            self.restore_registration(&current.doc, &pending.doc).await?;
        }
        tracing::info!(key = %pending.doc.access_key_id, "deleting the key of an abandoned rotation");
        let iam = self.ports.iam();
        iam.delete_access_key(&pending.doc.user_name, &pending.doc.access_key_id)
            .await
            .in_step(steps::RETIRE)
    }

    /// After an abandoned rotation, whose `setSecret` may have sent `pending`'s key: Cloud App
    /// Security gets `current`'s key back — or, when `current` records no registration there
    /// any more (portal mode since), the rotation's registration is removed (best effort).
    pub(crate) async fn restore_registration(
        &self,
        current: &SecretDocument,
        pending: &SecretDocument,
    ) -> Result<(), ProvisionError> {
        let recorded = current.bookkeeping.registration.as_ref();
        let sent = pending.bookkeeping.registration.as_ref();
        let elsewhere =
            |s: &&RecordedRegistration| recorded.is_none_or(|r| r.url != s.url || r.physical_id != s.physical_id);
        if let Some(sent) = sent.filter(elsewhere) {
            self.unregister(sent).await;
        }
        let Some(record) = recorded.filter(|r| r.is_complete()) else {
            return Ok(());
        };
        self.resend(record, current).await.map(drop)
    }

    /// Whether `physical_id` names a user of ours that still exists at its path.
    async fn serves_a_live_user(&self, owner: &Owner, physical_id: &str) -> Result<bool, CallError> {
        let Some(user) = UserRef::from_physical_id(physical_id) else {
            return Ok(false);
        };
        let found = self.ports.iam().get_user(&user.name).await?;
        Ok(found.is_some_and(|u| u.path == user.path && owner.owns(&u.tags)))
    }
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn tokens_are_uuid_shaped_stable_and_distinct() {
        let a = token("req-1", "AKIA1", "key");
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(a, token("req-1", "AKIA1", "key"));
        assert_ne!(a, token("req-1", "AKIA2", "key"));
        assert_ne!(a, token("req-1", "AKIA1", "registration"));
    }
}
