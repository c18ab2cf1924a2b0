//! Provisioning: converges the IAM user, its permissions, its access key and the secret that
//! holds it to what the properties ask for, and removes them again. It talks to AWS only through
//! the traits in [`ports`].

mod access_key;
mod connector;
mod delete;
mod permissions;
pub mod ports;
mod secret;
pub mod trail;
mod user;

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::AwsError;
use crate::cloud_app_security::client::CallbackError;
use crate::cloud_app_security::Connector;
use crate::identity::{Owner, StackArn, UserRef};
use crate::key_material::StoredKey;
use crate::progress::Progress;
use crate::properties::{Connection, Properties, RecoveryWindow, TrailMode};
use ports::{Iam, SecretStore, Trails};
use trail::{TrailState, TrailTarget};

pub use connector::{Callback, CallbackContext};
pub use delete::DeleteTarget;

/// Tag on the secret naming the `KeyVersion` its key was issued for: a changed `KeyVersion`
/// rotates the key exactly once, however often the same Update is delivered.
pub const TAG_KEY_VERSION: &str = "cloud-app-security:key-version";

/// Everything the resource should look like, resolved from one request.
#[derive(Clone, Debug)]
pub struct Target {
    pub owner: Owner,
    pub stack: StackArn,
    pub user: UserRef,
    pub physical_id: String,
    pub connections: BTreeSet<Connection>,
    pub boundary: Option<String>,
    pub secret_name: String,
    pub kms_key_id: Option<String>,
    pub key_version: String,
    pub tags: BTreeMap<String, String>,
    /// Extra tags the previous properties set and these no longer do.
    pub removed_tags: Vec<String>,
    pub trail: TrailTarget,
    pub connector_name: String,
    /// Where to register the connector; `None` in portal mode.
    pub callback: Option<Callback>,
    /// The previous call back, when the URL changed: its registration is removed afterwards.
    pub previous_callback: Option<(Callback, String)>,
}

impl Target {
    pub fn new(owner: Owner, stack: StackArn, properties: &Properties, previous: Option<&Properties>) -> Target {
        let resolved = properties.resolve(&stack.account_id);
        let physical_id = stack.user_arn(&properties.user_path, &resolved.user_name);
        let removed_tags = previous
            .map(|p| {
                p.tags
                    .keys()
                    .filter(|k| !properties.tags.contains_key(*k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Target {
            owner,
            user: UserRef {
                path: properties.user_path.clone(),
                name: resolved.user_name,
            },
            physical_id,
            connections: properties.connections.clone(),
            boundary: properties.permissions_boundary.clone(),
            secret_name: resolved.secret_name,
            kms_key_id: properties.secret_kms_key_id.clone(),
            key_version: properties.key_version.clone(),
            tags: properties.tags.clone(),
            removed_tags,
            trail: TrailTarget::new(properties, previous),
            connector_name: resolved.connector_name,
            callback: None,
            previous_callback: None,
            stack,
        }
    }

    /// The ownership tags plus the deployer's, for everything this resource creates.
    pub fn resource_tags(&self) -> BTreeMap<String, String> {
        self.owner.tags(&self.physical_id, &self.tags)
    }
}

/// What a converge produced: the values `Data` is built from. Never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    pub user_name: String,
    pub user_arn: String,
    pub access_key_id: String,
    pub secret_arn: String,
    pub trail: TrailState,
    pub connector: Connector,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "IAM user {0} already exists and is not managed by this resource (its cloud-app-security:stack-id and \
         cloud-app-security:logical-id tags do not name this stack and resource); it was left untouched"
    )]
    ForeignUser(String),
    #[error(
        "secret {0} already exists and is not managed by this resource (its cloud-app-security:stack-id and \
         cloud-app-security:logical-id tags do not name this stack and resource); it was left untouched"
    )]
    ForeignSecret(String),
    #[error(
        "trail {0} already exists and is not managed by this resource (its cloud-app-security:stack-id and \
         cloud-app-security:logical-id tags do not name this stack and resource); it was left untouched"
    )]
    ForeignTrail(String),
    #[error(
        "TrailBucket is required: TrailMode {0:?} needs a trail to be created (no multi-region trail that is \
         logging was found to reuse); nothing was created"
    )]
    TrailBucketMissing(TrailMode),
    #[error(
        "{step}: CloudTrail cannot deliver to bucket {bucket}: {source} (the bucket must exist and its policy must \
         allow cloudtrail.amazonaws.com s3:GetBucketAcl on the bucket and s3:PutObject on AWSLogs/<account>/*, \
         with aws:SourceArn naming the trail)",
        step = steps::TRAIL
    )]
    TrailBucketRejected { bucket: String, source: AwsError },
    #[error("CloudAppSecurityCredentials: {0}")]
    Credentials(String),
    #[error("{step}: {0}", step = steps::CALLBACK)]
    Callback(CallbackError),
    #[error("{step}: {source}")]
    Aws {
        step: &'static str,
        #[source]
        source: AwsError,
    },
}

/// Attaches the step name to an AWS failure.
trait InStep<T> {
    fn in_step(self, step: &'static str) -> Result<T, ProvisionError>;
}

impl<T> InStep<T> for Result<T, AwsError> {
    fn in_step(self, step: &'static str) -> Result<T, ProvisionError> {
        self.map_err(|source| ProvisionError::Aws { step, source })
    }
}

/// Step names, as the `Reason` and the deadline guard report them.
pub mod steps {
    pub const DISCOVER: &str = "reading the existing user, secret and trails";
    pub const USER: &str = "creating or updating the IAM user";
    pub const PERMISSIONS: &str = "setting the user's permissions";
    pub const ACCESS_KEY: &str = "issuing the access key";
    pub const SECRET: &str = "storing the key in Secrets Manager";
    pub const OLD_SECRET: &str = "deleting the previous secret";
    pub const DELETE_USER: &str = "deleting the IAM user";
    pub const DELETE_SECRET: &str = "deleting the secret";
    pub const TRAIL: &str = "ensuring the CloudTrail trail";
    pub const DELETE_TRAIL: &str = "deleting the trail";
    pub const CREDENTIALS: &str = "reading the Cloud App Security credentials";
    pub const CALLBACK: &str = "registering the connector with Cloud App Security";
}

/// What the IAM chain produced, before the call back and the old key's retirement.
struct Identity {
    user_arn: String,
    /// The key in the secret: just issued, or the stored one kept.
    key: StoredKey,
    keys: access_key::Keys,
    secret_arn: String,
    /// The secret's tags before this request.
    secret_tags: ports::Tags,
}

/// The provisioning engine over IAM, Secrets Manager and CloudTrail implementations.
pub struct Provisioner<'a, I, S, T> {
    pub iam: &'a I,
    pub secrets: &'a S,
    pub trails: &'a T,
    pub progress: &'a Progress,
    pub callback: CallbackContext<'a>,
}

impl<I: Iam, S: SecretStore, T: Trails> Provisioner<'_, I, S, T> {
    /// Creates or repairs everything `target` describes. Safe to repeat.
    pub async fn converge(&self, target: &Target) -> Result<Provisioned, ProvisionError> {
        self.progress.set(steps::DISCOVER);
        // Read-only discovery first, so that a foreign user, secret or trail, a missing
        // TrailBucket or unusable API credentials fail the request before anything is written.
        let (user, secret, trail_plan, credentials) = futures::try_join!(
            async { self.iam.get_user(&target.user.name).await.in_step(steps::DISCOVER) },
            async {
                self.secrets
                    .describe(&target.secret_name)
                    .await
                    .in_step(steps::DISCOVER)
            },
            Box::pin(trail::discover(self.trails, target)),
            connector::credentials(self.secrets, target.callback.as_ref(), self.callback.allowed),
        )?;
        if let Some(user) = &user {
            if !target.owner.owns(&user.tags) {
                return Err(ProvisionError::ForeignUser(target.user.name.clone()));
            }
        }
        let secret = secret::Existing::check(target, secret)?;
        // The trail is independent of the IAM chain: both run at once. Boxed: the SDK's
        // futures are large, and debug builds copy them on the stack.
        let (identity, trail) = futures::try_join!(
            Box::pin(self.identity(target, user, secret)),
            Box::pin(trail::apply(self.trails, target, trail_plan)),
        )?;

        // The call back carries the stored key and the trail: it comes after both, and before
        // the old key is deleted, so the connector never holds a dead key.
        self.progress.set(steps::CALLBACK);
        let registration = connector::Registration {
            target,
            key: &identity.key,
            trail_arn: trail.arn.as_deref().unwrap_or_default(),
            secret_arn: &identity.secret_arn,
            secret_tags: &identity.secret_tags,
        };
        let connector = connector::register(self.secrets, &self.callback, credentials.as_ref(), registration).await?;

        self.progress.set(steps::ACCESS_KEY);
        identity
            .keys
            .retire_others(self.iam, target, &identity.key.access_key_id)
            .await?;

        if let Some((previous, previous_physical_id)) = &target.previous_callback {
            connector::unregister(self.secrets, &self.callback, previous, previous_physical_id).await;
        }
        Ok(Provisioned {
            user_name: target.user.name.clone(),
            user_arn: identity.user_arn,
            access_key_id: identity.key.access_key_id.clone(),
            secret_arn: identity.secret_arn,
            trail,
            connector,
        })
    }

    /// User → permissions → access key → secret.
    async fn identity(
        &self,
        target: &Target,
        user: Option<ports::User>,
        secret: secret::Existing,
    ) -> Result<Identity, ProvisionError> {
        self.progress.set(steps::USER);
        let user = user::converge(self.iam, target, user).await?;

        self.progress.set(steps::PERMISSIONS);
        permissions::converge(self.iam, target).await?;

        self.progress.set(steps::ACCESS_KEY);
        let secret = secret.prepare(self.secrets).await?;
        let (stored, listed) = futures::try_join!(secret.stored_key(self.secrets), access_key::list(self.iam, target))?;
        let mut keys = access_key::inspect(target, listed, stored.as_ref());
        let rotate = !secret.key_version_matches(target);
        let (key, new_key) = match (keys.plan(self.iam, target, rotate).await?, stored) {
            (access_key::Plan::Keep, Some(stored)) => (stored, None),
            _ => {
                let issued = StoredKey::new(keys.issue(self.iam, target).await?, &target.user.name);
                (issued.clone(), Some(issued))
            }
        };

        self.progress.set(steps::SECRET);
        let secret_tags = secret.tags();
        let secret_arn = secret.store(self.secrets, target, new_key).await?;
        Ok(Identity {
            user_arn: user.arn,
            key,
            keys,
            secret_arn,
            secret_tags,
        })
    }

    /// Removes what `target` owns. Anything already gone, or not ours, is left as it is.
    pub async fn delete(&self, target: &DeleteTarget) -> Result<(), ProvisionError> {
        Box::pin(delete::run(self, target)).await
    }

    /// After a `SecretName` change: deletes the previous secret if it is ours and serves this
    /// resource (old or new physical id).
    pub async fn delete_previous_secret(
        &self,
        target: &Target,
        previous_name: &str,
        previous_physical_id: &str,
        window: RecoveryWindow,
    ) -> Result<(), ProvisionError> {
        self.progress.set(steps::OLD_SECRET);
        let served = [previous_physical_id, target.physical_id.as_str()];
        secret::delete_if_ours(self.secrets, &target.owner, previous_name, &served, window)
            .await
            .in_step(steps::OLD_SECRET)
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
