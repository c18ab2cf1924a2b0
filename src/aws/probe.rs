//! The key verifier: implements [`KeyProbe`] by signing, with the stored key itself, one read of
//! each kind Cloud App Security makes — what a person's "Test API" in the portal would do.

use std::collections::BTreeSet;

use aws_sdk_iam::config::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::key_material::SecretDocument;
use crate::ports::{KeyProbe, ProbeError};
use crate::properties::Connection;

/// Verifies keys against the AWS endpoints of the shared configuration.
#[derive(Clone)]
pub struct KeyProbeAdapter {
    config: aws_config::SdkConfig,
}

impl KeyProbeAdapter {
    /// A verifier over the shared configuration (region, endpoint, timeouts).
    pub fn new(config: &aws_config::SdkConfig) -> KeyProbeAdapter {
        KeyProbeAdapter { config: config.clone() }
    }

    fn config_for(&self, key: &SecretDocument) -> aws_config::SdkConfig {
        let credentials = Credentials::new(
            &key.access_key_id,
            key.secret_access_key.expose(),
            None,
            None,
            "cloud-app-security-connector-verification",
        );
        self.config
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(credentials))
            .build()
    }
}

/// An SDK error, sorted: a key AWS does not know yet is retried; a refusal is reported.
fn judge<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &str,
    e: SdkError<E, HttpResponse>,
) -> ProbeError {
    let code = e.code().map(str::to_owned);
    let status = e.raw_response().map(|r| r.status().as_u16());
    match code.as_deref() {
        Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException") => {
            ProbeError::NotYetValid(format!("{operation}: {}", code.unwrap_or_default()))
        }
        Some(c) if c.starts_with("AccessDenied") => ProbeError::Denied(format!("{operation} was refused ({c})")),
        None if status == Some(403) => ProbeError::Denied(format!("{operation} was refused (HTTP 403)")),
        _ => ProbeError::Failed(format!(
            "{operation} failed: {}",
            code.unwrap_or_else(|| "no answer".to_owned())
        )),
    }
}

impl KeyProbe for KeyProbeAdapter {
    async fn identity(&self, key: &SecretDocument) -> Result<String, ProbeError> {
        let sts = aws_sdk_sts::Client::new(&self.config_for(key));
        let out = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| judge("sts:GetCallerIdentity", e))?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }

    async fn probe(&self, key: &SecretDocument, connections: &BTreeSet<Connection>) -> Result<(), ProbeError> {
        let config = self.config_for(key);
        let sts = aws_sdk_sts::Client::new(&config);
        sts.get_caller_identity()
            .send()
            .await
            .map_err(|e| judge("sts:GetCallerIdentity", e))?;
        let iam = aws_sdk_iam::Client::new(&config);
        let trails = aws_sdk_cloudtrail::Client::new(&config);
        let auditing = connections.contains(&Connection::SecurityAuditing);
        let configuration = connections.contains(&Connection::SecurityConfiguration);
        futures::try_join!(
            async {
                match auditing {
                    true => trails
                        .describe_trails()
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| judge("cloudtrail:DescribeTrails", e)),
                    false => Ok(()),
                }
            },
            async {
                match auditing {
                    true => iam
                        .list_users()
                        .max_items(1)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| judge("iam:ListUsers", e)),
                    false => Ok(()),
                }
            },
            async {
                match configuration {
                    true => iam
                        .get_account_summary()
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| judge("iam:GetAccountSummary", e)),
                    false => Ok(()),
                }
            },
        )?;
        Ok(())
    }
}
