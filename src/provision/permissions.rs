//! The user's permissions, per connection: the procedure's inline policy for `SecurityAuditing`,
//! the two AWS managed policies for `SecurityConfiguration`.

use super::teardown::denies;
use serde_json::{json, Value};

use super::{steps, InStep, ProvisionError, Provisioner, Target};
use crate::ports::{CallError, Ports, UserPolicies};
use crate::properties::Connection;

/// The inline policy's name.
pub const INLINE_POLICY_NAME: &str = "CloudAppSecurityAuditing";

/// Exactly the actions of Microsoft's procedure. `s3:PutBucketAcl` is a write on every bucket: it
/// is what lets Cloud App Security make a bucket private.
pub const AUDITING_ACTIONS: [&str; 12] = [
    "cloudtrail:DescribeTrails",
    "cloudtrail:LookupEvents",
    "cloudtrail:GetTrailStatus",
    "cloudwatch:Describe*",
    "cloudwatch:Get*",
    "cloudwatch:List*",
    "iam:List*",
    "iam:Get*",
    "s3:ListAllMyBuckets",
    "s3:PutBucketAcl",
    "s3:GetBucketAcl",
    "s3:GetBucketLocation",
];

/// The managed policies of `SecurityConfiguration`.
pub const CONFIGURATION_POLICIES: [&str; 2] = ["SecurityAudit", "AWSSecurityHubReadOnlyAccess"];

/// The inline policy's document.
pub fn auditing_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Action": AUDITING_ACTIONS, "Effect": "Allow", "Resource": "*"}]
    })
}

impl<P: Ports> Provisioner<'_, P> {
    /// Converges both kinds. A user this request just created has none yet: nothing is read.
    pub(super) async fn converge_permissions(&self, target: &Target, fresh: bool) -> Result<(), ProvisionError> {
        futures::try_join!(self.inline(target, fresh), self.managed(target, fresh)).in_step(steps::PERMISSIONS)?;
        Ok(())
    }

    async fn inline(&self, target: &Target, fresh: bool) -> Result<(), CallError> {
        let iam = self.ports.iam();
        let name = &target.user.name;
        let wanted = target.connections.contains(&Connection::SecurityAuditing);
        let current = match fresh {
            true => None,
            false => iam.get_inline_policy(name, INLINE_POLICY_NAME).await?,
        };
        let desired = auditing_policy();
        match (wanted, current) {
            (true, Some(doc)) if serde_json::from_str::<Value>(&doc).ok().as_ref() == Some(&desired) => Ok(()),
            // A person turned the connector's own policy into a Deny (incident response): it is
            // never overwritten or deleted; the key check reports the user quarantined.
            (_, Some(doc)) if denies(&doc) => {
                tracing::warn!(
                    policy = INLINE_POLICY_NAME,
                    "the connector's policy now denies: left as it is"
                );
                Ok(())
            }
            (true, _) => {
                iam.put_inline_policy(name, INLINE_POLICY_NAME, &desired.to_string())
                    .await
            }
            (false, Some(_)) => iam.delete_inline_policy(name, INLINE_POLICY_NAME).await,
            (false, None) => Ok(()),
        }
    }

    async fn managed(&self, target: &Target, fresh: bool) -> Result<(), CallError> {
        let iam = self.ports.iam();
        let name = &target.user.name;
        let wanted = target.connections.contains(&Connection::SecurityConfiguration);
        let attached = match (fresh, wanted) {
            (true, false) => return Ok(()),
            (true, true) => Vec::new(),
            (false, _) => iam.list_attached_policies(name).await?,
        };
        let changes = CONFIGURATION_POLICIES
            .iter()
            .map(|policy| target.stack.managed_policy_arn(policy))
            .map(|arn| {
                let is_attached = attached.contains(&arn);
                async move {
                    match (wanted, is_attached) {
                        (true, false) => iam.attach_policy(name, &arn).await,
                        (false, true) => iam.detach_policy(name, &arn).await,
                        _ => Ok(()),
                    }
                }
            });
        futures::future::try_join_all(changes).await.map(drop)
    }
}
