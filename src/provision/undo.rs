//! What a request made, recorded as it is made, and its removal when the request fails or runs
//! out of time. The record lives behind a lock so that it survives the cancellation of the work
//! that filled it.
//!
//! Lambda may run a duplicate of the request at the same moment, which may have adopted what
//! this one made (a user, a secret, a key it lost the race for) and answer `SUCCESS` with it. So
//! nothing another invocation could be using is removed here: only the keys this request issued
//! that the secret does not hold, and its own staging labels. A user, secret or registration
//! made for properties CloudFormation then abandons is removed by CloudFormation's own next
//! step — the rollback `Delete` of a failed Create, or the rollback `Update` of a failed Update,
//! which removes what was made for the properties it rolls back from
//! (`lifecycle::Lifecycle::remove_abandoned`).

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::secret::{self, Read};
use super::{steps, Provisioner, Target};
use crate::ports::{AccessKeys, CallError, ErrorKind, Ports, SecretStore, Version, CURRENT, WRITING};

/// The undo log of one request.
#[derive(Default)]
pub struct Made(Mutex<Record>);

#[derive(Default, Clone)]
struct Record {
    /// Keys issued: `(user, id)`.
    keys: Vec<(String, String)>,
    /// Versions this request added to a secret: `(arn, version)`.
    versions: Vec<(String, String)>,
}

impl Made {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This request issued `key_id` to `user`.
    pub(super) fn issued_key(&self, user: &str, key_id: &str) {
        self.record().keys.push((user.to_owned(), key_id.to_owned()));
    }

    /// This request already deleted `key_id` itself.
    pub(super) fn deleted_key(&self, key_id: &str) {
        self.record().keys.retain(|(_, id)| id != key_id);
    }

    /// This request is about to add version `version` to `arn` (staged `CloudAppSecurityWrite`).
    pub(super) fn staged(&self, arn: &str, version: &str) {
        self.record().versions.push((arn.to_owned(), version.to_owned()));
    }

    /// How many versions this request wrote so far.
    pub(super) fn writes(&self) -> usize {
        self.record().versions.len()
    }
}

impl<P: Ports> Provisioner<'_, P> {
    /// Removes what the failed request made and nobody can be using. Best effort: every failure
    /// is logged, the request's own error stays the `Reason`.
    pub async fn undo(&self, target: &Target, made: &Made) {
        self.undo_in(&target.secret_name, made).await;
    }

    /// The keys and versions of [`Provisioner::undo`], for the secret `secret` (name or ARN).
    pub(crate) async fn undo_in(&self, secret: &str, made: &Made) {
        self.progress.set(steps::UNDO);
        let record = made.record().clone();
        let current = self.current_document(secret).await;
        let held = |key: &str| current.as_ref().is_some_and(|c| c.doc.access_key_id == key);
        let iam = self.ports.iam();
        for (user, key) in record.keys.iter().filter(|(_, key)| !held(key)) {
            log(
                "deleting a key the request issued",
                iam.delete_access_key(user, key).await,
            );
        }
        // The label of a write that did not become current comes off: the version is then
        // unreferenced, and Secrets Manager removes it in time.
        let secrets = self.ports.secrets();
        for (arn, version) in &record.versions {
            if current.as_ref().is_some_and(|c| &c.version == version) {
                continue;
            }
            match secrets.move_stage(arn, WRITING, None, Some(version)).await {
                Err(e) if e.kind == ErrorKind::Conflict => {}
                other => log("unstaging the request's version", other),
            }
        }
    }

    async fn current_document(&self, secret: &str) -> Option<Read> {
        let read = secret::read(self.ports.secrets(), secret, Version::Staged(CURRENT)).await;
        read.unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not read the secret while undoing");
            None
        })
    }
}

fn log(what: &str, result: Result<(), CallError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "{what} failed");
    }
}
