//! The Secrets Manager secret that holds the key: found, restored when it is a leftover of ours,
//! written, tagged, and deleted only when it serves the resource being deleted.

use super::ports::{Created, SecretInfo, SecretStore};
use super::{steps, InStep, ProvisionError, Target, TAG_KEY_VERSION};
use crate::aws::AwsError;
use crate::identity::{Owner, TAG_PHYSICAL_ID, TAG_STACK_ID};
use crate::key_material::StoredKey;
use crate::properties::RecoveryWindow;

/// The secret as discovery found it, already checked for ownership.
pub(super) struct Existing {
    info: Option<SecretInfo>,
}

impl Existing {
    /// Ours by tags; or pending deletion with our stack-id tag (from any stack): a leftover of a
    /// deleted connector, restored rather than failing for the length of the recovery window.
    pub(super) fn check(target: &Target, info: Option<SecretInfo>) -> Result<Existing, ProvisionError> {
        match &info {
            Some(i) if target.owner.owns(&i.tags) => Ok(Existing { info }),
            Some(i) if i.pending_deletion && i.tags.contains_key(TAG_STACK_ID) => Ok(Existing { info }),
            Some(_) => Err(ProvisionError::ForeignSecret(target.secret_name.clone())),
            None => Ok(Existing { info }),
        }
    }

    /// Restores the secret if it is scheduled for deletion.
    pub(super) async fn prepare<S: SecretStore>(mut self, secrets: &S) -> Result<Existing, ProvisionError> {
        if let Some(info) = self.info.as_mut().filter(|i| i.pending_deletion) {
            secrets.restore(&info.arn).await.in_step(steps::SECRET)?;
            info.pending_deletion = false;
        }
        Ok(self)
    }

    /// The key the secret holds, if it holds one in our format.
    pub(super) async fn stored_key<S: SecretStore>(&self, secrets: &S) -> Result<Option<StoredKey>, ProvisionError> {
        let Some(info) = &self.info else { return Ok(None) };
        let text = secrets.get_value(&info.arn).await.in_step(steps::ACCESS_KEY)?;
        Ok(text.as_ref().and_then(StoredKey::from_secret_text))
    }

    /// The secret's tags as discovery found them (none if it did not exist).
    pub(super) fn tags(&self) -> super::ports::Tags {
        self.info.as_ref().map(|i| i.tags.clone()).unwrap_or_default()
    }

    /// Whether the stored key was issued for the requested `KeyVersion`.
    pub(super) fn key_version_matches(&self, target: &Target) -> bool {
        self.info.as_ref().and_then(|i| i.tags.get(TAG_KEY_VERSION)) == Some(&target.key_version)
    }

    /// Writes the new key (if any), then the tags. In that order: the key-version tag must never
    /// claim a key the secret does not hold yet.
    pub(super) async fn store<S: SecretStore>(
        self,
        secrets: &S,
        target: &Target,
        new_key: Option<StoredKey>,
    ) -> Result<String, ProvisionError> {
        let mut tags = target.resource_tags();
        tags.insert(TAG_KEY_VERSION.to_owned(), target.key_version.clone());
        let info = match self.info {
            Some(info) => info,
            None => {
                // A missing secret means no stored key, so a key was issued.
                let Some(key) = &new_key else {
                    return Err(ProvisionError::Aws {
                        step: steps::SECRET,
                        source: AwsError::new("secretsmanager:CreateSecret", None, "no key to store"),
                    });
                };
                let kms = target.kms_key_id.as_deref();
                match secrets
                    .create(&target.secret_name, &key.to_secret_text(), kms, &tags)
                    .await
                    .in_step(steps::SECRET)?
                {
                    Created::New(arn) => return Ok(arn),
                    // A duplicate delivery created it a moment ago.
                    Created::AlreadyExists => secrets
                        .describe(&target.secret_name)
                        .await
                        .in_step(steps::SECRET)?
                        .filter(|i| target.owner.owns(&i.tags))
                        .ok_or_else(|| ProvisionError::ForeignSecret(target.secret_name.clone()))?,
                }
            }
        };
        if let Some(key) = &new_key {
            secrets
                .put_value(&info.arn, &key.to_secret_text())
                .await
                .in_step(steps::SECRET)?;
        }
        let retag = tags.iter().any(|(k, v)| info.tags.get(k) != Some(v));
        let stale: Vec<String> = target
            .removed_tags
            .iter()
            .filter(|k| info.tags.contains_key(*k))
            .cloned()
            .collect();
        let kms = target
            .kms_key_id
            .as_deref()
            .filter(|k| info.kms_key_id.as_deref() != Some(*k));
        futures::try_join!(
            async {
                match retag {
                    true => secrets.tag(&info.arn, &tags).await,
                    false => Ok(()),
                }
            },
            async {
                match stale.is_empty() {
                    false => secrets.untag(&info.arn, &stale).await,
                    true => Ok(()),
                }
            },
            async {
                match kms {
                    Some(kms) => secrets.set_kms_key(&info.arn, kms).await,
                    None => Ok(()),
                }
            },
        )
        .in_step(steps::SECRET)?;
        Ok(info.arn)
    }
}

/// Deletes the secret `name` if it is ours, not already scheduled for deletion, and its
/// physical-id tag names one of `served`: a secret another resource now uses is left alone.
pub(super) async fn delete_if_ours<S: SecretStore>(
    secrets: &S,
    owner: &Owner,
    name: &str,
    served: &[&str],
    window: RecoveryWindow,
) -> Result<(), AwsError> {
    let Some(info) = secrets.describe(name).await? else {
        return Ok(());
    };
    let serves = info
        .tags
        .get(TAG_PHYSICAL_ID)
        .is_some_and(|id| served.contains(&id.as_str()));
    if !owner.owns(&info.tags) || !serves {
        tracing::info!(secret = name, "secret is not this resource's to delete; left in place");
        return Ok(());
    }
    if info.pending_deletion {
        return Ok(());
    }
    secrets.delete(&info.arn, window).await
}
