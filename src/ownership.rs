//! Who the resource is: the stack it belongs to, its `PhysicalResourceId`, and the tags that
//! mark what it owns. Pure rules, used by every layer.

use std::collections::BTreeMap;

/// Tag naming the stack that owns a user, secret or trail.
pub const TAG_STACK_ID: &str = "cloud-app-security:stack-id";
/// Tag naming the resource (logical id) within that stack.
pub const TAG_LOGICAL_ID: &str = "cloud-app-security:logical-id";
/// Tag naming the `PhysicalResourceId` the thing currently serves.
pub const TAG_PHYSICAL_ID: &str = "cloud-app-security:physical-id";
/// Tag a `Delete` puts on a secret (value `true`) just before it schedules the secret's deletion:
/// a later Create of any stack may force-delete such a leftover and start afresh. The role
/// force-deletes nothing else of another stack.
pub const TAG_RELEASED: &str = "cloud-app-security:released";

/// The parts of a CloudFormation stack ARN the resource needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: String,
    /// The stack's region.
    pub region: String,
    /// The stack's account.
    pub account_id: String,
}

/// A `StackId` that is not a stack ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("StackId {0:?} is not a CloudFormation stack ARN")]
pub struct InvalidStackId(pub String);

impl StackArn {
    /// Reads a stack ARN.
    pub fn parse(stack_id: &str) -> Result<StackArn, InvalidStackId> {
        let invalid = || InvalidStackId(stack_id.to_owned());
        let parts: Vec<&str> = stack_id.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", partition, "cloudformation", region, account, resource]
                if partition.starts_with("aws")
                    && !region.is_empty()
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && resource.starts_with("stack/") =>
            {
                Ok(StackArn {
                    partition: (*partition).to_owned(),
                    region: (*region).to_owned(),
                    account_id: (*account).to_owned(),
                })
            }
            _ => Err(invalid()),
        }
    }

    /// The user's ARN, which is also the resource's `PhysicalResourceId`.
    pub fn user_arn(&self, path: &str, user_name: &str) -> String {
        format!("arn:{}:iam::{}:user{path}{user_name}", self.partition, self.account_id)
    }

    /// The ARN of an AWS managed policy in this partition.
    pub fn managed_policy_arn(&self, name: &str) -> String {
        format!("arn:{}:iam::aws:policy/{name}", self.partition)
    }
}

/// A user ARN taken apart: the name is the last segment, the path what lies before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRef {
    /// The path, ending in `/`.
    pub path: String,
    /// The user name.
    pub name: String,
}

impl UserRef {
    /// Reads a `PhysicalResourceId` this resource issued; `None` for anything else (for example the
    /// id of a Create that failed before a user could be named).
    pub fn from_physical_id(physical_id: &str) -> Option<UserRef> {
        let parts: Vec<&str> = physical_id.splitn(6, ':').collect();
        let ["arn", _, "iam", "", _, resource] = parts.as_slice() else {
            return None;
        };
        let path_and_name = resource.strip_prefix("user")?;
        let split = path_and_name.rfind('/')?;
        let (path, name) = path_and_name.split_at(split + 1);
        (path.starts_with('/') && !name.is_empty()).then(|| UserRef {
            path: path.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// The stack and logical id a request belongs to: what makes something "ours".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The stack's ARN.
    pub stack_id: String,
    /// The resource's logical id.
    pub logical_id: String,
}

impl Owner {
    /// Ours means both the stack and the logical id tags match this resource.
    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(TAG_STACK_ID) == Some(&self.stack_id) && tags.get(TAG_LOGICAL_ID) == Some(&self.logical_id)
    }

    /// The three ownership tags plus the user's own.
    pub fn tags(&self, physical_id: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut tags = extra.clone();
        tags.insert(TAG_STACK_ID.to_owned(), self.stack_id.clone());
        tags.insert(TAG_LOGICAL_ID.to_owned(), self.logical_id.clone());
        tags.insert(TAG_PHYSICAL_ID.to_owned(), physical_id.to_owned());
        tags
    }
}

/// The physical id answered for a Create that failed before a user could be named. A Delete
/// with this id has nothing to remove.
pub fn unnamed_physical_id(request_id: &str) -> String {
    format!("cloud-app-security-connector:not-created:{request_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/cas/0a1b2c3d-1111-2222-3333-444455556666";

    #[test]
    fn stack_arn_gives_partition_region_and_account() {
        let s = StackArn::parse(STACK).unwrap();
        assert_eq!(
            (s.partition.as_str(), s.region.as_str(), s.account_id.as_str()),
            ("aws", "eu-west-1", "123456789012")
        );
        let gov = StackArn::parse("arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/a/b").unwrap();
        assert_eq!(gov.partition, "aws-us-gov");
        assert_eq!(
            gov.managed_policy_arn("SecurityAudit"),
            "arn:aws-us-gov:iam::aws:policy/SecurityAudit"
        );
    }

    #[test]
    fn bad_stack_ids_are_rejected() {
        for bad in [
            "",
            "stack",
            "arn:aws:cloudformation:eu-west-1:1234:stack/a/b",
            "arn:aws:s3:::bucket",
        ] {
            assert!(StackArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn physical_id_is_the_user_arn_and_reads_back() {
        let s = StackArn::parse(STACK).unwrap();
        let arn = s.user_arn("/cloud-app-security/prod/", "CloudAppSecurity-x");
        assert_eq!(
            arn,
            "arn:aws:iam::123456789012:user/cloud-app-security/prod/CloudAppSecurity-x"
        );
        let user = UserRef::from_physical_id(&arn).unwrap();
        assert_eq!(user.path, "/cloud-app-security/prod/");
        assert_eq!(user.name, "CloudAppSecurity-x");
        assert_eq!(UserRef::from_physical_id(&unnamed_physical_id("req-1")), None);
        assert_eq!(UserRef::from_physical_id("arn:aws:iam::123456789012:role/x"), None);
    }

    #[test]
    fn ownership_needs_both_stack_and_logical_id() {
        let owner = Owner {
            stack_id: STACK.into(),
            logical_id: "Connector".into(),
        };
        let tags = owner.tags("arn:x", &BTreeMap::from([("team".into(), "secops".into())]));
        assert!(owner.owns(&tags));
        assert_eq!(tags.len(), 4);
        let mut other_logical = tags.clone();
        other_logical.insert(TAG_LOGICAL_ID.into(), "Other".into());
        assert!(!owner.owns(&other_logical));
        let mut no_stack = tags.clone();
        no_stack.remove(TAG_STACK_ID);
        assert!(!owner.owns(&no_stack));
    }
}
