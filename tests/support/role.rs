//! The function's role as the tests hold it: the actions of its two documents in template.yaml,
//! moto's IAM enforcement switch, a principal holding exactly a given policy, and the handler
//! acting as that principal (tests/role.rs, tests/upgrade.rs).

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_iam::config::{Credentials, Region};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::json;
use serde_yaml::Value as Yaml;

use super::env::Env;
use super::{moto, repo, stack_id, unique};

/// The role's two policy documents in template.yaml.
pub const ROLE_POLICIES: [&str; 2] = ["ConnectorPolicy", "ConnectorSecretsPolicy"];

/// Every action the role's documents allow, sorted and without duplicates.
pub fn role_actions() -> Vec<String> {
    let path = repo().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("read template.yaml");
    let template: Yaml = serde_yaml::from_str(&text).expect("template.yaml is YAML");
    let mut actions = BTreeSet::new();
    for name in ROLE_POLICIES {
        let statements = template["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: no PolicyDocument.Statement list"));
        for statement in statements.iter().flat_map(branches) {
            let sid = statement["Sid"].as_str().unwrap_or("(no Sid)");
            assert_eq!(
                statement["Effect"].as_str(),
                Some("Allow"),
                "{name}/{sid}: the stand-in can only reproduce Allow statements"
            );
            assert!(
                statement.get("NotAction").is_none(),
                "{name}/{sid}: NotAction cannot be reproduced as a list of actions"
            );
            let listed: Vec<&Yaml> = match &statement["Action"] {
                Yaml::Sequence(items) => items.iter().flat_map(branches).collect(),
                one => branches(one),
            };
            assert!(!listed.is_empty(), "{name}/{sid}: no Action");
            for action in listed {
                let action = action
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}/{sid}: an action that is not a string: {action:?}"));
                actions.insert(action.to_owned());
            }
        }
    }
    actions.into_iter().collect()
}

/// A node, or both branches of an `Fn::If` around it (short `!If` or long `Fn::If`, nested
/// ones too), with `AWS::NoValue` dropped.
pub fn branches(node: &Yaml) -> Vec<&Yaml> {
    let arms = match node {
        Yaml::Tagged(tagged) if tagged.tag == "If" => tagged.value.as_sequence(),
        Yaml::Mapping(m) if m.len() == 1 => m.get("Fn::If").and_then(Yaml::as_sequence),
        _ => None,
    };
    match arms {
        Some(arms) => {
            assert_eq!(arms.len(), 3, "Fn::If takes [condition, then, else]: {node:?}");
            arms[1..].iter().flat_map(branches).collect()
        }
        None if is_no_value(node) => Vec::new(),
        None => vec![node],
    }
}

pub fn is_no_value(node: &Yaml) -> bool {
    match node {
        Yaml::Tagged(tagged) => tagged.tag == "Ref" && tagged.value.as_str() == Some("AWS::NoValue"),
        Yaml::Mapping(m) => m.len() == 1 && m.get("Ref").and_then(Yaml::as_str) == Some("AWS::NoValue"),
        _ => false,
    }
}

/// One statement granting `actions` on everything, without conditions.
pub fn allow(actions: &[String]) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    })
    .to_string()
}

/// `POST /moto-api/reset-auth` with a plain-text body: `0` enforces from the next request on,
/// `inf` never. True when moto answered 200.
pub fn reset_auth(body: &str) -> bool {
    let Some(port) = moto().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "POST /moto-api/reset-auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Enforcement on while it lives; off again when dropped, also when a test panics.
pub struct Enforcement;

impl Enforcement {
    pub fn on() -> Enforcement {
        assert!(reset_auth("0"), "moto refused to turn IAM enforcement on");
        Enforcement
    }

    /// Off while an administrator acts with moto's default credentials; `resume` turns it back on.
    pub fn pause(&self) {
        assert!(reset_auth("inf"), "moto refused to turn IAM enforcement off");
    }

    pub fn resume(&self) {
        assert!(reset_auth("0"), "moto refused to turn IAM enforcement on");
    }
}

impl Drop for Enforcement {
    fn drop(&mut self) {
        // No assertion here: a panic while unwinding would abort the test binary.
        let _ = reset_auth("inf");
    }
}

// ---------------------------------------------------------------------------------------------
// Principals and state.

/// A user holding exactly `policy` as its one inline policy, and an access key moto issued to it
/// (with enforcement on, moto accepts only keys it issued). Made by `admin` with enforcement off.
pub async fn principal(admin: &aws_sdk_iam::Client, name: &str, policy: String) -> Credentials {
    admin
        .create_user()
        .user_name(name)
        .send()
        .await
        .expect("CreateUser (admin)");
    admin
        .put_user_policy()
        .user_name(name)
        .policy_name("granted")
        .policy_document(policy)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutUserPolicy {name} (admin): {}", DisplayErrorContext(&e)));
    let out = admin
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .expect("CreateAccessKey (admin)");
    let key = out.access_key().expect("an access key");
    Credentials::new(key.access_key_id(), key.secret_access_key(), None, None, "stand-in")
}

/// An SDK configuration for moto acting with `credentials`, as the tests' own (`support::env`).
pub async fn moto_config(credentials: Credentials) -> aws_config::SdkConfig {
    cloud_app_security_connector::aws::config_loader()
        .endpoint_url(moto())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await
}

/// An `Env` (handler, clients) acting as the principal whose key `credentials` holds, in moto's
/// default account: with enforcement on, every call is checked against that principal's policies.
pub async fn env_as(credentials: Credentials) -> Env {
    Env {
        stack: stack_id(&unique("role-it-")),
        ..Env::acting_as(credentials).await
    }
}

/// Runs an async test on a thread of its own with an 8 MiB stack (a Lambda main thread's). In
/// the unoptimized test build one Update through the handler needs more than the 2 MiB of a test
/// thread (a stack overflow, not a failure of the role); the release build needs far less.
pub fn on_a_large_stack<F: Future<Output = ()> + 'static>(test: fn() -> F) {
    let thread = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(test())
        })
        .expect("spawn the test thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
