//! KMS adapter: implements [`Keys`] with the AWS SDK (`DescribeKey`, metadata only).

use aws_sdk_kms::Client;

use super::none_if;
use crate::ports::{CallError, Keys};

/// KMS.
#[derive(Clone)]
pub struct KmsAdapter {
    client: Client,
}

impl KmsAdapter {
    /// A client over the shared configuration.
    pub fn new(config: &aws_config::SdkConfig) -> KmsAdapter {
        KmsAdapter {
            client: Client::new(config),
        }
    }
}

impl Keys for KmsAdapter {
    async fn resolve(&self, key: &str) -> Result<Option<String>, CallError> {
        let result = self.client.describe_key().key_id(key).send().await;
        let found = none_if("kms:DescribeKey", result, |e| e.is_not_found_exception())?;
        Ok(found.and_then(|out| out.key_metadata().and_then(|m| m.arn()).map(str::to_owned)))
    }
}
