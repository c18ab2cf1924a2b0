//! The model-based test: random sequences of what CloudFormation can do to one resource —
//! Create, each kind of Update, Delete, with their rollbacks and clean-ups — each request
//! delivered once, twice in a row or twice at once, with a fault injected at any call (before
//! or after its effect), run through the lifecycle on the strict fakes. After every completed
//! CloudFormation sequence the invariant must hold:
//!
//! - every user under the path belongs to a live resource (ours or the neighbour's);
//! - the live user's active keys are the one its secret holds, plus at most the previous key
//!   recorded as awaiting a paste, and every `SUCCESS` answer named the stored key;
//! - no secret of ours is left outside the live resource (except scheduled for deletion);
//! - Cloud App Security holds registrations only for the live physical id, with the stored key;
//! - nothing of the neighbour stack (or of an intruder's failed Create) changed.
//!
//! Secrets Manager's rotations (sometimes with a stack update between `setSecret` and
//! `testSecret`) and the daily key check run among them, with faults too. A fault in the undo of
//! a failed rotation may leave a key or a registration behind; that is tolerated until the end of
//! the sequence, where a day later the key check must have repaired it and the invariant holds
//! strictly.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{event, World, FUNCTION, STACK};
use crate::cfn::response::{Answer, Status};
use crate::cfn::Incoming;
use crate::lifecycle::{self, Invocation};
use crate::ports::{Clock, Tags, CURRENT};
use crate::progress::Progress;

const NEIGHBOUR_STACK: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/neighbour/99999999-2222-3333-4444-555555555555";
const INTRUDER_STACK: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/intruder/77777777-2222-3333-4444-555555555555";
const CREDENTIALS: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cas-api";

/// What an Update changes.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Change {
    KeyVersion,
    Tags,
    Connections,
    UserName,
    UserPath,
    SecretName,
    Callback,
    /// A typo: an invalid `UserName`. The Update fails; its rollback must succeed.
    Typo,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Op {
    Create,
    /// An Update; with `then_rollback`, another resource of the stack fails afterwards and
    /// CloudFormation rolls this one back too.
    Update {
        change: Change,
        then_rollback: bool,
    },
    Delete,
    /// Another stack creates a connector of the same names, fails, and rolls back.
    Intruder,
    /// Secrets Manager rotates the live secret; with `interrupt`, a stack update runs between
    /// `setSecret` and `testSecret`.
    Rotate {
        interrupt: Option<Change>,
    },
    /// Days pass, Cloud App Security may start using the stored key, and the key check runs.
    Check {
        days: u8,
        switched: bool,
    },
    /// Lambda delivers an earlier request of CloudFormation's (the `back`-th last) again, late:
    /// after its rollback, the next request, or the Delete.
    Late {
        back: u8,
    },
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Delivery {
    Once,
    Again,
    AtOnce,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Step {
    op: Op,
    delivery: Delivery,
    /// A fault at this call of the request, after its effect when `true`.
    fault: Option<(usize, bool)>,
    /// With two deliveries, which answer CloudFormation reads first.
    second_wins: bool,
    seed: u64,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::KeyVersion),
        Just(Change::Tags),
        Just(Change::Connections),
        Just(Change::UserName),
        Just(Change::UserPath),
        Just(Change::SecretName),
        Just(Change::Callback),
        Just(Change::Typo),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        2 => Just(Op::Create),
        5 => (change(), any::<bool>()).prop_map(|(change, then_rollback)| Op::Update { change, then_rollback }),
        1 => Just(Op::Delete),
        1 => Just(Op::Intruder),
        2 => proptest::option::weighted(0.3, change()).prop_map(|interrupt| Op::Rotate { interrupt }),
        2 => (0..9u8, any::<bool>()).prop_map(|(days, switched)| Op::Check { days, switched }),
        2 => (0..4u8).prop_map(|back| Op::Late { back }),
    ];
    let delivery = prop_oneof![3 => Just(Delivery::Once), 1 => Just(Delivery::Again), 2 => Just(Delivery::AtOnce)];
    let fault = proptest::option::weighted(0.6, (0..40usize, any::<bool>()));
    (op, delivery, fault, any::<bool>(), any::<u64>()).prop_map(|(op, delivery, fault, second_wins, seed)| Step {
        op,
        delivery,
        fault,
        second_wins,
        seed,
    })
}

/// The resource CloudFormation believes in.
#[derive(Clone, Debug)]
struct Live {
    props: Value,
    physical_id: String,
}

struct Model {
    world: World,
    live: Option<Live>,
    /// Registrations a faulty Delete may leave behind: its removal is best effort (SPEC).
    best_effort: BTreeSet<String>,
    /// Keys and registrations a fault in a failed rotation's undo left, until the final check.
    tolerated: BTreeSet<String>,
    registry_in_doubt: bool,
    /// Rotations that reached the end of `finishSecret`.
    rotated: u32,
    requests: u32,
    events: u32,
    /// Every CloudFormation event sent, as sent (its `ResponseURL` signed then).
    sent: Vec<Value>,
}

fn base_props() -> Value {
    json!({"ConnectorName": "test", "TrailMode": "Off", "VerifyKey": "false", "KeyVersion": "1", "RotationDays": "30"})
}

fn apply(change: Change, props: &Value) -> Value {
    let mut p = props.clone();
    let toggle = |p: &mut Value, key: &str, value: &str| match p.get(key) {
        Some(_) => drop(p.as_object_mut().unwrap().remove(key)),
        None => p[key] = json!(value),
    };
    match change {
        Change::KeyVersion => {
            let n: u32 = p["KeyVersion"].as_str().unwrap().parse().unwrap();
            p["KeyVersion"] = json!((n + 1).to_string());
        }
        Change::Tags => toggle(&mut p, "Tags", "x"),
        Change::Connections => toggle(&mut p, "Connections", "SecurityAuditing,SecurityConfiguration"),
        Change::UserName => toggle(&mut p, "UserName", "CloudAppSecurity-test-b"),
        Change::UserPath => toggle(&mut p, "UserPath", "/cloud-app-security/moved/"),
        Change::SecretName => toggle(&mut p, "SecretName", "cloud-app-security/test-moved"),
        Change::Typo => p["UserName"] = json!("bad name!"),
        Change::Callback => match p.get("CloudAppSecurityUrl") {
            Some(_) => {
                let o = p.as_object_mut().unwrap();
                o.remove("CloudAppSecurityUrl");
                o.remove("CloudAppSecurityCredentials");
            }
            None => {
                p["CloudAppSecurityUrl"] = json!("http://127.0.0.1:9");
                p["CloudAppSecurityCredentials"] = json!(CREDENTIALS);
            }
        },
    }
    if let Some(tags) = p.get("Tags").filter(|t| t.is_string()) {
        p["Tags"] = json!({"team": tags});
    }
    p
}

fn secret_name(props: &Value) -> String {
    props
        .get("SecretName")
        .and_then(Value::as_str)
        .unwrap_or("cloud-app-security/test")
        .to_owned()
}

impl Model {
    /// Injects `step`'s fault, if any, counting from the next call.
    fn arm(&self, step: &Step) {
        if let Some((at, after)) = step.fault {
            self.world.faults.fail_call(self.world.faults.calls() + at, after);
        }
    }

    /// No fault from here on.
    fn disarm(&self) {
        self.world.faults.fail_call(usize::MAX, false);
    }

    /// Signs `event`'s `ResponseURL` now, as CloudFormation does when it sends a request, and
    /// keeps it for a late delivery.
    fn sign(&mut self, mut event: Value) -> Value {
        if !event["ResponseURL"].as_str().is_some_and(|u| u.contains("X-Amz-Date")) {
            let now = self
                .world
                .clock
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            event["ResponseURL"] = json!(format!("http://127.0.0.1/response?X-Amz-Date={}", super::amz_date(now)));
            self.sent.push(event.clone());
        }
        event
    }

    async fn invoke(&mut self, event: Value) -> Answer {
        self.events += 1;
        self.world.clock.advance(Duration::from_secs(5));
        let incoming = Incoming::read(event).unwrap();
        let progress = Progress::new("test");
        let invocation = Invocation {
            allowed: &self.world.allowed,
            function_arn: Some(FUNCTION),
            guard_at: tokio::time::Instant::now() + Duration::from_secs(60),
        };
        Box::pin(lifecycle::run(
            &self.world,
            &invocation,
            &progress,
            &incoming.envelope,
            incoming.request.unwrap(),
        ))
        .await
    }

    /// Delivers one request as `step` says; returns the answer CloudFormation reads, and all.
    async fn deliver(&mut self, step: &Step, event: Value) -> (Answer, Vec<Answer>) {
        self.requests += 1;
        // Stack operations are tens of seconds apart, at least.
        self.world.clock.advance(Duration::from_secs(30));
        let event = self.sign(event);
        self.arm(step);
        let answers = match step.delivery {
            Delivery::Once => vec![self.invoke(event).await],
            Delivery::Again => {
                let first = self.invoke(event.clone()).await;
                vec![first, self.invoke(event).await]
            }
            Delivery::AtOnce => {
                self.events += 2;
                let world = &self.world;
                let run = |e: Value| async move {
                    let incoming = Incoming::read(e).unwrap();
                    let progress = Progress::new("test");
                    let invocation = Invocation {
                        allowed: &world.allowed,
                        function_arn: Some(FUNCTION),
                        guard_at: tokio::time::Instant::now() + Duration::from_secs(60),
                    };
                    let request = incoming.request.unwrap();
                    Box::pin(lifecycle::run(
                        world,
                        &invocation,
                        &progress,
                        &incoming.envelope,
                        request,
                    ))
                    .await
                };
                let (a, b) = tokio::join!(Box::pin(run(event.clone())), Box::pin(run(event)));
                vec![a, b]
            }
        };
        self.disarm();
        let chosen = match (step.second_wins, answers.len()) {
            (true, 2) => answers[1].clone(),
            _ => answers[0].clone(),
        };
        (chosen, answers)
    }

    /// A request CloudFormation sends without faults, once (rollbacks, clean-ups, retries).
    async fn plain(&mut self, event: Value) -> Answer {
        self.requests += 1;
        self.world.clock.advance(Duration::from_secs(1));
        let event = self.sign(event);
        self.invoke(event).await
    }

    fn request_id(&self) -> String {
        format!("req-{}", self.requests)
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        let live = self.live.clone();
        match (&step.op, live) {
            (Op::Create, None) => self.create(step).await,
            (Op::Update { change, then_rollback }, Some(live)) => {
                self.update(step, *change, *then_rollback, live).await
            }
            (Op::Delete, Some(live)) => self.delete(step, live).await,
            (Op::Intruder, _) => self.intruder(step).await,
            (Op::Rotate { interrupt }, Some(live)) => self.rotate(step, *interrupt, live).await,
            (Op::Check { days, switched }, Some(live)) => self.key_check(step, *days, *switched, live).await,
            (Op::Late { back }, _) => self.late(step, *back).await,
            _ => Ok(()),
        }
    }

    async fn create(&mut self, step: &Step) -> Result<(), String> {
        let props = base_props();
        let e = event(STACK, "Create", &self.request_id(), None, &props, None);
        let (chosen, answers) = self.deliver(step, e).await;
        match chosen.status {
            Status::Success => {
                self.check_answers(&answers, &props)?;
                self.live = Some(Live {
                    props,
                    physical_id: chosen.physical_id.clone(),
                });
                Ok(())
            }
            Status::Failed => {
                let e = event(
                    STACK,
                    "Delete",
                    &self.request_id(),
                    Some(&chosen.physical_id),
                    &props,
                    None,
                );
                expect_success("the rollback Delete", self.plain(e).await)
            }
        }
    }

    async fn update(&mut self, step: &Step, change: Change, then_rollback: bool, live: Live) -> Result<(), String> {
        let new = apply(change, &live.props);
        let e = event(
            STACK,
            "Update",
            &self.request_id(),
            Some(&live.physical_id),
            &new,
            Some(&live.props),
        );
        let (chosen, answers) = self.deliver(step, e).await;
        if chosen.status == Status::Failed {
            // The rollback Update: old properties, the old physical id.
            let e = event(
                STACK,
                "Update",
                &self.request_id(),
                Some(&live.physical_id),
                &live.props,
                Some(&new),
            );
            return expect_success("the rollback Update", self.plain(e).await);
        }
        self.check_answers(&answers, &new)?;
        let new_id = chosen.physical_id.clone();
        if then_rollback {
            // The update succeeded, another resource failed: back to the old properties on the
            // new physical id, then the new physical id is deleted if it differs.
            let e = event(
                STACK,
                "Update",
                &self.request_id(),
                Some(&new_id),
                &live.props,
                Some(&new),
            );
            let back = self.plain(e).await;
            expect_success("the stack's rollback Update", back.clone())?;
            if back.physical_id != new_id {
                let e = event(STACK, "Delete", &self.request_id(), Some(&new_id), &new, None);
                expect_success("the clean-up Delete of the abandoned physical id", self.plain(e).await)?;
            }
            self.live = Some(Live {
                physical_id: back.physical_id,
                ..live
            });
            return Ok(());
        }
        if new_id != live.physical_id {
            let e = event(
                STACK,
                "Delete",
                &self.request_id(),
                Some(&live.physical_id),
                &live.props,
                None,
            );
            expect_success("the clean-up Delete of the old physical id", self.plain(e).await)?;
        }
        self.live = Some(Live {
            props: new,
            physical_id: new_id,
        });
        Ok(())
    }

    /// A late delivery changes nothing CloudFormation believes in; the invariant still holds
    /// after it (checked by the caller), whatever it answers.
    async fn late(&mut self, step: &Step, back: u8) -> Result<(), String> {
        let Some(index) = self.sent.len().checked_sub(1 + usize::from(back)) else {
            return Ok(());
        };
        let event = self.sent[index].clone();
        // A late Create is recognised only by the tombstone its resource's Delete leaves (a
        // secret scheduled for deletion: tests in late_tests.rs). One whose resource's secret
        // was never made (the Create failed early) or deleted at once (a SecretName move,
        // `SecretRecoveryWindowDays: 0`) finds no record: the window the README states.
        if event["RequestType"] == "Create" {
            return Ok(());
        }
        // Likewise an Update whose secrets (new and old names) no longer exist at all: moved
        // away since and deleted at once, no tombstone left.
        let gone = |props: &Value| self.world.secrets.secret(&secret_name(props)).is_none();
        if gone(&event["ResourceProperties"]) && event.get("OldResourceProperties").is_none_or(gone) {
            return Ok(());
        }
        let _ = self.deliver(step, event).await;
        Ok(())
    }

    async fn delete(&mut self, step: &Step, live: Live) -> Result<(), String> {
        if step.fault.is_some() {
            self.best_effort
                .insert(crate::cloud_app_security::sha256_hex(&live.physical_id));
        }
        let e = event(
            STACK,
            "Delete",
            &self.request_id(),
            Some(&live.physical_id),
            &live.props,
            None,
        );
        let (chosen, _) = self.deliver(step, e.clone()).await;
        if chosen.status == Status::Failed {
            // DELETE_FAILED: the operator deletes the stack again.
            expect_success("the retried Delete", self.plain(e).await)?;
        }
        self.live = None;
        Ok(())
    }

    async fn intruder(&mut self, step: &Step) -> Result<(), String> {
        let props = base_props();
        let e = event(INTRUDER_STACK, "Create", &self.request_id(), None, &props, None);
        let (chosen, _) = self.deliver(step, e).await;
        let collides = self
            .live
            .as_ref()
            .is_some_and(|l| l.physical_id == chosen.physical_id || secret_name(&l.props) == secret_name(&props));
        if chosen.status == Status::Success && collides {
            return Err("another stack's Create succeeded over a live connector's names".to_owned());
        }
        // Either way the intruder goes away again.
        let e = event(
            INTRUDER_STACK,
            "Delete",
            &self.request_id(),
            Some(&chosen.physical_id),
            &props,
            None,
        );
        expect_success("the intruder's Delete", self.plain(e).await)
    }

    /// Every `SUCCESS` of the last request named the key now stored in the secret `props` name.
    fn check_answers(&self, answers: &[Answer], props: &Value) -> Result<(), String> {
        let stored = self.world.stored(&secret_name(props)).map(|d| d.access_key_id);
        for a in answers.iter().filter(|a| a.status == Status::Success) {
            if a.data.get("AccessKeyId") != stored.as_ref() {
                return Err(format!(
                    "a SUCCESS named {:?}, the secret holds {stored:?}",
                    a.data.get("AccessKeyId")
                ));
            }
        }
        Ok(())
    }

    fn check(&self, neighbour: &Snapshot) -> Result<(), String> {
        if Snapshot::take(&self.world) != *neighbour {
            return Err("the neighbour stack's connector changed".to_owned());
        }
        let users: BTreeSet<String> = self.world.iam.users.lock().unwrap().keys().cloned().collect();
        let expected: BTreeSet<String> = self
            .live
            .iter()
            .map(|l| l.physical_id.rsplit('/').next().unwrap().to_owned())
            .chain(["CloudAppSecurity-neighbour".to_owned()])
            .collect();
        if users != expected {
            return Err(format!("users {users:?}, live {expected:?}"));
        }
        self.check_secrets()?;
        let Some(live) = &self.live else {
            return self.check_registrations(None, None);
        };
        let name = live.physical_id.rsplit('/').next().unwrap();
        let doc = self
            .world
            .stored(&secret_name(&live.props))
            .ok_or("the live resource has no stored key")?;
        let user = self.world.iam.user(name).unwrap();
        let active: BTreeSet<&str> = user
            .keys
            .iter()
            .filter(|k| k.active)
            .map(|k| k.access_key_id.as_str())
            .collect();
        let awaiting = doc
            .bookkeeping
            .awaiting_paste
            .as_ref()
            .map(|a| a.access_key_id.as_str());
        let undelivered = self.world.iam.undelivered.lock().unwrap().clone();
        // A key whose creation answer was lost has a secret half nobody ever saw; it is
        // removed by age (access_key::IN_FLIGHT) at the next converge.
        let allowed: BTreeSet<&str> = [Some(doc.access_key_id.as_str()), awaiting]
            .into_iter()
            .flatten()
            .chain(undelivered.iter().map(String::as_str))
            .chain(self.tolerated.iter().map(String::as_str))
            .collect();
        if doc.user_name != name || !active.contains(doc.access_key_id.as_str()) || !active.is_subset(&allowed) {
            return Err(format!(
                "user {name} active keys {active:?}, stored {} of {}, awaiting {awaiting:?}",
                doc.access_key_id, doc.user_name
            ));
        }
        let callback = live.props.get("CloudAppSecurityUrl").is_some();
        self.check_registrations(callback.then_some(live.physical_id.as_str()), Some(&doc.access_key_id))
    }

    fn check_secrets(&self) -> Result<(), String> {
        let secrets = self.world.secrets.secrets.lock().unwrap();
        let ours: Vec<&String> = secrets
            .iter()
            .filter(|(_, s)| {
                !s.pending_deletion && s.tags.get(crate::ownership::TAG_STACK_ID).map(String::as_str) == Some(STACK)
            })
            .map(|(name, _)| name)
            .collect();
        let expected: Vec<String> = self.live.iter().map(|l| secret_name(&l.props)).collect();
        match ours.iter().map(|s| s.as_str()).eq(expected.iter().map(String::as_str)) {
            true => Ok(()),
            false => Err(format!("secrets {ours:?}, live {expected:?}")),
        }
    }

    /// Cloud App Security holds the live registration with the stored key, and otherwise only
    /// registrations whose removal — best effort, by the SPEC — failed and is recorded for retry
    /// or was at least attempted.
    fn check_registrations(&self, live: Option<&str>, key: Option<&String>) -> Result<(), String> {
        let connectors = self.world.registry.connectors.lock().unwrap();
        let mut failed = self.world.registry.failed_removals.lock().unwrap().clone();
        // A removal that failed is recorded in the live secret, to be retried.
        let live_secret = self.live.as_ref().map(|l| secret_name(&l.props));
        let stale = live_secret
            .and_then(|s| self.world.stored(&s))
            .map(|d| d.bookkeeping.stale_registrations);
        failed.extend(
            stale
                .into_iter()
                .flatten()
                .map(|s| crate::cloud_app_security::sha256_hex(&s.physical_id)),
        );
        failed.extend(self.best_effort.iter().cloned());
        let expected = live.map(crate::cloud_app_security::sha256_hex);
        for ((_, digest), registered_key) in connectors.iter() {
            let is_live = Some(digest) == expected.as_ref();
            if (!is_live && failed.contains(digest)) || (is_live && self.registry_in_doubt) {
                continue;
            }
            if !is_live || Some(registered_key) != key {
                return Err(format!(
                    "Cloud App Security holds {digest} with {registered_key}; live {live:?} with {key:?}"
                ));
            }
        }
        match (expected, connectors.is_empty()) {
            (Some(_), true) => Err("the live connector is not registered".to_owned()),
            _ => Ok(()),
        }
    }
}

impl Model {
    /// What Secrets Manager does: starts a rotation of the live secret (unless one is in
    /// progress) and runs the steps until one fails.
    async fn rotate(&mut self, step: &Step, interrupt: Option<Change>, live: Live) -> Result<(), String> {
        use crate::rotation::{Event, RotationRequest, Step as RotationStep};
        let name = secret_name(&live.props);
        let token = format!("00000000-0000-4000-8000-{:012}", self.requests);
        self.requests += 1;
        let Some(arn) = self.world.secrets.secret(&name).map(|s| s.arn) else {
            return Ok(());
        };
        if self.world.secrets.begin_rotation(&name, &token).is_err() {
            return Ok(());
        }
        self.arm(step);
        for (i, rotation_step) in [
            RotationStep::Create,
            RotationStep::Set,
            RotationStep::Test,
            RotationStep::Finish,
        ]
        .into_iter()
        .enumerate()
        {
            if let (2, Some(change)) = (i, interrupt) {
                let plain = Step {
                    fault: None,
                    delivery: Delivery::Once,
                    ..step.clone()
                };
                let live = self.live.clone().ok_or("no live resource")?;
                self.update(&plain, change, false, live).await?;
            }
            self.world.clock.advance(Duration::from_secs(5));
            let request = RotationRequest {
                step: rotation_step,
                secret_id: arn.clone(),
                client_request_token: token.clone(),
            };
            if self.world.other_event(&Event::Rotation(request)).await.is_err() {
                break;
            }
            if rotation_step == RotationStep::Finish {
                self.rotated += 1;
            }
        }
        self.disarm();
        if step.fault.is_some() {
            self.tolerate();
        }
        Ok(())
    }

    /// Keys of the live user that nobody holds, and the registration, after a fault.
    fn tolerate(&mut self) {
        let Some(live) = &self.live else { return };
        let name = live.physical_id.rsplit('/').next().unwrap_or_default();
        let keys = self.world.iam.user(name).map(|u| u.keys).unwrap_or_default();
        self.tolerated.extend(keys.into_iter().map(|k| k.access_key_id));
        self.registry_in_doubt = true;
    }

    /// Days pass; Cloud App Security may switch to the stored key; the key check runs.
    async fn key_check(&mut self, step: &Step, days: u8, switched: bool, live: Live) -> Result<(), String> {
        self.world
            .clock
            .advance(Duration::from_secs(u64::from(days) * 24 * 60 * 60));
        let name = secret_name(&live.props);
        let Some(arn) = self.world.secrets.secret(&name).map(|s| s.arn) else {
            return Ok(());
        };
        if let (true, Some(doc)) = (switched, self.world.stored(&name)) {
            let now = crate::ports::Clock::now(&self.world.clock);
            self.world.iam.last_used.lock().unwrap().insert(doc.access_key_id, now);
        }
        self.arm(step);
        let request = crate::rotation::CheckRequest { secret_id: arn };
        let _ = self.world.other_event(&crate::rotation::Event::Check(request)).await;
        self.disarm();
        if step.fault.is_some() {
            self.tolerate();
        }
        Ok(())
    }

    /// A day after the last step, the key check has repaired what faults left: the invariant
    /// then holds with nothing tolerated.
    async fn final_check(&mut self) -> Result<(), String> {
        self.tolerated.clear();
        self.registry_in_doubt = false;
        let Some(live) = self.live.clone() else { return Ok(()) };
        self.world.clock.advance(Duration::from_secs(24 * 60 * 60));
        let Some(arn) = self.world.secrets.secret(&secret_name(&live.props)).map(|s| s.arn) else {
            return Err("the live resource has no secret".to_owned());
        };
        let request = crate::rotation::CheckRequest { secret_id: arn };
        match self.world.other_event(&crate::rotation::Event::Check(request)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("the final key check failed: {e}")),
        }
    }

    /// Prints what a step did, for reading a failing case (`MODEL_TRACE=1`).
    fn trace(&self, step: &Step, from: usize, outcome: &Result<(), String>) {
        println!("STEP {step:?} -> {outcome:?}");
        for (i, op) in self.world.faults.log()[from..].iter().enumerate() {
            println!("   {i} {op}");
        }
        let stored = self.world.stored("cloud-app-security/test");
        println!(
            "   stored {:?}",
            stored.map(|d| (d.user_name, d.access_key_id, d.bookkeeping))
        );
        println!("   registry {:?}", self.world.registry.connectors.lock().unwrap());
    }
}

fn expect_success(what: &str, answer: Answer) -> Result<(), String> {
    match answer.status {
        Status::Success => Ok(()),
        Status::Failed => Err(format!("{what} failed: {}", answer.reason)),
    }
}

/// The neighbour stack's connector, as it must stay.
#[derive(PartialEq, Debug)]
struct Snapshot {
    keys: Vec<String>,
    tags: Tags,
    secret: Option<String>,
}

impl Snapshot {
    fn take(world: &World) -> Snapshot {
        let user = world.iam.user("CloudAppSecurity-neighbour");
        Snapshot {
            keys: user
                .as_ref()
                .map(|u| u.keys.iter().map(|k| k.access_key_id.clone()).collect())
                .unwrap_or_default(),
            tags: user.map(|u| u.tags).unwrap_or_default(),
            secret: world
                .secrets
                .secret("cloud-app-security/neighbour")
                .and_then(|s| s.staged(CURRENT).map(str::to_owned)),
        }
    }
}

async fn run(steps: Vec<Step>, trace: bool) -> Result<(u32, u32, u32), String> {
    let seed = steps.first().map_or(0, |s| s.seed);
    let mut model = Model {
        world: World::seeded(seed, 3),
        live: None,
        best_effort: BTreeSet::new(),
        tolerated: BTreeSet::new(),
        registry_in_doubt: false,
        rotated: 0,
        requests: 0,
        events: 0,
        sent: Vec::new(),
    };
    super::provision_tests::plant_credentials(&model.world);
    let neighbour = json!({"ConnectorName": "neighbour", "TrailMode": "Off", "VerifyKey": "false"});
    let e = event(NEIGHBOUR_STACK, "Create", "req-neighbour", None, &neighbour, None);
    expect_success("the neighbour's Create", model.invoke(e).await)?;
    let snapshot = Snapshot::take(&model.world);
    for (n, step) in steps.iter().enumerate() {
        let before = model.world.faults.calls();
        let outcome = model.step(step).await;
        if trace {
            model.trace(step, before, &outcome);
        }
        outcome.map_err(|e| format!("step {n} {step:?}: {e}"))?;
        model
            .check(&snapshot)
            .map_err(|e| format!("after step {n} {step:?}: {e}"))?;
    }
    model.final_check().await?;
    model
        .check(&snapshot)
        .map_err(|e| format!("a day after the last step: {e}"))?;
    Ok((model.requests, model.events, model.rotated))
}

static TOTALS: std::sync::Mutex<(u64, u64, u64, u64)> = std::sync::Mutex::new((0, 0, 0, 0));

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_cloudformation_sequence_orphans_a_key_or_touches_another_stack(steps in proptest::collection::vec(step(), 1..10)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let json = serde_json::to_string(&steps).unwrap_or_default();
        let outcome = runtime.block_on(run(steps, false));
        let (requests, events, rotated) = outcome.map_err(|e| TestCaseError::fail(format!("{e}\nMODEL_CASE='{json}'")))?;
        let mut totals = TOTALS.lock().unwrap();
        *totals = (totals.0 + 1, totals.1 + u64::from(requests), totals.2 + u64::from(events), totals.3 + u64::from(rotated));
        if totals.0 % 100 == 0 {
            println!(
                "model: {} sequences, {} requests (CloudFormation's and rotations), {} deliveries, {} rotations completed",
                totals.0, totals.1, totals.2, totals.3
            );
        }
    }
}

/// Sequences the model found, kept as they were printed (`MODEL_CASE`), each with what it broke.
const FOUND: &[(&str, &str)] = &[
    (
        "issue 17: a call-back Update delivered twice at once with a fault, then a rotation, left two \
         active keys, one stored and none awaiting a paste",
        r#"[{"op":{"Update":{"change":"KeyVersion","then_rollback":false}},"delivery":"Once","fault":null,"second_wins":false,"seed":4584374845064052048},{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Check":{"days":0,"switched":false}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"Callback","then_rollback":false}},"delivery":"AtOnce","fault":[27,false],"second_wins":false,"seed":0},{"op":{"Rotate":{"interrupt":null}},"delivery":"Once","fault":null,"second_wins":false,"seed":0}]"#,
    ),
    (
        "a SecretName move delivered twice at once: the twin that read the old secret after the other \
         scheduled its deletion made room for a key by deleting the moved one (no active key left)",
        r#"[{"op":{"Rotate":{"interrupt":null}},"delivery":"Once","fault":null,"second_wins":false,"seed":17124923733586542425},{"op":"Create","delivery":"Again","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"KeyVersion","then_rollback":true}},"delivery":"AtOnce","fault":null,"second_wins":false,"seed":0},{"op":{"Check":{"days":1,"switched":true}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"SecretName","then_rollback":false}},"delivery":"AtOnce","fault":null,"second_wins":false,"seed":0}]"#,
    ),
    (
        "a late SecretName move whose record read failed acted blind: it moved the key away from the \
         secret the rollback had restored",
        r#"[{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"SecretName","then_rollback":true}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Late":{"back":1}},"delivery":"Once","fault":[1,false],"second_wins":false,"seed":0}]"#,
    ),
    (
        "a late Update, after the Delete and another stack's Create and Delete, restored the other \
         stack's leftover and brought the user back",
        r#"[{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"KeyVersion","then_rollback":false}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":"Delete","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":"Intruder","delivery":"Again","fault":null,"second_wins":false,"seed":0},{"op":{"Late":{"back":3}},"delivery":"Once","fault":null,"second_wins":false,"seed":0}]"#,
    ),
    (
        "a Delete delivered again late, after a SecretName move, its Delete and a new Create of the \
         same names, deleted the new connector's user",
        r#"[{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"SecretName","then_rollback":false}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":"Delete","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Late":{"back":1}},"delivery":"Once","fault":null,"second_wins":false,"seed":0}]"#,
    ),
    (
        "a late path move of the user a rename then replaced: the record, now tagged for the new \
         physical id, must still be read (it is this resource's)",
        r#"[{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Rotate":{"interrupt":"UserPath"}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Update":{"change":"UserName","then_rollback":false}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Late":{"back":3}},"delivery":"Once","fault":null,"second_wins":false,"seed":0}]"#,
    ),
    (
        "a Delete delivered again late, after a SecretName move and a new Create of the same names, \
         deleted the new connector's user: a user created after a Delete was sent is another's",
        r#"[{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Rotate":{"interrupt":"SecretName"}},"delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":"Delete","delivery":"Once","fault":[4,false],"second_wins":false,"seed":0},{"op":"Create","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":{"Late":{"back":1}},"delivery":"Once","fault":null,"second_wins":false,"seed":0}]"#,
    ),
    (
        "a Create delivered twice at once with a fault after another stack's Delete: the failed twin \
         put the leftover it had restored back into deletion after the other had claimed it (leftovers \
         are force-deleted and replaced since, never restored)",
        r#"[{"op":{"Update":{"change":"KeyVersion","then_rollback":false}},"delivery":"Once","fault":null,"second_wins":false,"seed":10155351597960613837},{"op":"Intruder","delivery":"Once","fault":null,"second_wins":false,"seed":0},{"op":"Create","delivery":"AtOnce","fault":[8,false],"second_wins":true,"seed":0}]"#,
    ),
    (
        "a Create delivered twice at once after a released leftover: the second twin force-deleted, \
         by name, the secret the first had just created in the leftover's place (deletes go by ARN)",
        r#"[{"op":{"Rotate":{"interrupt":null}},"delivery":"Once","fault":null,"second_wins":false,"seed":11758260593505174905},{"op":"Create","delivery":"AtOnce","fault":[20,false],"second_wins":false,"seed":0},{"op":{"Late":{"back":0}},"delivery":"Again","fault":null,"second_wins":false,"seed":0},{"op":"Create","delivery":"AtOnce","fault":null,"second_wins":false,"seed":0}]"#,
    ),
];

#[test]
fn the_sequences_found_so_far_hold() {
    for (what, case) in FOUND {
        let steps: Vec<Step> = serde_json::from_str(case).expect("a printed MODEL_CASE");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        if let Err(e) = runtime.block_on(run(steps, false)) {
            panic!("{what}: {e}");
        }
    }
}

/// Replays the case in `MODEL_CASE` (the JSON a failure prints) with a trace of every call:
/// `MODEL_CASE='[...]' cargo test --lib replay -- --nocapture`.
#[test]
fn replay() {
    let Ok(case) = std::env::var("MODEL_CASE") else { return };
    let steps: Vec<Step> = serde_json::from_str(&case).expect("MODEL_CASE holds the JSON a failure printed");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    if let Err(e) = runtime.block_on(run(steps, true)) {
        panic!("{e}");
    }
}
