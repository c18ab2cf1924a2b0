//! IAM adapter: implements the IAM ports ([`Users`], [`UserPolicies`], [`AccessKeys`],
//! [`Attachments`]) with the AWS SDK.

use std::time::SystemTime;

use aws_sdk_iam::types::{StatusType, Tag};
use aws_sdk_iam::Client;

use super::{call_error, done, none_if};
use crate::key_material::{NewAccessKey, SecretAccessKey};
use crate::ports::{AccessKeyInfo, AccessKeys, Attachment, Attachments, CallError, Created, Depth, ErrorKind, Tags};
use crate::ports::{User, UserPolicies, Users};

/// IAM.
#[derive(Clone)]
pub struct IamAdapter {
    client: Client,
}

impl IamAdapter {
    /// A client over the shared configuration.
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
        created: u64::try_from(user.create_date().secs()).ok(),
    }
}

fn iam_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

fn system_time(t: &aws_smithy_types::DateTime) -> SystemTime {
    SystemTime::try_from(*t).unwrap_or(SystemTime::UNIX_EPOCH)
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

impl Users for IamAdapter {
    async fn get_user(&self, name: &str) -> Result<Option<User>, CallError> {
        let result = self.client.get_user().user_name(name).send().await;
        let found = none_if("iam:GetUser", result, |e| e.is_no_such_entity_exception())?;
        Ok(found.and_then(|out| out.user().map(to_user)))
    }

    async fn create_user(
        &self,
        name: &str,
        path: &str,
        boundary: Option<&str>,
        tags: &Tags,
    ) -> Result<Created<User>, CallError> {
        let request = self
            .client
            .create_user()
            .user_name(name)
            .path(path)
            .set_permissions_boundary(boundary.map(str::to_owned))
            .set_tags(Some(iam_tags(tags)));
        let result = request.send().await;
        let Some(out) = none_if("iam:CreateUser", result, |e| e.is_entity_already_exists_exception())? else {
            return Ok(Created::AlreadyExists);
        };
        let user = out
            .user()
            .ok_or_else(|| CallError::new("iam:CreateUser", ErrorKind::Other, None, "IAM returned no user"))?;
        Ok(Created::New(to_user(user)))
    }

    async fn move_user(&self, name: &str, new_path: &str) -> Result<(), CallError> {
        let result = self
            .client
            .update_user()
            .user_name(name)
            .new_path(new_path)
            .send()
            .await;
        done("iam:UpdateUser", result)
    }

    async fn tag_user(&self, name: &str, tags: &Tags) -> Result<(), CallError> {
        let result = self
            .client
            .tag_user()
            .user_name(name)
            .set_tags(Some(iam_tags(tags)))
            .send()
            .await;
        done("iam:TagUser", result)
    }

    async fn untag_user(&self, name: &str, keys: &[String]) -> Result<(), CallError> {
        let result = self
            .client
            .untag_user()
            .user_name(name)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await;
        done("iam:UntagUser", result)
    }

    async fn put_boundary(&self, name: &str, policy_arn: &str) -> Result<(), CallError> {
        let request = self.client.put_user_permissions_boundary().user_name(name);
        done(
            "iam:PutUserPermissionsBoundary",
            request.permissions_boundary(policy_arn).send().await,
        )
    }

    async fn delete_user(&self, name: &str) -> Result<(), CallError> {
        let result = self.client.delete_user().user_name(name).send().await;
        match result {
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(()),
            other => other.map(drop).map_err(|e| {
                call_error("iam:DeleteUser", e, |e| {
                    e.is_delete_conflict_exception().then_some(ErrorKind::Conflict)
                })
            }),
        }
    }
}

impl UserPolicies for IamAdapter {
    async fn get_inline_policy(&self, name: &str, policy: &str) -> Result<Option<String>, CallError> {
        let result = self
            .client
            .get_user_policy()
            .user_name(name)
            .policy_name(policy)
            .send()
            .await;
        let found = none_if("iam:GetUserPolicy", result, |e| e.is_no_such_entity_exception())?;
        Ok(found.map(|out| percent_decode(out.policy_document())))
    }

    async fn get_managed_policy(&self, policy_arn: &str) -> Result<Option<String>, CallError> {
        let policy = self.client.get_policy().policy_arn(policy_arn).send().await;
        let policy = none_if("iam:GetPolicy", policy, |e| e.is_no_such_entity_exception())?;
        let Some(version) = policy.and_then(|p| p.policy?.default_version_id) else {
            return Ok(None);
        };
        let request = self
            .client
            .get_policy_version()
            .policy_arn(policy_arn)
            .version_id(version);
        let found = none_if("iam:GetPolicyVersion", request.send().await, |e| {
            e.is_no_such_entity_exception()
        })?;
        Ok(found
            .and_then(|out| out.policy_version?.document)
            .map(|d| percent_decode(&d)))
    }

    async fn put_inline_policy(&self, name: &str, policy: &str, document: &str) -> Result<(), CallError> {
        let request = self.client.put_user_policy().user_name(name).policy_name(policy);
        done("iam:PutUserPolicy", request.policy_document(document).send().await)
    }

    async fn delete_inline_policy(&self, name: &str, policy: &str) -> Result<(), CallError> {
        let result = self
            .client
            .delete_user_policy()
            .user_name(name)
            .policy_name(policy)
            .send()
            .await;
        none_if("iam:DeleteUserPolicy", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn list_attached_policies(&self, name: &str) -> Result<Vec<String>, CallError> {
        let pages = self
            .client
            .list_attached_user_policies()
            .user_name(name)
            .into_paginator()
            .items()
            .send();
        let policies = pages
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| call_error("iam:ListAttachedUserPolicies", e, |_| None))?;
        Ok(policies
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect())
    }

    async fn attach_policy(&self, name: &str, policy_arn: &str) -> Result<(), CallError> {
        let result = self
            .client
            .attach_user_policy()
            .user_name(name)
            .policy_arn(policy_arn)
            .send()
            .await;
        done("iam:AttachUserPolicy", result)
    }

    async fn detach_policy(&self, name: &str, policy_arn: &str) -> Result<(), CallError> {
        let result = self
            .client
            .detach_user_policy()
            .user_name(name)
            .policy_arn(policy_arn)
            .send()
            .await;
        none_if("iam:DetachUserPolicy", result, |e| e.is_no_such_entity_exception()).map(drop)
    }
}

impl AccessKeys for IamAdapter {
    async fn list_access_keys(&self, name: &str) -> Result<Vec<AccessKeyInfo>, CallError> {
        let pages = self
            .client
            .list_access_keys()
            .user_name(name)
            .into_paginator()
            .items()
            .send();
        let keys = pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| {
            call_error("iam:ListAccessKeys", e, |e| {
                e.is_no_such_entity_exception().then_some(ErrorKind::NotFound)
            })
        })?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                Some(AccessKeyInfo {
                    access_key_id: k.access_key_id()?.to_owned(),
                    active: k.status() == Some(&StatusType::Active),
                    created: k.create_date().map(system_time).unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect())
    }

    async fn create_access_key(&self, name: &str) -> Result<NewAccessKey, CallError> {
        let out = self
            .client
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .map_err(|e| {
                call_error("iam:CreateAccessKey", e, |e| {
                    e.is_limit_exceeded_exception().then_some(ErrorKind::LimitExceeded)
                })
            })?;
        let key = out.access_key().ok_or_else(|| {
            CallError::new(
                "iam:CreateAccessKey",
                ErrorKind::Other,
                None,
                "IAM returned no access key",
            )
        })?;
        Ok(NewAccessKey {
            access_key_id: key.access_key_id().to_owned(),
            secret_access_key: SecretAccessKey::new(key.secret_access_key().to_owned()),
        })
    }

    async fn set_access_key_active(&self, name: &str, key_id: &str, active: bool) -> Result<(), CallError> {
        let status = if active {
            StatusType::Active
        } else {
            StatusType::Inactive
        };
        let request = self.client.update_access_key().user_name(name).access_key_id(key_id);
        request.status(status).send().await.map(drop).map_err(|e| {
            call_error("iam:UpdateAccessKey", e, |e| {
                e.is_no_such_entity_exception().then_some(ErrorKind::NotFound)
            })
        })
    }

    async fn delete_access_key(&self, name: &str, key_id: &str) -> Result<(), CallError> {
        let result = self
            .client
            .delete_access_key()
            .user_name(name)
            .access_key_id(key_id)
            .send()
            .await;
        none_if("iam:DeleteAccessKey", result, |e| e.is_no_such_entity_exception()).map(drop)
    }

    async fn access_key_last_used(&self, key_id: &str) -> Result<Option<SystemTime>, CallError> {
        let out = self
            .client
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await;
        let out = out.map_err(|e| call_error("iam:GetAccessKeyLastUsed", e, |_| None))?;
        Ok(out
            .access_key_last_used()
            .and_then(|u| u.last_used_date())
            .map(system_time))
    }
}

impl IamAdapter {
    /// The names of the user's inline policies.
    async fn inline_policy_names(&self, name: &str) -> Result<Vec<String>, CallError> {
        let pages = self.client.list_user_policies().user_name(name).into_paginator();
        let pages = pages.items().send();
        pages
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| call_error("iam:ListUserPolicies", e, |_| None))
    }

    async fn policy_attachments(&self, name: &str) -> Result<Vec<Attachment>, CallError> {
        let (inline, managed) = futures::try_join!(self.inline_policy_names(name), self.list_attached_policies(name))?;
        let inline = inline.into_iter().map(Attachment::InlinePolicy);
        Ok(inline
            .chain(managed.into_iter().map(Attachment::ManagedPolicy))
            .collect())
    }

    async fn usual_attachments(&self, name: &str) -> Result<Vec<Attachment>, CallError> {
        let c = &self.client;
        let (keys, inline, managed, groups) = futures::try_join!(
            self.list_access_keys(name),
            self.inline_policy_names(name),
            self.list_attached_policies(name),
            async {
                let pages = c.list_groups_for_user().user_name(name).into_paginator().items().send();
                pages
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| call_error("iam:ListGroupsForUser", e, |_| None))
            },
        )?;
        // Removing a console password that does not exist is harmless: it is not looked up.
        let mut all: Vec<Attachment> = vec![Attachment::LoginProfile];
        all.extend(keys.into_iter().map(|k| Attachment::AccessKey(k.access_key_id)));
        all.extend(inline.into_iter().map(Attachment::InlinePolicy));
        all.extend(managed.into_iter().map(Attachment::ManagedPolicy));
        all.extend(groups.iter().map(|g| Attachment::Group(g.group_name().to_owned())));
        Ok(all)
    }

    async fn other_attachments(&self, name: &str) -> Result<Vec<Attachment>, CallError> {
        let c = &self.client;
        let (mfa, ssh, certs, service) = futures::try_join!(
            async {
                let pages = c.list_mfa_devices().user_name(name).into_paginator().items().send();
                pages
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| call_error("iam:ListMFADevices", e, |_| None))
            },
            async {
                let pages = c.list_ssh_public_keys().user_name(name).into_paginator().items().send();
                pages
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| call_error("iam:ListSSHPublicKeys", e, |_| None))
            },
            async {
                let pages = c
                    .list_signing_certificates()
                    .user_name(name)
                    .into_paginator()
                    .items()
                    .send();
                pages
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(|e| call_error("iam:ListSigningCertificates", e, |_| None))
            },
            async {
                let out = c.list_service_specific_credentials().user_name(name).send().await;
                out.map_err(|e| call_error("iam:ListServiceSpecificCredentials", e, |_| None))
            },
        )?;
        let mut all: Vec<Attachment> = Vec::new();
        all.extend(mfa.iter().map(|m| Attachment::MfaDevice(m.serial_number().to_owned())));
        all.extend(
            ssh.iter()
                .map(|k| Attachment::SshPublicKey(k.ssh_public_key_id().to_owned())),
        );
        all.extend(
            certs
                .iter()
                .map(|c| Attachment::SigningCertificate(c.certificate_id().to_owned())),
        );
        let service = service.service_specific_credentials();
        all.extend(
            service
                .iter()
                .map(|s| Attachment::ServiceCredential(s.service_specific_credential_id().to_owned())),
        );
        Ok(all)
    }
}

impl Attachments for IamAdapter {
    async fn list_attachments(&self, name: &str, depth: Depth) -> Result<Vec<Attachment>, CallError> {
        match depth {
            Depth::Usual => self.usual_attachments(name).await,
            Depth::Rest => self.other_attachments(name).await,
            Depth::Policies => self.policy_attachments(name).await,
        }
    }

    async fn remove_attachment(&self, name: &str, attachment: &Attachment) -> Result<(), CallError> {
        let c = &self.client;
        match attachment {
            Attachment::AccessKey(id) => self.delete_access_key(name, id).await,
            Attachment::InlinePolicy(p) => self.delete_inline_policy(name, p).await,
            Attachment::ManagedPolicy(arn) => self.detach_policy(name, arn).await,
            Attachment::LoginProfile => {
                let result = c.delete_login_profile().user_name(name).send().await;
                none_if("iam:DeleteLoginProfile", result, |e| e.is_no_such_entity_exception()).map(drop)
            }
            Attachment::MfaDevice(serial) => {
                let result = c
                    .deactivate_mfa_device()
                    .user_name(name)
                    .serial_number(serial)
                    .send()
                    .await;
                none_if("iam:DeactivateMFADevice", result, |e| e.is_no_such_entity_exception()).map(drop)
            }
            Attachment::SshPublicKey(id) => {
                let result = c
                    .delete_ssh_public_key()
                    .user_name(name)
                    .ssh_public_key_id(id)
                    .send()
                    .await;
                none_if("iam:DeleteSSHPublicKey", result, |_| false).map(drop)
            }
            Attachment::SigningCertificate(id) => {
                let result = c
                    .delete_signing_certificate()
                    .user_name(name)
                    .certificate_id(id)
                    .send()
                    .await;
                none_if("iam:DeleteSigningCertificate", result, |e| {
                    e.is_no_such_entity_exception()
                })
                .map(drop)
            }
            Attachment::ServiceCredential(id) => {
                let request = c.delete_service_specific_credential().user_name(name);
                let result = request.service_specific_credential_id(id).send().await;
                none_if("iam:DeleteServiceSpecificCredential", result, |e| {
                    e.is_no_such_entity_exception()
                })
                .map(drop)
            }
            Attachment::Group(group) => {
                let message = format!("removing {name} from group {group} is another principal's decision");
                Err(CallError::new(
                    "iam:RemoveUserFromGroup",
                    ErrorKind::AccessDenied,
                    None,
                    message,
                ))
            }
        }
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
