//! Integration: the call back to Cloud App Security through the handler, against moto server
//! for AWS and a local HTTP stand-in for Cloud App Security and the Entra token endpoint.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cloud_app_security_connector::cloud_app_security::sha256_hex;
use lambda_runtime::tracing::subscriber::filter::LevelFilter;
use serde_json::{json, Value};
use support::env::{assert_failed, assert_success, Env};
use support::{unique, Recorded, Recorder, Reply};

/// Everything the function logs in this test binary, at TRACE.
fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buffer = LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        cloud_app_security_connector::logging::init_with(LevelFilter::TRACE, move || Sink(sink.clone()));
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const REGISTERED: &str = r#"{"id": "conn-42", "status": "connected"}"#;

impl Env {
    /// A credentials secret in moto; returns its ARN.
    async fn credentials(&self, value: Value) -> String {
        let out = self
            .sm
            .create_secret()
            .name(unique("api-credentials-"))
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
        out.arn().unwrap().to_owned()
    }

    async fn callback_props(&self, cas: &Recorder, credentials: Value, extra: Value) -> Value {
        let mut props = self.props(json!({
            "CloudAppSecurityUrl": format!("http://{}", cas.addr),
            "CloudAppSecurityCredentials": self.credentials(credentials).await,
        }));
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        props
    }

    fn connector_path(&self) -> String {
        format!("/api/v1/app_connectors/aws/{}/", sha256_hex(&self.physical_id()))
    }
}

/// A tenant that registers every upsert and removes on request.
fn tenant() -> Recorder {
    Recorder::with(|r, _| {
        if r.method == "PUT" {
            Reply::json(200, REGISTERED)
        } else {
            Reply::empty(204)
        }
    })
}

fn with_method<'a>(requests: &'a [Recorded], method: &str) -> Vec<&'a Recorded> {
    requests.iter().filter(|r| r.method == method).collect()
}

#[tokio::test]
async fn token_auth_registers_with_the_documented_body_once_per_change() {
    logs();
    let env = Env::new().await;
    let cas = tenant();
    let props = env
        .callback_props(&cas, json!({"token": "tok-abc-123"}), json!({}))
        .await;
    let r = env.create(props.clone()).await;
    assert_success(&r);
    assert_eq!(r["Data"]["ConnectorId"], "conn-42");
    assert_eq!(r["Data"]["ConnectorStatus"], "Registered");

    let got = cas.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "PUT");
    assert_eq!(got[0].path, env.connector_path());
    assert_eq!(got[0].header("authorization"), Some("Token tok-abc-123"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let stored = env.secret_value(&env.secret_name()).await.unwrap();
    assert_eq!(
        got[0].json(),
        json!({
            "name": env.connector,
            "externalId": env.physical_id(),
            "awsAccountId": "123456789012",
            "connections": ["SecurityAuditing"],
            "accessKeyId": stored["AccessKeyId"],
            "secretAccessKey": stored["SecretAccessKey"],
            "trailArn": "",
            "region": "us-east-1",
        })
    );

    // Nothing it carries changed: no call. A new key: one call with it.
    assert_success(&env.create(props.clone()).await);
    assert_eq!(cas.requests().len(), 1);
    let rotated = json!({"KeyVersion": "2"});
    let mut v2 = props.clone();
    v2.as_object_mut().unwrap().extend(rotated.as_object().unwrap().clone());
    assert_success(&env.update(&env.physical_id(), props, v2.clone()).await);
    let got = cas.requests();
    assert_eq!(got.len(), 2);
    let new_key = env.secret_value(&env.secret_name()).await.unwrap();
    assert_eq!(got[1].json()["accessKeyId"], new_key["AccessKeyId"]);
    assert_ne!(new_key["AccessKeyId"], stored["AccessKeyId"]);

    assert_success(&env.delete(&env.physical_id(), v2).await);
    let got = cas.requests();
    assert_eq!(
        (got[2].method.as_str(), got[2].path.as_str()),
        ("DELETE", env.connector_path().as_str())
    );
    assert!(!env.user_exists(&env.user_name()).await);
}

#[tokio::test]
async fn an_entra_app_token_is_fetched_once_and_reused() {
    logs();
    let env = Env::new().await;
    let cas = Recorder::with(|r, _| {
        if r.path == "/contoso.onmicrosoft.com/oauth2/v2.0/token" {
            Reply::json(
                200,
                r#"{"token_type": "Bearer", "expires_in": 3599, "access_token": "at-entra-1"}"#,
            )
        } else {
            Reply::json(201, REGISTERED)
        }
    });
    let credentials = json!({
        "tenantId": "contoso.onmicrosoft.com",
        "clientId": "11111111-2222-3333-4444-555555555555",
        "clientSecret": "client-s3cret/+=",
        "authority": format!("http://{}", cas.addr),
    });
    let props = env.callback_props(&cas, credentials, json!({})).await;
    assert_success(&env.create(props.clone()).await);
    let mut v2 = props.clone();
    v2["KeyVersion"] = json!("2");
    assert_success(&env.update(&env.physical_id(), props, v2).await);

    let got = cas.requests();
    let tokens = with_method(&got, "POST");
    assert_eq!(tokens.len(), 1, "fetched once, then cached");
    assert_eq!(
        tokens[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&tokens[0].body),
        "grant_type=client_credentials&client_id=11111111-2222-3333-4444-555555555555\
         &client_secret=client-s3cret%2F%2B%3D&scope=05a65629-4c1b-48c1-a78b-804c4abdd4af%2F.default"
    );
    let puts = with_method(&got, "PUT");
    assert_eq!(puts.len(), 2);
    assert!(puts
        .iter()
        .all(|p| p.header("authorization") == Some("Bearer at-entra-1")));
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured() {
    logs();
    let env = Env::new().await;
    let cas = Recorder::with(|_, n| match n {
        0 => Reply::Status {
            status: 429,
            headers: vec![("Retry-After".into(), "2".into())],
            body: String::new(),
        },
        _ => Reply::json(200, REGISTERED),
    });
    let r = env
        .create(env.callback_props(&cas, json!({"token": "t-429"}), json!({})).await)
        .await;
    assert_success(&r);
    let got = cas.requests();
    assert_eq!(got.len(), 2);
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    logs();
    let env = Env::new().await;
    let cas = Recorder::with(|_, n| {
        if n < 3 {
            Reply::json(500, r#"{"message": "busy"}"#)
        } else {
            Reply::json(200, REGISTERED)
        }
    });
    let r = env
        .create(env.callback_props(&cas, json!({"token": "t-500"}), json!({})).await)
        .await;
    assert_success(&r);
    assert_eq!(cas.requests().len(), 4);
}

#[tokio::test]
async fn a_401_fails_at_once_naming_it_and_never_the_token() {
    logs();
    let env = Env::new().await;
    let token = unique("secret-token-");
    let cas = Recorder::with(|_, _| Reply::json(401, r#"{"message": "Invalid token"}"#));
    let r = env
        .create(env.callback_props(&cas, json!({"token": token}), json!({})).await)
        .await;
    assert_failed(
        &r,
        "registering the connector with Cloud App Security: Cloud App Security answered HTTP 401: Invalid token",
    );
    assert_eq!(cas.requests().len(), 1, "not retried");
    let body = serde_json::to_string(&r).unwrap();
    assert!(!body.contains(&token));
    let logged = logs();
    assert!(logged.contains("HTTP 401"), "the failure is logged");
    assert!(!logged.contains(&token), "the token reached the logs");
    let sent = cas.requests()[0].json();
    let key = sent["secretAccessKey"].as_str().unwrap();
    assert!(!logged.contains(key), "the key reached the logs");
    // CloudFormation's rollback Delete of the failed Create leaves nothing behind.
    let props = env.callback_props(&cas, json!({"token": token}), json!({})).await;
    assert_success(&env.delete(r["PhysicalResourceId"].as_str().unwrap(), props).await);
    assert!(!env.user_exists(&env.user_name()).await);
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(true));
}

#[tokio::test]
async fn a_stand_in_that_never_answers_fails_before_the_deadline() {
    logs();
    let env = Env::new().await;
    let cas = Recorder::with(|_, _| Reply::Hang);
    let mut event = env.request("create", json!({}));
    event["ResourceProperties"] = env.callback_props(&cas, json!({"token": "t-hang"}), json!({})).await;
    let timeout = Duration::from_secs(14);
    let started = Instant::now();
    env.invoke(event, timeout).await;
    let answered = started.elapsed();
    let response = env.recorder.requests().pop().unwrap().json();
    assert_failed(&response, "registering the connector with Cloud App Security");
    assert!(
        answered + Duration::from_secs(2) <= timeout,
        "answered after {answered:?} of {timeout:?}"
    );
}

/// 404 (already gone) is success; 403 is a failure that is logged while the AWS clean-up
/// still completes. Either way the Delete succeeds.
#[tokio::test]
async fn delete_succeeds_whatever_the_tenant_answers_to_the_removal() {
    logs();
    for status in [404, 403] {
        let env = Env::new().await;
        let cas = Recorder::with(move |r, _| {
            if r.method == "PUT" {
                Reply::json(200, REGISTERED)
            } else {
                Reply::empty(status)
            }
        });
        let props = env.callback_props(&cas, json!({"token": "t-delete"}), json!({})).await;
        assert_success(&env.create(props.clone()).await);
        assert_success(&env.delete(&env.physical_id(), props).await);
        assert_eq!(cas.requests().last().unwrap().method, "DELETE", "{status}");
        assert!(!env.user_exists(&env.user_name()).await, "{status}");
    }
}

#[tokio::test]
async fn disallowed_hosts_are_rejected_before_any_request() {
    logs();
    let env = Env::new().await;
    let cas = Recorder::start();
    let mut props = env.callback_props(&cas, json!({"token": "t"}), json!({})).await;
    props["CloudAppSecurityUrl"] = json!("https://contoso.portal.cloudappsecurity.com.evil.example");
    let r = env.create(props).await;
    assert_failed(
        &r,
        "CloudAppSecurityUrl: contoso.portal.cloudappsecurity.com.evil.example is not an allowed host",
    );
    let credentials =
        json!({"tenantId": "t", "clientId": "c", "clientSecret": "s", "authority": "https://login.evil.example"});
    let r = env.create(env.callback_props(&cas, credentials, json!({})).await).await;
    assert_failed(
        &r,
        "CloudAppSecurityCredentials: authority: login.evil.example is not an allowed Entra authority",
    );
    assert!(cas.requests().is_empty());
    assert!(!env.user_exists(&env.user_name()).await, "nothing was created");
}

#[tokio::test]
async fn portal_mode_makes_no_call_and_says_where_to_paste_the_key() {
    logs();
    let env = Env::new().await;
    let r = env.create(env.props(json!({}))).await;
    assert_success(&r);
    assert_eq!(r["Data"]["ConnectorStatus"], "PendingPortal");
    assert_eq!(r["Data"]["ConnectorId"], "");
    assert_eq!(
        r["Data"]["PortalUrl"],
        "https://security.microsoft.com/cloudapps/app-connectors"
    );
}

#[tokio::test]
async fn a_new_url_registers_there_then_removes_the_old_registration() {
    logs();
    let env = Env::new().await;
    let old = tenant();
    let new = Recorder::with(|_, _| Reply::json(200, r#"{"id": "conn-new"}"#));
    let before = env.callback_props(&old, json!({"token": "t-move"}), json!({})).await;
    assert_success(&env.create(before.clone()).await);
    let mut after = before.clone();
    after["CloudAppSecurityUrl"] = json!(format!("http://{}", new.addr));
    let r = env.update(&env.physical_id(), before, after).await;
    assert_success(&r);
    assert_eq!(r["Data"]["ConnectorId"], "conn-new");
    let (old_got, new_got) = (old.requests(), new.requests());
    assert_eq!(new_got.len(), 1);
    assert_eq!(old_got.last().unwrap().method, "DELETE");
    assert!(
        old_got.last().unwrap().at > new_got[0].at,
        "removed only after the new registration"
    );
}

/// An organization-wide rollout: many accounts' stacks call back at once into a tenant that
/// admits only a few requests per window and answers 429 to the rest.
///
/// Bound: with `n` Creates, `c` admitted per window and every retry waiting at least the
/// window (`Retry-After` equals it and the client never retries sooner), a Create makes at most
/// one attempt per window. A window in which any request is refused admitted `c`, so at most
/// `n/c` windows refuse anything, and in the `k`-th of them at most `n - c·k` requests (those
/// still waiting) are refused. Total requests ≤ n + Σₖ₌₁^{n/c} (n − c·k).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_rollout_gets_every_account_through_the_rate_limit() {
    logs();
    const CREATES: usize = 50;
    const PER_WINDOW: usize = 5;
    const WINDOW: Duration = Duration::from_secs(1);
    let started = Instant::now();
    let windows: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let admitted = windows.clone();
    let cas = Recorder::with(move |r, _| {
        let window = (r.at.duration_since(started).as_millis() / WINDOW.as_millis()) as u64;
        let mut counts = admitted.lock().unwrap();
        let count = counts.entry(window).or_default();
        if *count < PER_WINDOW {
            *count += 1;
            Reply::json(200, REGISTERED)
        } else {
            Reply::Status {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: String::new(),
            }
        }
    });
    let accounts = futures::future::join_all((0..CREATES).map(|_| Env::new())).await;
    let mut events = Vec::new();
    for env in &accounts {
        let mut event = env.request("create", json!({}));
        event["ResourceProperties"] = env.callback_props(&cas, json!({"token": "t-org"}), json!({})).await;
        events.push(event);
    }
    let timed = accounts.iter().zip(events).map(|(env, event)| async move {
        let t0 = Instant::now();
        env.invoke(event, Duration::from_secs(240)).await;
        (t0.elapsed(), env.recorder.requests().pop().unwrap().json())
    });
    let results = futures::future::join_all(timed).await;

    for (_, response) in &results {
        assert_success(response);
        assert_eq!(response["Data"]["ConnectorStatus"], "Registered");
    }
    let requests = cas.requests().len();
    let refused = requests - CREATES;
    let slowest = results.iter().map(|(t, _)| *t).max().unwrap();
    let bound = CREATES
        + (1..=CREATES / PER_WINDOW)
            .map(|k| CREATES - PER_WINDOW * k)
            .sum::<usize>();
    println!(
        "rollout: {CREATES} Creates, {PER_WINDOW} admitted per {WINDOW:?}: {requests} requests, {refused} answered 429, \
         slowest Create {slowest:.1?} (bound {bound} requests)"
    );
    assert!(requests <= bound, "{requests} requests exceed the bound {bound}");
}

#[tokio::test]
async fn a_replacement_registers_anew_and_the_old_delete_removes_only_the_old_registration() {
    logs();
    let env = Env::new().await;
    let cas = tenant();
    let old = env.callback_props(&cas, json!({"token": "t-replace"}), json!({})).await;
    assert_success(&env.create(old.clone()).await);
    let new_name = format!("{}-b", env.user_name());
    let mut new = old.clone();
    new["UserName"] = json!(new_name);
    let r = env.update(&env.physical_id(), old.clone(), new).await;
    assert_success(&r);
    // CloudFormation deletes the old resource only after the replacement succeeded.
    assert_success(&env.delete(&env.physical_id(), old).await);

    let got = cas.requests();
    let new_path = format!(
        "/api/v1/app_connectors/aws/{}/",
        sha256_hex(r["PhysicalResourceId"].as_str().unwrap())
    );
    let calls: Vec<(&str, &str)> = got.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    assert_eq!(
        calls,
        [
            ("PUT", env.connector_path().as_str()),
            ("PUT", new_path.as_str()),
            ("DELETE", env.connector_path().as_str())
        ]
    );
}
