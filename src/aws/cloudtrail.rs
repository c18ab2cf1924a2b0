//! CloudTrail adapter: implements [`Trails`] with the AWS SDK.

use aws_sdk_cloudtrail::types::Tag;
use aws_sdk_cloudtrail::Client;

use super::{call_error, none_if, AwsError};
use crate::provision::ports::{Tags, TrailInfo, TrailSettings, Trails};

#[derive(Clone)]
pub struct CloudTrailAdapter {
    client: Client,
}

impl CloudTrailAdapter {
    pub fn new(config: &aws_config::SdkConfig) -> CloudTrailAdapter {
        CloudTrailAdapter {
            client: Client::new(config),
        }
    }
}

fn trail_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

impl Trails for CloudTrailAdapter {
    async fn list(&self) -> Result<Vec<TrailInfo>, AwsError> {
        let out = self
            .client
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await
            .map_err(|e| call_error("cloudtrail:DescribeTrails", &e))?;
        Ok(out
            .trail_list()
            .iter()
            .filter_map(|t| {
                Some(TrailInfo {
                    name: t.name()?.to_owned(),
                    arn: t.trail_arn()?.to_owned(),
                    home_region: t.home_region().unwrap_or_default().to_owned(),
                    multi_region: t.is_multi_region_trail().unwrap_or(false),
                    global_service_events: t.include_global_service_events().unwrap_or(false),
                    organization: t.is_organization_trail().unwrap_or(false),
                    log_file_validation: t.log_file_validation_enabled().unwrap_or(false),
                    bucket: t.s3_bucket_name().map(str::to_owned),
                    kms_key_id: t.kms_key_id().map(str::to_owned),
                })
            })
            .collect())
    }

    async fn is_logging(&self, arn: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .get_trail_status()
            .name(arn)
            .send()
            .await
            .map_err(|e| call_error("cloudtrail:GetTrailStatus", &e))?;
        Ok(out.is_logging().unwrap_or(false))
    }

    async fn tags(&self, arn: &str) -> Result<Tags, AwsError> {
        let out = self
            .client
            .list_tags()
            .resource_id_list(arn)
            .send()
            .await
            .map_err(|e| call_error("cloudtrail:ListTags", &e))?;
        Ok(out
            .resource_tag_list()
            .iter()
            .flat_map(|r| r.tags_list())
            .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
            .collect())
    }

    async fn create(&self, settings: &TrailSettings, tags: &Tags) -> Result<String, AwsError> {
        let out = self
            .client
            .create_trail()
            .name(&settings.name)
            .s3_bucket_name(&settings.bucket)
            .is_multi_region_trail(true)
            .include_global_service_events(true)
            .enable_log_file_validation(true)
            .set_kms_key_id(settings.kms_key_id.clone())
            .set_tags_list(Some(trail_tags(tags)))
            .send()
            .await
            .map_err(|e| call_error("cloudtrail:CreateTrail", &e))?;
        out.trail_arn()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::new("cloudtrail:CreateTrail", None, "CloudTrail returned no trail ARN"))
    }

    async fn update(&self, settings: &TrailSettings) -> Result<(), AwsError> {
        self.client
            .update_trail()
            .name(&settings.name)
            .s3_bucket_name(&settings.bucket)
            .is_multi_region_trail(true)
            .include_global_service_events(true)
            .enable_log_file_validation(true)
            .set_kms_key_id(settings.kms_key_id.clone())
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("cloudtrail:UpdateTrail", &e))
    }

    async fn start_logging(&self, arn: &str) -> Result<(), AwsError> {
        self.client
            .start_logging()
            .name(arn)
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("cloudtrail:StartLogging", &e))
    }

    async fn add_tags(&self, arn: &str, tags: &Tags) -> Result<(), AwsError> {
        self.client
            .add_tags()
            .resource_id(arn)
            .set_tags_list(Some(trail_tags(tags)))
            .send()
            .await
            .map(drop)
            .map_err(|e| call_error("cloudtrail:AddTags", &e))
    }

    async fn delete(&self, name: &str) -> Result<(), AwsError> {
        let result = self.client.delete_trail().name(name).send().await;
        none_if("cloudtrail:DeleteTrail", result, |e| e.is_trail_not_found_exception()).map(drop)
    }
}
