//! The user's access key: exactly one active key at the end, the one in the secret.

use super::ports::{AccessKeyInfo, Iam};
use super::{steps, InStep, ProvisionError, Target};
use crate::key_material::{NewAccessKey, StoredKey};

/// The keys the user has, and whether the stored one can stay.
pub(super) struct Keys {
    listed: Vec<AccessKeyInfo>,
    /// The stored key, when the user still has it.
    current: Option<String>,
}

pub(super) enum Plan {
    /// The stored key stays (reactivated if someone deactivated it).
    Keep,
    /// A new key is needed: none is stored, the stored one is gone, or `KeyVersion` changed.
    Issue,
}

pub(super) async fn list<I: Iam>(iam: &I, target: &Target) -> Result<Vec<AccessKeyInfo>, ProvisionError> {
    iam.list_access_keys(&target.user.name).await.in_step(steps::ACCESS_KEY)
}

/// Which of the user's keys (`listed`) is the stored one.
pub(super) fn inspect(target: &Target, listed: Vec<AccessKeyInfo>, stored: Option<&StoredKey>) -> Keys {
    let current = stored
        .filter(|s| s.user_name == target.user.name)
        .map(|s| s.access_key_id.clone())
        .filter(|id| listed.iter().any(|k| &k.access_key_id == id));
    Keys { listed, current }
}

impl Keys {
    pub(super) async fn plan<I: Iam>(&self, iam: &I, target: &Target, rotate: bool) -> Result<Plan, ProvisionError> {
        match &self.current {
            Some(id) if !rotate => {
                if self.listed.iter().any(|k| &k.access_key_id == id && !k.active) {
                    iam.activate_access_key(&target.user.name, id)
                        .await
                        .in_step(steps::ACCESS_KEY)?;
                }
                Ok(Plan::Keep)
            }
            _ => Ok(Plan::Issue),
        }
    }

    /// Issues a new key. IAM allows two per user: when both slots are taken, the keys that are
    /// not in the secret are stale and go first, so the stored key keeps working until replaced.
    pub(super) async fn issue<I: Iam>(&mut self, iam: &I, target: &Target) -> Result<NewAccessKey, ProvisionError> {
        if self.listed.len() >= 2 {
            let stale: Vec<String> = self.others(self.current.as_deref());
            delete_all(iam, target, &stale).await?;
            self.listed.retain(|k| !stale.contains(&k.access_key_id));
        }
        iam.create_access_key(&target.user.name)
            .await
            .in_step(steps::ACCESS_KEY)
    }

    /// Deletes every listed key but `keep`.
    pub(super) async fn retire_others<I: Iam>(
        &self,
        iam: &I,
        target: &Target,
        keep: &str,
    ) -> Result<(), ProvisionError> {
        delete_all(iam, target, &self.others(Some(keep))).await
    }

    fn others(&self, keep: Option<&str>) -> Vec<String> {
        self.listed
            .iter()
            .map(|k| k.access_key_id.clone())
            .filter(|id| Some(id.as_str()) != keep)
            .collect()
    }
}

async fn delete_all<I: Iam>(iam: &I, target: &Target, ids: &[String]) -> Result<(), ProvisionError> {
    let deletions = ids.iter().map(|id| iam.delete_access_key(&target.user.name, id));
    futures::future::try_join_all(deletions)
        .await
        .in_step(steps::ACCESS_KEY)?;
    Ok(())
}
