//! In-memory IAM, as strict as the real one where moto is lenient: `DeleteUser` answers
//! `DeleteConflict` while anything is attached, a third access key is `LimitExceeded`, and
//! `ListAccessKeys` may lag behind a key just issued.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::clock::ManualClock;
use super::faults::{answer, Faults};
use crate::key_material::{NewAccessKey, SecretAccessKey};
use crate::ports::{AccessKeyInfo, AccessKeys, Attachment, Attachments, CallError, Clock, Created, Depth, ErrorKind};
use crate::ports::{Tags, User, UserPolicies, Users};

/// One user and everything attached to it.
#[derive(Default, Clone, Debug)]
pub struct FakeUser {
    pub path: String,
    pub tags: Tags,
    pub boundary: Option<String>,
    pub inline: BTreeMap<String, String>,
    pub attached: BTreeSet<String>,
    pub keys: Vec<AccessKeyInfo>,
    pub groups: BTreeSet<String>,
    pub login_profile: bool,
    pub mfa: BTreeSet<String>,
    pub ssh: BTreeSet<String>,
    pub certificates: BTreeSet<String>,
    pub service_credentials: BTreeSet<String>,
    /// When it was created (seconds since the epoch); 0 for a planted user.
    pub created: u64,
}

impl FakeUser {
    fn attachments(&self) -> Vec<Attachment> {
        let mut all = self.usual();
        all.extend(self.rest());
        all
    }

    fn usual(&self) -> Vec<Attachment> {
        let mut all = Vec::new();
        if self.login_profile {
            all.push(Attachment::LoginProfile);
        }
        all.extend(self.keys.iter().map(|k| Attachment::AccessKey(k.access_key_id.clone())));
        all.extend(self.inline.keys().cloned().map(Attachment::InlinePolicy));
        all.extend(self.attached.iter().cloned().map(Attachment::ManagedPolicy));
        all.extend(self.groups.iter().cloned().map(Attachment::Group));
        all
    }

    fn rest(&self) -> Vec<Attachment> {
        let mut all = Vec::new();
        all.extend(self.mfa.iter().cloned().map(Attachment::MfaDevice));
        all.extend(self.ssh.iter().cloned().map(Attachment::SshPublicKey));
        all.extend(self.certificates.iter().cloned().map(Attachment::SigningCertificate));
        all.extend(
            self.service_credentials
                .iter()
                .cloned()
                .map(Attachment::ServiceCredential),
        );
        all
    }
}

/// IAM in account 123456789012.
pub struct FakeIam {
    pub users: Mutex<BTreeMap<String, FakeUser>>,
    /// Keys issued, ever: `(user, id)`.
    pub issued: Mutex<Vec<(String, String)>>,
    /// When each key was last used.
    pub last_used: Mutex<BTreeMap<String, SystemTime>>,
    /// Managed policies' documents, by ARN (any other policy has none: not a `Deny`).
    pub managed: Mutex<BTreeMap<String, String>>,
    /// Keys younger than this are missing from `ListAccessKeys`.
    pub list_lag: Mutex<Duration>,
    /// Keys whose `CreateAccessKey` answer was lost (a fault after the effect): nobody ever
    /// held their secret half.
    pub undelivered: Mutex<BTreeSet<String>>,
    next_key: Mutex<u32>,
    faults: Arc<Faults>,
    clock: ManualClock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn no_such(op: &'static str, name: &str) -> CallError {
    CallError::new(
        op,
        ErrorKind::NotFound,
        Some("NoSuchEntity"),
        format!("The user with name {name} cannot be found."),
    )
}

/// IAM refuses a malformed user name before anything else (`ValidationError`), as AWS does.
fn valid(op: &'static str, name: &str) -> Result<(), CallError> {
    let ok = (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(CallError::new(
            op,
            ErrorKind::Other,
            Some("ValidationError"),
            format!("The specified value for userName is invalid: {name:?}"),
        )),
    }
}

impl FakeIam {
    pub fn new(faults: Arc<Faults>, clock: ManualClock) -> FakeIam {
        FakeIam {
            users: Mutex::default(),
            issued: Mutex::default(),
            last_used: Mutex::default(),
            managed: Mutex::default(),
            list_lag: Mutex::default(),
            undelivered: Mutex::default(),
            next_key: Mutex::new(0),
            faults,
            clock,
        }
    }

    pub fn user(&self, name: &str) -> Option<FakeUser> {
        lock(&self.users).get(name).cloned()
    }

    pub fn with<T>(&self, name: &str, f: impl FnOnce(&mut FakeUser) -> T) -> T {
        f(lock(&self.users).get_mut(name).expect("the user exists"))
    }

    fn on_user<T>(&self, op: &'static str, name: &str, f: impl FnOnce(&mut FakeUser) -> T) -> Result<T, CallError> {
        lock(&self.users).get_mut(name).map(f).ok_or_else(|| no_such(op, name))
    }

    async fn try_write(
        &self,
        op: &'static str,
        name: &str,
        f: impl FnOnce(&mut FakeUser) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let after = self.faults.call(op).await?;
        self.on_user(op, name, f)??;
        answer(after, ())
    }

    async fn write(&self, op: &'static str, name: &str, f: impl FnOnce(&mut FakeUser)) -> Result<(), CallError> {
        self.try_write(op, name, |u| {
            f(u);
            Ok(())
        })
        .await
    }
}

impl Users for FakeIam {
    async fn get_user(&self, name: &str) -> Result<Option<User>, CallError> {
        self.faults.call("iam:GetUser").await?;
        valid("iam:GetUser", name)?;
        Ok(lock(&self.users).get(name).map(|u| User {
            name: name.to_owned(),
            path: u.path.clone(),
            arn: format!("arn:aws:iam::123456789012:user{}{name}", u.path),
            boundary: u.boundary.clone(),
            tags: u.tags.clone(),
            created: Some(u.created),
        }))
    }
    async fn create_user(
        &self,
        name: &str,
        path: &str,
        boundary: Option<&str>,
        tags: &Tags,
    ) -> Result<Created<User>, CallError> {
        let after = self.faults.call("iam:CreateUser").await?;
        let created = crate::ports::Clock::now(&self.clock)
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        {
            let mut users = lock(&self.users);
            if users.contains_key(name) {
                return Ok(Created::AlreadyExists);
            }
            let user = FakeUser {
                path: path.into(),
                tags: tags.clone(),
                boundary: boundary.map(Into::into),
                created,
                ..Default::default()
            };
            users.insert(name.to_owned(), user);
        }
        let user = User {
            name: name.to_owned(),
            path: path.to_owned(),
            arn: format!("arn:aws:iam::123456789012:user{path}{name}"),
            boundary: boundary.map(Into::into),
            tags: tags.clone(),
            created: Some(created),
        };
        answer(after, Created::New(user))
    }
    async fn move_user(&self, name: &str, new_path: &str) -> Result<(), CallError> {
        self.write("iam:UpdateUser", name, |u| u.path = new_path.into()).await
    }
    async fn tag_user(&self, name: &str, tags: &Tags) -> Result<(), CallError> {
        self.write("iam:TagUser", name, |u| u.tags.extend(tags.clone())).await
    }
    async fn untag_user(&self, name: &str, keys: &[String]) -> Result<(), CallError> {
        self.write("iam:UntagUser", name, |u| {
            keys.iter().for_each(|k| drop(u.tags.remove(k)))
        })
        .await
    }
    async fn put_boundary(&self, name: &str, policy_arn: &str) -> Result<(), CallError> {
        self.write("iam:PutUserPermissionsBoundary", name, |u| {
            u.boundary = Some(policy_arn.into())
        })
        .await
    }
    async fn delete_user(&self, name: &str) -> Result<(), CallError> {
        let after = self.faults.call("iam:DeleteUser").await?;
        let mut users = lock(&self.users);
        let Some(u) = users.get(name) else {
            return answer(after, ());
        };
        if !u.attachments().is_empty() {
            let message = "Cannot delete entity, must delete subordinate entities first.";
            return Err(CallError::new(
                "iam:DeleteUser",
                ErrorKind::Conflict,
                Some("DeleteConflict"),
                message,
            ));
        }
        users.remove(name);
        answer(after, ())
    }
}

impl UserPolicies for FakeIam {
    async fn get_inline_policy(&self, name: &str, policy: &str) -> Result<Option<String>, CallError> {
        self.faults.call("iam:GetUserPolicy").await?;
        self.on_user("iam:GetUserPolicy", name, |u| u.inline.get(policy).cloned())
    }
    async fn get_managed_policy(&self, policy_arn: &str) -> Result<Option<String>, CallError> {
        self.faults.call("iam:GetPolicyVersion").await?;
        Ok(lock(&self.managed).get(policy_arn).cloned())
    }
    async fn put_inline_policy(&self, name: &str, policy: &str, document: &str) -> Result<(), CallError> {
        self.write("iam:PutUserPolicy", name, |u| {
            drop(u.inline.insert(policy.into(), document.into()))
        })
        .await
    }
    async fn delete_inline_policy(&self, name: &str, policy: &str) -> Result<(), CallError> {
        let after = self.faults.call("iam:DeleteUserPolicy").await?;
        let _ = self.on_user("iam:DeleteUserPolicy", name, |u| u.inline.remove(policy));
        answer(after, ())
    }
    async fn list_attached_policies(&self, name: &str) -> Result<Vec<String>, CallError> {
        self.faults.call("iam:ListAttachedUserPolicies").await?;
        self.on_user("iam:ListAttachedUserPolicies", name, |u| {
            u.attached.iter().cloned().collect()
        })
    }
    async fn attach_policy(&self, name: &str, policy_arn: &str) -> Result<(), CallError> {
        self.write("iam:AttachUserPolicy", name, |u| {
            u.attached.insert(policy_arn.into());
        })
        .await
    }
    async fn detach_policy(&self, name: &str, policy_arn: &str) -> Result<(), CallError> {
        let after = self.faults.call("iam:DetachUserPolicy").await?;
        let _ = self.on_user("iam:DetachUserPolicy", name, |u| u.attached.remove(policy_arn));
        answer(after, ())
    }
}

impl AccessKeys for FakeIam {
    async fn list_access_keys(&self, name: &str) -> Result<Vec<AccessKeyInfo>, CallError> {
        self.faults.call("iam:ListAccessKeys").await?;
        let (now, lag) = (self.clock.now(), *lock(&self.list_lag));
        let keys = self.on_user("iam:ListAccessKeys", name, |u| u.keys.clone())?;
        Ok(keys.into_iter().filter(|k| k.created + lag <= now).collect())
    }
    async fn create_access_key(&self, name: &str) -> Result<NewAccessKey, CallError> {
        let after = self.faults.call("iam:CreateAccessKey").await?;
        let id = {
            let mut next = lock(&self.next_key);
            *next += 1;
            format!("AKIAFAKE{:08}", *next)
        };
        let created = self.clock.now();
        self.on_user("iam:CreateAccessKey", name, |u| {
            if u.keys.len() >= 2 {
                let message = "Cannot exceed quota for AccessKeysPerUser: 2";
                return Err(CallError::new(
                    "iam:CreateAccessKey",
                    ErrorKind::LimitExceeded,
                    Some("LimitExceeded"),
                    message,
                ));
            }
            u.keys.push(AccessKeyInfo {
                access_key_id: id.clone(),
                active: true,
                created,
            });
            Ok(())
        })??;
        lock(&self.issued).push((name.to_owned(), id.clone()));
        if after.is_some() {
            lock(&self.undelivered).insert(id.clone());
        }
        let key = NewAccessKey {
            access_key_id: id.clone(),
            secret_access_key: SecretAccessKey::new(format!("secret-of-{id}")),
        };
        answer(after, key)
    }
    async fn set_access_key_active(&self, name: &str, key_id: &str, active: bool) -> Result<(), CallError> {
        self.try_write("iam:UpdateAccessKey", name, |u| {
            match u.keys.iter_mut().find(|k| k.access_key_id == key_id) {
                Some(k) => {
                    k.active = active;
                    Ok(())
                }
                None => Err(CallError::new(
                    "iam:UpdateAccessKey",
                    ErrorKind::NotFound,
                    Some("NoSuchEntity"),
                    "no such key",
                )),
            }
        })
        .await
    }
    async fn delete_access_key(&self, name: &str, key_id: &str) -> Result<(), CallError> {
        let after = self.faults.call("iam:DeleteAccessKey").await?;
        let _ = self.on_user("iam:DeleteAccessKey", name, |u| {
            u.keys.retain(|k| k.access_key_id != key_id)
        });
        answer(after, ())
    }
    async fn access_key_last_used(&self, key_id: &str) -> Result<Option<SystemTime>, CallError> {
        self.faults.call("iam:GetAccessKeyLastUsed").await?;
        Ok(lock(&self.last_used).get(key_id).copied())
    }
}

impl Attachments for FakeIam {
    async fn list_attachments(&self, name: &str, depth: Depth) -> Result<Vec<Attachment>, CallError> {
        self.faults.call("iam:List*").await?;
        let mut all = self.on_user("iam:ListUserPolicies", name, |u| match depth {
            Depth::Usual => u.usual(),
            Depth::Rest => u.rest(),
            Depth::Policies => u
                .usual()
                .into_iter()
                .filter(|a| matches!(a, Attachment::InlinePolicy(_) | Attachment::ManagedPolicy(_)))
                .collect(),
        })?;
        // The adapter lists the login profile whenever it may exist.
        if depth == Depth::Usual && !all.contains(&Attachment::LoginProfile) {
            all.push(Attachment::LoginProfile);
        }
        Ok(all)
    }
    async fn remove_attachment(&self, name: &str, attachment: &Attachment) -> Result<(), CallError> {
        if let Attachment::Group(g) = attachment {
            let message = format!("removing {name} from group {g} is another principal's decision");
            return Err(CallError::new(
                "iam:RemoveUserFromGroup",
                ErrorKind::AccessDenied,
                None,
                message,
            ));
        }
        let after = self.faults.call("iam:Delete*").await?;
        let _ = self.on_user("iam:Delete*", name, |u| match attachment {
            Attachment::AccessKey(id) => u.keys.retain(|k| &k.access_key_id != id),
            Attachment::InlinePolicy(p) => drop(u.inline.remove(p)),
            Attachment::ManagedPolicy(p) => drop(u.attached.remove(p)),
            Attachment::LoginProfile => u.login_profile = false,
            Attachment::MfaDevice(s) => drop(u.mfa.remove(s)),
            Attachment::SshPublicKey(s) => drop(u.ssh.remove(s)),
            Attachment::SigningCertificate(s) => drop(u.certificates.remove(s)),
            Attachment::ServiceCredential(s) => drop(u.service_credentials.remove(s)),
            Attachment::Group(_) => {}
        });
        answer(after, ())
    }
}
