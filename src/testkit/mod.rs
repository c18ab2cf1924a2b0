//! Unit-test kit: in-memory fakes of every port, as strict as AWS where it matters, with
//! explicit failure injection ([`faults::Faults`]) and a [`World`] bundling them; and the tests
//! that run provisioning and the lifecycle on them, the model-based test among them.

pub mod clock;
pub mod faults;
pub mod iam;
pub mod outside;
pub mod secrets;
pub mod trails;

mod bad_input_tests;
mod incident_tests;
mod late_tests;
mod model;
mod provision_tests;
mod rotation_tests;
mod upgrade_tests;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cloud_app_security::endpoint::AllowedHosts;
use crate::key_material::SecretDocument;
use crate::ownership::{Owner, StackArn};
use crate::ports::Ports;
use crate::progress::Progress;
use crate::properties::Properties;
use crate::provision::{Context, Provisioner, Target};

pub const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/cas/11111111-2222-3333-4444-555555555555";
pub const USER: &str = "CloudAppSecurity-test";
pub const SECRET: &str = "cloud-app-security/test";
/// `PasteOverdueDays` in the tests: three days.
pub const PASTE_OVERDUE: Duration = Duration::from_secs(3 * 86_400);
pub const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:cas-connector";

/// Every fake, sharing one fault plan and one clock.
pub struct World {
    pub faults: Arc<Faults>,
    pub clock: clock::ManualClock,
    pub iam: Arc<iam::FakeIam>,
    pub secrets: secrets::FakeSecrets,
    pub keys: outside::FakeKeys,
    pub trails: trails::FakeTrails,
    pub registry: outside::FakeRegistry,
    pub probe: outside::FakeProbe,
    pub status: outside::FakeStatusBus,
    pub allowed: AllowedHosts,
    pub progress: Progress,
}

use faults::Faults;

impl World {
    pub fn new() -> World {
        World::seeded(0, 0)
    }

    /// Calls interleave by `seed`, up to `max_yields` yields per call.
    pub fn seeded(seed: u64, max_yields: u32) -> World {
        let faults = Arc::new(Faults::seeded(seed, max_yields));
        let clock = clock::ManualClock::default();
        let iam = Arc::new(iam::FakeIam::new(faults.clone(), clock.clone()));
        World {
            secrets: secrets::FakeSecrets::new(faults.clone(), clock.clone()),
            trails: trails::FakeTrails::new(faults.clone()),
            registry: outside::FakeRegistry::new(faults.clone()),
            probe: outside::FakeProbe {
                iam: iam.clone(),
                denied: Default::default(),
                probed: Default::default(),
            },
            keys: outside::FakeKeys::default(),
            status: outside::FakeStatusBus::default(),
            allowed: AllowedHosts::default(),
            progress: Progress::new("test"),
            faults,
            clock,
            iam,
        }
    }

    /// A provisioner for the request `request_id`.
    pub fn provisioner<'a>(&'a self, request_id: &'a str) -> Provisioner<'a, World> {
        Provisioner {
            ports: self,
            progress: &self.progress,
            context: Context {
                request_id,
                allowed: &self.allowed,
                deadline: tokio::time::Instant::now() + Duration::from_secs(60),
                function_arn: Some(FUNCTION),
            },
        }
    }

    /// The document the secret `name` holds as current.
    pub fn stored(&self, name: &str) -> Option<SecretDocument> {
        let secret = self.secrets.secret(name)?;
        let text = crate::key_material::SecretText::new(secret.staged(crate::ports::CURRENT)?.to_owned());
        SecretDocument::from_secret_text(&text)
    }

    /// Rewrites the current document of the secret `name` in place, as someone allowed to write
    /// its value could.
    pub fn edit_current(&self, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut secret = self.secrets.secret(name).expect("the secret exists");
        let current = secret
            .versions
            .iter_mut()
            .find(|(_, _, s)| s.iter().any(|l| l == crate::ports::CURRENT));
        let (_, text, _) = current.expect("a current version");
        let mut doc: Value = serde_json::from_str(text).expect("a JSON document");
        edit(&mut doc);
        *text = doc.to_string();
        self.secrets.plant(name, secret);
    }

    /// The ids of the user's keys.
    pub fn key_ids(&self, user: &str) -> Vec<String> {
        self.iam
            .user(user)
            .map(|u| u.keys.into_iter().map(|k| k.access_key_id).collect())
            .unwrap_or_default()
    }
}

impl Ports for World {
    type Iam = iam::FakeIam;
    type Secrets = secrets::FakeSecrets;
    type Keys = outside::FakeKeys;
    type Trails = trails::FakeTrails;
    type Registry = outside::FakeRegistry;
    type Probe = outside::FakeProbe;
    type Clock = clock::ManualClock;
    type Status = outside::FakeStatusBus;
    fn iam(&self) -> &iam::FakeIam {
        &self.iam
    }
    fn secrets(&self) -> &secrets::FakeSecrets {
        &self.secrets
    }
    fn keys(&self) -> &outside::FakeKeys {
        &self.keys
    }
    fn trails(&self) -> &trails::FakeTrails {
        &self.trails
    }
    fn registry(&self) -> &outside::FakeRegistry {
        &self.registry
    }
    fn probe(&self) -> &outside::FakeProbe {
        &self.probe
    }
    fn clock(&self) -> &clock::ManualClock {
        &self.clock
    }
    fn status(&self) -> &outside::FakeStatusBus {
        &self.status
    }
}

pub fn owner() -> Owner {
    Owner {
        stack_id: STACK.into(),
        logical_id: "Connector".into(),
    }
}

/// A CloudFormation event for `stack`.
pub fn event(
    stack: &str,
    kind: &str,
    request_id: &str,
    physical: Option<&str>,
    props: &Value,
    old: Option<&Value>,
) -> Value {
    let mut e = json!({
        "RequestType": kind, "ResponseURL": "http://127.0.0.1/response", "StackId": stack,
        "RequestId": request_id, "LogicalResourceId": "Connector", "ResourceType": "Custom::CloudAppSecurityConnector",
        "ServiceToken": FUNCTION, "ResourceProperties": props,
    });
    if let Some(id) = physical {
        e["PhysicalResourceId"] = json!(id);
    }
    if let Some(old) = old {
        e["OldResourceProperties"] = old.clone();
    }
    e
}

impl World {
    /// Runs one request through the lifecycle, as the handler would.
    pub async fn handle(&self, event: Value) -> crate::cfn::response::Answer {
        let incoming = crate::cfn::Incoming::read(event).unwrap();
        let progress = Progress::new("test");
        let invocation = crate::lifecycle::Invocation {
            allowed: &self.allowed,
            function_arn: Some(FUNCTION),
            guard_at: tokio::time::Instant::now() + Duration::from_secs(60),
        };
        let request = incoming.request.unwrap();
        Box::pin(crate::lifecycle::run(
            self,
            &invocation,
            &progress,
            &incoming.envelope,
            request,
        ))
        .await
    }
}

impl World {
    /// Runs a rotation step or key check, as the handler would for this stack.
    pub async fn other_event(&self, event: &crate::rotation::Event) -> Result<Value, crate::rotation::RotationError> {
        let invocation = crate::rotation::Invocation {
            allowed: &self.allowed,
            stack_id: Some(STACK),
            guard_at: tokio::time::Instant::now() + Duration::from_secs(60),
            paste_overdue: PASTE_OVERDUE,
        };
        Box::pin(crate::rotation::run(self, &invocation, event)).await
    }

    /// One step of the rotation `token` of the secret `SECRET`.
    pub async fn step(&self, step: crate::rotation::Step, token: &str) -> Result<(), crate::rotation::RotationError> {
        let arn = self.secrets.secret(SECRET).map(|s| s.arn).unwrap_or_default();
        let request = crate::rotation::RotationRequest {
            step,
            secret_id: arn,
            client_request_token: token.to_owned(),
        };
        self.other_event(&crate::rotation::Event::Rotation(request))
            .await
            .map(drop)
    }

    /// What Secrets Manager does for a rotation: starts it, then runs the four steps in order
    /// until one fails.
    pub async fn rotate(&self, token: &str) -> Result<(), crate::rotation::RotationError> {
        use crate::rotation::Step;
        if let Err(e) = self.secrets.begin_rotation(SECRET, token) {
            panic!("RotateSecret refused: {e}");
        }
        for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
            self.step(step, token).await?;
        }
        Ok(())
    }

    /// The scheduled key check of `SECRET`.
    pub async fn check(&self) -> Result<Value, crate::rotation::RotationError> {
        let arn = self.secrets.secret(SECRET).map(|s| s.arn).unwrap_or_default();
        let request = crate::rotation::CheckRequest { secret_id: arn };
        self.other_event(&crate::rotation::Event::Check(request)).await
    }
}

/// Properties for the connector "test" with the trail off, plus `extra`.
pub fn props(extra: Value) -> Properties {
    let mut props = json!({"ConnectorName": "test", "TrailMode": "Off"});
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Properties::parse(props.as_object().unwrap()).unwrap()
}

/// The target of a Create with [`props`].
pub fn target(extra: Value) -> Target {
    Target::new(
        owner(),
        StackArn::parse(STACK).unwrap(),
        &props(extra),
        None,
        &AllowedHosts::default(),
    )
    .unwrap()
}

/// The target of an Update from `old` to `new` at the physical id `old` names.
pub fn update(old: Value, new: Value) -> Target {
    let (old, new) = (props(old), props(new));
    let stack = StackArn::parse(STACK).unwrap();
    let old_id = stack.user_arn(&old.user_path, &old.resolve(&stack.account_id).user_name);
    Target::new(owner(), stack, &new, Some((&old, &old_id)), &AllowedHosts::default()).unwrap()
}

use crate::ports::Tags;

/// Seconds since the epoch as `X-Amz-Date`'s `YYYYMMDDTHHMMSSZ` (civil from days, Howard
/// Hinnant's algorithm).
pub fn amz_date(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
