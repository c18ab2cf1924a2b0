//! Rotation of the connector's key through Secrets Manager, and the scheduled check that retires
//! the previous key once Cloud App Security uses the new one.
//!
//! The four steps follow the Secrets Manager protocol (`steps.rs`); each is idempotent and acts
//! only on a secret of this stack with rotation enabled, for a version staged `AWSPENDING` (the
//! standard guard). The new document records the version it was made from, and becomes current
//! only by moving `AWSCURRENT` from that version: a stack update that wrote the secret meanwhile
//! wins, and the rotation is abandoned. A failed step is undone ([`Rotator::abandon`]): the new
//! key is deleted, Cloud App Security gets the current key back, and the pending label comes off
//! so the next rotation can start. The current key keeps working throughout.

pub mod event;
mod retirement;
mod steps;

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::cloud_app_security::endpoint::AllowedHosts;
use crate::key_material::SeenInUse;
use crate::metrics;
use crate::ownership::{UserRef, TAG_LOGICAL_ID, TAG_PHYSICAL_ID, TAG_STACK_ID};
use crate::ports::{
    AccessKeyInfo, AccessKeys, ErrorKind, KeyProbe, Ports, ProbeError, SecretInfo, SecretStore, Version,
};
use crate::ports::{CURRENT, PENDING};
use crate::progress::Progress;
use crate::properties::Connection;
use crate::provision::access_key::stale;
use crate::provision::secret::{self, Read};
use crate::provision::{steps as step_names, Context, InStep, Made, ProvisionError, Provisioner};
use crate::status::{Report, Snapshot, Trigger};

pub use event::{CheckRequest, Event, RotationRequest, Step, CHECK_KEY};
use retirement::Retirement;

/// At most this much of the remaining time is kept for undoing a failed step.
const UNDO_BUDGET: Duration = Duration::from_secs(12);

/// Why a rotation step or a key check failed. Each message names the secret or key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// No secret of that id.
    #[error("secret {0} was not found")]
    NoSecret(String),
    /// The secret is not this stack's connector secret.
    #[error(
        "secret {0} is not this stack's connector secret (its cloud-app-security tags do not name this stack, a \
         resource and a user); nothing was done"
    )]
    NotOurs(String),
    /// The secret's current key is not a working key of the user its tags name.
    #[error(
        "secret {secret} does not hold a working key of the IAM user its tags name ({reason}); nothing was done — \
         a stack update (any CodeVersion change) repairs the connector's own secret"
    )]
    Unproven {
        /// The secret.
        secret: String,
        /// What the key's identity check found.
        reason: String,
    },
    /// The stored key was deactivated by a person: the secret cannot be proven this resource's
    /// with it, so no key is issued into it here.
    #[error(
        "the key stored in secret {secret} ({key}) was deactivated by a person (incident response?); it is never \
         reactivated, and without a working key this check cannot prove the secret is the connector's, so it \
         issues none. The next stack update issues a new key (README, \"If the key leaks\")"
    )]
    Deactivated {
        /// The secret.
        secret: String,
        /// The deactivated key's id.
        key: String,
    },
    /// Rotation is off for the secret.
    #[error("secret {0} does not have rotation enabled; nothing was done")]
    NotEnabled(String),
    /// The version is not a rotation in progress.
    #[error("version {token} of secret {secret} is not staged AWSPENDING: no rotation of it is in progress")]
    NotPending {
        /// The secret.
        secret: String,
        /// The version.
        token: String,
    },
    /// A version does not hold the connector's document.
    #[error(
        "secret {secret} holds no key document in {at}; a stack update (any CodeVersion change) writes the current one again"
    )]
    NoDocument {
        /// The secret.
        secret: String,
        /// Which version.
        at: String,
    },
    /// The registration record lacks what sending it again needs.
    #[error(
        "the registration recorded in secret {0} was written by an earlier release and lacks what a rotation sends; \
         a stack update (any CodeVersion change) records it in full"
    )]
    IncompleteRegistration(String),
    /// The new key does not work.
    #[error("testSecret: the new key {key} could not make the connector's reads: {source}")]
    KeyFailed {
        /// The new key.
        key: String,
        /// Why.
        source: ProbeError,
    },
    /// The new key was deleted before the rotation finished.
    #[error("finishSecret: the new key {0} no longer exists; the next rotation issues another")]
    KeyGone(String),
    /// The previous key is retired but not yet deleted.
    #[error(
        "createSecret: the previous key {key} of IAM user {user} was retired and is deleted on {until}; the rotation \
         waits until then (delete it yourself if it must go now: aws iam delete-access-key --user-name {user} \
         --access-key-id {key})"
    )]
    Retiring {
        /// The retired key.
        key: String,
        /// The user.
        user: String,
        /// When it is deleted.
        until: String,
    },
    /// A stack update changed the secret while the rotation ran.
    #[error(
        "{step}: the current version of secret {secret} changed during the rotation (a stack update wrote it); the \
         rotation was abandoned and the current key is unchanged"
    )]
    Superseded {
        /// The step.
        step: &'static str,
        /// The secret.
        secret: String,
    },
    /// A provisioning step failed (an AWS call, the call back, a pending paste).
    #[error("{0}")]
    Provision(#[from] ProvisionError),
    /// The function's time ran out.
    #[error("timed out during {0} (the function's time was nearly up)")]
    TimedOut(&'static str),
    /// The work panicked.
    #[error("internal error during {0}; see the function's logs")]
    Panicked(&'static str),
}

impl RotationError {
    /// Whether the guard refused the event before anything was done.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            RotationError::NoSecret(_)
                | RotationError::NotOurs(_)
                | RotationError::Unproven { .. }
                | RotationError::NoDocument { .. }
                | RotationError::NotEnabled(_)
                | RotationError::NotPending { .. }
        )
    }
}

/// The connector as its secret records it (the key was proven to work by [`Rotator::owned`]).
fn snapshot(info: &SecretInfo, current: &Read) -> Snapshot {
    let books = &current.doc.bookkeeping;
    let tag = |key: &str| info.tags.get(key).cloned();
    let last = books.applied.last();
    Snapshot {
        stack_id: tag(TAG_STACK_ID).unwrap_or_default(),
        logical_id: tag(TAG_LOGICAL_ID).unwrap_or_default(),
        physical_id: tag(TAG_PHYSICAL_ID),
        connector_name: last.and_then(|a| a.data.get("ConnectorName").cloned()),
        secret_arn: Some(info.arn.clone()),
        registered: books.registration.as_ref().is_some_and(|r| r.is_complete()),
        access_key_id: Some(current.doc.access_key_id.clone()),
        awaiting_paste_since: books
            .awaiting_paste
            .as_ref()
            .filter(|a| a.deactivated_at.is_none())
            .map(|a| a.since),
        verified: Some(true),
        ..Snapshot::default()
    }
}

/// What the handler hands a rotation or a check.
pub struct Invocation<'a> {
    /// Hosts the deployer allowed for the call back.
    pub allowed: &'a AllowedHosts,
    /// The only stack whose secrets this function acts on (`None`: local runs).
    pub stack_id: Option<&'a str>,
    /// When the handler must stop.
    pub guard_at: Instant,
    /// How long a key may wait for its paste before the status is `PasteOverdue`.
    pub paste_overdue: Duration,
}

/// Runs `event` to its end: the step or the check, under a work deadline and a panic catcher;
/// a failed step is undone. Sends the metrics the template's alarms watch. The `Ok` value is
/// the function's result (a summary, never key material).
pub async fn run<P: Ports>(ports: &P, invocation: &Invocation<'_>, event: &Event) -> Result<Value, RotationError> {
    let progress = Progress::new(step_names::DISCOVER);
    let now = Instant::now();
    let undo_budget = UNDO_BUDGET.min(invocation.guard_at.saturating_duration_since(now) / 4);
    let work_until = invocation.guard_at.checked_sub(undo_budget).unwrap_or(now);
    let request_id = match event {
        Event::Rotation(r) => r.client_request_token.as_str(),
        Event::Check(_) => "key-check",
    };
    let rotator = Rotator {
        provisioner: Provisioner {
            ports,
            progress: &progress,
            context: Context {
                request_id,
                allowed: invocation.allowed,
                deadline: work_until,
                function_arn: None,
            },
        },
        stack_id: invocation.stack_id,
        proven: std::sync::Mutex::default(),
    };
    let made = Made::default();
    let result = match event {
        // Boxed: each is a large future (the SDK's are), and a test thread's stack is 2 MiB.
        Event::Rotation(r) => bounded(&progress, work_until, Box::pin(rotator.rotate(r, &made)))
            .await
            .map(|snapshot| (json!({}), snapshot)),
        Event::Check(c) => bounded(&progress, work_until, Box::pin(rotator.check(&c.secret_id, &made)))
            .await
            .map(|checked| (checked.report(), checked.snapshot)),
    };
    // A refused event touched nothing, and what it names is not ours to clean up.
    if result.as_ref().is_err_and(|e| !e.refused()) {
        let undo = async {
            match event {
                Event::Rotation(r) => Box::pin(rotator.abandon(r, &made)).await,
                Event::Check(c) => Box::pin(rotator.provisioner.undo_in(&c.secret_id, &made)).await,
            }
        };
        if tokio::time::timeout_at(invocation.guard_at, undo).await.is_err() {
            tracing::error!("undoing the failed step ran out of time");
        }
    }
    // A refused event names a secret that may not be ours: no metric under its name.
    if result.as_ref().is_err_and(|e| !e.refused()) {
        metrics::emit(event.secret_id(), &[(metrics::ROTATION_FAILED, 1)]);
    }
    let proven = rotator
        .proven
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(report) = report(
        invocation,
        event,
        &result,
        proven,
        crate::ports::Clock::now(ports.clock()),
    ) {
        Box::pin(crate::status::send(ports.status(), &report, invocation.guard_at)).await;
    }
    result.map(|(value, _)| value)
}

/// The status report of a step or check; none for a failure before the secret was proven this
/// stack's connector (`proven`): the event may name any secret.
fn report(
    invocation: &Invocation<'_>,
    event: &Event,
    result: &Result<(Value, Snapshot), RotationError>,
    proven: Option<Snapshot>,
    now: std::time::SystemTime,
) -> Option<Report> {
    let trigger = match event {
        Event::Rotation(_) => Trigger::Rotation,
        Event::Check(_) => Trigger::Check,
    };
    let (snapshot, error) = match (result, proven) {
        (Ok((_, snapshot)), _) => (snapshot.clone(), None),
        (Err(e), Some(snapshot)) if !e.refused() => (snapshot, Some(e.to_string())),
        (Err(_), _) => return None,
    };
    let outcome = error.as_deref().map_or(Ok(()), Err);
    Some(Report::new(trigger, snapshot, outcome, invocation.paste_overdue, now))
}

/// Runs `work` until `until`; a panic or the deadline becomes an error naming the step.
async fn bounded<T>(
    progress: &Progress,
    until: Instant,
    work: impl Future<Output = Result<T, RotationError>>,
) -> Result<T, RotationError> {
    match tokio::time::timeout_at(until, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(RotationError::Panicked(progress.current())),
        Err(_elapsed) => Err(RotationError::TimedOut(progress.current())),
    }
}

/// The outcome of a key check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The secret checked.
    pub secret: String,
    /// What became of the key awaiting a paste, if one was.
    pub retirement: Option<&'static str>,
    /// Whether a paste is still awaited.
    pub paste_pending: bool,
    /// Whether the previous key was retired without Cloud App Security seen using the stored
    /// key, and it still has not been (the alarm stays on until then).
    pub switch_not_seen: bool,
    /// Keys deleted as stale.
    pub deleted: Vec<String>,
    /// The policies that quarantine the user (a leak's incident response), by name.
    pub quarantined: Vec<String>,
    /// The connector as the check leaves it, for its status report.
    pub snapshot: Snapshot,
}

impl Checked {
    /// The check's result: what an operator invoking it by hand reads. Sends the metrics.
    fn report(&self) -> Value {
        metrics::emit(
            &self.secret,
            &[
                (metrics::PASTE_PENDING, u32::from(self.paste_pending)),
                (metrics::SWITCH_NOT_SEEN, u32::from(self.switch_not_seen)),
                (metrics::QUARANTINED, u32::from(!self.quarantined.is_empty())),
            ],
        );
        json!({
            "SecretId": self.secret,
            "PreviousKey": self.retirement.unwrap_or("none awaiting a paste"),
            "PastePending": self.paste_pending,
            "DeletedKeys": self.deleted,
            "Quarantined": self.quarantined,
        })
    }
}

/// Rotation and the key check over the provisioning engine.
pub struct Rotator<'a, P> {
    /// The engine, with the event's context (the request id is the rotation's token).
    pub provisioner: Provisioner<'a, P>,
    /// The only stack whose secrets this function acts on (`None`: local runs).
    pub stack_id: Option<&'a str>,
    /// The connector, once [`Rotator::owned`] proved the secret is this stack's: a failure
    /// after that is reported as the connector's; one before it (any secret id anyone sends)
    /// is reported as nobody's.
    pub proven: std::sync::Mutex<Option<Snapshot>>,
}

impl<P: Ports> Rotator<'_, P> {
    /// One rotation step, behind the standard guard.
    /// Returns the connector as the step found it, for its status report.
    pub async fn rotate(&self, request: &RotationRequest, made: &Made) -> Result<Snapshot, RotationError> {
        let (info, current) = self.owned(&request.secret_id).await?;
        let snapshot = snapshot(&info, &current);
        Box::pin(self.step(request, info, current, made))
            .await
            .map(|()| snapshot)
    }

    async fn step(
        &self,
        request: &RotationRequest,
        info: SecretInfo,
        current: Read,
        made: &Made,
    ) -> Result<(), RotationError> {
        let token = request.client_request_token.as_str();
        let not_pending = || RotationError::NotPending {
            secret: info.arn.clone(),
            token: token.to_owned(),
        };
        if info.rotation.is_none() {
            return Err(RotationError::NotEnabled(info.arn.clone()));
        }
        let stages = info.stages_of(token).ok_or_else(not_pending)?;
        if stages.iter().any(|s| s == CURRENT) {
            // Done before (a retried step): only what follows the promotion may be left.
            return match request.step {
                Step::Finish => self.after_promotion(&info, token, false).await,
                _ => Ok(()),
            };
        }
        if !stages.iter().any(|s| s == PENDING) {
            return Err(not_pending());
        }
        tracing::info!(step = request.step.as_str(), "rotation step");
        match request.step {
            // Boxed, each: the four steps' futures would otherwise share one large frame.
            Step::Create => Box::pin(self.create(&info, current, token, made)).await,
            Step::Set => Box::pin(self.set(&info, &current, token)).await,
            Step::Test => Box::pin(self.test(&info, &current, token)).await,
            Step::Finish => Box::pin(self.finish(&info, &current, token)).await,
        }
    }

    /// The scheduled check: retires a key awaiting a paste when its time came, deletes stale
    /// keys, and keeps the secret's description naming the key a paste awaits.
    pub async fn check(&self, secret_id: &str, made: &Made) -> Result<Checked, RotationError> {
        let (info, current) = self.owned(secret_id).await?;
        let iam = self.provisioner.ports.iam();
        let listed = match iam.list_access_keys(&current.doc.user_name).await {
            Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
            other => other.in_step(step_names::RETIRE)?,
        };
        let (current, listed, retirement) = self.retire_awaiting(current, listed, made).await?;
        let current = self.repair_registration(current, made).await?;
        let current = self.retry_stale(current, made).await?;
        let (current, switch_unseen) = self.follow_switch(current, made).await?;
        let deleted = self.delete_stale(&current, &listed).await?;
        let (aligned, quarantined) = futures::join!(
            self.provisioner
                .align_description(&info.arn, info.description.as_deref(), &current.doc),
            self.provisioner.quarantined(&current.doc.user_name),
        );
        aligned?;
        let quarantined = quarantined?;
        if !quarantined.is_empty() {
            tracing::warn!(policies = ?quarantined, "the connector's user is quarantined: never detached by this function");
        }
        let (_, mut snapshot) = self.sighted(snapshot(&info, &current), current, &listed, made).await;
        if !quarantined.is_empty() {
            snapshot.problem = Some(format!(
                "the connector's IAM user is quarantined ({}): Cloud App Security cannot read this account until the \
                 incident is closed and the policy detached (README, \"If the key leaks\")",
                quarantined.join(", ")
            ));
        }
        Ok(Checked {
            secret: secret_id.to_owned(),
            retirement: retirement.map(describe),
            paste_pending: retirement.is_some_and(Retirement::pending),
            switch_not_seen: switch_unseen,
            deleted,
            quarantined,
            snapshot,
        })
    }

    /// The secret and its current document, if it is this stack's connector secret: its tags
    /// name this stack, a resource and a user, and its current document holds a working key of
    /// that very user. Tags anyone allowed to tag a secret could copy; the key's secret half
    /// only the resource's own secret holds.
    async fn owned(&self, secret_id: &str) -> Result<(SecretInfo, Read), RotationError> {
        let secrets = self.provisioner.ports.secrets();
        let info = secrets.describe(secret_id).await.in_step(step_names::DISCOVER)?;
        let info = info.ok_or_else(|| RotationError::NoSecret(secret_id.to_owned()))?;
        let not_ours = || RotationError::NotOurs(secret_id.to_owned());
        let stack = info.tags.get(TAG_STACK_ID);
        let tagged = stack.is_some_and(|s| self.stack_id.is_none_or(|ours| ours == s))
            && info.tags.contains_key(TAG_LOGICAL_ID)
            && !info.pending_deletion;
        let physical_id = info.tags.get(TAG_PHYSICAL_ID).filter(|_| tagged).ok_or_else(not_ours)?;
        let user = UserRef::from_physical_id(physical_id).ok_or_else(not_ours)?;
        let current = self.current(&info).await?;
        if current.doc.user_name != user.name {
            return Err(not_ours());
        }
        if current.doc.is_newer() {
            return Err(RotationError::Provision(ProvisionError::NewerDocument {
                secret: info.arn.clone(),
                writer: current.doc.writer(),
            }));
        }
        let unproven = |reason: String| RotationError::Unproven {
            secret: info.arn.clone(),
            reason,
        };
        match self.provisioner.ports.probe().identity(&current.doc).await {
            Ok(arn) if arn == *physical_id => {
                let proven = snapshot(&info, &current);
                *self.proven.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(proven);
                Ok((info, current))
            }
            Ok(arn) => Err(unproven(format!("it signs as {arn}"))),
            Err(e) => match self.deactivated(&current).await {
                true => Err(RotationError::Deactivated {
                    secret: info.arn.clone(),
                    key: current.doc.access_key_id.clone(),
                }),
                false => Err(unproven(e.to_string())),
            },
        }
    }

    /// The check's snapshot completed with the stored key's age and, in portal mode with no
    /// paste awaited, whether Cloud App Security was seen using it: the status of the first key
    /// too (one more call, `GetAccessKeyLastUsed`). The first sighting of a key is recorded, so
    /// that later requests report it `Connected` too (best effort).
    async fn sighted(
        &self,
        mut snapshot: Snapshot,
        current: Read,
        listed: &[AccessKeyInfo],
        made: &Made,
    ) -> (Read, Snapshot) {
        let stored = current.doc.access_key_id.clone();
        let created = listed.iter().find(|k| k.access_key_id == stored).map(|k| k.created);
        snapshot.key_created_at = created.map(crate::provision::epoch);
        if snapshot.registered || snapshot.awaiting_paste_since.is_some() {
            return (current, snapshot);
        }
        let iam = self.provisioner.ports.iam();
        let used = iam.access_key_last_used(&stored).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read when the stored key was last used");
            None
        });
        let own_use_ends = current.doc.bookkeeping.self_use_until.unwrap_or(0);
        let seen_now = used.filter(|_| retirement::used_by_others(used, own_use_ends));
        let recorded = current.doc.bookkeeping.seen_using(&stored);
        snapshot.last_seen_used = seen_now.map(crate::provision::epoch).or(recorded);
        let Some(at) = seen_now.map(crate::provision::epoch).filter(|_| recorded.is_none()) else {
            return (current, snapshot);
        };
        let mut doc = current.doc.clone();
        doc.bookkeeping.seen_in_use = Some(SeenInUse {
            access_key_id: stored,
            at,
        });
        match self.record(&current, doc, made).await {
            Ok(recorded) => (recorded, snapshot),
            Err(e) => {
                tracing::warn!(error = %e, "could not record that Cloud App Security uses the key");
                (current, snapshot)
            }
        }
    }

    /// Whether IAM lists the stored key as inactive (best effort: `false` when it cannot tell).
    async fn deactivated(&self, current: &Read) -> bool {
        let iam = self.provisioner.ports.iam();
        let listed = iam.list_access_keys(&current.doc.user_name).await.unwrap_or_default();
        listed
            .iter()
            .any(|k| k.access_key_id == current.doc.access_key_id && !k.active)
    }

    /// The current document.
    async fn current(&self, info: &SecretInfo) -> Result<Read, RotationError> {
        self.read_at(info, Version::Staged(CURRENT))
            .await?
            .ok_or_else(|| RotationError::NoDocument {
                secret: info.arn.clone(),
                at: CURRENT.to_owned(),
            })
    }

    /// One version's document, `None` when it has no value or not ours.
    async fn read_at(&self, info: &SecretInfo, version: Version<'_>) -> Result<Option<Read>, RotationError> {
        let secrets = self.provisioner.ports.secrets();
        Ok(secret::read(secrets, &info.arn, version)
            .await
            .in_step(step_names::SECRET)?)
    }

    /// Deletes the user's stale keys: neither stored nor awaiting a paste, and older than the
    /// stored one or than any invocation runs (see `provision::access_key`).
    async fn delete_stale(&self, current: &Read, listed: &[AccessKeyInfo]) -> Result<Vec<String>, RotationError> {
        let doc = &current.doc;
        let awaiting = doc
            .bookkeeping
            .awaiting_paste
            .as_ref()
            .map(|a| a.access_key_id.as_str());
        let protected: Vec<&str> = [Some(doc.access_key_id.as_str()), awaiting]
            .into_iter()
            .flatten()
            .collect();
        let stored_created = listed
            .iter()
            .find(|k| k.access_key_id == doc.access_key_id)
            .map(|k| k.created);
        let gone = stale(listed, &protected, stored_created, self.provisioner.now());
        self.provisioner.delete_keys(&doc.user_name, &gone).await?;
        Ok(gone)
    }

    /// After a failed step: deletes the new key (unless the secret's current version holds it),
    /// gives Cloud App Security the current key back, and takes the pending label off the
    /// version so that the next rotation can start. Best effort: failures are logged.
    pub async fn abandon(&self, request: &RotationRequest, made: &Made) {
        self.provisioner.undo_in(&request.secret_id, made).await;
        let token = request.client_request_token.as_str();
        let Ok(Some(info)) = self.provisioner.ports.secrets().describe(&request.secret_id).await else {
            return;
        };
        let (current, pending) = futures::join!(
            self.read_at(&info, Version::Staged(CURRENT)),
            self.read_at(&info, Version::Id(token))
        );
        let (Ok(Some(current)), Ok(pending)) = (current, pending) else {
            tracing::error!("could not read the secret while abandoning the rotation");
            return;
        };
        // Only a rotation in progress is abandoned: a version still staged AWSPENDING whose
        // document createSecret made (possibly from a version a stack update since replaced).
        let staged = info.stages_of(token).is_some_and(|s| s.iter().any(|l| l == PENDING));
        if current.version == token || !staged {
            return;
        }
        let issued = pending
            .filter(|p| p.doc.access_key_id != current.doc.access_key_id && p.doc.bookkeeping.rotated_from.is_some());
        if let Some(pending) = issued.filter(|_| request.step != Step::Create) {
            self.take_back(&current, &pending).await;
        }
        let secrets = self.provisioner.ports.secrets();
        match secrets.move_stage(&info.arn, PENDING, None, Some(token)).await {
            Err(e) if e.kind != ErrorKind::Conflict => {
                tracing::error!(error = %e, "could not take the pending label off the abandoned version")
            }
            _ => {}
        }
    }

    /// Deletes `pending`'s key and gives Cloud App Security the current one back (setSecret may
    /// have sent the new one). If that fails, the registration is recorded as in doubt: the
    /// daily check (or the next stack update) sends it again.
    async fn take_back(&self, current: &Read, pending: &Read) {
        let iam = self.provisioner.ports.iam();
        let key = &pending.doc.access_key_id;
        if let Err(e) = iam.delete_access_key(&pending.doc.user_name, key).await {
            tracing::error!(error = %e, key = %key, "could not delete the abandoned rotation's key");
        }
        let Err(e) = self.provisioner.restore_registration(&current.doc, &pending.doc).await else {
            return;
        };
        tracing::error!(error = %e, "could not register the current key again; the key check retries");
        let mut doc = current.doc.clone();
        if let Some(r) = doc.bookkeeping.registration.as_mut() {
            r.fingerprint.clear();
        }
        if let Err(e) = self.record(current, doc, &Made::default()).await {
            tracing::error!(error = %e, "could not record the registration as in doubt");
        }
    }
}

/// What a retirement decision means, for the check's result.
fn describe(r: Retirement) -> &'static str {
    match r {
        Retirement::Forget => "gone (deleted outside the function); forgotten",
        Retirement::Wait => "active, waiting for the new key to be pasted",
        Retirement::Reactivated => "reactivated by an administrator after it was retired; left alone",
        Retirement::Deactivate { seen: true } => "deactivated: Cloud App Security uses the new key",
        Retirement::Deactivate { seen: false } => {
            "deactivated: the grace period ended without Cloud App Security seen using the new key"
        }
        Retirement::NoteDeactivated => "found deactivated; deleted a week from now",
        Retirement::Retired => "deactivated, deleted a week after it was retired",
        Retirement::Delete => "deleted, a week after it was retired",
    }
}

/// The connections a document's key must serve (`SecurityAuditing` when not recorded).
fn connections_of(read: &Read) -> BTreeSet<Connection> {
    let recorded = read.doc.bookkeeping.settings.as_ref();
    let set: BTreeSet<Connection> = recorded
        .map(|s| s.connections.iter().filter_map(|c| Connection::parse(c)).collect())
        .unwrap_or_default();
    match set.is_empty() {
        true => BTreeSet::from([Connection::SecurityAuditing]),
        false => set,
    }
}
