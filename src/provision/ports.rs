//! The capabilities provisioning needs from AWS, as small traits. The adapters in `crate::aws`
//! implement them with the SDK; the unit tests implement them in memory.

use std::collections::BTreeMap;
use std::future::Future;

use crate::aws::AwsError;
use crate::key_material::{NewAccessKey, SecretText};
use crate::properties::RecoveryWindow;

pub type Tags = BTreeMap<String, String>;

/// An IAM user as provisioning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub path: String,
    pub arn: String,
    pub boundary: Option<String>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub access_key_id: String,
    pub active: bool,
}

/// A Secrets Manager secret's metadata (never its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    pub arn: String,
    pub tags: Tags,
    pub pending_deletion: bool,
    pub kms_key_id: Option<String>,
}

/// The outcome of a create call that may race a duplicate delivery of the same request.
pub enum Created<T> {
    New(T),
    AlreadyExists,
}

/// IAM, limited to one user and what hangs off it. Deleting something already gone succeeds.
pub trait Iam: Sync {
    fn get_user(&self, name: &str) -> impl Future<Output = Result<Option<User>, AwsError>> + Send;
    fn create_user(
        &self,
        name: &str,
        path: &str,
        boundary: Option<&str>,
        tags: &Tags,
    ) -> impl Future<Output = Result<Created<User>, AwsError>> + Send;
    fn move_user(&self, name: &str, new_path: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag_user(&self, name: &str, tags: &Tags) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn untag_user(&self, name: &str, keys: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn put_boundary(&self, name: &str, policy_arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn list_inline_policies(&self, name: &str) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    /// The decoded policy document, `None` if the user has no such policy.
    fn get_inline_policy(
        &self,
        name: &str,
        policy: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn put_inline_policy(
        &self,
        name: &str,
        policy: &str,
        document: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_inline_policy(&self, name: &str, policy: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn list_attached_policies(&self, name: &str) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    fn attach_policy(&self, name: &str, policy_arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn detach_policy(&self, name: &str, policy_arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn list_access_keys(&self, name: &str) -> impl Future<Output = Result<Vec<AccessKeyInfo>, AwsError>> + Send;
    fn create_access_key(&self, name: &str) -> impl Future<Output = Result<NewAccessKey, AwsError>> + Send;
    fn activate_access_key(&self, name: &str, key_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_access_key(&self, name: &str, key_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn list_groups(&self, name: &str) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    fn remove_from_group(&self, name: &str, group: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_login_profile(&self, name: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Real IAM refuses (`DeleteConflict`) while the user has keys, policies, groups or a password.
    fn delete_user(&self, name: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Secrets Manager, limited to the one secret that holds the key.
pub trait SecretStore: Sync {
    fn describe(&self, name: &str) -> impl Future<Output = Result<Option<SecretInfo>, AwsError>> + Send;
    /// Creates the secret with its first value.
    fn create(
        &self,
        name: &str,
        value: &SecretText,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> impl Future<Output = Result<Created<String>, AwsError>> + Send;
    fn restore(&self, arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The current value, `None` if the secret has none.
    fn get_value(&self, arn: &str) -> impl Future<Output = Result<Option<SecretText>, AwsError>> + Send;
    fn put_value(&self, arn: &str, value: &SecretText) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag(&self, arn: &str, tags: &Tags) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn untag(&self, arn: &str, keys: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn set_kms_key(&self, arn: &str, kms_key_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete(&self, arn: &str, window: RecoveryWindow) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// A trail as `DescribeTrails` (with shadow trails) reports it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrailInfo {
    pub name: String,
    pub arn: String,
    pub home_region: String,
    pub multi_region: bool,
    pub global_service_events: bool,
    pub organization: bool,
    pub log_file_validation: bool,
    pub bucket: Option<String>,
    pub kms_key_id: Option<String>,
}

/// The settings of the trail this resource keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailSettings {
    pub name: String,
    pub bucket: String,
    pub kms_key_id: Option<String>,
}

/// CloudTrail, limited to what finding, keeping and removing one trail needs.
pub trait Trails: Sync {
    /// Every trail visible from this region, shadow and organization trails included.
    fn list(&self) -> impl Future<Output = Result<Vec<TrailInfo>, AwsError>> + Send;
    fn is_logging(&self, arn: &str) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn tags(&self, arn: &str) -> impl Future<Output = Result<Tags, AwsError>> + Send;
    /// A multi-region trail with global service events and log file validation.
    fn create(&self, settings: &TrailSettings, tags: &Tags) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn update(&self, settings: &TrailSettings) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn start_logging(&self, arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn add_tags(&self, arn: &str, tags: &Tags) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// By name: the trails this resource removes are always homed in its own region.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}
