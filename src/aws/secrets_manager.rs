//! Secrets Manager adapter: implements [`SecretStore`] with the AWS SDK.

use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;

use super::{call_error, none_if, AwsError};
use crate::key_material::SecretText;
use crate::properties::RecoveryWindow;
use crate::provision::ports::{Created, SecretInfo, SecretStore, Tags};

const DESCRIPTION: &str =
    "Access key of the IAM user that Microsoft Defender for Cloud Apps uses to read this account \
                           (managed by the Custom::CloudAppSecurityConnector resource)";

#[derive(Clone)]
pub struct SecretsManagerAdapter {
    client: Client,
}

impl SecretsManagerAdapter {
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

impl SecretStore for SecretsManagerAdapter {
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        let result = self.client.describe_secret().secret_id(name).send().await;
        let found = none_if("secretsmanager:DescribeSecret", result, |e| {
            e.is_resource_not_found_exception()
        })?;
        Ok(found.map(|out| SecretInfo {
            arn: out.arn().unwrap_or_default().to_owned(),
            tags: out
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                .collect(),
            pending_deletion: out.deleted_date().is_some(),
            kms_key_id: out.kms_key_id().map(str::to_owned),
        }))
    }

    async fn create(
        &self,
        name: &str,
        value: &SecretText,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> Result<Created<String>, AwsError> {
        let request = self
            .client
            .create_secret()
            .name(name)
            .description(DESCRIPTION)
            .secret_string(value.expose())
            .set_kms_key_id(kms_key_id.map(str::to_owned))
            .set_tags(Some(sm_tags(tags)));
        let result = request.send().await;
        Ok(
            match none_if("secretsmanager:CreateSecret", result, |e| {
                e.is_resource_exists_exception()
            })? {
                Some(out) => Created::New(out.arn().unwrap_or_default().to_owned()),
                // A duplicate delivery of the same request created it a moment ago.
                None => Created::AlreadyExists,
            },
        )
    }

    async fn restore(&self, arn: &str) -> Result<(), AwsError> {
        self.client
            .restore_secret()
            .secret_id(arn)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("secretsmanager:RestoreSecret", &e))
    }

    async fn get_value(&self, arn: &str) -> Result<Option<SecretText>, AwsError> {
        let result = self.client.get_secret_value().secret_id(arn).send().await;
        Ok(none_if("secretsmanager:GetSecretValue", result, |e| {
            e.is_resource_not_found_exception()
        })?
        .and_then(|out| out.secret_string().map(|s| SecretText::new(s.to_owned()))))
    }

    async fn put_value(&self, arn: &str, value: &SecretText) -> Result<(), AwsError> {
        self.client
            .put_secret_value()
            .secret_id(arn)
            .secret_string(value.expose())
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("secretsmanager:PutSecretValue", &e))
    }

    async fn tag(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        self.client
            .tag_resource()
            .secret_id(arn)
            .set_tags(Some(sm_tags(tags)))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("secretsmanager:TagResource", &e))
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.client
            .untag_resource()
            .secret_id(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("secretsmanager:UntagResource", &e))
    }

    async fn set_kms_key(&self, arn: &str, kms_key_id: &str) -> Result<(), AwsError> {
        self.client
            .update_secret()
            .secret_id(arn)
            .kms_key_id(kms_key_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("secretsmanager:UpdateSecret", &e))
    }

    async fn delete(&self, arn: &str, window: RecoveryWindow) -> Result<(), AwsError> {
        // Both options together are an error: send exactly one.
        let request = match window {
            RecoveryWindow::Immediate => self
                .client
                .delete_secret()
                .secret_id(arn)
                .force_delete_without_recovery(true),
            RecoveryWindow::Days(days) => self
                .client
                .delete_secret()
                .secret_id(arn)
                .recovery_window_in_days(days.into()),
        };
        let result = request.send().await;
        none_if("secretsmanager:DeleteSecret", result, |e| {
            e.is_resource_not_found_exception()
        })
        .map(drop)
    }
}
