//! The custom resource's lifecycle: what Create, Update and Delete each do, and the answer each
//! gives. The protocol around it (envelope, stack check, deadline guard, panics, sending) is
//! `crate::handler`'s; the steps are `crate::provision`'s.
//!
//! Create and Update run under a work deadline that leaves time, before the handler's guard,
//! to remove what a failed or timed-out request made ([`Provisioner::undo`]).

mod data;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::cfn::response::Answer;
use crate::cfn::{Envelope, Request};
use crate::cloud_app_security::endpoint::AllowedHosts;
use crate::ownership::{unnamed_physical_id, Owner, StackArn, UserRef};
use crate::ports::Ports;
use crate::progress::Progress;
use serde_json::{Map, Value};

use crate::key_material::{Applied, Bookkeeping, FailedRequest, SecretDocument};
use crate::ports::{CallError, ErrorKind, SecretStore, Version, CURRENT};
use crate::properties::{Parsed, Properties};
use crate::provision::secret::{self, Read};
use crate::provision::{steps, Context, DeleteTarget, Made, ProvisionError, Provisioned, Provisioner, Target};

/// At most this much of the remaining time is kept for undoing a failed request.
const UNDO_BUDGET: Duration = Duration::from_secs(12);
/// The call back and the key verification stop this long before the work deadline, so that
/// their own error, not the deadline's, is the `Reason`.
const CALLBACK_MARGIN: Duration = Duration::from_secs(1);

/// What the handler hands the lifecycle besides the request.
pub struct Invocation<'a> {
    /// Hosts the deployer allowed for the call back.
    pub allowed: &'a AllowedHosts,
    /// The function's own ARN, when known.
    pub function_arn: Option<&'a str>,
    /// When the handler's deadline guard fires.
    pub guard_at: Instant,
}

/// The physical id to answer with if the request fails or runs out of time: the one
/// CloudFormation sent (Update, Delete), or the user ARN the properties name (Create), so the
/// rollback Delete cleans up whatever was made.
pub fn failure_physical_id(envelope: &Envelope, properties: Option<&Properties>) -> String {
    if let Some(id) = envelope.physical_resource_id.as_ref().filter(|id| !id.is_empty()) {
        return id.clone();
    }
    match (StackArn::parse(&envelope.stack_id), properties) {
        (Ok(stack), Some(p)) => stack.user_arn(&p.user_path, &p.resolve(&stack.account_id).user_name),
        _ => unnamed_physical_id(&envelope.request_id),
    }
}

/// Runs one typed request to its answer.
pub async fn run<P: Ports>(
    ports: &P,
    invocation: &Invocation<'_>,
    progress: &Progress,
    envelope: &Envelope,
    request: Request,
) -> Answer {
    if let Some(answer) = validate_only(envelope, &request, invocation.allowed) {
        return answer;
    }
    let fallback = failure_physical_id(envelope, crate::cfn::properties_of(&request));
    let stack = match StackArn::parse(&envelope.stack_id) {
        Ok(stack) => stack,
        Err(e) => return Answer::failed(fallback, e.to_string()),
    };
    let owner = Owner {
        stack_id: envelope.stack_id.clone(),
        logical_id: envelope.logical_resource_id.clone(),
    };
    let now = Instant::now();
    let undo_budget = UNDO_BUDGET.min(invocation.guard_at.saturating_duration_since(now) / 4);
    let work_until = invocation.guard_at.checked_sub(undo_budget).unwrap_or(now);
    let provisioner = Provisioner {
        ports,
        progress,
        context: Context {
            request_id: &envelope.request_id,
            allowed: invocation.allowed,
            deadline: work_until.checked_sub(CALLBACK_MARGIN).unwrap_or(work_until),
            function_arn: invocation.function_arn,
        },
    };
    let now = crate::provision::epoch(provisioner.now());
    let signed_at = envelope.response_url.signed_at(now);
    let lifecycle = Lifecycle {
        provisioner,
        owner,
        stack,
        work_until,
        undo_until: invocation.guard_at,
        signed_at,
        now,
    };
    lifecycle.dispatch(request, fallback).await
}

/// Whether `answer` tells the connector's state, for its status report: not a `ValidateOnly`
/// resource's, and not a late delivery's that acted on nothing.
pub fn reportable(answer: &Answer) -> bool {
    !answer.physical_id.starts_with(VALIDATION_PREFIX) && !answer.reason.starts_with("superseded:")
}

/// The physical id of a `ValidateOnly` resource, before its logical id.
const VALIDATION_PREFIX: &str = "cloud-app-security-validation/";

/// The physical id of a `ValidateOnly` resource: never a user's ARN, so its Delete removes
/// nothing.
fn validation_id(envelope: &Envelope) -> String {
    format!("{VALIDATION_PREFIX}{}", envelope.logical_resource_id)
}

/// A `ValidateOnly` resource (the template's check that runs before anything that outlives a
/// rollback, such as the trail bucket, is made): Create and Update answer whether the
/// properties would be accepted, with every problem in one `Reason`; Delete removes nothing.
/// `None` for the connector itself.
fn validate_only(envelope: &Envelope, request: &Request, allowed: &AllowedHosts) -> Option<Answer> {
    let (parsed, kind) = match request {
        Request::Create(r) => (&r.resource_properties, "create"),
        Request::Update(r) => (&r.resource_properties, "update"),
        Request::Delete(r) => (&r.resource_properties, "delete"),
        _ => return None,
    };
    let validation = parsed.lenient().validate_only
        || envelope.physical_resource_id.as_deref() == Some(validation_id(envelope).as_str());
    if !validation {
        return None;
    }
    let id = validation_id(envelope);
    if kind == "delete" {
        return Some(Answer::success(id, "nothing to delete", BTreeMap::new()));
    }
    let checked = parsed.strict().map_err(|e| e.to_string()).and_then(|props| {
        let stack = StackArn::parse(&envelope.stack_id).map_err(|e| e.to_string())?;
        let owner = Owner {
            stack_id: envelope.stack_id.clone(),
            logical_id: envelope.logical_resource_id.clone(),
        };
        Target::new(owner, stack, props, None, allowed)
            .map(drop)
            .map_err(|e| format!("CloudAppSecurityUrl: {e}"))
    });
    Some(match checked {
        Ok(()) => Answer::success(id, "the properties are valid", BTreeMap::new()),
        Err(reason) => Answer::failed(id, reason),
    })
}

struct Lifecycle<'a, P> {
    provisioner: Provisioner<'a, P>,
    owner: Owner,
    stack: StackArn,
    work_until: Instant,
    undo_until: Instant,
    /// When CloudFormation signed the request (`X-Amz-Date`), where known.
    signed_at: Option<u64>,
    /// The function's clock, in seconds since the epoch.
    now: u64,
}

impl<P: Ports> Lifecycle<'_, P> {
    /// Reads the secret's record, answers a late delivery from it, or runs the request.
    async fn dispatch(&self, request: Request, fallback: String) -> Answer {
        // A Create has no predecessor but a tombstone: the record serves it nothing else (and
        // a secret planted under its name before it existed must not steer it). An Update reads
        // the record where the resource kept it so far — the old properties' secret — and only
        // then the new one (a SecretName move completed before a late delivery of it).
        let (parsed, physical_id, create) = match &request {
            Request::Create(r) => (&r.resource_properties, fallback.clone(), true),
            Request::Update(r) => (&r.old_resource_properties, r.physical_resource_id.clone(), false),
            Request::Delete(r) => (&r.resource_properties, r.physical_resource_id.clone(), false),
            _ => return Answer::failed(fallback, "unsupported RequestType".to_owned()),
        };
        let record = match (self.recorded(parsed.lenient()).await, &request) {
            (Ok(None), Request::Update(r)) => self.recorded(r.resource_properties.lenient()).await,
            (record, _) => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(reason) => return Answer::failed(physical_id, reason),
        };
        let late = record
            .as_ref()
            .filter(|_| !create)
            .and_then(|read| self.late(&read.doc, &physical_id));
        if let Some(answer) = late {
            return answer;
        }
        match request {
            Request::Create(r) => match r.resource_properties.strict() {
                Ok(props) => Box::pin(self.create(props, r.resource_properties.sent(), record.as_ref())).await,
                Err(e) => Answer::failed(fallback, e.to_string()),
            },
            Request::Update(r) => {
                // Old properties that do not validate were never applied (the Update that sent
                // them failed before acting): nothing was made for them, and nothing invalid is
                // sent to AWS to be moved from or deleted. The rollback converges to its own.
                let old = match r.old_resource_properties.strict() {
                    Ok(old) => old,
                    Err(_) => r.resource_properties.lenient(),
                };
                let parsed = &r.resource_properties;
                Box::pin(self.update(&r.physical_resource_id, parsed, old, record.as_ref())).await
            }
            Request::Delete(r) => {
                let props = r.resource_properties.lenient();
                let recorded = record.map(|r| r.doc.bookkeeping);
                Box::pin(self.delete(&r.physical_resource_id, props, recorded)).await
            }
            _ => Answer::failed(fallback, "unsupported RequestType".to_owned()),
        }
    }

    /// A request the secret's record shows CloudFormation has moved on from: a repeated
    /// delivery of the last request applied is answered as it was; an older request (by its
    /// `RequestId`, or signed before the last one applied) acts on nothing and fails.
    fn late(&self, doc: &SecretDocument, physical_id: &str) -> Option<Answer> {
        let applied = &doc.bookkeeping.applied;
        let request_id = self.provisioner.context.request_id;
        let superseded = |why: String| {
            Some(Answer::failed(
                physical_id.to_owned(),
                ProvisionError::Superseded(why).to_string(),
            ))
        };
        if doc.bookkeeping.failed.iter().any(|f| f.request_id == request_id) {
            return superseded(format!(
                "request {request_id} was answered FAILED before, and rolled back"
            ));
        }
        match applied.iter().position(|a| a.request_id == request_id) {
            Some(0) => {
                let a = &applied[0];
                return Some(Answer::success(
                    a.physical_id.clone(),
                    "already applied (a repeated delivery)",
                    a.data.clone(),
                ));
            }
            Some(_) => {
                return superseded(format!(
                    "request {request_id} was applied before request {} was",
                    applied[0].request_id
                ))
            }
            None => {}
        }
        let newest = applied.first()?;
        // A recorded date further ahead than an incoming one may be is no record of ours: it
        // orders nothing (it could otherwise freeze the resource).
        let newest_at = newest.at.filter(|t| *t <= self.now + MAX_AHEAD)?;
        let at = self.signed_at?;
        match at < newest_at {
            true => superseded(format!(
                "this request was sent at {}, before request {} that the resource applied since (sent at {})",
                http_date(at),
                newest.request_id,
                http_date(newest_at)
            )),
            false => None,
        }
    }

    fn target(&self, props: &Properties, previous: Option<(&Properties, &str)>) -> Result<Target, String> {
        let mut target = Target::new(
            self.owner.clone(),
            self.stack.clone(),
            props,
            previous,
            self.provisioner.context.allowed,
        )
        .map_err(|e| format!("CloudAppSecurityUrl: {e}"))?;
        target.signed_at = self.signed_at;
        Ok(target)
    }

    async fn create(&self, props: &Properties, sent: &Map<String, Value>, record: Option<&Read>) -> Answer {
        let target = match self.target(props, None) {
            Ok(target) => target,
            Err(reason) => return Answer::failed(failure_id(&self.stack, props), reason),
        };
        let made = Made::default();
        let work = async {
            let done = self.provisioner.converge(&target, &made).await?;
            let data = self.record(&target, &done, sent, &made).await?;
            Ok((data, data::snapshot(&done)))
        };
        match self.all_or_nothing(&target, &made, work).await {
            Ok((data, seen)) => Answer::success(target.physical_id.clone(), "created", data).with_snapshot(seen),
            Err(reason) => self.failed(target.physical_id.clone(), reason, record).await,
        }
    }

    /// Records what was applied in the secret, inside the request's all-or-nothing work: every
    /// request applied is recorded, a no-change one too (two calls; tests/calls.rs), so that a
    /// late delivery of any request before it finds it newer. Returns the `Data` to answer with.
    async fn record(
        &self,
        target: &Target,
        done: &Provisioned,
        sent: &Map<String, Value>,
        made: &Made,
    ) -> Result<BTreeMap<String, String>, ProvisionError> {
        let data = data::of(done);
        let applied = Applied {
            request_id: self.provisioner.context.request_id.to_owned(),
            physical_id: target.physical_id.clone(),
            properties: sent.clone(),
            data: data.clone(),
            at: self.signed_at,
        };
        self.provisioner.record_applied(&done.stored, applied, made).await?;
        Ok(data)
    }

    /// This resource's secret and its current document, read (together) before a request acts:
    /// `None` when there is none of ours — absent, pending deletion, another stack's by its
    /// tags (never read as a record, never written), not in our format, or refused to this role
    /// (discovery then judges it as usual). A tombstone this resource's Delete left after the
    /// request was signed, and any other failure, fail the request: acting without the record
    /// could let a late delivery through.
    async fn recorded(&self, props: &Properties) -> Result<Option<Read>, String> {
        let name = props.resolve(&self.stack.account_id).secret_name;
        self.provisioner.progress.set(steps::DISCOVER);
        let secrets = self.provisioner.ports.secrets();
        let (info, read) = futures::join!(
            secrets.describe(&name),
            secret::read(secrets, &name, Version::Staged(CURRENT))
        );
        let denied = |e: &CallError| e.kind == ErrorKind::AccessDenied;
        let info = match info {
            Ok(info) => info,
            Err(e) if denied(&e) => return Ok(None),
            Err(e) => return Err(format!("reading the record in secret {name}: {e}")),
        };
        let buried = info.as_ref().is_some_and(|i| {
            let deleted_later = i.deleted_at.zip(self.signed_at).is_some_and(|(d, s)| s < d);
            i.pending_deletion && deleted_later && self.owner.owns(&i.tags)
        });
        if buried {
            // This resource's own Delete scheduled it after the request was signed.
            return Err(ProvisionError::Superseded(format!(
                "secret {name} was scheduled for deletion by this resource's Delete after this request was sent"
            ))
            .to_string());
        }
        let ours = info.is_some_and(|i| self.owner.owns(&i.tags) && !i.pending_deletion);
        match read {
            Ok(read) => Ok(read.filter(|_| ours)),
            Err(_) if !ours => Ok(None),
            Err(e) if denied(&e) => Ok(None),
            Err(e) => Err(format!("reading the record in secret {name}: {e}")),
        }
    }

    /// Answers `FAILED`, remembering the request in the secret it read before acting.
    async fn failed(&self, physical_id: String, reason: String, record: Option<&Read>) -> Answer {
        if let Some(read) = record {
            let failed = FailedRequest {
                request_id: self.provisioner.context.request_id.to_owned(),
                at: self.signed_at,
            };
            self.provisioner.record_failed(read, failed).await;
        }
        Answer::failed(physical_id, reason)
    }

    /// What an Update answers from the secret's record alone, acting on nothing: a document a
    /// newer release wrote is never rewritten — a rollback to properties it records as applied
    /// succeeds as recorded, anything else fails; and properties this release cannot validate
    /// succeed when they are recorded as applied (a newer release applied them, or a rule
    /// tightened since).
    fn answer_from_record(&self, doc: &SecretDocument, parsed: &Parsed, physical_id: &str) -> Option<Answer> {
        let applied = doc.applied_with(parsed.sent()).filter(|a| a.physical_id == physical_id);
        match (applied, doc.is_newer(), parsed.strict().is_ok()) {
            (Some(a), true, _) | (Some(a), _, false) => {
                let what = format!("already applied, as recorded by {}", doc.writer());
                Some(Answer::success(physical_id.to_owned(), &what, a.data.clone()))
            }
            (None, true, _) => {
                let secret = parsed.lenient().resolve(&self.stack.account_id).secret_name;
                let writer = doc.writer();
                Some(Answer::failed(
                    physical_id.to_owned(),
                    ProvisionError::NewerDocument { secret, writer }.to_string(),
                ))
            }
            _ => None,
        }
    }

    /// A new `UserName` is a replacement: a new user and a new physical id, and CloudFormation
    /// deletes the old one afterwards. A new `UserPath` moves the same user. A new `SecretName`
    /// moves the key to the new secret, and the old one is deleted once the new holds it.
    async fn update(
        &self,
        old_physical_id: &str,
        parsed: &Parsed,
        previous: &Properties,
        record: Option<&Read>,
    ) -> Answer {
        if let Some(answer) = record.and_then(|read| self.answer_from_record(&read.doc, parsed, old_physical_id)) {
            return answer;
        }
        let props = match parsed.strict() {
            Ok(props) => props,
            Err(e) => return Answer::failed(old_physical_id.to_owned(), e.to_string()),
        };
        let target = match self.target(props, Some((previous, old_physical_id))) {
            Ok(target) => target,
            Err(reason) => return Answer::failed(old_physical_id.to_owned(), reason),
        };
        let made = Made::default();
        let work = async {
            let done = self.provisioner.converge(&target, &made).await?;
            self.provisioner.delete_previous_secret(&target).await?;
            self.remove_abandoned(old_physical_id, &target, previous).await?;
            let data = self.record(&target, &done, parsed.sent(), &made).await?;
            Ok((data, data::snapshot(&done)))
        };
        match self.all_or_nothing(&target, &made, work).await {
            Ok((data, seen)) => Answer::success(target.physical_id.clone(), "updated", data).with_snapshot(seen),
            // CloudFormation keeps the old physical id after a failed update.
            Err(reason) => self.failed(old_physical_id.to_owned(), reason, record).await,
        }
    }

    /// A rollback after a failed replacement names, in its old properties, a user that no
    /// physical id CloudFormation knows points to: a duplicate delivery of the failed request
    /// may have made it. It is removed like a Delete of that id would (only if it is ours and
    /// serves nothing else); the user being restored is never touched.
    async fn remove_abandoned(
        &self,
        old_physical_id: &str,
        target: &Target,
        previous: &Properties,
    ) -> Result<(), ProvisionError> {
        let abandoned = failure_id(&self.stack, previous);
        if abandoned == old_physical_id || abandoned == target.physical_id {
            return Ok(());
        }
        tracing::info!(abandoned = %abandoned, "removing what was made for the abandoned properties");
        let delete = DeleteTarget::new(self.owner.clone(), self.stack.clone(), &abandoned, previous);
        self.provisioner.delete(&delete).await
    }

    /// Runs `work` until the work deadline; if it fails or runs out of time, removes what it
    /// made (recorded in `made`, which outlives the cancelled work).
    async fn all_or_nothing<T>(
        &self,
        target: &Target,
        made: &Made,
        work: impl Future<Output = Result<T, ProvisionError>>,
    ) -> Result<T, String> {
        let reason = match tokio::time::timeout_at(self.work_until, work).await {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                let step = self.provisioner.progress.current();
                tracing::error!(step, "work deadline reached; undoing what the request made");
                format!("timed out during {step} (the function's time was nearly up)")
            }
        };
        self.undo(target, made).await;
        Err(reason)
    }

    async fn undo(&self, target: &Target, made: &Made) {
        let undo = self.provisioner.undo(target, made);
        if tokio::time::timeout_at(self.undo_until, undo).await.is_err() {
            tracing::error!("undoing the failed request ran out of time");
        }
    }

    async fn delete(&self, physical_id: &str, props: &Properties, recorded: Option<Bookkeeping>) -> Answer {
        if UserRef::from_physical_id(physical_id).is_none() {
            // A Create that failed before a user could be named made nothing.
            return Answer::success(physical_id.to_owned(), "nothing to delete", BTreeMap::new());
        }
        let mut target = DeleteTarget::new(self.owner.clone(), self.stack.clone(), physical_id, props);
        target.signed_at = self.signed_at;
        target.recorded = recorded;
        self.provisioner.progress.set(steps::DELETE_USER);
        match self.provisioner.delete(&target).await {
            Ok(()) => Answer::success(physical_id.to_owned(), "deleted", BTreeMap::new()),
            Err(e) => Answer::failed(physical_id.to_owned(), e.to_string()),
        }
    }
}

fn failure_id(stack: &StackArn, props: &Properties) -> String {
    stack.user_arn(&props.user_path, &props.resolve(&stack.account_id).user_name)
}

/// Seconds since the epoch, as an HTTP date, for a `Reason`.
fn http_date(secs: u64) -> String {
    match std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) => httpdate::fmt_http_date(t),
        None => format!("{secs} seconds after the epoch"),
    }
}

/// How far ahead of the function's clock a date may be and still order requests.
const MAX_AHEAD: u64 = 300;
