//! Secrets Manager, limited to the secret that holds the key (and reading the API credentials).

use std::future::Future;

use super::{CallError, Created, Tags};
use crate::key_material::SecretText;
use crate::properties::RecoveryWindow;

/// The staging label of the version readers get.
pub const CURRENT: &str = "AWSCURRENT";
/// The staging label of the version a rotation prepares.
pub const PENDING: &str = "AWSPENDING";
/// The staging label of a version this function adds before it becomes current (Secrets Manager
/// requires a label; `AWSPENDING` would collide with a rotation in progress).
pub const WRITING: &str = "CloudAppSecurityWrite";
/// The staging label Secrets Manager moves to the version that was current before.
pub const PREVIOUS: &str = "AWSPREVIOUS";

/// A secret's metadata (never its value).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretInfo {
    /// The secret's ARN.
    pub arn: String,
    /// The secret's tags.
    pub tags: Tags,
    /// Whether the secret is scheduled for deletion.
    pub pending_deletion: bool,
    /// When it was scheduled for deletion (seconds since the epoch): a Delete's tombstone, which
    /// `DescribeSecret` shows while `GetSecretValue` is refused.
    pub deleted_at: Option<u64>,
    /// The KMS key as `DescribeSecret` reports it: `None` for the AWS managed key.
    pub kms_key_id: Option<String>,
    /// The rotation function's ARN and the days between rotations, when rotation is on.
    pub rotation: Option<(String, u32)>,
    /// Every version's id with its staging labels.
    pub versions: Vec<(String, Vec<String>)>,
    /// What a person sees in the console.
    pub description: Option<String>,
    /// Whether the secret has replicas in other regions, or is itself a replica: a copy of the
    /// key elsewhere, under policies this function never sees.
    pub replicated: bool,
}

impl SecretInfo {
    /// The id of the version that carries `stage`.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }

    /// The staging labels of version `id`; `None` if there is no such version.
    pub fn stages_of(&self, id: &str) -> Option<&[String]> {
        self.versions.iter().find(|(v, _)| v == id).map(|(_, s)| s.as_slice())
    }
}

/// One version's value.
pub struct SecretValue {
    /// The version's id.
    pub version_id: String,
    /// The value.
    pub text: SecretText,
}

/// Which version to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version<'a> {
    /// The one staged `label`.
    Staged(&'a str),
    /// The one with this id.
    Id(&'a str),
}

/// A new secret.
pub struct NewSecret<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its first value.
    pub value: &'a SecretText,
    /// The KMS key; `None` for the AWS managed key.
    pub kms_key_id: Option<&'a str>,
    /// Its tags.
    pub tags: &'a Tags,
    /// The idempotency token, which becomes the first version's id.
    pub token: &'a str,
    /// What a person sees in the console.
    pub description: &'a str,
}

/// Secrets Manager. Deleting something already gone succeeds.
pub trait SecretStore: Sync {
    /// The secret's metadata, `None` if no secret has that name or ARN.
    fn describe(&self, id: &str) -> impl Future<Output = Result<Option<SecretInfo>, CallError>> + Send;
    /// Creates the secret; returns its ARN, or `AlreadyExists` when the name is taken (a
    /// duplicate delivery, or a name pending deletion).
    fn create(&self, secret: &NewSecret<'_>) -> impl Future<Output = Result<Created<String>, CallError>> + Send;
    /// One version's value, `None` if the secret or the version does not exist.
    fn get_value(
        &self,
        id: &str,
        version: Version<'_>,
    ) -> impl Future<Output = Result<Option<SecretValue>, CallError>> + Send;
    /// Adds a version with `token` as its id, staged with `stages`; the same token with the same
    /// value is a no-op, with another value `AlreadyExists`.
    fn put_value(
        &self,
        arn: &str,
        value: &SecretText,
        token: &str,
        stages: &[&str],
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Moves `stage` to version `to` (or removes it, with `None`), taking it from `from`.
    /// Compare-and-swap: `Conflict` when `from` no longer carries the label.
    fn move_stage(
        &self,
        arn: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// The secret's resource policy, `None` if it has none.
    fn resource_policy(&self, arn: &str) -> impl Future<Output = Result<Option<String>, CallError>> + Send;
    /// Adds or overwrites tags.
    fn tag(&self, arn: &str, tags: &Tags) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Removes tags by key.
    fn untag(&self, arn: &str, keys: &[String]) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Changes the KMS key (`None`: the AWS managed key); Secrets Manager re-encrypts the
    /// labelled versions with it.
    fn set_kms_key(&self, arn: &str, kms_key_id: Option<&str>) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Changes the description a person sees in the console.
    fn set_description(&self, arn: &str, description: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Deletes at once or schedules the deletion.
    fn delete(&self, arn: &str, window: RecoveryWindow) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Turns rotation on with `function_arn` every `days`, without rotating now.
    fn enable_rotation(
        &self,
        arn: &str,
        function_arn: &str,
        days: u32,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Turns rotation off.
    fn disable_rotation(&self, arn: &str) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// KMS, only to tell whether two key references name the same key.
pub trait Keys: Sync {
    /// The key's ARN for a key id, key ARN, alias name or alias ARN; `None` if there is no such key.
    fn resolve(&self, key: &str) -> impl Future<Output = Result<Option<String>, CallError>> + Send;
}
