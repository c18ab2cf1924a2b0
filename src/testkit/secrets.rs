//! In-memory Secrets Manager with versions and staging labels: `UpdateSecretVersionStage`
//! refuses to move a label from a version that does not carry it (the compare-and-swap the
//! function relies on), a name pending deletion cannot be created again, and a version id
//! written twice with different values is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::faults::{answer, Faults};
use crate::key_material::SecretText;
use crate::ports::{CallError, Created, ErrorKind, NewSecret, SecretInfo, SecretStore, SecretValue, Tags, Version};
use crate::ports::{CURRENT, PENDING, PREVIOUS};
use crate::properties::RecoveryWindow;

/// One secret.
#[derive(Default, Clone, Debug)]
pub struct FakeSecret {
    pub arn: String,
    pub tags: Tags,
    pub pending_deletion: bool,
    pub deleted_at: Option<u64>,
    pub kms_key_id: Option<String>,
    pub policy: Option<String>,
    pub rotation: Option<(String, u32)>,
    pub description: String,
    /// Replicated to another region.
    pub replicated: bool,
    /// Version id → (value, labels), in the order written.
    pub versions: Vec<(String, String, Vec<String>)>,
}

impl FakeSecret {
    /// The value staged `label`.
    pub fn staged(&self, label: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, _, stages)| stages.iter().any(|s| s == label))
            .map(|(_, value, _)| value.as_str())
    }

    fn info(&self) -> SecretInfo {
        SecretInfo {
            arn: self.arn.clone(),
            tags: self.tags.clone(),
            pending_deletion: self.pending_deletion,
            deleted_at: self.deleted_at.filter(|_| self.pending_deletion),
            kms_key_id: self.kms_key_id.clone(),
            rotation: self.rotation.clone(),
            versions: self
                .versions
                .iter()
                .map(|(id, _, stages)| (id.clone(), stages.clone()))
                .collect(),
            description: Some(self.description.clone()),
            replicated: self.replicated,
        }
    }

    fn unlabel(&mut self, label: &str) {
        for (_, _, stages) in &mut self.versions {
            stages.retain(|s| s != label);
        }
    }
}

/// Secrets Manager in us-east-1 of account 123456789012.
pub struct FakeSecrets {
    pub secrets: Mutex<BTreeMap<String, FakeSecret>>,
    /// How many secrets were ever created: like AWS, a name created again gets another ARN.
    created: std::sync::atomic::AtomicUsize,
    /// Every name ever created.
    ever: Mutex<std::collections::BTreeSet<String>>,
    faults: Arc<Faults>,
    clock: super::clock::ManualClock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_found(op: &'static str) -> CallError {
    let message = "Secrets Manager can't find the specified secret.";
    CallError::new(op, ErrorKind::NotFound, Some("ResourceNotFoundException"), message)
}

impl FakeSecrets {
    pub fn new(faults: Arc<Faults>, clock: super::clock::ManualClock) -> FakeSecrets {
        FakeSecrets {
            secrets: Mutex::default(),
            created: std::sync::atomic::AtomicUsize::default(),
            ever: Mutex::default(),
            faults,
            clock,
        }
    }

    pub fn secret(&self, name: &str) -> Option<FakeSecret> {
        lock(&self.secrets).get(name).cloned()
    }

    /// What `RotateSecret` does before it invokes the function: a version without a value,
    /// staged `AWSPENDING`; refused while another version not current carries that label.
    pub fn begin_rotation(&self, name: &str, token: &str) -> Result<(), String> {
        let mut secrets = lock(&self.secrets);
        let s = secrets.get_mut(name).ok_or("no such secret")?;
        let in_progress = s
            .versions
            .iter()
            .any(|(_, _, st)| st.iter().any(|l| l == PENDING) && !st.iter().any(|l| l == CURRENT));
        if in_progress {
            return Err("a previous rotation isn't complete".into());
        }
        s.unlabel(PENDING);
        s.versions
            .push((token.to_owned(), String::new(), vec![PENDING.to_owned()]));
        Ok(())
    }

    /// Puts a secret there, as someone else would.
    pub fn plant(&self, name: &str, secret: FakeSecret) {
        lock(&self.secrets).insert(name.to_owned(), secret);
    }

    fn on<T>(&self, op: &'static str, id: &str, f: impl FnOnce(&mut FakeSecret) -> T) -> Result<T, CallError> {
        let mut secrets = lock(&self.secrets);
        let found = secrets.iter_mut().find(|(name, s)| s.arn == id || name.as_str() == id);
        found.map(|(_, s)| f(s)).ok_or_else(|| not_found(op))
    }

    /// A write. Like AWS, every write is refused while the secret is scheduled for deletion
    /// (but `DeleteSecret`, which may force the deletion).
    async fn write(
        &self,
        op: &'static str,
        arn: &str,
        f: impl FnOnce(&mut FakeSecret) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let after = self.faults.call(op).await?;
        self.on(op, arn, |s| {
            if s.pending_deletion {
                let message = "You can't perform this operation on the secret because it was marked for deletion.";
                return Err(CallError::new(
                    op,
                    ErrorKind::Other,
                    Some("InvalidRequestException"),
                    message,
                ));
            }
            f(s)
        })??;
        answer(after, ())
    }

    async fn set(&self, op: &'static str, arn: &str, f: impl FnOnce(&mut FakeSecret)) -> Result<(), CallError> {
        self.write(op, arn, |s| {
            f(s);
            Ok(())
        })
        .await
    }
}

impl SecretStore for FakeSecrets {
    async fn describe(&self, id: &str) -> Result<Option<SecretInfo>, CallError> {
        self.faults.call("secretsmanager:DescribeSecret").await?;
        Ok(self.on("secretsmanager:DescribeSecret", id, |s| s.info()).ok())
    }
    async fn create(&self, secret: &NewSecret<'_>) -> Result<Created<String>, CallError> {
        let after = self.faults.call("secretsmanager:CreateSecret").await?;
        let mut secrets = lock(&self.secrets);
        if secrets.contains_key(secret.name) {
            // Real AWS: ResourceExistsException, or InvalidRequestException when pending deletion.
            return Ok(Created::AlreadyExists);
        }
        // The first secret of every name ends as tests expect; one created again after a forced
        // deletion gets another suffix, as AWS's random one would be.
        let n = self.created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let first = lock(&self.ever).insert(secret.name.to_owned());
        let suffix = match first {
            true => "AbCdEf".to_owned(),
            false => format!("{n:06}"),
        };
        let arn = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-{suffix}",
            secret.name
        );
        let fake = FakeSecret {
            arn: arn.clone(),
            tags: secret.tags.clone(),
            kms_key_id: secret.kms_key_id.map(Into::into),
            description: secret.description.to_owned(),
            versions: vec![(
                secret.token.to_owned(),
                secret.value.expose().to_owned(),
                vec![CURRENT.to_owned()],
            )],
            ..Default::default()
        };
        secrets.insert(secret.name.to_owned(), fake);
        answer(after, Created::New(arn))
    }
    async fn get_value(&self, id: &str, version: Version<'_>) -> Result<Option<SecretValue>, CallError> {
        self.faults.call("secretsmanager:GetSecretValue").await?;
        let found = self.on("secretsmanager:GetSecretValue", id, |s| {
            if s.pending_deletion {
                return None;
            }
            let hit = s.versions.iter().find(|(vid, _, stages)| match version {
                Version::Staged(label) => stages.iter().any(|s| s == label),
                Version::Id(wanted) => vid == wanted,
            });
            // A version Secrets Manager made for a rotation has no value until the function puts one.
            hit.filter(|(_, value, _)| !value.is_empty())
                .map(|(vid, value, _)| SecretValue {
                    version_id: vid.clone(),
                    text: SecretText::new(value.clone()),
                })
        });
        Ok(found.ok().flatten())
    }
    async fn put_value(&self, arn: &str, value: &SecretText, token: &str, stages: &[&str]) -> Result<(), CallError> {
        self.write("secretsmanager:PutSecretValue", arn, |s| {
            if let Some((_, existing, labels)) = s.versions.iter_mut().find(|(id, _, _)| id == token) {
                if existing.is_empty() {
                    // The value of a version a rotation started.
                    *existing = value.expose().to_owned();
                    for stage in stages {
                        if !labels.iter().any(|l| l == stage) {
                            labels.push((*stage).to_owned());
                        }
                    }
                    return Ok(());
                }
                return match existing == value.expose() {
                    true => Ok(()),
                    false => Err(CallError::new(
                        "secretsmanager:PutSecretValue",
                        ErrorKind::AlreadyExists,
                        Some("ResourceExistsException"),
                        "a version with this token and another value exists",
                    )),
                };
            }
            for stage in stages {
                s.unlabel(stage);
            }
            let labels = stages.iter().map(|s| (*s).to_owned()).collect();
            s.versions.push((token.to_owned(), value.expose().to_owned(), labels));
            Ok(())
        })
        .await
    }
    async fn move_stage(&self, arn: &str, stage: &str, to: Option<&str>, from: Option<&str>) -> Result<(), CallError> {
        let conflict = |m: &str| {
            CallError::new(
                "secretsmanager:UpdateSecretVersionStage",
                ErrorKind::Conflict,
                Some("InvalidParameterException"),
                m,
            )
        };
        self.write("secretsmanager:UpdateSecretVersionStage", arn, |s| {
            let holder = s
                .versions
                .iter()
                .find(|(_, _, st)| st.iter().any(|l| l == stage))
                .map(|(id, _, _)| id.clone());
            if holder.as_deref() != from {
                return Err(conflict(
                    "the label is attached to another version than RemoveFromVersionId",
                ));
            }
            if to.is_some_and(|to| !s.versions.iter().any(|(id, _, _)| id == to)) {
                return Err(conflict("no such version"));
            }
            s.unlabel(stage);
            if stage == CURRENT {
                if let Some(old) = from {
                    s.unlabel(PREVIOUS);
                    s.versions
                        .iter_mut()
                        .filter(|(id, _, _)| id == old)
                        .for_each(|(_, _, st)| st.push(PREVIOUS.into()));
                }
            }
            s.versions
                .iter_mut()
                .filter(|(id, _, _)| Some(id.as_str()) == to)
                .for_each(|(_, _, st)| st.push(stage.into()));
            Ok(())
        })
        .await
    }
    async fn resource_policy(&self, arn: &str) -> Result<Option<String>, CallError> {
        self.faults.call("secretsmanager:GetResourcePolicy").await?;
        self.on("secretsmanager:GetResourcePolicy", arn, |s| s.policy.clone())
    }
    async fn tag(&self, arn: &str, tags: &Tags) -> Result<(), CallError> {
        self.set("secretsmanager:TagResource", arn, |s| s.tags.extend(tags.clone()))
            .await
    }
    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), CallError> {
        self.set("secretsmanager:UntagResource", arn, |s| {
            keys.iter().for_each(|k| drop(s.tags.remove(k)))
        })
        .await
    }
    async fn set_kms_key(&self, arn: &str, kms_key_id: Option<&str>) -> Result<(), CallError> {
        self.set("secretsmanager:UpdateSecret", arn, |s| {
            s.kms_key_id = kms_key_id.map(Into::into)
        })
        .await
    }
    async fn set_description(&self, arn: &str, description: &str) -> Result<(), CallError> {
        self.set("secretsmanager:UpdateSecret", arn, |s| {
            s.description = description.into()
        })
        .await
    }
    async fn delete(&self, arn: &str, window: RecoveryWindow) -> Result<(), CallError> {
        let after = self.faults.call("secretsmanager:DeleteSecret").await?;
        let mut secrets = lock(&self.secrets);
        match window {
            RecoveryWindow::Immediate => secrets.retain(|_, s| s.arn != arn),
            RecoveryWindow::Days(_) => {
                let now = crate::ports::Clock::now(&self.clock);
                let at = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                secrets.values_mut().filter(|s| s.arn == arn).for_each(|s| {
                    s.pending_deletion = true;
                    s.deleted_at = Some(at);
                })
            }
        }
        answer(after, ())
    }
    async fn enable_rotation(&self, arn: &str, function_arn: &str, days: u32) -> Result<(), CallError> {
        self.set("secretsmanager:RotateSecret", arn, |s| {
            s.rotation = Some((function_arn.into(), days))
        })
        .await
    }
    async fn disable_rotation(&self, arn: &str) -> Result<(), CallError> {
        self.set("secretsmanager:CancelRotateSecret", arn, |s| s.rotation = None)
            .await
    }
}
