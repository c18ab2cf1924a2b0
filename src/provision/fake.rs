//! In-memory IAM and Secrets Manager with real AWS's strictness where moto is lenient:
//! `DeleteUser` answers `DeleteConflict` while anything still hangs off the user.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use super::ports::{AccessKeyInfo, Created, Iam, SecretInfo, SecretStore, Tags, User};
use crate::aws::AwsError;
use crate::key_material::{NewAccessKey, SecretAccessKey, SecretText};
use crate::properties::RecoveryWindow;

#[derive(Default, Clone)]
pub struct FakeUser {
    pub path: String,
    pub tags: Tags,
    pub boundary: Option<String>,
    pub inline: BTreeMap<String, String>,
    pub attached: BTreeSet<String>,
    pub keys: Vec<AccessKeyInfo>,
    pub groups: BTreeSet<String>,
    pub login_profile: bool,
}

#[derive(Default)]
pub struct FakeIam {
    pub users: Mutex<BTreeMap<String, FakeUser>>,
    pub writes: Mutex<Vec<String>>,
    next_key: Mutex<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn no_such(op: &'static str, name: &str) -> AwsError {
    AwsError::new(
        op,
        Some("NoSuchEntity"),
        format!("The user with name {name} cannot be found."),
    )
}

impl FakeIam {
    fn write(&self, op: &str) {
        lock(&self.writes).push(op.to_owned());
    }

    pub fn writes(&self) -> Vec<String> {
        lock(&self.writes).clone()
    }

    pub fn user(&self, name: &str) -> Option<FakeUser> {
        lock(&self.users).get(name).cloned()
    }

    fn with_user<T>(&self, op: &'static str, name: &str, f: impl FnOnce(&mut FakeUser) -> T) -> Result<T, AwsError> {
        lock(&self.users).get_mut(name).map(f).ok_or_else(|| no_such(op, name))
    }
}

impl Iam for FakeIam {
    async fn get_user(&self, name: &str) -> Result<Option<User>, AwsError> {
        Ok(lock(&self.users).get(name).map(|u| User {
            name: name.to_owned(),
            path: u.path.clone(),
            arn: format!("arn:aws:iam::123456789012:user{}{name}", u.path),
            boundary: u.boundary.clone(),
            tags: u.tags.clone(),
        }))
    }
    async fn create_user(
        &self,
        name: &str,
        path: &str,
        boundary: Option<&str>,
        tags: &Tags,
    ) -> Result<Created<User>, AwsError> {
        self.write("CreateUser");
        {
            let mut users = lock(&self.users);
            if users.contains_key(name) {
                return Ok(Created::AlreadyExists);
            }
            let user = FakeUser {
                path: path.into(),
                tags: tags.clone(),
                boundary: boundary.map(Into::into),
                ..Default::default()
            };
            users.insert(name.to_owned(), user);
        }
        Ok(Created::New(self.get_user(name).await?.expect("just created")))
    }
    async fn move_user(&self, name: &str, new_path: &str) -> Result<(), AwsError> {
        self.write("UpdateUser");
        self.with_user("iam:UpdateUser", name, |u| u.path = new_path.into())
    }
    async fn tag_user(&self, name: &str, tags: &Tags) -> Result<(), AwsError> {
        self.write("TagUser");
        self.with_user("iam:TagUser", name, |u| u.tags.extend(tags.clone()))
    }
    async fn untag_user(&self, name: &str, keys: &[String]) -> Result<(), AwsError> {
        self.write("UntagUser");
        self.with_user("iam:UntagUser", name, |u| {
            keys.iter().for_each(|k| drop(u.tags.remove(k)))
        })
    }
    async fn put_boundary(&self, name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.write("PutUserPermissionsBoundary");
        self.with_user("iam:PutUserPermissionsBoundary", name, |u| {
            u.boundary = Some(policy_arn.into())
        })
    }
    async fn list_inline_policies(&self, name: &str) -> Result<Vec<String>, AwsError> {
        self.with_user("iam:ListUserPolicies", name, |u| u.inline.keys().cloned().collect())
    }
    async fn get_inline_policy(&self, name: &str, policy: &str) -> Result<Option<String>, AwsError> {
        self.with_user("iam:GetUserPolicy", name, |u| u.inline.get(policy).cloned())
    }
    async fn put_inline_policy(&self, name: &str, policy: &str, document: &str) -> Result<(), AwsError> {
        self.write("PutUserPolicy");
        self.with_user("iam:PutUserPolicy", name, |u| {
            drop(u.inline.insert(policy.into(), document.into()))
        })
    }
    async fn delete_inline_policy(&self, name: &str, policy: &str) -> Result<(), AwsError> {
        self.write("DeleteUserPolicy");
        self.with_user("iam:DeleteUserPolicy", name, |u| drop(u.inline.remove(policy)))
    }
    async fn list_attached_policies(&self, name: &str) -> Result<Vec<String>, AwsError> {
        self.with_user("iam:ListAttachedUserPolicies", name, |u| {
            u.attached.iter().cloned().collect()
        })
    }
    async fn attach_policy(&self, name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.write("AttachUserPolicy");
        self.with_user("iam:AttachUserPolicy", name, |u| {
            u.attached.insert(policy_arn.into());
        })
    }
    async fn detach_policy(&self, name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.write("DetachUserPolicy");
        self.with_user("iam:DetachUserPolicy", name, |u| {
            u.attached.remove(policy_arn);
        })
    }
    async fn list_access_keys(&self, name: &str) -> Result<Vec<AccessKeyInfo>, AwsError> {
        self.with_user("iam:ListAccessKeys", name, |u| u.keys.clone())
    }
    async fn create_access_key(&self, name: &str) -> Result<NewAccessKey, AwsError> {
        self.write("CreateAccessKey");
        let id = {
            let mut next = lock(&self.next_key);
            *next += 1;
            format!("AKIAFAKE{:08}", *next)
        };
        self.with_user("iam:CreateAccessKey", name, |u| {
            if u.keys.len() >= 2 {
                return Err(AwsError::new(
                    "iam:CreateAccessKey",
                    Some("LimitExceeded"),
                    "Cannot exceed quota for AccessKeysPerUser: 2",
                ));
            }
            u.keys.push(AccessKeyInfo {
                access_key_id: id.clone(),
                active: true,
            });
            Ok(NewAccessKey {
                access_key_id: id.clone(),
                secret_access_key: SecretAccessKey::new(format!("secret-of-{id}")),
            })
        })?
    }
    async fn activate_access_key(&self, name: &str, key_id: &str) -> Result<(), AwsError> {
        self.write("UpdateAccessKey");
        self.with_user("iam:UpdateAccessKey", name, |u| {
            u.keys
                .iter_mut()
                .filter(|k| k.access_key_id == key_id)
                .for_each(|k| k.active = true)
        })
    }
    async fn delete_access_key(&self, name: &str, key_id: &str) -> Result<(), AwsError> {
        self.write("DeleteAccessKey");
        self.with_user("iam:DeleteAccessKey", name, |u| {
            u.keys.retain(|k| k.access_key_id != key_id)
        })
    }
    async fn list_groups(&self, name: &str) -> Result<Vec<String>, AwsError> {
        self.with_user("iam:ListGroupsForUser", name, |u| u.groups.iter().cloned().collect())
    }
    async fn remove_from_group(&self, name: &str, group: &str) -> Result<(), AwsError> {
        self.write("RemoveUserFromGroup");
        self.with_user("iam:RemoveUserFromGroup", name, |u| {
            u.groups.remove(group);
        })
    }
    async fn delete_login_profile(&self, name: &str) -> Result<(), AwsError> {
        self.write("DeleteLoginProfile");
        match self.with_user("iam:DeleteLoginProfile", name, |u| std::mem::take(&mut u.login_profile)) {
            Ok(_) | Err(_) => Ok(()),
        }
    }
    async fn delete_user(&self, name: &str) -> Result<(), AwsError> {
        self.write("DeleteUser");
        let mut users = lock(&self.users);
        let Some(u) = users.get(name) else { return Ok(()) };
        if !u.keys.is_empty()
            || !u.inline.is_empty()
            || !u.attached.is_empty()
            || !u.groups.is_empty()
            || u.login_profile
        {
            return Err(AwsError::new(
                "iam:DeleteUser",
                Some("DeleteConflict"),
                "Cannot delete entity, must delete subordinate entities first.",
            ));
        }
        users.remove(name);
        Ok(())
    }
}

#[derive(Default, Clone)]
pub struct FakeSecret {
    pub arn: String,
    pub tags: Tags,
    pub value: Option<String>,
    pub pending_deletion: bool,
    pub kms_key_id: Option<String>,
}

#[derive(Default)]
pub struct FakeSecrets {
    pub secrets: Mutex<BTreeMap<String, FakeSecret>>,
    pub writes: Mutex<Vec<String>>,
}

impl FakeSecrets {
    fn write(&self, op: &str) {
        lock(&self.writes).push(op.to_owned());
    }

    pub fn writes(&self) -> Vec<String> {
        lock(&self.writes).clone()
    }

    pub fn secret(&self, name: &str) -> Option<FakeSecret> {
        lock(&self.secrets).get(name).cloned()
    }

    fn with_arn<T>(&self, op: &'static str, arn: &str, f: impl FnOnce(&mut FakeSecret) -> T) -> Result<T, AwsError> {
        lock(&self.secrets)
            .values_mut()
            .find(|s| s.arn == arn)
            .map(f)
            .ok_or_else(|| {
                AwsError::new(
                    op,
                    Some("ResourceNotFoundException"),
                    "Secrets Manager can't find the specified secret.",
                )
            })
    }
}

impl SecretStore for FakeSecrets {
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        Ok(lock(&self.secrets).get(name).map(|s| SecretInfo {
            arn: s.arn.clone(),
            tags: s.tags.clone(),
            pending_deletion: s.pending_deletion,
            kms_key_id: s.kms_key_id.clone(),
        }))
    }
    async fn create(
        &self,
        name: &str,
        value: &SecretText,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> Result<Created<String>, AwsError> {
        self.write("CreateSecret");
        let mut secrets = lock(&self.secrets);
        if let Some(existing) = secrets.get(name) {
            // Real AWS: InvalidRequestException for a name pending deletion.
            if existing.pending_deletion {
                return Err(AwsError::new(
                    "secretsmanager:CreateSecret",
                    Some("InvalidRequestException"),
                    "scheduled for deletion",
                ));
            }
            return Ok(Created::AlreadyExists);
        }
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf");
        let secret = FakeSecret {
            arn: arn.clone(),
            tags: tags.clone(),
            value: Some(value.expose().to_owned()),
            pending_deletion: false,
            kms_key_id: kms_key_id.map(Into::into),
        };
        secrets.insert(name.to_owned(), secret);
        Ok(Created::New(arn))
    }
    async fn restore(&self, arn: &str) -> Result<(), AwsError> {
        self.write("RestoreSecret");
        self.with_arn("secretsmanager:RestoreSecret", arn, |s| s.pending_deletion = false)
    }
    async fn get_value(&self, arn: &str) -> Result<Option<SecretText>, AwsError> {
        self.with_arn("secretsmanager:GetSecretValue", arn, |s| {
            s.value.clone().map(SecretText::new)
        })
    }
    async fn put_value(&self, arn: &str, value: &SecretText) -> Result<(), AwsError> {
        self.write("PutSecretValue");
        self.with_arn("secretsmanager:PutSecretValue", arn, |s| {
            s.value = Some(value.expose().to_owned())
        })
    }
    async fn tag(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        self.write("TagResource");
        self.with_arn("secretsmanager:TagResource", arn, |s| s.tags.extend(tags.clone()))
    }
    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.write("UntagResource");
        self.with_arn("secretsmanager:UntagResource", arn, |s| {
            keys.iter().for_each(|k| drop(s.tags.remove(k)))
        })
    }
    async fn set_kms_key(&self, arn: &str, kms_key_id: &str) -> Result<(), AwsError> {
        self.write("UpdateSecret");
        self.with_arn("secretsmanager:UpdateSecret", arn, |s| {
            s.kms_key_id = Some(kms_key_id.into())
        })
    }
    async fn delete(&self, arn: &str, window: RecoveryWindow) -> Result<(), AwsError> {
        self.write("DeleteSecret");
        let mut secrets = lock(&self.secrets);
        match window {
            RecoveryWindow::Immediate => secrets.retain(|_, s| s.arn != arn),
            RecoveryWindow::Days(_) => secrets
                .values_mut()
                .filter(|s| s.arn == arn)
                .for_each(|s| s.pending_deletion = true),
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct FakeTrail {
    pub info: super::ports::TrailInfo,
    pub logging: bool,
    pub tags: Tags,
}

/// CloudTrail in one region (`us-east-1`) of account 123456789012.
#[derive(Default)]
pub struct FakeTrails {
    pub trails: Mutex<Vec<FakeTrail>>,
    pub writes: Mutex<Vec<String>>,
    pub calls: Mutex<u32>,
}

impl FakeTrails {
    fn call(&self, write: Option<&str>) {
        *lock(&self.calls) += 1;
        if let Some(op) = write {
            lock(&self.writes).push(op.to_owned());
        }
    }

    pub fn writes(&self) -> Vec<String> {
        lock(&self.writes).clone()
    }

    pub fn trail(&self, name: &str) -> Option<FakeTrail> {
        lock(&self.trails).iter().find(|t| t.info.name == name).cloned()
    }

    fn with_arn<T>(&self, op: &'static str, arn: &str, f: impl FnOnce(&mut FakeTrail) -> T) -> Result<T, AwsError> {
        lock(&self.trails)
            .iter_mut()
            .find(|t| t.info.arn == arn || t.info.name == arn)
            .map(f)
            .ok_or_else(|| AwsError::new(op, Some("TrailNotFoundException"), format!("Unknown trail: {arn}")))
    }
}

impl super::ports::Trails for FakeTrails {
    async fn list(&self) -> Result<Vec<super::ports::TrailInfo>, AwsError> {
        self.call(None);
        Ok(lock(&self.trails).iter().map(|t| t.info.clone()).collect())
    }
    async fn is_logging(&self, arn: &str) -> Result<bool, AwsError> {
        self.call(None);
        self.with_arn("cloudtrail:GetTrailStatus", arn, |t| t.logging)
    }
    async fn tags(&self, arn: &str) -> Result<Tags, AwsError> {
        self.call(None);
        self.with_arn("cloudtrail:ListTags", arn, |t| t.tags.clone())
    }
    async fn create(&self, settings: &super::ports::TrailSettings, tags: &Tags) -> Result<String, AwsError> {
        self.call(Some("CreateTrail"));
        if settings.bucket == "no-policy" {
            return Err(AwsError::new(
                "cloudtrail:CreateTrail",
                Some("InsufficientS3BucketPolicyException"),
                "Incorrect S3 bucket policy is detected for bucket: no-policy",
            ));
        }
        let arn = format!("arn:aws:cloudtrail:us-east-1:123456789012:trail/{}", settings.name);
        let info = super::ports::TrailInfo {
            name: settings.name.clone(),
            arn: arn.clone(),
            home_region: "us-east-1".into(),
            multi_region: true,
            global_service_events: true,
            organization: false,
            log_file_validation: true,
            bucket: Some(settings.bucket.clone()),
            kms_key_id: settings.kms_key_id.clone(),
        };
        lock(&self.trails).push(FakeTrail {
            info,
            logging: false,
            tags: tags.clone(),
        });
        Ok(arn)
    }
    async fn update(&self, settings: &super::ports::TrailSettings) -> Result<(), AwsError> {
        self.call(Some("UpdateTrail"));
        self.with_arn("cloudtrail:UpdateTrail", &settings.name, |t| {
            t.info.multi_region = true;
            t.info.global_service_events = true;
            t.info.log_file_validation = true;
            t.info.bucket = Some(settings.bucket.clone());
        })
    }
    async fn start_logging(&self, arn: &str) -> Result<(), AwsError> {
        self.call(Some("StartLogging"));
        self.with_arn("cloudtrail:StartLogging", arn, |t| t.logging = true)
    }
    async fn add_tags(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        self.call(Some("AddTags"));
        self.with_arn("cloudtrail:AddTags", arn, |t| t.tags.extend(tags.clone()))
    }
    async fn delete(&self, name: &str) -> Result<(), AwsError> {
        self.call(Some("DeleteTrail"));
        lock(&self.trails).retain(|t| t.info.name != name);
        Ok(())
    }
}
