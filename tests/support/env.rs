//! The handler wired to moto server, with a recording endpoint for CloudFormation's answers,
//! and readers of the AWS state the tests assert on.

use std::time::{Duration, SystemTime};

use aws_sdk_iam::config::{Credentials, Region};
use cloud_app_security_connector::aws::iam::IamAdapter;
use cloud_app_security_connector::cfn::delivery::Delivery;
use cloud_app_security_connector::handler::{Handler, Invoked, Services, Settings};
use serde_json::{json, Value};

use super::{event, moto, unique, Recorder, ACCOUNT};

/// The function the tests pretend to be.
pub const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:cas-connector";

fn next() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn config(credentials: Credentials) -> aws_config::SdkConfig {
    cloud_app_security_connector::aws::config_loader()
        .endpoint_url(moto())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await
}

pub struct Env {
    pub handler: Handler<Services>,
    pub recorder: Recorder,
    pub iam: aws_sdk_iam::Client,
    pub sm: aws_sdk_secretsmanager::Client,
    pub trails: aws_sdk_cloudtrail::Client,
    pub adapter: IamAdapter,
    pub stack: String,
    pub account: String,
    pub connector: String,
}

impl Env {
    /// In moto's default account, shared by every test of the binary.
    pub async fn new() -> Env {
        Env::with_credentials(ACCOUNT, Credentials::new("testing", "testing", None, None, "tests")).await
    }

    /// In an account of its own (STS AssumeRole into a fresh account id), for tests whose
    /// subject is account-wide, such as which multi-region trails exist.
    pub async fn in_own_account() -> Env {
        let account = format!(
            "{:012}",
            100_000_000_000u64 + u64::from(std::process::id()) * 1000 + next()
        );
        let sts = aws_sdk_sts::Client::new(&config(Credentials::new("testing", "testing", None, None, "tests")).await);
        let role = format!("arn:aws:iam::{account}:role/tests");
        let assumed = sts
            .assume_role()
            .role_arn(role)
            .role_session_name("tests")
            .send()
            .await
            .expect("AssumeRole");
        let c = assumed.credentials().expect("credentials");
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "assumed",
        );
        Env::with_credentials(&account, credentials).await
    }

    async fn with_credentials(account: &str, credentials: Credentials) -> Env {
        let config = config(credentials).await;
        Env {
            handler: Handler {
                delivery: Delivery::new().unwrap(),
                settings: Settings {
                    url_suffix: "amazonaws.com".into(),
                    ..Settings::default()
                },
                services: Services::new(&config),
            },
            recorder: Recorder::start(),
            iam: aws_sdk_iam::Client::new(&config),
            sm: aws_sdk_secretsmanager::Client::new(&config),
            trails: aws_sdk_cloudtrail::Client::new(&config),
            adapter: IamAdapter::new(&config),
            stack: format!(
                "arn:aws:cloudformation:us-east-1:{account}:stack/it/{}",
                unique("guid-")
            ),
            account: account.to_owned(),
            connector: unique("it"),
        }
    }

    /// An S3 bucket in moto for trail logs (moto's CreateTrail requires one to exist).
    pub async fn bucket(&self) -> String {
        let name = unique("trail-logs-").to_lowercase();
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", moto()))
            .send()
            .await
            .expect("create bucket");
        assert!(response.status().is_success(), "create bucket: {}", response.status());
        name
    }

    pub fn props(&self, extra: Value) -> Value {
        let mut props = json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "ConnectorName": self.connector,
            "TrailMode": "Off",
        });
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        props
    }

    pub fn user_name(&self) -> String {
        format!("CloudAppSecurity-{}", self.connector)
    }

    pub fn secret_name(&self) -> String {
        format!("cloud-app-security/{}", self.connector)
    }

    pub fn physical_id(&self) -> String {
        self.user_arn("/cloud-app-security/", &self.user_name())
    }

    pub fn user_arn(&self, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:user{path}{name}", self.account)
    }

    pub fn request(&self, kind: &str, fields: Value) -> Value {
        let mut e = event(kind);
        e["ResponseURL"] = json!(self.recorder.url(&format!("/response/{}", unique("r"))));
        e["StackId"] = json!(self.stack);
        e["RequestId"] = json!(unique("req-"));
        e.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        e
    }

    /// Invokes the handler and returns the one response CloudFormation received.
    pub async fn send(&self, event: Value) -> Value {
        let before = self.recorder.requests().len();
        self.invoke(event, Duration::from_secs(120)).await;
        let got = self.recorder.requests();
        assert_eq!(got.len(), before + 1, "exactly one response per invocation");
        let response = got.last().unwrap();
        assert_eq!(response.method, "PUT");
        assert_eq!(
            response.header("content-type"),
            Some(""),
            "empty Content-Type for the presigned URL"
        );
        assert!(response.body.len() <= 4096);
        response.json()
    }

    /// Invokes the handler with `timeout` left, as the function `FUNCTION`.
    pub async fn invoke(&self, event: Value, timeout: Duration) {
        let invoked = Invoked {
            deadline: SystemTime::now() + timeout,
            function_arn: Some(FUNCTION.to_owned()),
        };
        self.handler.handle(event, &invoked).await.expect("handler answered");
    }

    pub async fn create(&self, props: Value) -> Value {
        self.send(self.request("create", json!({"ResourceProperties": props})))
            .await
    }

    pub async fn update(&self, physical_id: &str, old: Value, new: Value) -> Value {
        let fields =
            json!({"PhysicalResourceId": physical_id, "ResourceProperties": new, "OldResourceProperties": old});
        self.send(self.request("update", fields)).await
    }

    pub async fn delete(&self, physical_id: &str, props: Value) -> Value {
        self.send(self.request(
            "delete",
            json!({"PhysicalResourceId": physical_id, "ResourceProperties": props}),
        ))
        .await
    }

    pub async fn user_exists(&self, name: &str) -> bool {
        match self.iam.get_user().user_name(name).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => false,
            Err(e) => panic!("GetUser: {e:?}"),
        }
    }

    pub async fn keys(&self, name: &str) -> Vec<String> {
        let out = self.iam.list_access_keys().user_name(name).send().await.unwrap();
        out.access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id().map(str::to_owned))
            .collect()
    }

    pub async fn inline_policies(&self, name: &str) -> Vec<String> {
        self.iam
            .list_user_policies()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec()
    }

    pub async fn attached(&self, name: &str) -> Vec<String> {
        let out = self
            .iam
            .list_attached_user_policies()
            .user_name(name)
            .send()
            .await
            .unwrap();
        let mut names: Vec<String> = out
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// The secret's value, or `None` if it does not exist or is scheduled for deletion.
    pub async fn secret_value(&self, name: &str) -> Option<Value> {
        // Named stage: moto answers a read without one with the first version, not AWSCURRENT.
        let out = self
            .sm
            .get_secret_value()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .ok()?;
        Some(serde_json::from_str(out.secret_string()?).unwrap())
    }

    pub async fn secret_pending_deletion(&self, name: &str) -> Option<bool> {
        let out = self.sm.describe_secret().secret_id(name).send().await.ok()?;
        Some(out.deleted_date().is_some())
    }
}

pub fn assert_success(response: &Value) {
    assert_eq!(response["Status"], "SUCCESS", "{response:#}");
}

pub fn assert_failed(response: &Value, needle: &str) {
    assert_eq!(response["Status"], "FAILED", "{response:#}");
    let reason = response["Reason"].as_str().unwrap();
    assert!(reason.contains(needle), "reason {reason:?} lacks {needle:?}");
}

/// A KMS client on the shared moto server, in moto's default account (the account of
/// [`Env::new`]).
pub async fn kms_client() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&config(Credentials::new("testing", "testing", None, None, "tests")).await)
}
