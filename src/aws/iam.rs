//! IAM adapter: implements [`Iam`] with the AWS SDK.

use aws_sdk_iam::types::{StatusType, Tag};
use aws_sdk_iam::Client;

use super::{call_error, none_if, AwsError};
use crate::key_material::{NewAccessKey, SecretAccessKey};
use crate::provision::ports::{AccessKeyInfo, Created, Iam, Tags, User};

#[derive(Clone)]
pub struct IamAdapter {
    client: Client,
}

impl IamAdapter {
    pub fn new(config: &aws_config::SdkConfig) -> IamAdapter {
        IamAdapter {
            client: Client::new(config),
        }
    }
}

fn to_user(user: &aws_sdk_iam::types::User) -> User {
    User {
        name: user.user_name().to_owned(),
        path: user.path().to_owned(),
        arn: user.arn().to_owned(),
        boundary: user
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_owned),
        tags: user
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
    }
}

fn iam_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// IAM returns policy documents URL-encoded (RFC 3986).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Iam for IamAdapter {
    async fn get_user(&self, name: &str) -> Result<Option<User>, AwsError> {
        let result = self.client.get_user().user_name(name).send().await;
        Ok(
            none_if("iam:GetUser", result, |e| e.is_no_such_entity_exception())?
                .and_then(|out| out.user().map(to_user)),
        )
    }

    async fn create_user(
        &self,
        name: &str,
        path: &str,
        boundary: Option<&str>,
        tags: &Tags,
    ) -> Result<Created<User>, AwsError> {
        let request = self
            .client
            .create_user()
            .user_name(name)
            .path(path)
            .set_permissions_boundary(boundary.map(str::to_owned))
            .set_tags(Some(iam_tags(tags)));
        let result = request.send().await;
        let Some(out) = none_if("iam:CreateUser", result, |e| e.is_entity_already_exists_exception())? else {
            // A duplicate delivery of the same request created it a moment ago.
            return Ok(Created::AlreadyExists);
        };
        let user = out
            .user()
            .ok_or_else(|| AwsError::new("iam:CreateUser", None, "IAM returned no user"))?;
        Ok(Created::New(to_user(user)))
    }

    async fn move_user(&self, name: &str, new_path: &str) -> Result<(), AwsError> {
        self.client
            .update_user()
            .user_name(name)
            .new_path(new_path)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:UpdateUser", &e))
    }

    async fn tag_user(&self, name: &str, tags: &Tags) -> Result<(), AwsError> {
        self.client
            .tag_user()
            .user_name(name)
            .set_tags(Some(iam_tags(tags)))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:TagUser", &e))
    }

    async fn untag_user(&self, name: &str, keys: &[String]) -> Result<(), AwsError> {
        self.client
            .untag_user()
            .user_name(name)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:UntagUser", &e))
    }

    async fn put_boundary(&self, name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.client
            .put_user_permissions_boundary()
            .user_name(name)
            .permissions_boundary(policy_arn)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:PutUserPermissionsBoundary", &e))
    }

    async fn list_inline_policies(&self, name: &str) -> Result<Vec<String>, AwsError> {
        self.client
            .list_user_policies()
            .user_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| call_error("iam:ListUserPolicies", &e))
    }

    async fn get_inline_policy(&self, name: &str, policy: &str) -> Result<Option<String>, AwsError> {
        let result = self
            .client
            .get_user_policy()
            .user_name(name)
            .policy_name(policy)
            .send()
            .await;
        Ok(
            none_if("iam:GetUserPolicy", result, |e| e.is_no_such_entity_exception())?
                .map(|out| percent_decode(out.policy_document())),
        )
    }

    async fn put_inline_policy(&self, name: &str, policy: &str, document: &str) -> Result<(), AwsError> {
        self.client
            .put_user_policy()
            .user_name(name)
            .policy_name(policy)
            .policy_document(document)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:PutUserPolicy", &e))
    }

    async fn delete_inline_policy(&self, name: &str, policy: &str) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_user_policy()
            .user_name(name)
            .policy_name(policy)
            .send()
            .await;
        none_if("iam:DeleteUserPolicy", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn list_attached_policies(&self, name: &str) -> Result<Vec<String>, AwsError> {
        let policies = self
            .client
            .list_attached_user_policies()
            .user_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| call_error("iam:ListAttachedUserPolicies", &e))?;
        Ok(policies
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect())
    }

    async fn attach_policy(&self, name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.client
            .attach_user_policy()
            .user_name(name)
            .policy_arn(policy_arn)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:AttachUserPolicy", &e))
    }

    async fn detach_policy(&self, name: &str, policy_arn: &str) -> Result<(), AwsError> {
        let result = self
            .client
            .detach_user_policy()
            .user_name(name)
            .policy_arn(policy_arn)
            .send()
            .await;
        none_if("iam:DetachUserPolicy", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn list_access_keys(&self, name: &str) -> Result<Vec<AccessKeyInfo>, AwsError> {
        let keys = self
            .client
            .list_access_keys()
            .user_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| call_error("iam:ListAccessKeys", &e))?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                Some(AccessKeyInfo {
                    access_key_id: k.access_key_id()?.to_owned(),
                    active: k.status() == Some(&StatusType::Active),
                })
            })
            .collect())
    }

    async fn create_access_key(&self, name: &str) -> Result<NewAccessKey, AwsError> {
        let out = self
            .client
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .map_err(|e| call_error("iam:CreateAccessKey", &e))?;
        let key = out
            .access_key()
            .ok_or_else(|| AwsError::new("iam:CreateAccessKey", None, "IAM returned no access key"))?;
        Ok(NewAccessKey {
            access_key_id: key.access_key_id().to_owned(),
            secret_access_key: SecretAccessKey::new(key.secret_access_key().to_owned()),
        })
    }

    async fn activate_access_key(&self, name: &str, key_id: &str) -> Result<(), AwsError> {
        self.client
            .update_access_key()
            .user_name(name)
            .access_key_id(key_id)
            .status(StatusType::Active)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("iam:UpdateAccessKey", &e))
    }

    async fn delete_access_key(&self, name: &str, key_id: &str) -> Result<(), AwsError> {
        let result = self
            .client
            .delete_access_key()
            .user_name(name)
            .access_key_id(key_id)
            .send()
            .await;
        none_if("iam:DeleteAccessKey", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn list_groups(&self, name: &str) -> Result<Vec<String>, AwsError> {
        let groups = self
            .client
            .list_groups_for_user()
            .user_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| call_error("iam:ListGroupsForUser", &e))?;
        Ok(groups.iter().map(|g| g.group_name().to_owned()).collect())
    }

    async fn remove_from_group(&self, name: &str, group: &str) -> Result<(), AwsError> {
        let result = self
            .client
            .remove_user_from_group()
            .user_name(name)
            .group_name(group)
            .send()
            .await;
        none_if("iam:RemoveUserFromGroup", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn delete_login_profile(&self, name: &str) -> Result<(), AwsError> {
        let result = self.client.delete_login_profile().user_name(name).send().await;
        none_if("iam:DeleteLoginProfile", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn delete_user(&self, name: &str) -> Result<(), AwsError> {
        let result = self.client.delete_user().user_name(name).send().await;
        none_if("iam:DeleteUser", result, |e| e.is_no_such_entity_exception()).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn policy_documents_are_url_decoded() {
        assert_eq!(
            percent_decode("%7B%22Version%22%3A%222012-10-17%22%7D"),
            r#"{"Version":"2012-10-17"}"#
        );
        assert_eq!(percent_decode(r#"{"a":"b"}"#), r#"{"a":"b"}"#);
        assert_eq!(percent_decode("100%"), "100%");
    }
}
