//! What one request asks the resource to look like, resolved from its properties (and, for an
//! Update, the previous ones) for one account.

use std::collections::BTreeSet;

use reqwest::Url;

use crate::cloud_app_security::endpoint::{self, AllowedHosts, EndpointError};
use crate::key_material::KeySettings;
use crate::ownership::{Owner, StackArn, UserRef};
use crate::ports::Tags;
use crate::properties::{Connection, Properties, RecoveryWindow, TrailMode};

/// Where and how to call back: a checked URL and the credentials secret's ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// The tenant (or relay) URL, held to the allow-list.
    pub url: Url,
    /// The secret holding the API credentials.
    pub credentials_arn: String,
}

impl Callback {
    /// `None` in portal mode. The URL is checked here, before any key could be sent anywhere.
    pub fn from_properties(properties: &Properties, allowed: &AllowedHosts) -> Result<Option<Callback>, EndpointError> {
        match (
            &properties.cloud_app_security_url,
            &properties.cloud_app_security_credentials,
        ) {
            (Some(url), Some(credentials)) => Ok(Some(Callback {
                url: endpoint::api_url(url, allowed)?,
                credentials_arn: credentials.clone(),
            })),
            _ => Ok(None),
        }
    }
}

/// What the resource wants of CloudTrail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailTarget {
    /// `TrailMode`.
    pub mode: TrailMode,
    /// The name of the trail this resource creates.
    pub name: String,
    /// The bucket a created trail delivers to.
    pub bucket: Option<String>,
    /// The KMS key for a created trail's log files.
    pub kms_key_id: Option<String>,
    /// The previous properties' mode and trail name, when known.
    pub previous: Option<(TrailMode, String)>,
}

impl TrailTarget {
    /// The trail part of `properties`.
    pub fn new(properties: &Properties, previous: Option<&Properties>) -> TrailTarget {
        TrailTarget {
            mode: properties.trail_mode,
            name: properties.trail_name.clone(),
            bucket: properties.trail_bucket.clone(),
            kms_key_id: properties.trail_kms_key_id.clone(),
            previous: previous.map(|p| (p.trail_mode, p.trail_name.clone())),
        }
    }
}

/// What an Update's previous properties named, for the clean-ups a change needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Before {
    /// The `PhysicalResourceId` CloudFormation sent.
    pub physical_id: String,
    /// The previous secret's name.
    pub secret_name: String,
    /// The previous `SecretKmsKeyId`: a change of it is the deployer's, and is carried out.
    pub secret_kms_key_id: Option<String>,
    /// The previous `PermissionsBoundary`: a user still under it moves to the new one; a user
    /// under any other boundary was given it by a person, and keeps it.
    pub boundary: Option<String>,
}

/// Everything the resource should look like, resolved from one request.
#[derive(Clone, Debug)]
pub struct Target {
    /// The stack and logical id: what makes something "ours".
    pub owner: Owner,
    /// The stack's partition, region and account.
    pub stack: StackArn,
    /// The IAM user's path and name.
    pub user: UserRef,
    /// The user's ARN, which is the `PhysicalResourceId`.
    pub physical_id: String,
    /// The connections the user gets permissions for.
    pub connections: BTreeSet<Connection>,
    /// The user's permissions boundary.
    pub boundary: Option<String>,
    /// The secret's name.
    pub secret_name: String,
    /// The secret's KMS key; `None` for the AWS managed key.
    pub secret_kms_key_id: Option<String>,
    /// What happens to the secret on Delete.
    pub recovery_window: RecoveryWindow,
    /// The `KeyVersion` the stored key must have been issued for.
    pub key_version: String,
    /// The deployer's tags.
    pub tags: Tags,
    /// Deployer tags the previous properties set and these no longer do.
    pub removed_tags: Vec<String>,
    /// `ToleratedTagKeys`.
    pub tolerated_tag_keys: Vec<String>,
    /// The trail.
    pub trail: TrailTarget,
    /// The connector's name.
    pub connector_name: String,
    /// Where to register the connector; `None` in portal mode.
    pub callback: Option<Callback>,
    /// Days between scheduled rotations; `0` for none.
    pub rotation_days: u32,
    /// Days a previous key waits for a paste.
    pub grace_days: u32,
    /// Whether to prove the stored key works after a change.
    pub verify_key: bool,
    /// What the previous properties named (Update only).
    pub before: Option<Before>,
    /// When CloudFormation signed this request's `ResponseURL` (seconds since the epoch), where
    /// known: a secret this resource's own Delete scheduled for deletion later than that is a
    /// tombstone the request must not bring back.
    pub signed_at: Option<u64>,
}

impl Target {
    /// Resolves `properties` (and an Update's `previous` ones, found at `old_physical_id`).
    pub fn new(
        owner: Owner,
        stack: StackArn,
        properties: &Properties,
        previous: Option<(&Properties, &str)>,
        allowed: &AllowedHosts,
    ) -> Result<Target, EndpointError> {
        let resolved = properties.resolve(&stack.account_id);
        let physical_id = stack.user_arn(&properties.user_path, &resolved.user_name);
        let removed_tags = previous
            .map(|(p, _)| {
                p.tags
                    .keys()
                    .filter(|k| !properties.tags.contains_key(*k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let before = previous.map(|(p, old_physical_id)| Before {
            physical_id: old_physical_id.to_owned(),
            secret_name: p.resolve(&stack.account_id).secret_name,
            secret_kms_key_id: p.secret_kms_key_id.clone(),
            boundary: p.permissions_boundary.clone(),
        });
        Ok(Target {
            owner,
            user: UserRef {
                path: properties.user_path.clone(),
                name: resolved.user_name,
            },
            physical_id,
            connections: properties.connections.clone(),
            boundary: properties.permissions_boundary.clone(),
            secret_name: resolved.secret_name,
            secret_kms_key_id: properties.secret_kms_key_id.clone(),
            recovery_window: properties.secret_recovery_window,
            key_version: properties.key_version.clone(),
            tags: properties.tags.clone(),
            removed_tags,
            tolerated_tag_keys: properties.tolerated_tag_keys.clone(),
            trail: TrailTarget::new(properties, previous.map(|(p, _)| p)),
            connector_name: resolved.connector_name,
            callback: Callback::from_properties(properties, allowed)?,
            rotation_days: properties.rotation_days,
            grace_days: properties.rotation_grace_days,
            verify_key: properties.verify_key,
            before,
            signed_at: None,
            stack,
        })
    }

    /// The ownership tags plus the deployer's, for everything this resource creates.
    pub fn resource_tags(&self) -> Tags {
        self.owner.tags(&self.physical_id, &self.tags)
    }

    /// The tag keys the secret may carry besides the function's own: the deployer's (those
    /// still set and those this Update removes, which `tidy_secret` takes off after the write)
    /// and `ToleratedTagKeys`.
    pub fn accepted_tags(&self) -> Vec<String> {
        let deployer = self.tags.keys().chain(&self.removed_tags);
        deployer.chain(&self.tolerated_tag_keys).cloned().collect()
    }

    /// The tags of the secret: [`Target::resource_tags`], and `cloud-app-security:released`
    /// `false` — a live secret a failed Delete tagged released is claimed back, so that no
    /// connector role may force-delete it (the role force-deletes only `true`).
    pub fn secret_tags(&self) -> Tags {
        let mut tags = self.resource_tags();
        tags.insert(crate::ownership::TAG_RELEASED.to_owned(), "false".to_owned());
        tags
    }

    /// What a rotation must know of this target, kept in the secret's value.
    pub fn key_settings(&self) -> KeySettings {
        KeySettings {
            connections: self.connections.iter().map(|c| c.as_str().to_owned()).collect(),
            grace_days: self.grace_days,
            accepted_tags: self.tags.keys().chain(&self.tolerated_tag_keys).cloned().collect(),
            kms_key: Some(
                self.secret_kms_key_id
                    .clone()
                    .unwrap_or_else(|| super::secret::DEFAULT_KEY_ALIAS.to_owned()),
            ),
        }
    }

    /// Whether this request moves the resource to a new user (a new `UserName`).
    pub fn replaces_user(&self) -> bool {
        self.before
            .as_ref()
            .is_some_and(|b| UserRef::from_physical_id(&b.physical_id).is_none_or(|old| old.name != self.user.name))
    }

    /// Whether this request gives the resource a new `PhysicalResourceId` (a replacement or a move).
    pub fn new_physical_id(&self) -> bool {
        self.before.as_ref().is_some_and(|b| b.physical_id != self.physical_id)
    }

    /// The previous secret's name, when an Update changed `SecretName`.
    pub fn moved_from_secret(&self) -> Option<&str> {
        self.before
            .as_ref()
            .map(|b| b.secret_name.as_str())
            .filter(|name| *name != self.secret_name)
    }
}
