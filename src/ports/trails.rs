//! CloudTrail, limited to what finding, keeping and removing one trail needs.

use std::future::Future;

use super::{CallError, Created, Tags};

/// A trail as `DescribeTrails` (with shadow trails) reports it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrailInfo {
    /// The trail's name.
    pub name: String,
    /// The trail's ARN.
    pub arn: String,
    /// The region the trail is homed in (a shadow trail's differs from this one).
    pub home_region: String,
    /// Whether it records every region.
    pub multi_region: bool,
    /// Whether it records global services (IAM, STS, CloudFront).
    pub global_service_events: bool,
    /// Whether it is an organization trail (run by the management account).
    pub organization: bool,
    /// Whether log file integrity validation is on.
    pub log_file_validation: bool,
    /// The bucket it delivers to.
    pub bucket: Option<String>,
    /// The KMS key that encrypts its log files.
    pub kms_key_id: Option<String>,
}

/// The settings of the trail this resource keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailSettings {
    /// Its name.
    pub name: String,
    /// The bucket it delivers to.
    pub bucket: String,
    /// The KMS key for its log files; `None` for SSE-S3.
    pub kms_key_id: Option<String>,
}

/// CloudTrail.
pub trait Trails: Sync {
    /// Every trail visible from this region, shadow and organization trails included.
    fn list(&self) -> impl Future<Output = Result<Vec<TrailInfo>, CallError>> + Send;
    /// Whether the trail is logging.
    fn is_logging(&self, arn: &str) -> impl Future<Output = Result<bool, CallError>> + Send;
    /// Whether the trail records management events, both reads and writes (by its event
    /// selectors or advanced event selectors).
    fn records_management_events(&self, arn: &str) -> impl Future<Output = Result<bool, CallError>> + Send;
    /// The trail's tags.
    fn tags(&self, arn: &str) -> impl Future<Output = Result<Tags, CallError>> + Send;
    /// Creates a multi-region trail with global service events and log file validation;
    /// `AlreadyExists` when the name is taken; `BucketRejected` when CloudTrail cannot deliver.
    fn create(
        &self,
        settings: &TrailSettings,
        tags: &Tags,
    ) -> impl Future<Output = Result<Created<String>, CallError>> + Send;
    /// Brings the trail's settings back to `settings` (multi-region, global events, validation).
    fn update(&self, settings: &TrailSettings) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Starts logging.
    fn start_logging(&self, arn: &str) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Adds or overwrites tags.
    fn add_tags(&self, arn: &str, tags: &Tags) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Deletes the trail, by name: the trails this resource removes are homed in its own region.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), CallError>> + Send;
}
