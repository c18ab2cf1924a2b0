//! Secrets Manager adapter: implements [`SecretStore`] with the AWS SDK.

use aws_sdk_secretsmanager::types::{RotationRulesType, Tag};
use aws_sdk_secretsmanager::Client;

use super::{call_error, done, none_if};
use crate::key_material::SecretText;
use crate::ports::{CallError, Created, ErrorKind, NewSecret, SecretInfo, SecretStore, SecretValue, Tags, Version};
use crate::properties::RecoveryWindow;

/// The AWS managed key's alias, for moving a secret back to it.
const DEFAULT_KEY: &str = "alias/aws/secretsmanager";

/// Secrets Manager.
#[derive(Clone)]
pub struct SecretsManagerAdapter {
    client: Client,
}

impl SecretsManagerAdapter {
    /// A client over the shared configuration.
    pub fn new(config: &aws_config::SdkConfig) -> SecretsManagerAdapter {
        SecretsManagerAdapter {
            client: Client::new(config),
        }
    }
}

fn sm_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn info(out: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput) -> SecretInfo {
    let rotation = match (out.rotation_enabled(), out.rotation_lambda_arn(), out.rotation_rules()) {
        (Some(true), Some(arn), rules) => {
            let days = rules.and_then(|r| r.automatically_after_days()).unwrap_or(0);
            Some((arn.to_owned(), u32::try_from(days).unwrap_or(0)))
        }
        _ => None,
    };
    SecretInfo {
        arn: out.arn().unwrap_or_default().to_owned(),
        tags: out
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
            .collect(),
        pending_deletion: out.deleted_date().is_some(),
        deleted_at: out.deleted_date().and_then(|d| u64::try_from(d.secs()).ok()),
        kms_key_id: out.kms_key_id().map(str::to_owned),
        rotation,
        versions: out
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(id, stages)| (id.clone(), stages.clone())).collect())
            .unwrap_or_default(),
        description: out.description().map(str::to_owned),
        replicated: !out.replication_status().is_empty() || is_replica(out.arn(), out.primary_region()),
    }
}

/// Whether a secret is a replica: `PrimaryRegion` names another region than the secret's ARN (a
/// primary may report its own region there).
fn is_replica(arn: Option<&str>, primary_region: Option<&str>) -> bool {
    let region = arn.and_then(|a| a.split(':').nth(3));
    primary_region.is_some_and(|p| Some(p) != region)
}

impl SecretStore for SecretsManagerAdapter {
    async fn describe(&self, id: &str) -> Result<Option<SecretInfo>, CallError> {
        let result = self.client.describe_secret().secret_id(id).send().await;
        let found = none_if("secretsmanager:DescribeSecret", result, |e| {
            e.is_resource_not_found_exception()
        })?;
        Ok(found.as_ref().map(info))
    }

    async fn create(&self, secret: &NewSecret<'_>) -> Result<Created<String>, CallError> {
        let request = self
            .client
            .create_secret()
            .name(secret.name)
            .description(secret.description)
            .secret_string(secret.value.expose())
            .client_request_token(secret.token)
            .set_kms_key_id(secret.kms_key_id.map(str::to_owned))
            .set_tags(Some(sm_tags(secret.tags)));
        // A name pending deletion answers InvalidRequestException on AWS (ResourceExists on moto):
        // either way the name is taken.
        let taken = |e: &aws_sdk_secretsmanager::operation::create_secret::CreateSecretError| {
            use aws_smithy_types::error::metadata::ProvideErrorMetadata;
            // InvalidRequestException covers many things; only this one means "taken".
            let pending = e.message().is_some_and(|m| m.contains("scheduled for deletion"));
            e.is_resource_exists_exception() || (e.is_invalid_request_exception() && pending)
        };
        let created = none_if("secretsmanager:CreateSecret", request.send().await, taken)?;
        Ok(match created {
            Some(out) => Created::New(out.arn().unwrap_or_default().to_owned()),
            None => Created::AlreadyExists,
        })
    }

    async fn get_value(&self, id: &str, version: Version<'_>) -> Result<Option<SecretValue>, CallError> {
        let request = self.client.get_secret_value().secret_id(id);
        let request = match version {
            Version::Staged(stage) => request.version_stage(stage),
            Version::Id(version) => request.version_id(version),
        };
        let found = none_if("secretsmanager:GetSecretValue", request.send().await, |e| {
            e.is_resource_not_found_exception()
        })?;
        Ok(found.and_then(|out| {
            Some(SecretValue {
                version_id: out.version_id()?.to_owned(),
                text: SecretText::new(out.secret_string()?.to_owned()),
            })
        }))
    }

    async fn put_value(&self, arn: &str, value: &SecretText, token: &str, stages: &[&str]) -> Result<(), CallError> {
        let request = self
            .client
            .put_secret_value()
            .secret_id(arn)
            .secret_string(value.expose())
            .client_request_token(token)
            .set_version_stages(Some(stages.iter().map(|s| (*s).to_owned()).collect()));
        request.send().await.map(drop).map_err(|e| {
            call_error("secretsmanager:PutSecretValue", e, |e| {
                e.is_resource_exists_exception().then_some(ErrorKind::AlreadyExists)
            })
        })
    }

    async fn move_stage(&self, arn: &str, stage: &str, to: Option<&str>, from: Option<&str>) -> Result<(), CallError> {
        let request = self
            .client
            .update_secret_version_stage()
            .secret_id(arn)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned));
        // The label is no longer on `from` (or is on another version than the caller saw): the
        // compare-and-swap failed.
        request.send().await.map(drop).map_err(|e| {
            call_error("secretsmanager:UpdateSecretVersionStage", e, |e| {
                e.is_invalid_parameter_exception().then_some(ErrorKind::Conflict)
            })
        })
    }

    async fn resource_policy(&self, arn: &str) -> Result<Option<String>, CallError> {
        let out = self.client.get_resource_policy().secret_id(arn).send().await;
        let out = out.map_err(|e| call_error("secretsmanager:GetResourcePolicy", e, |_| None))?;
        Ok(out
            .resource_policy()
            .map(str::to_owned)
            .filter(|p| !p.trim().is_empty()))
    }

    async fn tag(&self, arn: &str, tags: &Tags) -> Result<(), CallError> {
        let result = self
            .client
            .tag_resource()
            .secret_id(arn)
            .set_tags(Some(sm_tags(tags)))
            .send()
            .await;
        done("secretsmanager:TagResource", result)
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), CallError> {
        let result = self
            .client
            .untag_resource()
            .secret_id(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await;
        done("secretsmanager:UntagResource", result)
    }

    async fn set_kms_key(&self, arn: &str, kms_key_id: Option<&str>) -> Result<(), CallError> {
        let request = self
            .client
            .update_secret()
            .secret_id(arn)
            .kms_key_id(kms_key_id.unwrap_or(DEFAULT_KEY));
        done("secretsmanager:UpdateSecret", request.send().await)
    }

    async fn set_description(&self, arn: &str, description: &str) -> Result<(), CallError> {
        let request = self.client.update_secret().secret_id(arn).description(description);
        done("secretsmanager:UpdateSecret", request.send().await)
    }

    async fn delete(&self, arn: &str, window: RecoveryWindow) -> Result<(), CallError> {
        // Both options together are an error: send exactly one.
        let request = self.client.delete_secret().secret_id(arn);
        let request = match window {
            RecoveryWindow::Immediate => request.force_delete_without_recovery(true),
            RecoveryWindow::Days(days) => request.recovery_window_in_days(days.into()),
        };
        none_if("secretsmanager:DeleteSecret", request.send().await, |e| {
            e.is_resource_not_found_exception()
        })
        .map(drop)
    }

    async fn enable_rotation(&self, arn: &str, function_arn: &str, days: u32) -> Result<(), CallError> {
        let rules = RotationRulesType::builder()
            .automatically_after_days(days.into())
            .build();
        let request = self
            .client
            .rotate_secret()
            .secret_id(arn)
            .rotation_lambda_arn(function_arn)
            .rotation_rules(rules)
            // Rotating now would race the request that turned rotation on.
            .rotate_immediately(false);
        done("secretsmanager:RotateSecret", request.send().await)
    }

    async fn disable_rotation(&self, arn: &str) -> Result<(), CallError> {
        done(
            "secretsmanager:CancelRotateSecret",
            self.client.cancel_rotate_secret().secret_id(arn).send().await,
        )
    }
}
