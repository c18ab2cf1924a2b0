//! Provisioning: the steps that converge the IAM user, its permissions, its access key, the
//! secret that holds it, the trail and the registration at Cloud App Security to a [`Target`],
//! and that remove them again. It talks to the world only through [`crate::ports`].
//!
//! Every step reads before it writes and is safe to repeat. What a request makes is recorded as
//! it is made ([`Made`]), so that a request that fails — or runs out of time — can remove it.

pub(crate) mod access_key;
mod chain;
mod converge;
mod discover;
mod permissions;
pub(crate) mod registration;
pub(crate) mod secret;
mod teardown;
pub mod trail;
mod undo;
mod user;

pub mod target;

use std::time::SystemTime;

use tokio::time::Instant;

use crate::cloud_app_security::endpoint::AllowedHosts;
use crate::key_material::{Applied, SecretDocument};
use crate::ports::{CallError, Clock, Ports, RegistryError, CURRENT};
use crate::progress::Progress;
use crate::properties::TrailMode;

pub(crate) use chain::epoch;
pub use permissions::{auditing_policy, AUDITING_ACTIONS, CONFIGURATION_POLICIES, INLINE_POLICY_NAME};
pub use target::{Before, Callback, Target, TrailTarget};
pub use teardown::DeleteTarget;
pub use trail::TrailState;
pub use undo::Made;

/// Tag the previous release kept the `KeyVersion` in; read once to migrate, then removed.
pub const LEGACY_TAG_KEY_VERSION: &str = "cloud-app-security:key-version";
/// Tags the previous release kept the registration in; read once to migrate, then removed.
pub const LEGACY_TAG_CONNECTOR_ID: &str = "cloud-app-security:connector-id";
/// See [`LEGACY_TAG_CONNECTOR_ID`].
pub const LEGACY_TAG_REGISTRATION: &str = "cloud-app-security:registration";

/// The connector as Cloud App Security knows it, for `Data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connector {
    /// Registered by the call back, with its id.
    Registered(String),
    /// Portal mode: a person pastes the key.
    PendingPortal,
}

/// What a converge produced: the values `Data` is built from. Never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// The user's name.
    pub user_name: String,
    /// The user's ARN.
    pub user_arn: String,
    /// The connector's name in Cloud App Security.
    pub connector_name: String,
    /// The stored key's id.
    pub access_key_id: String,
    /// The secret's ARN.
    pub secret_arn: String,
    /// The trail Cloud App Security reads.
    pub trail: TrailState,
    /// The registration.
    pub connector: Connector,
    /// Whether the stored key was proven to work (`None`: not checked, nothing changed or
    /// `VerifyKey` is off).
    pub key_verified: Option<bool>,
    /// When the stored key was issued, where known.
    pub key_created: Option<std::time::SystemTime>,
    /// The secret's current document, where [`Provisioner::record_applied`] writes what was
    /// applied.
    pub stored: Stored,
}

/// The secret's current version and its document after a converge. Its `Debug` shows the
/// version only: the document holds key material.
#[derive(Clone)]
pub struct Stored {
    /// The secret's ARN.
    pub arn: String,
    /// The current version.
    pub version: String,
    doc: SecretDocument,
    /// Whether the key the document records as `previous` no longer exists.
    previous_gone: bool,
}

impl Stored {
    /// Since when a key waits to be pasted (seconds since the epoch), unless it was deactivated.
    pub fn awaiting_paste_since(&self) -> Option<u64> {
        let waiting = self.doc.bookkeeping.awaiting_paste.as_ref();
        waiting.filter(|a| a.deactivated_at.is_none()).map(|a| a.since)
    }

    /// When the daily check first saw Cloud App Security using the stored key, if it did.
    pub fn seen_in_use(&self) -> Option<u64> {
        self.doc.bookkeeping.seen_using(&self.doc.access_key_id)
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("arn", &self.arn)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        self.arn == other.arn && self.version == other.version
    }
}

impl Eq for Stored {}

impl<P: Ports> Provisioner<'_, P> {
    /// Records a request answered `FAILED` in the secret `read` names, in its current document
    /// (read again: the failed request may have written it; compare-and-swap from that
    /// version). Best effort, like [`Self::record_applied`].
    pub(crate) async fn record_failed(&self, read: &secret::Read, failed: crate::key_material::FailedRequest) {
        let current = secret::read(self.ports.secrets(), &read.arn, crate::ports::Version::Staged(CURRENT)).await;
        let Ok(Some(read)) = current else { return };
        let mut doc = read.doc.clone();
        if doc.is_newer() || !doc.record_failed(failed) {
            return;
        }
        let token = secret::token(self.context.request_id, &doc.access_key_id, "failed");
        let text = doc.to_secret_text();
        let made = Made::default();
        if let Err(e) = self
            .replace_current(&read.arn, Some(&read.version), &text, token, &made)
            .await
        {
            tracing::warn!(error = %e, "could not record the failed request in the secret");
        }
    }

    /// Records `applied` in the secret's current document (compare-and-swap from the version
    /// the converge left). A lost race means another invocation wrote the secret meanwhile and
    /// recorded its own request; anything else fails the request, which is then undone.
    pub async fn record_applied(&self, stored: &Stored, applied: Applied, made: &Made) -> Result<(), ProvisionError> {
        let mut doc = stored.doc.clone();
        if stored.previous_gone {
            doc.bookkeeping.previous = None;
        }
        if !doc.record_applied(applied, true) {
            return Ok(());
        }
        let token = secret::token(self.context.request_id, &doc.access_key_id, "applied");
        let text = doc.to_secret_text();
        match self
            .replace_current(&stored.arn, Some(&stored.version), &text, token, made)
            .await?
        {
            secret::Written::Current { .. } => Ok(()),
            secret::Written::Lost => {
                tracing::warn!("another invocation wrote the secret first; it recorded its own request");
                Ok(())
            }
        }
    }
}

/// What kind of thing was found to belong to someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An IAM user.
    User,
    /// A Secrets Manager secret.
    Secret,
    /// A CloudTrail trail.
    Trail,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::User => "IAM user",
            Kind::Secret => "secret",
            Kind::Trail => "trail",
        })
    }
}

/// Why provisioning failed. Each message names the step, the resource and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A user, secret or trail of the same name that this resource does not own.
    #[error(
        "{kind} {name} already exists and is not managed by this resource (its cloud-app-security:stack-id and \
         cloud-app-security:logical-id tags do not name this stack and resource); it was left untouched"
    )]
    Foreign {
        /// What it is.
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// A trail must be created and no bucket was given.
    #[error(
        "TrailBucket is required: TrailMode {0:?} needs a trail to be created (no multi-region trail that is \
         logging and records management events was found to reuse); nothing was created"
    )]
    TrailBucketMissing(TrailMode),
    /// CloudTrail cannot deliver to the bucket.
    #[error(
        "{step}: CloudTrail cannot deliver to bucket {bucket}: {source} (the bucket must exist and its policy must \
         allow cloudtrail.amazonaws.com s3:GetBucketAcl on the bucket and s3:PutObject on AWSLogs/<account>/*, \
         with aws:SourceArn naming the trail)",
        step = steps::TRAIL
    )]
    TrailBucketRejected {
        /// The bucket.
        bucket: String,
        /// CloudTrail's answer.
        source: CallError,
    },
    /// The API credentials secret cannot be used.
    #[error("CloudAppSecurityCredentials: {0}")]
    Credentials(String),
    /// The call back failed.
    #[error("{step}: {0}", step = steps::CALLBACK)]
    Callback(RegistryError),
    /// A secret pending deletion that this request may not replace.
    #[error(
        "{step}: secret {name} is scheduled for deletion ({problem}); it is never restored or taken over. If \
         nothing needs it, delete it now (aws secretsmanager delete-secret --secret-id {name} \
         --force-delete-without-recovery) and retry, or choose another SecretName",
        step = steps::SECRET
    )]
    LeftoverSecret {
        /// The secret.
        name: String,
        /// Why it stays.
        problem: String,
    },
    /// A secret that must not receive the key.
    #[error("secret {name} {problem}; the key was not written to it")]
    UnsafeSecret {
        /// The secret.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A rotation was asked for while the previous one waits for a paste.
    #[error(
        "{step}: key {pending} waits to be pasted into Cloud App Security (stored in {secret} since {since}); a new \
         rotation starts only after the switch is seen or the grace period ends. Paste the key from the secret, or \
         delete the previous key {previous} yourself (aws iam delete-access-key --user-name {user} --access-key-id \
         {previous}) if it must go now, then retry",
        step = steps::ACCESS_KEY
    )]
    PastePending {
        /// The key waiting to be pasted.
        pending: String,
        /// The key still in use.
        previous: String,
        /// The user.
        user: String,
        /// The secret.
        secret: String,
        /// Since when (RFC 3339).
        since: String,
    },
    /// The secret's document was written by a newer release: this one would drop what it does
    /// not know, so it writes nothing.
    #[error(
        "{step}: secret {secret} was written by {writer}, newer than this function (release {release}, layout \
         {layout}); an older release never rewrites it, so nothing was done. Deploy that release or a later one \
         (a rollback to the properties it recorded as applied still succeeds)",
        step = steps::SECRET,
        release = crate::key_material::RELEASE,
        layout = crate::key_material::SCHEMA_VERSION
    )]
    NewerDocument {
        /// The secret.
        secret: String,
        /// Who wrote it ([`crate::key_material::SecretDocument::writer`]).
        writer: String,
    },
    /// A late delivery: CloudFormation has moved on since this request was sent.
    #[error("superseded: {0}; a late delivery acts on nothing (CloudFormation no longer waits for this answer)")]
    Superseded(String),
    /// Both access-key slots are taken by keys that must not be deleted.
    #[error(
        "{step}: IAM user {user} already has two access keys that are in use or being issued by another \
         invocation; retry once it finished",
        step = steps::ACCESS_KEY
    )]
    KeySlotsTaken {
        /// The user.
        user: String,
    },
    /// Another invocation changed the key at the same time, to something this request does not want.
    #[error(
        "{step}: another invocation changed the key in secret {secret} at the same time; nothing of this request \
         was kept — retry",
        step = steps::SECRET
    )]
    ConcurrentChange {
        /// The secret.
        secret: String,
    },
    /// `Delete` stripped the user but IAM keeps it while it is in groups.
    #[error(
        "{step}: IAM user {user} is a member of {groups}, added outside this stack; it has no key and no policy left, \
         but IAM deletes a user only outside every group. Remove it ({commands}), then retry the delete",
        step = steps::DELETE_USER,
        groups = groups.join(", "),
        commands = groups.iter().map(|g| format!("aws iam remove-user-from-group --user-name {user} --group-name {g}")).collect::<Vec<_>>().join("; ")
    )]
    InGroups {
        /// The user.
        user: String,
        /// The groups.
        groups: Vec<String>,
    },
    /// `Delete` stripped the user but left the quarantine policies an incident responder (or
    /// AWS, after a leaked key) attached: this function never removes a Deny.
    #[error(
        "{step}: IAM user {user} is quarantined ({policies}): this function never detaches a quarantine policy or \
         a Deny, which would widen the user. Its keys and the connector's policies are gone. Once the incident is \
         closed, remove them yourself (aws iam detach-user-policy / delete-user-policy --user-name {user}), then \
         retry the delete",
        step = steps::DELETE_USER,
        policies = policies.join(", ")
    )]
    Quarantined {
        /// The user.
        user: String,
        /// The policies left in place.
        policies: Vec<String>,
    },
    /// An AWS call failed.
    #[error("{step}: {source}")]
    Call {
        /// The step.
        step: &'static str,
        /// The call's error.
        #[source]
        source: CallError,
    },
}

/// Attaches the step name to an AWS failure.
pub(crate) trait InStep<T> {
    fn in_step(self, step: &'static str) -> Result<T, ProvisionError>;
}

impl<T> InStep<T> for Result<T, CallError> {
    fn in_step(self, step: &'static str) -> Result<T, ProvisionError> {
        self.map_err(|source| ProvisionError::Call { step, source })
    }
}

/// Both results, or the first error. For branches that write: `futures::try_join!` would drop
/// the other branch in the middle of its writes when one fails, leaving what it did unrecorded;
/// `futures::join!` lets both finish, then this picks the outcome.
pub(crate) fn both<A, B, E>(a: Result<A, E>, b: Result<B, E>) -> Result<(A, B), E> {
    Ok((a?, b?))
}

/// Step names, as the `Reason` and the deadline guard report them.
pub mod steps {
    /// Discovery.
    pub const DISCOVER: &str = "reading the existing user, secret and trails";
    /// The user.
    pub const USER: &str = "creating or updating the IAM user";
    /// The permissions.
    pub const PERMISSIONS: &str = "setting the user's permissions";
    /// The access key.
    pub const ACCESS_KEY: &str = "issuing the access key";
    /// The secret.
    pub const SECRET: &str = "storing the key in Secrets Manager";
    /// The previous secret, after a `SecretName` change.
    pub const OLD_SECRET: &str = "deleting the previous secret";
    /// Delete: the user.
    pub const DELETE_USER: &str = "deleting the IAM user";
    /// Delete: the secret.
    pub const DELETE_SECRET: &str = "deleting the secret";
    /// The trail.
    pub const TRAIL: &str = "ensuring the CloudTrail trail";
    /// Delete: the trail.
    pub const DELETE_TRAIL: &str = "deleting the trail";
    /// The API credentials.
    pub const CREDENTIALS: &str = "reading the Cloud App Security credentials";
    /// The call back.
    pub const CALLBACK: &str = "registering the connector with Cloud App Security";
    /// Retiring old keys.
    pub const RETIRE: &str = "retiring the previous access key";
    /// Scheduled rotation's settings.
    pub const ROTATION: &str = "configuring scheduled rotation";
    /// Verifying the key.
    pub const VERIFY: &str = "verifying the new key";
    /// Undoing a failed request.
    pub const UNDO: &str = "removing what the failed request made";
}

/// What a request brings from outside the properties.
pub struct Context<'a> {
    /// CloudFormation's `RequestId` (or rotation's token): idempotency tokens derive from it.
    pub request_id: &'a str,
    /// Hosts the deployer allowed for the call back.
    pub allowed: &'a AllowedHosts,
    /// When the call back and the key verification must stop retrying.
    pub deadline: Instant,
    /// The function's own ARN (for scheduled rotation), when known.
    pub function_arn: Option<&'a str>,
}

/// The provisioning engine over a bundle of ports.
pub struct Provisioner<'a, P> {
    /// The ports.
    pub ports: &'a P,
    /// The current step, for the deadline guard.
    pub progress: &'a Progress,
    /// The request's context.
    pub context: Context<'a>,
}

impl<P: Ports> Provisioner<'_, P> {
    /// Now, from the clock port.
    pub(crate) fn now(&self) -> SystemTime {
        self.ports.clock().now()
    }
}
