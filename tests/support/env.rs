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
    /// The SDK configuration of the account the handler acts in.
    pub sdk: aws_config::SdkConfig,
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
            sdk: config.clone(),
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

    /// The ARN of the secret that has this name now (`None`: no such secret).
    pub async fn secret_arn_of(&self, name: &str) -> Option<String> {
        let out = self.sm.describe_secret().secret_id(name).send().await.ok()?;
        out.arn().map(str::to_owned)
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

// ---------------------------------------------------------------------------------------------
// Rotation (tests/rotation.rs, tests/role.rs).

/// A zip holding one file, `bootstrap` (`#!/bin/sh`): the code of moto's stand-in for [`FUNCTION`].
const BOOTSTRAP_ZIP: &str = "UEsDBBQAAAAAAJldfV0dnfsECgAAAAoAAAAJAAAAYm9vdHN0cmFwIyEvYmluL3NoClBLAQIUAxQAAAAAAJldfV0dnfsECgAAAAoAAAAJAAAAAAAAAAAAAACAAQAAAABib290c3RyYXBQSwUGAAAAAAEAAQA3AAAAMQAAAAAA";

/// Makes [`FUNCTION`] exist in moto's Lambda, once per moto server (call it while IAM
/// enforcement is off). moto's `RotateSecret` refuses a function its Lambda does not know, and
/// "invokes" it: with `use_docker` off (moto's simple Lambda backend) an invocation runs
/// nothing, so the tests send the rotation steps to the handler themselves.
pub async fn rotation_function() -> &'static str {
    static MADE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    MADE.get_or_init(|| async {
        let http = reqwest::Client::new();
        let configured = http
            .post(format!("{}/moto-api/config", moto()))
            .header("Content-Type", "application/json")
            .body(r#"{"lambda": {"use_docker": false}}"#)
            .send()
            .await
            .expect("POST /moto-api/config");
        assert!(configured.status().is_success(), "moto config: {}", configured.status());
        let iam = aws_sdk_iam::Client::new(&config(Credentials::new("testing", "testing", None, None, "tests")).await);
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
        let role = iam
            .create_role()
            .role_name("cas-connector-function")
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("CreateRole for the function");
        let name = FUNCTION.rsplit(':').next().unwrap();
        let body = json!({"FunctionName": name, "Runtime": "provided.al2023", "Handler": "bootstrap",
            "Role": role.role().unwrap().arn(), "Code": {"ZipFile": BOOTSTRAP_ZIP}});
        // moto routes by the signature's service and does not check it (enforcement off).
        let scope = "Credential=testing/20250101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0";
        let made = http
            .post(format!("{}/2015-03-31/functions", moto()))
            .header("Authorization", format!("AWS4-HMAC-SHA256 {scope}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("CreateFunction");
        let status = made.status();
        let text = made.text().await.unwrap_or_default();
        assert!(status.is_success(), "moto CreateFunction: {status} {text}");
        let arn = serde_json::from_str::<Value>(&text).expect("CreateFunction answers JSON")["FunctionArn"].clone();
        assert_eq!(arn, FUNCTION, "moto's function is the one the handler says it is");
    })
    .await;
    FUNCTION
}

/// Starts a rotation as Secrets Manager does: `RotateSecret` with [`FUNCTION`] (always named:
/// without it moto drops the function and moves `AWSCURRENT` to an empty version), not at once.
/// Returns the new `AWSPENDING` version's id, the steps' `ClientRequestToken`: chosen here,
/// because moto's answer names the current version instead of the new one.
pub async fn start_rotation(sm: &aws_sdk_secretsmanager::Client, secret: &str) -> String {
    let n: u128 = rand::random();
    let token = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 68) & 0xfff,
        (n >> 56) & 0xfff,
        n & 0xffff_ffff_ffff
    );
    sm.rotate_secret()
        .secret_id(secret)
        .client_request_token(&token)
        .rotation_lambda_arn(rotation_function().await)
        .rotate_immediately(false)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RotateSecret {secret}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        });
    token
}

impl Env {
    /// An `Env` in moto's default account whose handler and clients act with `credentials` (a key
    /// moto issued: with IAM enforcement on, each call is checked against its user's policies).
    pub async fn acting_as(credentials: Credentials) -> Env {
        Env::with_credentials(ACCOUNT, credentials).await
    }

    /// A rotation step (`createSecret`, `setSecret`, `testSecret`, `finishSecret`) or, with
    /// `step` `None`, the key check, through the handler as [`FUNCTION`]: the invocation's result.
    pub async fn rotation_event(
        &self,
        step: Option<&str>,
        secret: &str,
        token: &str,
    ) -> Result<Value, cloud_app_security_connector::handler::HandlerError> {
        let event = match step {
            Some(step) => json!({"Step": step, "SecretId": secret, "ClientRequestToken": token}),
            None => json!({"CheckKeys": {"SecretId": secret}}),
        };
        let invoked = Invoked {
            deadline: SystemTime::now() + Duration::from_secs(120),
            function_arn: Some(FUNCTION.to_owned()),
        };
        self.handler.handle(event, &invoked).await
    }
}
