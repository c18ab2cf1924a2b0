//! Integration (SPEC "Deployment"): the function's role is sufficient. The whole lifecycle runs,
//! with moto's IAM enforcement on, as a principal holding only the actions of the role's two
//! documents in template.yaml (`ConnectorPolicy` and `ConnectorSecretsPolicy`, both branches of
//! every `Fn::If`). The connector user's own key is then used the way Cloud App Security's
//! "Test API" uses it: its reads work, its writes are refused.
//!
//! What moto evaluates (shared/TOOLING.md "IAM policy enforcement"): `Action`/`NotAction` and
//! `Effect`, with the resource always `*` for these services, and an `Allow` whose `Condition`
//! key the request lacks counts as a deny. So the stand-in gets the role's actions on
//! `Resource: "*"` without conditions: this proves every call is granted by action. The role's
//! resources and conditions are checked statically (tests/python/test_templates.py).
//!
//! Rotation (SPEC "Rotation": the role must be sufficient on every path) runs after the
//! lifecycle under the same enforcement: rotation turned on by an Update (`RotateSecret`), the
//! four steps with the call back and in portal mode, the key check, rotation turned off
//! (`CancelRotateSecret`). Secrets Manager's own `RotateSecret`, which starts a rotation, is
//! made by the test's reader principal: in AWS the service makes it, not the role.
//!
//! Enforcement is server-wide, and this binary has a moto server of its own: every test that
//! turns it on holds `ENFORCING`, and a guard turns it off again whatever happens.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_iam::config::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use cloud_app_security_connector::handler::HandlerError;
use serde_json::{json, Value};
use support::env::{rotation_function, start_rotation, Env, FUNCTION};
use support::role::{allow, env_as, moto_config, on_a_large_stack, principal, role_actions, Enforcement};
use support::{stack_id, unique, Recorder, Reply, ACCOUNT};

/// Tests that turn enforcement on run one at a time.
static ENFORCING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The role's actions, from template.yaml.

#[test]
fn the_role_actions_are_read_from_both_documents_and_both_branches() {
    let actions = role_actions();
    assert!(actions.len() > 40, "suspiciously few actions: {actions:?}");
    for expected in [
        // ConnectorPolicy
        "logs:PutLogEvents",
        "iam:CreateUser",
        "iam:DeleteUserPolicy",
        "cloudtrail:CreateTrail",
        "lambda:InvokeFunction",
        // ConnectorSecretsPolicy, the Fn::If statement's action included
        "secretsmanager:PutSecretValue",
        "secretsmanager:GetSecretValue",
        "kms:DescribeKey",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert!(
        actions
            .iter()
            .all(|a| a.split_once(':').is_some_and(|(s, n)| !s.is_empty() && !n.is_empty())),
        "every action is service:Name: {actions:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// moto's enforcement switch.

/// `props` with `changes` applied: a `null` removes the property.
fn with(props: &Value, changes: Value) -> Value {
    let mut out = props.clone();
    let map = out.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The answer must be SUCCESS; a denial names the action the role lacks.
fn succeeded(step: &str, answer: &Value) {
    if answer["Status"] == "SUCCESS" {
        return;
    }
    let reason = answer["Reason"].as_str().unwrap_or("(no Reason)");
    if reason.contains("AccessDenied") || reason.contains("HTTP 403") {
        panic!("{step}: the role lacks an action the code uses. Reason: {reason}");
    }
    panic!("{step}: FAILED (not a denial). Reason: {reason}");
}

/// Refused: moto answers a denied call with HTTP 403 (a body the Rust SDK cannot read).
fn is_403<T, E>(result: &Result<T, SdkError<E, HttpResponse>>) -> bool {
    matches!(result, Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(403))
}

// ---------------------------------------------------------------------------------------------
// The lifecycle under the role's actions.

#[test]
fn the_role_is_sufficient_for_the_whole_lifecycle() {
    on_a_large_stack(lifecycle_under_the_role);
}

async fn lifecycle_under_the_role() {
    let _serial = ENFORCING.lock().await;
    let started = Instant::now();
    let actions = role_actions();

    // Enforcement off: moto's default credentials act as the administrator and as the stack.
    let admin = Env::new().await;
    let standin = principal(&admin.iam, "role-standin", allow(&actions)).await;
    // Reads of the state the test asserts on, under enforcement; not the subject of the test.
    let checker = env_as(principal(&admin.iam, "role-test-reader", allow(&["*".to_owned()])).await).await;

    let stack_name = unique("role-it-");
    let mut env = env_as(standin.clone()).await;
    env.stack = stack_id(&stack_name);

    // What the stack would have made before the custom resource runs.
    let bucket = admin.bucket().await;
    let api_credentials = admin
        .sm
        .create_secret()
        .name(format!("cloud-app-security-api/{stack_name}"))
        .secret_string(json!({"token": "tok-role-test"}).to_string())
        .send()
        .await
        .expect("CreateSecret (admin)")
        .arn()
        .expect("a secret ARN")
        .to_owned();
    // The tenant: registers every PUT (unless told to refuse the next one), removes on DELETE.
    let refuse_next_put = Arc::new(AtomicBool::new(false));
    let refuse = refuse_next_put.clone();
    let cas = Recorder::with(move |r, _| match r.method.as_str() {
        "PUT" if refuse.swap(false, Ordering::SeqCst) => Reply::json(401, r#"{"error": "unauthorized"}"#),
        "PUT" => Reply::json(200, r#"{"id": "conn-1"}"#),
        _ => Reply::empty(204),
    });
    let url = format!("http://{}", cas.addr);

    let user = env.user_name();
    let secret = env.secret_name();
    // No PermissionsBoundary, although the template always passes one: moto neither keeps a
    // user's boundary nor implements PutUserPermissionsBoundary (HTTP 500), so every Update
    // would fail on it. iam:PutUserPermissionsBoundary stays covered by the action list only.
    let p0 = json!({
        "ServiceToken": format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{stack_name}-connector"),
        "ServiceTimeout": "360",
        "ConnectorName": env.connector,
        "Connections": "SecurityAuditing,SecurityConfiguration",
        "KeyVersion": "1",
        "TrailMode": "Create",
        "TrailName": "cloud-app-security",
        "TrailBucket": bucket,
        "CloudAppSecurityUrl": url,
        "CloudAppSecurityCredentials": api_credentials,
        // The verification signs with the connector user's key: checked on its own below.
        "VerifyKey": "false",
        "CodeVersion": "1",
    });

    // moto's Lambda must know the function before RotateSecret names it (made while not enforcing).
    rotation_function().await;

    let enforcement = Enforcement::on();
    // Not vacuous: enforcement is on, and the handler's principal holds the role's actions only.
    assert!(
        is_403(&env.iam.list_users().send().await),
        "iam:ListUsers (not in the role) must be refused to the stand-in"
    );

    // Create.
    let r = env.create(p0.clone()).await;
    succeeded("Create", &r);
    let id0 = env.user_arn("/cloud-app-security/", &user);
    assert_eq!(r["PhysicalResourceId"], id0);
    assert_eq!(r["Data"]["ConnectorId"], "conn-1");
    assert_eq!(r["Data"]["TrailCreated"], "true");
    assert!(checker.secret_value(&secret).await.is_some(), "the key is stored");

    // Updates in place: each answers SUCCESS on the same physical id.
    let mut props = p0.clone();
    let mut id = id0.clone();
    for (step, changes) in [
        ("Update KeyVersion", json!({"KeyVersion": "2"})),
        (
            "Update Tags (added)",
            json!({"Tags": {"team": "security", "cost-center": "42"}}),
        ),
        (
            "Update Tags (changed, one removed)",
            json!({"Tags": [{"Key": "team", "Value": "sec-ops"}]}),
        ),
        (
            "Update Connections (one removed)",
            json!({"Connections": "SecurityAuditing"}),
        ),
        (
            "Update Connections (one added)",
            json!({"Connections": "SecurityAuditing,SecurityConfiguration"}),
        ),
    ] {
        let new = with(&props, changes);
        let r = env.update(&id, props.clone(), new.clone()).await;
        succeeded(step, &r);
        assert_eq!(r["PhysicalResourceId"], id, "{step}");
        props = new;
    }
    assert_eq!(
        checker.attached(&user).await,
        vec!["AWSSecurityHubReadOnlyAccess".to_owned(), "SecurityAudit".to_owned()]
    );

    // UserPath move: a new physical id; CloudFormation's clean-up Delete of the old one leaves
    // the moved user alone.
    let moved = with(&props, json!({"UserPath": "/cloud-app-security/moved/"}));
    let r = env.update(&id, props.clone(), moved.clone()).await;
    succeeded("Update UserPath (move)", &r);
    let id1 = env.user_arn("/cloud-app-security/moved/", &user);
    assert_eq!(r["PhysicalResourceId"], id1);
    succeeded(
        "Delete of the old physical id after the move",
        &env.delete(&id, props.clone()).await,
    );
    assert!(checker.user_exists(&user).await, "the moved user stays");
    (props, id) = (moved, id1);

    // UserName replacement: a new user; the clean-up Delete of the old id removes the old user.
    let new_user = format!("CasRole-{}", env.connector);
    let replaced = with(&props, json!({"UserName": new_user}));
    let r = env.update(&id, props.clone(), replaced.clone()).await;
    succeeded("Update UserName (replacement)", &r);
    let id2 = env.user_arn("/cloud-app-security/moved/", &new_user);
    assert_eq!(r["PhysicalResourceId"], id2);
    succeeded(
        "Delete of the old physical id after the replacement",
        &env.delete(&id, props.clone()).await,
    );
    assert!(!checker.user_exists(&user).await, "the replaced user is gone");
    assert!(checker.user_exists(&new_user).await);
    (props, id) = (replaced, id2);

    // SecretName change, portal mode and back, TrailMode Create → Off → Create.
    let new_secret = format!("{secret}-moved");
    for (step, changes) in [
        ("Update SecretName", json!({"SecretName": new_secret})),
        (
            "Update to portal mode (no CloudAppSecurityUrl)",
            json!({"CloudAppSecurityUrl": null, "CloudAppSecurityCredentials": null}),
        ),
        (
            "Update back to the call back",
            json!({"CloudAppSecurityUrl": url, "CloudAppSecurityCredentials": api_credentials}),
        ),
        ("Update TrailMode Off", json!({"TrailMode": "Off"})),
        ("Update TrailMode Create", json!({"TrailMode": "Create"})),
    ] {
        let new = with(&props, changes);
        let r = env.update(&id, props.clone(), new.clone()).await;
        succeeded(step, &r);
        assert_eq!(r["PhysicalResourceId"], id, "{step}");
        props = new;
    }
    assert!(
        checker.secret_value(&new_secret).await.is_some(),
        "the key moved to the new secret"
    );

    // A failed Update (the tenant refuses the new key once), then CloudFormation's rollback
    // Update back to the old properties on the same physical id.
    refuse_next_put.store(true, Ordering::SeqCst);
    let failing = with(&props, json!({"KeyVersion": "3"}));
    let r = env.update(&id, props.clone(), failing.clone()).await;
    assert_eq!(r["Status"], "FAILED", "the tenant refused the PUT: {r:#}");
    let reason = r["Reason"].as_str().unwrap_or_default();
    assert!(
        !reason.contains("HTTP 403") && !reason.contains("AccessDenied"),
        "the Update must fail on the tenant's 401, not on a denial: {reason}"
    );
    assert!(!refuse_next_put.load(Ordering::SeqCst), "the tenant was asked");
    let r = env.update(&id, failing, props.clone()).await;
    succeeded("rollback Update", &r);
    assert_eq!(r["PhysicalResourceId"], id);

    // The connector user's own key, as Cloud App Security's "Test API" uses it. moto evaluates
    // the user's inline policy and its attached managed policies by action; it ignores
    // permissions boundaries (in AWS the boundary caps the same key further).
    let stored = checker.secret_value(&new_secret).await.expect("the key is stored");
    let key = Credentials::new(
        stored["AccessKeyId"].as_str().expect("AccessKeyId"),
        stored["SecretAccessKey"].as_str().expect("SecretAccessKey"),
        None,
        None,
        "connector-user",
    );
    let config = moto_config(key).await;
    let sts = aws_sdk_sts::Client::new(&config);
    let trails = aws_sdk_cloudtrail::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .expect("sts:GetCallerIdentity with the user's key");
    assert_eq!(me.arn(), Some(id.as_str()), "the stored key is the connector user's");
    trails
        .describe_trails()
        .send()
        .await
        .expect("cloudtrail:DescribeTrails with the user's key");
    iam.list_users()
        .send()
        .await
        .expect("iam:ListUsers with the user's key");
    iam.get_account_summary()
        .send()
        .await
        .expect("iam:GetAccountSummary with the user's key");
    assert!(
        is_403(&iam.create_user().user_name(unique("minted-")).send().await),
        "iam:CreateUser must be refused to the user's key"
    );
    assert!(
        is_403(&iam.create_access_key().user_name(&new_user).send().await),
        "iam:CreateAccessKey must be refused to the user's key"
    );
    assert!(
        is_403(
            &sm.get_secret_value()
                .secret_id(&new_secret)
                .version_stage("AWSCURRENT")
                .send()
                .await
        ),
        "secretsmanager:GetSecretValue must be refused to the user's key"
    );

    // An administrator changes the user; Delete still strips and removes it.
    enforcement.pause();
    admin
        .iam
        .put_user_policy()
        .user_name(&new_user)
        .policy_name("added-by-an-administrator")
        .policy_document(allow(&["s3:ListAllMyBuckets".to_owned()]))
        .send()
        .await
        .expect("PutUserPolicy (admin)");
    admin
        .iam
        .create_login_profile()
        .user_name(&new_user)
        .password("An-Administrator-1234!")
        .send()
        .await
        .expect("CreateLoginProfile (admin)");
    enforcement.resume();
    succeeded("Delete after an administrator's change", &env.delete(&id, props).await);
    assert!(!checker.user_exists(&new_user).await, "the user is gone");
    assert_eq!(checker.secret_pending_deletion(&new_secret).await, Some(true));

    let lifecycle = started.elapsed();
    Box::pin(rotation_under_the_role(standin, &checker, &url, &api_credentials, &cas)).await;

    drop(enforcement);
    eprintln!(
        "role: {} actions; the lifecycle ran under them in {lifecycle:.1?}, then rotation: {:.1?} in all",
        actions.len(),
        started.elapsed()
    );
}

/// A rotation step or key check must succeed; a denial names the action the role lacks.
fn step_succeeded(step: &str, result: Result<Value, HandlerError>) -> Value {
    let e = match result {
        Ok(v) => return v,
        Err(e) => e.to_string(),
    };
    if e.contains("could not make the connector's reads") {
        panic!("{step}: the connector user's key was refused a read (its policies, not the role): {e}");
    }
    if e.contains("AccessDenied") || e.contains("HTTP 403") {
        panic!("{step}: the role lacks an action the code uses: {e}");
    }
    panic!("{step}: failed (not a denial): {e}");
}

/// As the role: a connector whose rotation an Update turns on, a rotation with the call back, the
/// key check, a rotation in portal mode (the previous key awaits the paste: the check reads both
/// keys' last use, a second rotation is refused on the paste, not on a denial), rotation turned
/// off, Delete. Enforcement is on throughout.
async fn rotation_under_the_role(
    standin: Credentials,
    checker: &Env,
    url: &str,
    api_credentials: &str,
    cas: &Recorder,
) {
    let env = env_as(standin).await;
    let user = env.user_name();
    let secret = env.secret_name();
    let id = env.user_arn("/cloud-app-security/", &user);
    let p0 = json!({
        "ServiceToken": FUNCTION,
        "ServiceTimeout": "360",
        "ConnectorName": env.connector,
        "Connections": "SecurityAuditing,SecurityConfiguration",
        "TrailMode": "Off",
        "CloudAppSecurityUrl": url,
        "CloudAppSecurityCredentials": api_credentials,
        "CodeVersion": "1",
    });
    succeeded("rotation: Create", &env.create(p0.clone()).await);
    let p1 = with(&p0, json!({"RotationDays": "30"}));
    succeeded(
        "Update RotationDays 30 (secretsmanager:RotateSecret)",
        &env.update(&id, p0, p1.clone()).await,
    );
    let described = checker.sm.describe_secret().secret_id(&secret).send().await.unwrap();
    assert_eq!(described.rotation_enabled(), Some(true));
    assert_eq!(described.rotation_lambda_arn(), Some(FUNCTION));
    let arn = described.arn().unwrap().to_owned();
    let keys = |env: &Env| {
        let (user, iam) = (env.user_name(), checker.iam.clone());
        async move {
            let out = iam.list_access_keys().user_name(user).send().await.unwrap();
            let mut ids: Vec<String> = out
                .access_key_metadata()
                .iter()
                .filter_map(|k| k.access_key_id().map(str::to_owned))
                .collect();
            ids.sort();
            ids
        }
    };

    // With the call back: the new key is sent, the old one deleted.
    let first = checker.secret_value(&secret).await.unwrap()["AccessKeyId"].clone();
    let token = start_rotation(&checker.sm, &arn).await;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        step_succeeded(step, env.rotation_event(Some(step), &arn, &token).await);
    }
    let second = checker.secret_value(&secret).await.unwrap()["AccessKeyId"].clone();
    assert_ne!(second, first, "the rotation stored a new key");
    assert_eq!(keys(&env).await, [second.as_str().unwrap()], "the old key was deleted");
    let sent = cas.requests().into_iter().rfind(|r| r.method == "PUT").unwrap();
    assert_eq!(sent.json()["accessKeyId"], second, "the tenant has the new key");
    let checked = step_succeeded("key check (call back)", env.rotation_event(None, &arn, "").await);
    assert_eq!(checked["PastePending"], false, "{checked:#}");

    // Portal mode: the previous key stays, awaiting the paste.
    let p2 = with(
        &p1,
        json!({"CloudAppSecurityUrl": null, "CloudAppSecurityCredentials": null}),
    );
    succeeded("Update to portal mode", &env.update(&id, p1, p2.clone()).await);
    let before = checker.secret_value(&secret).await.unwrap()["AccessKeyId"].clone();
    let token = start_rotation(&checker.sm, &arn).await;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        step_succeeded(
            &format!("{step} (portal mode)"),
            env.rotation_event(Some(step), &arn, &token).await,
        );
    }
    let doc = checker.secret_value(&secret).await.unwrap();
    assert_ne!(doc["AccessKeyId"], before);
    assert_eq!(doc["Bookkeeping"]["awaitingPaste"]["accessKeyId"], before);
    assert_eq!(keys(&env).await.len(), 2, "the previous key awaits the paste");
    let checked = step_succeeded("key check (portal mode)", env.rotation_event(None, &arn, "").await);
    assert_eq!(checked["PastePending"], true, "{checked:#}");
    let token = start_rotation(&checker.sm, &arn).await;
    match env.rotation_event(Some("createSecret"), &arn, &token).await {
        Ok(v) => panic!("a rotation while a paste is pending must fail: {v:#}"),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("waits to be pasted") && !e.contains("HTTP 403"),
                "refused on the paste, not on a denial: {e}"
            );
        }
    }

    // Rotation off, then Delete.
    let p3 = with(&p2, json!({"RotationDays": "0"}));
    succeeded(
        "Update RotationDays 0 (secretsmanager:CancelRotateSecret)",
        &env.update(&id, p2, p3.clone()).await,
    );
    let described = checker.sm.describe_secret().secret_id(&secret).send().await.unwrap();
    assert_ne!(described.rotation_enabled(), Some(true), "rotation is off");
    succeeded("Delete (rotation)", &env.delete(&id, p3).await);
    assert!(!checker.user_exists(&user).await);
}

/// The `Reason` for an error body the SDK cannot read (moto's AccessDenied) is one clean line.
#[test]
fn a_denied_call_is_reported_in_one_clean_line() {
    on_a_large_stack(denied_create);
}

async fn denied_create() {
    let _serial = ENFORCING.lock().await;
    let admin = Env::new().await;
    let without: Vec<String> = role_actions().into_iter().filter(|a| a != "iam:CreateUser").collect();
    let name = unique("role-standin-no-create-user-");
    let standin = principal(&admin.iam, &name, allow(&without)).await;
    let env = env_as(standin).await;

    let enforcement = Enforcement::on();
    let r = env.create(env.props(json!({"VerifyKey": "false"}))).await;
    drop(enforcement);

    assert_eq!(r["Status"], "FAILED", "{r:#}");
    let reason = r["Reason"].as_str().expect("a Reason");
    eprintln!("denied: {reason}");
    assert!(!reason.contains('\n') && !reason.contains('\r'), "one line: {reason:?}");
    for needle in ["iam:CreateUser", "HTTP 403"] {
        assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
    }
    for dump in ["SdkError", "{", "ServiceError", "raw:"] {
        assert!(!reason.contains(dump), "{reason:?} holds a debug dump ({dump:?})");
    }
}
