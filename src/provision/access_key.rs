//! The user's access keys: whether a stored key can stay, making room for a new one, and which
//! keys are stale.
//!
//! A key is *stale* when it is neither the stored one nor one awaiting a paste, and it is older
//! than the stored key or older than any invocation can run. Every key that can still become
//! the stored one was issued after its invocation read the secret, so it is younger than the key
//! that invocation saw stored — and younger than [`IN_FLIGHT`]. Deleting only stale keys can
//! therefore never cut off a key another invocation is about to store.

use std::time::{Duration, SystemTime};

use super::secret::Read;
use super::{steps, InStep, Made, ProvisionError, Provisioner, Target};
use crate::key_material::NewAccessKey;
use crate::ports::{AccessKeyInfo, AccessKeys, ErrorKind, Ports};

/// Longer than any invocation runs (Lambda's limit is 15 minutes).
pub(crate) const IN_FLIGHT: Duration = Duration::from_secs(16 * 60);

/// The `KeyVersion` a document's key was issued for (the previous release kept it in a tag).
pub(super) fn issued_for<'a>(read: &'a Read, legacy_tag: Option<&'a str>) -> Option<&'a str> {
    read.doc.bookkeeping.key_version.as_deref().or(legacy_tag)
}

/// Whether a document holds a key this target may keep: the user's, issued for this `KeyVersion`.
pub(super) fn fits(target: &Target, read: &Read, legacy_tag: Option<&str>) -> bool {
    read.doc.user_name == target.user.name && issued_for(read, legacy_tag) == Some(target.key_version.as_str())
}

/// The keys to delete: not protected, and older than the stored key or than [`IN_FLIGHT`].
pub(crate) fn stale(
    listed: &[AccessKeyInfo],
    protected: &[&str],
    stored_created: Option<SystemTime>,
    now: SystemTime,
) -> Vec<String> {
    listed
        .iter()
        .filter(|k| !protected.contains(&k.access_key_id.as_str()))
        // An inactive key is no invocation's key in flight (a new key is active).
        .filter(|k| !k.active || k.created + IN_FLIGHT < now || stored_created.is_some_and(|s| k.created < s))
        .map(|k| k.access_key_id.clone())
        .collect()
}

impl<P: Ports> Provisioner<'_, P> {
    /// Whether `key_id` still exists, made active if it was not. Does not rely on the listing
    /// alone: `ListAccessKeys` may not show a key issued a moment ago.
    pub(crate) async fn confirm_key(
        &self,
        user: &str,
        key_id: &str,
        listed: &[AccessKeyInfo],
    ) -> Result<bool, ProvisionError> {
        match listed.iter().find(|k| k.access_key_id == key_id) {
            Some(k) if k.active => return Ok(true),
            // Deactivated by a person (incident response): never reactivated; a new key is issued.
            Some(_) => return Ok(false),
            // Not listed yet (ListAccessKeys is eventually consistent: a duplicate delivery may have
            // just issued it): UpdateAccessKey tells whether it exists.
            None => {}
        }
        match self.ports.iam().set_access_key_active(user, key_id, true).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).in_step(steps::ACCESS_KEY),
        }
    }

    /// Issues a key, deleting stale keys first when both slots are taken.
    pub(crate) async fn issue_key(
        &self,
        user: &str,
        listed: &[AccessKeyInfo],
        protected: &[&str],
        stored_created: Option<SystemTime>,
        made: &Made,
    ) -> Result<NewAccessKey, ProvisionError> {
        let iam = self.ports.iam();
        if listed.len() >= 2 {
            let stale = stale(listed, protected, stored_created, self.now());
            self.delete_keys(user, &stale).await?;
            if listed.len() - stale.len() >= 2 {
                return Err(ProvisionError::KeySlotsTaken { user: user.to_owned() });
            }
        }
        match iam.create_access_key(user).await {
            Ok(key) => {
                made.issued_key(user, &key.access_key_id);
                Ok(key)
            }
            Err(e) if e.kind == ErrorKind::LimitExceeded => {
                Err(ProvisionError::KeySlotsTaken { user: user.to_owned() })
            }
            Err(e) => Err(e).in_step(steps::ACCESS_KEY),
        }
    }

    /// Deletes keys of `user`, all at once.
    pub(crate) async fn delete_keys(&self, user: &str, ids: &[String]) -> Result<(), ProvisionError> {
        let iam = self.ports.iam();
        futures::future::try_join_all(ids.iter().map(|id| iam.delete_access_key(user, id)))
            .await
            .in_step(steps::RETIRE)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, minutes_ago: u64, now: SystemTime) -> AccessKeyInfo {
        AccessKeyInfo {
            access_key_id: id.into(),
            active: true,
            created: now - Duration::from_secs(minutes_ago * 60),
        }
    }

    #[test]
    fn only_keys_older_than_the_stored_one_or_than_any_invocation_are_stale() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let listed = [
            key("OLD", 60 * 24, now),
            key("STORED", 30, now),
            key("AWAITING", 60 * 24 * 2, now),
            key("IN-FLIGHT", 1, now),
            key("ABANDONED", 20, now),
        ];
        let stored = Some(now - Duration::from_secs(30 * 60));
        let mut got = stale(&listed, &["STORED", "AWAITING"], stored, now);
        got.sort();
        // ABANDONED is younger than the stored key but older than any invocation can run.
        assert_eq!(got, ["ABANDONED", "OLD"]);
        // Without knowing when the stored key was made, only the age rule applies.
        let mut got = stale(&listed, &["STORED", "AWAITING"], None, now);
        got.sort();
        assert_eq!(got, ["ABANDONED", "OLD"]);
        let young = [key("A", 2, now), key("B", 1, now)];
        assert!(
            stale(&young, &[], None, now).is_empty(),
            "keys of running invocations stay"
        );
    }
}
