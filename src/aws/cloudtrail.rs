//! CloudTrail adapter: implements [`Trails`] with the AWS SDK.

use aws_sdk_cloudtrail::types::{AdvancedEventSelector, EventSelector, ReadWriteType, Tag};
use aws_sdk_cloudtrail::Client;

use super::{call_error, done, none_if};
use crate::ports::{CallError, Created, ErrorKind, Tags, TrailInfo, TrailSettings, Trails};

/// CloudTrail.
#[derive(Clone)]
pub struct CloudTrailAdapter {
    client: Client,
}

impl CloudTrailAdapter {
    /// A client over the shared configuration.
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

/// Which of reads and writes of management events the selectors record.
fn management(selectors: &[EventSelector], advanced: &[AdvancedEventSelector]) -> (bool, bool) {
    if selectors.is_empty() && advanced.is_empty() {
        // A trail's default selector records all management events.
        return (true, true);
    }
    let mut seen = (false, false);
    for s in selectors
        .iter()
        .filter(|s| s.include_management_events().unwrap_or(true))
    {
        match s.read_write_type().unwrap_or(&ReadWriteType::All) {
            ReadWriteType::ReadOnly => seen.0 = true,
            ReadWriteType::WriteOnly => seen.1 = true,
            _ => seen = (true, true),
        }
    }
    for a in advanced {
        let field = |name: &str| a.field_selectors().iter().find(|f| f.field() == name);
        if !field("eventCategory").is_some_and(|f| f.equals().iter().any(|v| v == "Management")) {
            continue;
        }
        match field("readOnly").map(|f| f.equals()) {
            Some([v]) if v == "true" => seen.0 = true,
            Some([v]) if v == "false" => seen.1 = true,
            _ => seen = (true, true),
        }
    }
    seen
}

impl Trails for CloudTrailAdapter {
    async fn list(&self) -> Result<Vec<TrailInfo>, CallError> {
        let result = self.client.describe_trails().include_shadow_trails(true).send().await;
        let out = result.map_err(|e| call_error("cloudtrail:DescribeTrails", e, |_| None))?;
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

    async fn is_logging(&self, arn: &str) -> Result<bool, CallError> {
        let out = self.client.get_trail_status().name(arn).send().await;
        let out = out.map_err(|e| call_error("cloudtrail:GetTrailStatus", e, |_| None))?;
        Ok(out.is_logging().unwrap_or(false))
    }

    async fn records_management_events(&self, arn: &str) -> Result<bool, CallError> {
        let out = self.client.get_event_selectors().trail_name(arn).send().await;
        let out = out.map_err(|e| call_error("cloudtrail:GetEventSelectors", e, |_| None))?;
        Ok(management(out.event_selectors(), out.advanced_event_selectors()) == (true, true))
    }

    async fn tags(&self, arn: &str) -> Result<Tags, CallError> {
        let out = self.client.list_tags().resource_id_list(arn).send().await;
        let out = out.map_err(|e| call_error("cloudtrail:ListTags", e, |_| None))?;
        Ok(out
            .resource_tag_list()
            .iter()
            .flat_map(|r| r.tags_list())
            .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
            .collect())
    }

    async fn create(&self, settings: &TrailSettings, tags: &Tags) -> Result<Created<String>, CallError> {
        let request = self
            .client
            .create_trail()
            .name(&settings.name)
            .s3_bucket_name(&settings.bucket)
            .is_multi_region_trail(true)
            .include_global_service_events(true)
            .enable_log_file_validation(true)
            .set_kms_key_id(settings.kms_key_id.clone())
            .set_tags_list(Some(trail_tags(tags)));
        let out = match request.send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_trail_already_exists_exception()) =>
            {
                return Ok(Created::AlreadyExists)
            }
            Err(e) => {
                return Err(call_error("cloudtrail:CreateTrail", e, |e| {
                    let bucket = e.is_insufficient_s3_bucket_policy_exception()
                        || e.is_s3_bucket_does_not_exist_exception()
                        || e.is_invalid_s3_bucket_name_exception();
                    bucket.then_some(ErrorKind::BucketRejected)
                }))
            }
        };
        let arn = out.trail_arn().ok_or_else(|| {
            CallError::new(
                "cloudtrail:CreateTrail",
                ErrorKind::Other,
                None,
                "CloudTrail returned no trail ARN",
            )
        })?;
        Ok(Created::New(arn.to_owned()))
    }

    async fn update(&self, settings: &TrailSettings) -> Result<(), CallError> {
        let request = self
            .client
            .update_trail()
            .name(&settings.name)
            .s3_bucket_name(&settings.bucket)
            .is_multi_region_trail(true)
            .include_global_service_events(true)
            .enable_log_file_validation(true)
            .set_kms_key_id(settings.kms_key_id.clone());
        request.send().await.map(drop).map_err(|e| {
            call_error("cloudtrail:UpdateTrail", e, |e| {
                let bucket = e.is_insufficient_s3_bucket_policy_exception()
                    || e.is_s3_bucket_does_not_exist_exception()
                    || e.is_invalid_s3_bucket_name_exception();
                bucket.then_some(ErrorKind::BucketRejected)
            })
        })
    }

    async fn start_logging(&self, arn: &str) -> Result<(), CallError> {
        done(
            "cloudtrail:StartLogging",
            self.client.start_logging().name(arn).send().await,
        )
    }

    async fn add_tags(&self, arn: &str, tags: &Tags) -> Result<(), CallError> {
        let request = self
            .client
            .add_tags()
            .resource_id(arn)
            .set_tags_list(Some(trail_tags(tags)));
        done("cloudtrail:AddTags", request.send().await)
    }

    async fn delete(&self, name: &str) -> Result<(), CallError> {
        let result = self.client.delete_trail().name(name).send().await;
        none_if("cloudtrail:DeleteTrail", result, |e| e.is_trail_not_found_exception()).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudtrail::types::AdvancedFieldSelector;

    fn basic(rw: ReadWriteType, management: bool) -> EventSelector {
        EventSelector::builder()
            .read_write_type(rw)
            .include_management_events(management)
            .build()
    }

    fn advanced(fields: &[(&str, &str)]) -> AdvancedEventSelector {
        let mut selector = AdvancedEventSelector::builder();
        for (field, value) in fields {
            selector = selector.field_selectors(
                AdvancedFieldSelector::builder()
                    .field(*field)
                    .equals(*value)
                    .build()
                    .unwrap(),
            );
        }
        selector.build().unwrap()
    }

    #[test]
    fn management_events_need_reads_and_writes_by_either_kind_of_selector() {
        assert_eq!(management(&[], &[]), (true, true), "the default selector");
        assert_eq!(management(&[basic(ReadWriteType::All, true)], &[]), (true, true));
        assert_eq!(
            management(&[basic(ReadWriteType::All, false)], &[]),
            (false, false),
            "data events only"
        );
        let split = [
            basic(ReadWriteType::ReadOnly, true),
            basic(ReadWriteType::WriteOnly, true),
        ];
        assert_eq!(management(&split, &[]), (true, true));
        assert_eq!(management(&[basic(ReadWriteType::WriteOnly, true)], &[]), (false, true));
        assert_eq!(
            management(&[], &[advanced(&[("eventCategory", "Management")])]),
            (true, true)
        );
        let writes = advanced(&[("eventCategory", "Management"), ("readOnly", "false")]);
        assert_eq!(management(&[], &[writes]), (false, true));
        assert_eq!(
            management(&[], &[advanced(&[("eventCategory", "Data")])]),
            (false, false)
        );
    }
}
