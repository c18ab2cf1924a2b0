//! The Lambda handler: tells the events apart — a CloudFormation request, a Secrets Manager
//! rotation step, the scheduled key check. A CloudFormation request is read once; requests for
//! another stack and `ResponseURL`s outside the partition are refused; the lifecycle runs under a
//! deadline guard and a panic catcher, and exactly one answer is sent. A rotation step or check
//! that fails ends as the invocation's error, which is how Secrets Manager learns of it.

mod guard;
mod report;
mod services;

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::Instrument;

use crate::cfn::delivery::{Delivery, DeliveryError};
use crate::cfn::response::{Answer, Status};
use crate::cfn::{properties_of, Incoming, NotCustomResource, UnsafeResponseUrl};
use crate::lifecycle::{self, failure_physical_id, Invocation};
use crate::ports::Ports;
use crate::progress::Progress;
use crate::rotation::{self, Event, RotationError};

pub use guard::guard;
pub use services::{
    Services, Settings, StartupError, DEFAULT_PASTE_OVERDUE_DAYS, PASTE_OVERDUE_DAYS_ENV, STACK_ID_ENV, STATUS_BUS_ENV,
    URL_SUFFIX_ENV,
};

/// The work stops this long before the Lambda deadline, leaving time to answer.
pub const GUARD_MARGIN: Duration = Duration::from_secs(5);
/// The answer must be delivered at least this long before the Lambda deadline.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(2);
/// Lambda runs a function for at most this long; a deadline further away is not believed.
const LONGEST_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// The handler's state: the delivery always exists; the services may have failed to start, in
/// which case every request is answered `FAILED` rather than the function crash-looping.
pub struct Handler<P> {
    /// Sends answers to CloudFormation.
    pub delivery: Delivery,
    /// The deployer's settings.
    pub settings: Settings,
    /// The ports, or why they could not be built.
    pub services: Result<P, StartupError>,
}

/// What Lambda says about this invocation.
pub struct Invoked {
    /// The Lambda deadline.
    pub deadline: SystemTime,
    /// The function's ARN (from the invocation's context).
    pub function_arn: Option<String>,
}

/// An invocation that ends as a Lambda error (logged): there was no one to answer.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not a custom-resource request (nor any other event this function serves).
    #[error("{0}")]
    NotCustomResource(#[from] NotCustomResource),
    /// The `ResponseURL` is not one this function contacts.
    #[error("{0}")]
    UnsafeResponseUrl(#[from] UnsafeResponseUrl),
    /// The answer could not be delivered.
    #[error("the answer could not be sent to CloudFormation: {0}")]
    Respond(#[from] DeliveryError),
    /// A rotation or key-check event that does not parse.
    #[error("{0}")]
    Event(String),
    /// A rotation step or the key check failed.
    #[error("{0}")]
    Rotation(#[from] RotationError),
    /// The function could not start.
    #[error("the function could not start: {0}")]
    Startup(StartupError),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> lambda_runtime::Diagnostic {
        let error_type = match e {
            HandlerError::NotCustomResource(_) => "NotCustomResource",
            HandlerError::UnsafeResponseUrl(_) => "UnsafeResponseUrl",
            HandlerError::Respond(_) => "ResponseNotDelivered",
            HandlerError::Event(_) => "UnknownEvent",
            HandlerError::Rotation(_) => "RotationFailed",
            HandlerError::Startup(_) => "StartupFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// When the work must stop and the answer must be out.
struct Times {
    guard_at: Instant,
    answer_by: Instant,
}

impl Times {
    fn until(deadline: SystemTime) -> Times {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(LONGEST_INVOCATION);
        let now = Instant::now();
        Times {
            guard_at: now + left.saturating_sub(GUARD_MARGIN),
            answer_by: now + left.saturating_sub(ANSWER_MARGIN),
        }
    }
}

impl<P: Ports> Handler<P> {
    /// Handles one invocation.
    pub async fn handle(&self, event: Value, invoked: &Invoked) -> Result<Value, HandlerError> {
        if let Some(other) = Event::recognise(&event) {
            return self.rotation(other, invoked).await;
        }
        let incoming = Incoming::read(event).inspect_err(|e| {
            tracing::error!(error = %e, "event is not a custom-resource request");
        })?;
        let e = &incoming.envelope;
        let span = tracing::info_span!(
            "request",
            RequestType = %e.request_type,
            StackId = %e.stack_id,
            LogicalResourceId = %e.logical_resource_id,
            RequestId = %e.request_id,
        );
        self.custom_resource(incoming, invoked).instrument(span).await
    }

    async fn custom_resource(&self, incoming: Incoming, invoked: &Invoked) -> Result<Value, HandlerError> {
        let envelope = incoming.envelope.clone();
        envelope
            .response_url
            .check(&self.settings.url_suffix)
            .inspect_err(|e| {
                tracing::error!(error = %e, "refusing to contact the ResponseURL");
            })?;
        let times = Times::until(invoked.deadline);
        tracing::info!("request received");
        let answer = self.answer(incoming, invoked, &times).await;
        match answer.status {
            Status::Success => tracing::info!(physical_id = %answer.physical_id, "answering SUCCESS"),
            Status::Failed => {
                tracing::warn!(physical_id = %answer.physical_id, reason = %answer.reason, "answering FAILED")
            }
        }
        let body = answer.encode(&envelope);
        let report = self.report_of(&envelope, &answer);
        let deliver = self.delivery.send(&envelope.response_url, body, times.answer_by);
        // Boxed, like the lifecycle below: the SDK's futures are deep.
        let reported = Box::pin(self.report(report, times.answer_by));
        // A Delete reports before it answers: once CloudFormation has the answer, the role may
        // be gone. Anything else reports while the answer travels.
        match envelope.request_type.as_str() {
            "Delete" => {
                reported.await;
                deliver.await?;
            }
            _ => futures::join!(deliver, reported).0?,
        }
        let status = match answer.status {
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        };
        Ok(json!({"Status": status, "PhysicalResourceId": answer.physical_id}))
    }

    /// The status report of `answer`: none for a request of another stack, or when the
    /// function could not start.
    fn report_of(&self, envelope: &crate::cfn::Envelope, answer: &Answer) -> Option<crate::status::Report> {
        let other = self
            .settings
            .stack_id
            .as_ref()
            .is_some_and(|ours| *ours != envelope.stack_id);
        (!other && self.services.is_ok())
            .then(|| report::of_answer(envelope, answer, self.settings.paste_overdue()))
            .flatten()
    }

    /// Sends a report, if there is one and the services started.
    async fn report(&self, report: Option<crate::status::Report>, until: Instant) {
        if let Ok(services) = &self.services {
            report::send(services, report, until).await;
        }
    }

    /// A rotation step or the key check: its result, or its error as the invocation's.
    async fn rotation(&self, event: Result<Event, String>, invoked: &Invoked) -> Result<Value, HandlerError> {
        let event = event.map_err(HandlerError::Event).inspect_err(|e| {
            tracing::error!(error = %e, "event not understood");
        })?;
        let span = match &event {
            Event::Rotation(r) => {
                tracing::info_span!("rotation", Step = r.step.as_str(), SecretId = %r.secret_id, ClientRequestToken = %r.client_request_token)
            }
            Event::Check(c) => tracing::info_span!("key check", SecretId = %c.secret_id),
        };
        let services = self.services.as_ref().map_err(|e| HandlerError::Startup(e.clone()))?;
        let invocation = rotation::Invocation {
            allowed: &self.settings.allowed_hosts,
            stack_id: self.settings.stack_id.as_deref(),
            guard_at: Times::until(invoked.deadline).guard_at,
            paste_overdue: self.settings.paste_overdue(),
        };
        // Boxed: the rotation's future is large (the SDK's are), like the lifecycle's below.
        let result = Box::pin(rotation::run(services, &invocation, &event))
            .instrument(span)
            .await;
        match &result {
            Ok(_) => tracing::info!(SecretId = %event.secret_id(), "done"),
            Err(e) => tracing::error!(SecretId = %event.secret_id(), error = %e, "failed"),
        }
        Ok(result?)
    }

    async fn answer(&self, incoming: Incoming, invoked: &Invoked, times: &Times) -> Answer {
        let Incoming { envelope, request } = incoming;
        let fallback = failure_physical_id(&envelope, request.as_ref().ok().and_then(properties_of));
        let services = match &self.services {
            Ok(services) => services,
            Err(e) => return Answer::failed(fallback, format!("the function could not start: {e}")),
        };
        if let Some(ours) = self
            .settings
            .stack_id
            .as_ref()
            .filter(|ours| **ours != envelope.stack_id)
        {
            tracing::error!(serves = %ours, "request for another stack refused");
            let reason = format!(
                "this function serves stack {ours} only; nothing was done for {}",
                envelope.stack_id
            );
            return Answer::failed(fallback, reason);
        }
        let request = match request {
            Ok(request) => request,
            Err(reason) => return Answer::failed(fallback, reason),
        };
        let progress = Progress::new("reading the request");
        let invocation = Invocation {
            allowed: &self.settings.allowed_hosts,
            function_arn: invoked.function_arn.as_deref(),
            guard_at: times.guard_at,
        };
        let work = Box::pin(lifecycle::run(services, &invocation, &progress, &envelope, request));
        guard(work, &progress, fallback, times.guard_at).await
    }
}
