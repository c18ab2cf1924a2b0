//! The Lambda handler: reads the envelope, runs the request under a deadline guard and a panic
//! catcher, and always sends exactly one answer to CloudFormation.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::Instrument;

use crate::aws::cloudtrail::CloudTrailAdapter;
use crate::aws::iam::IamAdapter;
use crate::aws::secrets_manager::SecretsManagerAdapter;
use crate::cfn::responder::{Responder, ResponseError};
use crate::cfn::response::{Answer, Status};
use crate::cfn::{properties_of, Envelope, Request, REQUEST_TYPES};
use crate::cloud_app_security;
use crate::cloud_app_security::client::CallbackError;
use crate::cloud_app_security::endpoint::{AllowedHosts, EndpointError};
use crate::progress::Progress;
use crate::provision::CallbackContext;
use crate::resource;

/// The work stops this long before the Lambda deadline, leaving time to answer.
pub const GUARD_MARGIN: Duration = Duration::from_secs(5);
/// The call back stops retrying this long before the guard fires.
pub const CALLBACK_MARGIN: Duration = Duration::from_secs(1);
/// The answer must be delivered at least this long before the Lambda deadline.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// What start-up builds once per execution environment.
pub struct Services {
    pub iam: IamAdapter,
    pub secrets: SecretsManagerAdapter,
    pub trails: CloudTrailAdapter,
    pub cloud_app_security: cloud_app_security::client::Client,
    /// Hosts the deployer allowed beyond Microsoft's (`CLOUD_APP_SECURITY_ALLOWED_HOSTS`).
    pub allowed_hosts: AllowedHosts,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StartupError {
    #[error("no AWS region is configured (AWS_REGION)")]
    NoRegion,
    #[error("{0}")]
    AllowedHosts(#[from] EndpointError),
    #[error("{0}")]
    HttpClient(#[from] CallbackError),
}

impl Services {
    pub async fn from_env() -> Result<Services, StartupError> {
        Services::new(&crate::aws::load_config().await, AllowedHosts::from_env()?)
    }

    pub fn new(config: &aws_config::SdkConfig, allowed_hosts: AllowedHosts) -> Result<Services, StartupError> {
        if config.region().is_none() {
            return Err(StartupError::NoRegion);
        }
        Ok(Services {
            iam: IamAdapter::new(config),
            secrets: SecretsManagerAdapter::new(config),
            trails: CloudTrailAdapter::new(config),
            cloud_app_security: cloud_app_security::client::Client::new()?,
            allowed_hosts,
        })
    }
}

/// The handler's state: the responder always exists; the services may have failed to start,
/// in which case every request is answered `FAILED` rather than the function crash-looping.
pub struct Handler {
    pub responder: Responder,
    pub services: Result<Services, StartupError>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the event is not a CloudFormation custom-resource request: {0}")]
    NotCustomResource(String),
    #[error("the answer could not be sent to CloudFormation: {0}")]
    Respond(#[from] ResponseError),
}

impl Handler {
    /// Handles one invocation. `deadline` is the Lambda deadline of this invocation.
    pub async fn handle(&self, event: Value, deadline: SystemTime) -> Result<Value, HandlerError> {
        let envelope = Envelope::deserialize(&event).map_err(|e| {
            tracing::error!(error = %e, "event is not a custom-resource request");
            HandlerError::NotCustomResource(e.to_string())
        })?;
        let span = tracing::info_span!(
            "request",
            RequestType = %envelope.request_type,
            StackId = %envelope.stack_id,
            LogicalResourceId = %envelope.logical_resource_id,
            RequestId = %envelope.request_id,
        );
        self.answer(event, envelope, deadline).instrument(span).await
    }

    async fn answer(&self, event: Value, envelope: Envelope, deadline: SystemTime) -> Result<Value, HandlerError> {
        let left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        let now = Instant::now();
        let guard_at = now + left.saturating_sub(GUARD_MARGIN);
        let answer_by = now + left.saturating_sub(ANSWER_MARGIN);
        tracing::info!(seconds_left = left.as_secs(), "request received");

        let answer = match &self.services {
            Err(e) => {
                let request = Request::deserialize(&event).ok();
                let physical_id = resource::failure_physical_id(&envelope, request.as_ref().and_then(properties_of));
                Answer::failed(physical_id, format!("the function could not start: {e}"))
            }
            Ok(services) => guarded(services, &event, &envelope, guard_at).await,
        };
        match answer.status {
            Status::Success => tracing::info!(physical_id = %answer.physical_id, "answering SUCCESS"),
            Status::Failed => {
                tracing::warn!(physical_id = %answer.physical_id, reason = %answer.reason, "answering FAILED")
            }
        }
        let body = answer.encode(&envelope);
        self.responder.send(&envelope.response_url, body, answer_by).await?;
        let status = if answer.status == Status::Success {
            "SUCCESS"
        } else {
            "FAILED"
        };
        Ok(json!({"Status": status, "PhysicalResourceId": answer.physical_id}))
    }
}

/// Runs the request; a panic or the deadline guard turns into `FAILED` naming the step.
async fn guarded(services: &Services, event: &Value, envelope: &Envelope, guard_at: Instant) -> Answer {
    if !REQUEST_TYPES.contains(&envelope.request_type.as_str()) {
        return Answer::failed(
            resource::failure_physical_id(envelope, None),
            format!(
                "unknown RequestType {:?} (expected Create, Update or Delete)",
                envelope.request_type
            ),
        );
    }
    let request = match Request::deserialize(event) {
        Ok(request) => request,
        Err(e) => {
            return Answer::failed(
                resource::failure_physical_id(envelope, None),
                format!("malformed request: {e}"),
            )
        }
    };
    let fallback = resource::failure_physical_id(envelope, properties_of(&request));
    let progress = Progress::new("reading the request");
    let work = Box::pin(resource::run(
        (&services.iam, &services.secrets, &services.trails),
        CallbackContext {
            client: &services.cloud_app_security,
            allowed: &services.allowed_hosts,
            // The call back gives up a moment before the guard, so its own error is the Reason.
            deadline: guard_at.checked_sub(CALLBACK_MARGIN).unwrap_or(guard_at),
        },
        &progress,
        envelope,
        request,
    ));
    guard(work, &progress, fallback, guard_at).await
}

/// Runs `work` until `guard_at`. A panic, or the guard firing, becomes `FAILED` naming the step
/// `progress` was in, with `fallback` as the physical id.
pub async fn guard<F: Future<Output = Answer>>(
    work: F,
    progress: &Progress,
    fallback: String,
    guard_at: Instant,
) -> Answer {
    match tokio::time::timeout_at(guard_at, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_panic)) => {
            tracing::error!(step = progress.current(), "the request panicked");
            Answer::failed(
                fallback,
                format!("internal error during {}; see the function's logs", progress.current()),
            )
        }
        Err(_elapsed) => {
            tracing::error!(step = progress.current(), "deadline guard fired");
            Answer::failed(
                fallback,
                format!(
                    "timed out during {} (the function's time was nearly up)",
                    progress.current()
                ),
            )
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> lambda_runtime::Diagnostic {
        let error_type = match e {
            HandlerError::NotCustomResource(_) => "NotCustomResource",
            HandlerError::Respond(_) => "ResponseNotDelivered",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_finished_request_passes_through() {
        let progress = Progress::new("start");
        let done = Answer::success("arn:x".into(), "created", BTreeMap::new());
        let answer = guard(
            std::future::ready(done.clone()),
            &progress,
            "fallback".into(),
            soon(1000),
        )
        .await;
        assert_eq!(answer, done);
    }

    #[tokio::test]
    async fn a_panic_becomes_failed_naming_the_step() {
        let progress = Progress::new("start");
        let work = async {
            progress.set("issuing the access key");
            panic!("boom");
        };
        let answer = guard(work, &progress, "arn:fallback".into(), soon(1000)).await;
        assert_eq!(answer.status, Status::Failed);
        assert_eq!(answer.physical_id, "arn:fallback");
        assert_eq!(
            answer.reason,
            "internal error during issuing the access key; see the function's logs"
        );
    }

    #[tokio::test]
    async fn the_deadline_guard_answers_failed_naming_the_step() {
        let progress = Progress::new("start");
        let work = async {
            progress.set("storing the key in Secrets Manager");
            std::future::pending::<Answer>().await
        };
        let answer = guard(work, &progress, "arn:fallback".into(), soon(50)).await;
        assert_eq!(answer.status, Status::Failed);
        assert!(
            answer
                .reason
                .starts_with("timed out during storing the key in Secrets Manager"),
            "{}",
            answer.reason
        );
    }
}
