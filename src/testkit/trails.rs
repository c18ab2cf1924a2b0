//! In-memory CloudTrail in one region: `TrailAlreadyExists` for a name taken, a bucket that
//! refuses delivery when told, and event selectors.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::faults::{answer, Faults};
use crate::ports::{CallError, Created, ErrorKind, Tags, TrailInfo, TrailSettings, Trails};

/// One trail.
#[derive(Clone, Debug)]
pub struct FakeTrail {
    pub info: TrailInfo,
    pub logging: bool,
    /// Whether its selectors record management events, reads and writes.
    pub management: bool,
    pub tags: Tags,
}

/// CloudTrail in us-east-1 of account 123456789012.
pub struct FakeTrails {
    pub trails: Mutex<Vec<FakeTrail>>,
    /// Buckets CloudTrail may not deliver to (no bucket policy).
    pub refusing_buckets: Mutex<BTreeSet<String>>,
    faults: Arc<Faults>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeTrails {
    pub fn new(faults: Arc<Faults>) -> FakeTrails {
        FakeTrails {
            trails: Mutex::default(),
            refusing_buckets: Mutex::default(),
            faults,
        }
    }

    pub fn trail(&self, name: &str) -> Option<FakeTrail> {
        lock(&self.trails).iter().find(|t| t.info.name == name).cloned()
    }

    fn on<T>(&self, op: &'static str, id: &str, f: impl FnOnce(&mut FakeTrail) -> T) -> Result<T, CallError> {
        lock(&self.trails)
            .iter_mut()
            .find(|t| t.info.arn == id || t.info.name == id)
            .map(f)
            .ok_or_else(|| {
                CallError::new(
                    op,
                    ErrorKind::NotFound,
                    Some("TrailNotFoundException"),
                    format!("Unknown trail: {id}"),
                )
            })
    }

    fn refuses(&self, bucket: &str, op: &'static str) -> Result<(), CallError> {
        match lock(&self.refusing_buckets).contains(bucket) {
            true => Err(CallError::new(
                op,
                ErrorKind::BucketRejected,
                Some("InsufficientS3BucketPolicyException"),
                format!("Incorrect S3 bucket policy is detected for bucket: {bucket}"),
            )),
            false => Ok(()),
        }
    }
}

impl Trails for FakeTrails {
    async fn list(&self) -> Result<Vec<TrailInfo>, CallError> {
        self.faults.call("cloudtrail:DescribeTrails").await?;
        Ok(lock(&self.trails).iter().map(|t| t.info.clone()).collect())
    }
    async fn is_logging(&self, arn: &str) -> Result<bool, CallError> {
        self.faults.call("cloudtrail:GetTrailStatus").await?;
        self.on("cloudtrail:GetTrailStatus", arn, |t| t.logging)
    }
    async fn records_management_events(&self, arn: &str) -> Result<bool, CallError> {
        self.faults.call("cloudtrail:GetEventSelectors").await?;
        self.on("cloudtrail:GetEventSelectors", arn, |t| t.management)
    }
    async fn tags(&self, arn: &str) -> Result<Tags, CallError> {
        self.faults.call("cloudtrail:ListTags").await?;
        self.on("cloudtrail:ListTags", arn, |t| t.tags.clone())
    }
    async fn create(&self, settings: &TrailSettings, tags: &Tags) -> Result<Created<String>, CallError> {
        let after = self.faults.call("cloudtrail:CreateTrail").await?;
        self.refuses(&settings.bucket, "cloudtrail:CreateTrail")?;
        let mut trails = lock(&self.trails);
        if trails.iter().any(|t| t.info.name == settings.name) {
            return Ok(Created::AlreadyExists);
        }
        let arn = format!("arn:aws:cloudtrail:us-east-1:123456789012:trail/{}", settings.name);
        let info = TrailInfo {
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
        trails.push(FakeTrail {
            info,
            logging: false,
            management: true,
            tags: tags.clone(),
        });
        answer(after, Created::New(arn))
    }
    async fn update(&self, settings: &TrailSettings) -> Result<(), CallError> {
        let after = self.faults.call("cloudtrail:UpdateTrail").await?;
        self.refuses(&settings.bucket, "cloudtrail:UpdateTrail")?;
        self.on("cloudtrail:UpdateTrail", &settings.name, |t| {
            t.info.multi_region = true;
            t.info.global_service_events = true;
            t.info.log_file_validation = true;
            t.info.bucket = Some(settings.bucket.clone());
            t.info.kms_key_id = settings.kms_key_id.clone();
        })?;
        answer(after, ())
    }
    async fn start_logging(&self, arn: &str) -> Result<(), CallError> {
        let after = self.faults.call("cloudtrail:StartLogging").await?;
        self.on("cloudtrail:StartLogging", arn, |t| t.logging = true)?;
        answer(after, ())
    }
    async fn add_tags(&self, arn: &str, tags: &Tags) -> Result<(), CallError> {
        let after = self.faults.call("cloudtrail:AddTags").await?;
        self.on("cloudtrail:AddTags", arn, |t| t.tags.extend(tags.clone()))?;
        answer(after, ())
    }
    async fn delete(&self, name: &str) -> Result<(), CallError> {
        let after = self.faults.call("cloudtrail:DeleteTrail").await?;
        lock(&self.trails).retain(|t| t.info.name != name);
        answer(after, ())
    }
}
