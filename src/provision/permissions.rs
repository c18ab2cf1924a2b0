//! The user's permissions, per connection: the procedure's inline policy for `SecurityAuditing`,
//! the two AWS managed policies for `SecurityConfiguration`.

use serde_json::{json, Value};

use super::ports::Iam;
use super::{steps, InStep, ProvisionError, Target};
use crate::properties::Connection;

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

pub const CONFIGURATION_POLICIES: [&str; 2] = ["SecurityAudit", "AWSSecurityHubReadOnlyAccess"];

pub fn auditing_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Action": AUDITING_ACTIONS, "Effect": "Allow", "Resource": "*"}]
    })
}

pub(super) async fn converge<I: Iam>(iam: &I, target: &Target) -> Result<(), ProvisionError> {
    futures::try_join!(inline(iam, target), managed(iam, target)).in_step(steps::PERMISSIONS)?;
    Ok(())
}

async fn inline<I: Iam>(iam: &I, target: &Target) -> Result<(), crate::aws::AwsError> {
    let name = &target.user.name;
    let wanted = target.connections.contains(&Connection::SecurityAuditing);
    let current = iam.get_inline_policy(name, INLINE_POLICY_NAME).await?;
    let desired = auditing_policy();
    match (wanted, current) {
        (true, Some(doc)) if serde_json::from_str::<Value>(&doc).ok().as_ref() == Some(&desired) => Ok(()),
        (true, _) => {
            iam.put_inline_policy(name, INLINE_POLICY_NAME, &desired.to_string())
                .await
        }
        (false, Some(_)) => iam.delete_inline_policy(name, INLINE_POLICY_NAME).await,
        (false, None) => Ok(()),
    }
}

async fn managed<I: Iam>(iam: &I, target: &Target) -> Result<(), crate::aws::AwsError> {
    let name = &target.user.name;
    let wanted = target.connections.contains(&Connection::SecurityConfiguration);
    let attached = iam.list_attached_policies(name).await?;
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
