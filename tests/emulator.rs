//! End to end: the built `bootstrap` under the Lambda Runtime Interface Emulator, AWS from moto
//! server, CloudFormation's presigned URL a recording endpoint.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{Credentials, Region};
use serde_json::{json, Value};
use support::emulator::Emulator;
use support::{event, moto, stack_id, unique, Recorder, Reply};

/// The binary under test: the one cargo built for this test run, or — with `CAS_BOOTSTRAP` set —
/// another build of it, such as the artifact `sam build` makes (scripts/test-artifact.sh).
fn bootstrap() -> String {
    std::env::var("CAS_BOOTSTRAP").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bootstrap").to_owned())
}

/// Stands in for a presigned URL's signature: it must never appear in a log line.
const SIGNATURE: &str = "X-Amz-Signature=deadbeefcafe0123456789";

fn aws_env(endpoint: &str, timeout: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_LAMBDA_FUNCTION_TIMEOUT", timeout.to_owned()),
        ("AWS_LAMBDA_LOG_LEVEL", "trace".to_owned()),
    ]
}

fn start(env: &[(&'static str, String)]) -> Emulator {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Emulator::start(&bootstrap(), &env)
}

/// `events/<name>.json` pointed at this test's stack, connector and recorder. The call back
/// goes to a stand-in that records nothing useful here (portal mode would do as well; the
/// call back's own tests are in tests/callback.rs): it only must not be a real tenant.
fn fixture(name: &str, recorder: &Recorder, stack: &str, connector: &str) -> Value {
    let mut e = event(name);
    e["ResponseURL"] = json!(recorder.url(&format!("/cfn/{}?{SIGNATURE}", unique("r"))));
    e["StackId"] = json!(stack);
    for props in ["ResourceProperties", "OldResourceProperties"] {
        if e.get(props).is_some() {
            e[props]["ConnectorName"] = json!(connector);
            e[props]["CloudAppSecurityUrl"] = json!(cloud_app_security().url(""));
        }
    }
    if let Some(id) = e.get("PhysicalResourceId") {
        let id = id
            .as_str()
            .unwrap()
            .replace("CloudAppSecurity-example", &format!("CloudAppSecurity-{connector}"));
        e["PhysicalResourceId"] = json!(id);
    }
    e
}

/// The Cloud App Security stand-in, shared by this binary's tests.
fn cloud_app_security() -> &'static Recorder {
    static CAS: std::sync::OnceLock<Recorder> = std::sync::OnceLock::new();
    CAS.get_or_init(|| Recorder::with(|_, _| Reply::json(200, r#"{"id": "conn-e2e", "status": "connected"}"#)))
}

async fn secrets_manager(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
}

/// The events' API credentials secret, holding `token`.
async fn api_credentials(endpoint: &str, token: &str) {
    let name = event("create")["ResourceProperties"]["CloudAppSecurityCredentials"]
        .as_str()
        .unwrap()
        .to_owned();
    let sm = secrets_manager(endpoint).await;
    let value = json!({"token": token}).to_string();
    if sm
        .create_secret()
        .name(&name)
        .secret_string(&value)
        .send()
        .await
        .is_err()
    {
        sm.put_secret_value()
            .secret_id(&name)
            .secret_string(&value)
            .send()
            .await
            .expect("credentials secret");
    }
}

async fn secret_access_key(endpoint: &str, secret: &str) -> String {
    let sm = secrets_manager(endpoint).await;
    let value = sm
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("secret exists");
    let value: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    value["SecretAccessKey"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn create_update_delete_answer_success_and_log_no_secrets() {
    let endpoint = moto();
    let recorder = Recorder::start();
    let emulator = start(&aws_env(endpoint, "60"));
    let (stack, connector) = (stack_id("e2e"), unique("e2e"));
    // The events' TrailBucket; moto's CreateTrail requires the bucket to exist.
    let bucket = event("create")["ResourceProperties"]["TrailBucket"]
        .as_str()
        .unwrap()
        .to_owned();
    reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create the trail bucket");
    let token = unique("api-token-");
    api_credentials(endpoint, &token).await;
    let secret = format!("cloud-app-security/{connector}");
    let mut keys = Vec::new();

    for (n, kind) in ["create", "update", "delete"].into_iter().enumerate() {
        let request = fixture(kind, &recorder, &stack, &connector);
        let result = emulator.invoke(&request);
        let got = recorder.wait_for(n + 1, Duration::from_secs(30));
        assert_eq!(
            got.len(),
            n + 1,
            "{kind}: no response recorded; function said {result}\n{}",
            emulator.output()
        );
        let response = &got[n];
        assert_eq!(response.method, "PUT");
        assert_eq!(response.header("content-type"), Some(""));
        assert!(response.path.ends_with(SIGNATURE), "answered at the ResponseURL");
        let body = response.json();
        assert_eq!(body["Status"], "SUCCESS", "{kind}: {body:#}\n{}", emulator.output());
        assert_eq!(body["StackId"], stack);
        assert_eq!(body["RequestId"], request["RequestId"]);
        assert_eq!(body["LogicalResourceId"], "CloudAppSecurityConnector");
        let user = format!("CloudAppSecurity-{connector}");
        assert_eq!(
            body["PhysicalResourceId"],
            format!("arn:aws:iam::123456789012:user/cloud-app-security/{user}")
        );
        if kind != "delete" {
            assert_eq!(body["Data"]["UserName"], user);
            assert_eq!(body["Data"]["ConnectorStatus"], "Registered");
            assert_eq!(body["Data"]["ConnectorId"], "conn-e2e");
            assert_eq!(
                body["Data"]["TrailArn"],
                "arn:aws:cloudtrail:us-east-1:123456789012:trail/cloud-app-security"
            );
            assert_eq!(body["Data"]["TrailCreated"], "true");
            keys.push(secret_access_key(endpoint, &secret).await);
        }
    }
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "the update's new KeyVersion rotated the key");

    let output = emulator.output();
    for key in &keys {
        assert!(!output.contains(key.as_str()), "a secret access key reached the logs");
    }
    assert!(
        !output.contains("deadbeefcafe"),
        "the presigned URL's signature reached the logs"
    );
    assert!(!output.contains(&token), "the API token reached the logs");
    // Every log line of a request carries the request's identity.
    let ours: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("fields").is_some() && l.get("level").is_some())
        .filter(|l| l.get("span").is_some_and(|s| s["name"] == "request"))
        .collect();
    assert!(ours.len() >= 6, "expected JSON log lines from the requests:\n{output}");
    for line in &ours {
        for field in ["RequestType", "StackId", "LogicalResourceId"] {
            assert!(line["span"].get(field).is_some(), "{field} missing from {line}");
        }
    }
    let answered = ours
        .iter()
        .filter(|l| l["fields"]["message"] == "answering SUCCESS")
        .count();
    assert_eq!(answered, 3, "{output}");
}

#[tokio::test]
async fn a_hung_aws_endpoint_still_gets_failed_in_before_the_deadline() {
    // Accepts connections and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hung.incoming().flatten() {
            held.push(stream);
        }
    });
    let recorder = Recorder::start();
    let timeout = Duration::from_secs(8);
    let emulator = start(&aws_env(&hung_url, &timeout.as_secs().to_string()));
    let request = fixture("create", &recorder, &stack_id("hung"), &unique("hung"));
    let invoked = Instant::now();
    let result = emulator.invoke(&request);
    let got = recorder.wait_for(1, Duration::from_secs(1));
    assert_eq!(
        got.len(),
        1,
        "no response; function said {result}\n{}",
        emulator.output()
    );
    let body = got[0].json();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("timed out during reading the existing user, secret and trails"),
        "{reason}"
    );
    let answered_after = got[0].at.duration_since(invoked);
    assert!(
        answered_after + Duration::from_secs(2) <= timeout,
        "answered {answered_after:?} into an {timeout:?} timeout"
    );
}

#[tokio::test]
async fn a_start_up_failure_answers_failed_instead_of_crash_looping() {
    let recorder = Recorder::start();
    // No region: the function cannot start its AWS clients.
    let env: Vec<(&'static str, String)> = aws_env(moto(), "30")
        .into_iter()
        .filter(|(k, _)| *k != "AWS_REGION")
        .collect();
    let emulator = start(&env);
    for n in 1..=2 {
        let connector = unique("nostart");
        emulator.invoke(&fixture("create", &recorder, &stack_id("nostart"), &connector));
        let got = recorder.wait_for(n, Duration::from_secs(10));
        assert_eq!(got.len(), n, "{}", emulator.output());
        let body = got[n - 1].json();
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(
            body["Reason"],
            "the function could not start: no AWS region is configured (AWS_REGION)"
        );
        // Still the user ARN the properties name, so the rollback Delete is well-formed.
        let user = format!("arn:aws:iam::123456789012:user/cloud-app-security/CloudAppSecurity-{connector}");
        assert_eq!(body["PhysicalResourceId"], user);
    }
}

#[tokio::test]
async fn an_event_that_is_not_a_custom_resource_request_is_a_lambda_error() {
    let emulator = start(&aws_env(moto(), "30"));
    let result = emulator.invoke(&json!({"hello": "world"}));
    assert!(result.contains("NotCustomResource"), "{result}");
}

#[tokio::test]
async fn the_key_check_reports_a_result_and_a_metric_and_a_refused_rotation_step_is_an_error() {
    let endpoint = moto();
    let recorder = Recorder::start();
    let emulator = start(&aws_env(endpoint, "60"));
    let (stack, connector) = (stack_id("rot"), unique("rot"));
    api_credentials(endpoint, &unique("api-token-")).await;
    let mut create = fixture("create", &recorder, &stack, &connector);
    create["ResourceProperties"]["TrailMode"] = json!("Off");
    emulator.invoke(&create);
    let got = recorder.wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].json()["Status"], "SUCCESS", "{}", emulator.output());
    let secret = format!("cloud-app-security/{connector}");

    let checked = emulator.invoke(&json!({"CheckKeys": {"SecretId": secret}}));
    let checked: Value = serde_json::from_str(&checked).unwrap_or_else(|_| panic!("{checked}"));
    assert_eq!(checked["PastePending"], false, "{checked}");
    assert_eq!(checked["DeletedKeys"], json!([]));

    // Rotation is off for this secret: the step is refused, as the invocation's error.
    let step = json!({"Step": "createSecret", "SecretId": secret, "ClientRequestToken": unique("t")});
    let refused = emulator.invoke(&step);
    assert!(
        refused.contains("RotationFailed") && refused.contains("does not have rotation enabled"),
        "{refused}"
    );

    // The check's outcome is a CloudWatch metric: an embedded-metric-format line on stdout. A
    // refused event names a secret that may not be ours: no metric under that name.
    let output = emulator.output();
    let metrics: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("_aws").is_some() && l["SecretArn"] == secret)
        .collect();
    assert_eq!(metrics.len(), 1, "{output}");
    assert_eq!(
        (
            metrics[0]["PastePending"].as_u64(),
            metrics[0]["KeySwitchNotSeen"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "CloudAppSecurityConnector"
    );

    emulator.invoke(&fixture("delete", &recorder, &stack, &connector));
    let got = recorder.wait_for(2, Duration::from_secs(30));
    assert_eq!(got[1].json()["Status"], "SUCCESS", "{}", emulator.output());
}
