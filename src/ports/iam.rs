//! IAM, limited to one user and what hangs off it. Split by concern so that each step of
//! provisioning names only what it uses; one adapter implements all four.

use std::future::Future;
use std::time::SystemTime;

use super::{CallError, Created, Tags};
use crate::key_material::NewAccessKey;

/// An IAM user as provisioning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name (unique in the account, whatever the path).
    pub name: String,
    /// The path, `/cloud-app-security/…/`.
    pub path: String,
    /// The user's ARN.
    pub arn: String,
    /// The permissions boundary's policy ARN, if any.
    pub boundary: Option<String>,
    /// The user's tags.
    pub tags: Tags,
    /// When IAM created it (seconds since the epoch), when known.
    pub created: Option<u64>,
}

/// One of a user's access keys (never its secret half).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyInfo {
    /// The key's id (`AKIA…`).
    pub access_key_id: String,
    /// Whether the key is active (an administrator may have deactivated it).
    pub active: bool,
    /// When IAM issued it.
    pub created: SystemTime,
}

/// Something attached to a user that IAM requires gone before `DeleteUser`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attachment {
    /// An access key, by id.
    AccessKey(String),
    /// An inline policy, by name.
    InlinePolicy(String),
    /// An attached managed policy, by ARN.
    ManagedPolicy(String),
    /// A console password. Listed whenever it may exist: removing one that does not is harmless.
    LoginProfile,
    /// An MFA device, by serial number (deactivated, which is what `DeleteUser` needs).
    MfaDevice(String),
    /// An SSH public key, by id.
    SshPublicKey(String),
    /// A signing certificate, by id.
    SigningCertificate(String),
    /// A service-specific credential (CodeCommit, Keyspaces), by id.
    ServiceCredential(String),
    /// A group membership, by group name. Another principal's grant: never removed here.
    Group(String),
}

/// The user itself. Deleting something already gone succeeds.
pub trait Users: Sync {
    /// The user, `None` if it does not exist.
    fn get_user(&self, name: &str) -> impl Future<Output = Result<Option<User>, CallError>> + Send;
    /// Creates the user with its boundary and tags; `AlreadyExists` if the name is taken.
    fn create_user(
        &self,
        name: &str,
        path: &str,
        boundary: Option<&str>,
        tags: &Tags,
    ) -> impl Future<Output = Result<Created<User>, CallError>> + Send;
    /// Moves the user to another path (`UpdateUser`).
    fn move_user(&self, name: &str, new_path: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Adds or overwrites tags.
    fn tag_user(&self, name: &str, tags: &Tags) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Removes tags by key.
    fn untag_user(&self, name: &str, keys: &[String]) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Sets the permissions boundary.
    fn put_boundary(&self, name: &str, policy_arn: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Deletes the user; `Conflict` (IAM's `DeleteConflict`) while anything is still attached.
    fn delete_user(&self, name: &str) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// The user's inline and managed policies.
pub trait UserPolicies: Sync {
    /// The decoded policy document, `None` if the user has no such policy.
    fn get_inline_policy(
        &self,
        name: &str,
        policy: &str,
    ) -> impl Future<Output = Result<Option<String>, CallError>> + Send;
    /// Creates or replaces an inline policy.
    fn put_inline_policy(
        &self,
        name: &str,
        policy: &str,
        document: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Deletes an inline policy; one already gone succeeds.
    fn delete_inline_policy(&self, name: &str, policy: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// The ARNs of the attached managed policies.
    fn list_attached_policies(&self, name: &str) -> impl Future<Output = Result<Vec<String>, CallError>> + Send;
    /// Attaches a managed policy.
    fn attach_policy(&self, name: &str, policy_arn: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Detaches a managed policy; one not attached succeeds.
    fn detach_policy(&self, name: &str, policy_arn: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// The decoded document of a managed policy's default version, `None` if there is no such
    /// policy (whether detaching it would remove a `Deny`).
    fn get_managed_policy(&self, policy_arn: &str) -> impl Future<Output = Result<Option<String>, CallError>> + Send;
}

/// The user's access keys. IAM allows two per user, and `ListAccessKeys` is eventually
/// consistent: a key issued a moment ago may be missing from it.
pub trait AccessKeys: Sync {
    /// The user's keys.
    fn list_access_keys(&self, name: &str) -> impl Future<Output = Result<Vec<AccessKeyInfo>, CallError>> + Send;
    /// Issues a key; `LimitExceeded` when the user already has two.
    fn create_access_key(&self, name: &str) -> impl Future<Output = Result<NewAccessKey, CallError>> + Send;
    /// Activates or deactivates a key; `NotFound` if the key does not exist (a check that does
    /// not depend on `ListAccessKeys`' eventual consistency).
    fn set_access_key_active(
        &self,
        name: &str,
        key_id: &str,
        active: bool,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Deletes a key; one already gone succeeds.
    fn delete_access_key(&self, name: &str, key_id: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// When the key was last used to sign a request (IAM keeps only the most recent use);
    /// `None` if never.
    fn access_key_last_used(&self, key_id: &str) -> impl Future<Output = Result<Option<SystemTime>, CallError>> + Send;
}

/// Which attachments to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// What is usually there: keys, policies, groups, the console password.
    Usual,
    /// The rest: MFA devices, SSH keys, signing certificates, service-specific credentials.
    Rest,
    /// Only the policies, inline and managed (the key check's quarantine look).
    Policies,
}

/// What must go before `DeleteUser`, found and removed one by one.
pub trait Attachments: Sync {
    /// The user's attachments of one depth, read concurrently.
    fn list_attachments(
        &self,
        name: &str,
        depth: Depth,
    ) -> impl Future<Output = Result<Vec<Attachment>, CallError>> + Send;
    /// Removes one attachment; one already gone succeeds. A [`Attachment::Group`] is refused
    /// with `AccessDenied` by design: the function's role cannot remove group memberships.
    fn remove_attachment(
        &self,
        name: &str,
        attachment: &Attachment,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// Everything provisioning needs from IAM.
pub trait Iam: Users + UserPolicies + AccessKeys + Attachments {}

impl<T: Users + UserPolicies + AccessKeys + Attachments> Iam for T {}
