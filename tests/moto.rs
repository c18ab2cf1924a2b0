//! Integration: the handler, through the real AWS SDK, against moto server; CloudFormation's
//! side is a recording HTTP endpoint. Tests share one server and isolate by unique names.

mod support;

use cloud_app_security_connector::ports::UserPolicies;
use serde_json::{json, Value};
use support::env::{assert_failed, assert_success, Env};

#[tokio::test]
async fn create_provisions_user_policy_key_and_secret() {
    let env = Env::new().await;
    let r = env
        .create(env.props(json!({"Tags": [{"Key": "team", "Value": "secops"}]})))
        .await;
    assert_success(&r);
    let user = env.user_name();
    assert_eq!(r["PhysicalResourceId"], env.physical_id());
    assert_eq!(r["StackId"], env.stack);
    assert_eq!(r["LogicalResourceId"], "CloudAppSecurityConnector");

    let got = env.iam.get_user().user_name(&user).send().await.unwrap();
    let got = got.user().unwrap();
    assert_eq!(got.path(), "/cloud-app-security/");
    let tags: std::collections::BTreeMap<_, _> = got.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags.get("cloud-app-security:stack-id"), Some(&env.stack.as_str()));
    assert_eq!(
        tags.get("cloud-app-security:logical-id"),
        Some(&"CloudAppSecurityConnector")
    );
    assert_eq!(
        tags.get("cloud-app-security:physical-id"),
        Some(&env.physical_id().as_str())
    );
    assert_eq!(tags.get("team"), Some(&"secops"));

    assert_eq!(env.inline_policies(&user).await, vec!["CloudAppSecurityAuditing"]);
    // Read through the product's adapter, which URL-decodes IAM's policy documents.
    let doc = env
        .adapter
        .get_inline_policy(&user, "CloudAppSecurityAuditing")
        .await
        .unwrap()
        .unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let mut actions: Vec<&str> = doc["Statement"][0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "cloudtrail:DescribeTrails",
            "cloudtrail:GetTrailStatus",
            "cloudtrail:LookupEvents",
            "cloudwatch:Describe*",
            "cloudwatch:Get*",
            "cloudwatch:List*",
            "iam:Get*",
            "iam:List*",
            "s3:GetBucketAcl",
            "s3:GetBucketLocation",
            "s3:ListAllMyBuckets",
            "s3:PutBucketAcl",
        ]
    );
    assert_eq!(doc["Statement"][0]["Effect"], "Allow");
    assert_eq!(doc["Statement"][0]["Resource"], "*");
    assert!(env.attached(&user).await.is_empty());

    let keys = env.keys(&user).await;
    assert_eq!(keys.len(), 1);
    let secret = env.secret_value(&env.secret_name()).await.expect("secret exists");
    assert_eq!(secret["AccessKeyId"], keys[0]);
    assert_eq!(secret["UserName"], user);
    assert!(secret["SecretAccessKey"].as_str().is_some_and(|s| !s.is_empty()));

    let data = &r["Data"];
    assert_eq!(data["UserName"], user);
    assert_eq!(data["UserArn"], env.physical_id());
    assert_eq!(data["AccessKeyId"], keys[0]);
    assert!(data["SecretArn"].as_str().unwrap().contains(&env.secret_name()));
    assert_eq!(data["TrailArn"], "");
    assert_eq!(data["TrailCreated"], "false");
    assert_eq!(data["ConnectorId"], "");
    assert_eq!(data["ConnectorStatus"], "PendingPortal");
    assert_eq!(
        data["PortalUrl"],
        "https://security.microsoft.com/cloudapps/app-connectors"
    );
    let body = serde_json::to_string(&r).unwrap();
    assert!(
        !body.contains(secret["SecretAccessKey"].as_str().unwrap()),
        "no key material in the response"
    );
}

#[tokio::test]
async fn create_twice_changes_nothing_more() {
    let env = Env::new().await;
    let props = env.props(json!({}));
    let first = env.create(props.clone()).await;
    let second = env.create(props).await;
    assert_success(&second);
    assert_eq!(first["Data"], second["Data"]);
    assert_eq!(env.keys(&env.user_name()).await.len(), 1);
}

#[tokio::test]
async fn update_adds_and_removes_security_configuration() {
    let env = Env::new().await;
    let one = env.props(json!({}));
    let both = env.props(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}));
    let config_only = env.props(json!({"Connections": "SecurityConfiguration"}));
    assert_success(&env.create(one.clone()).await);
    let key = env.keys(&env.user_name()).await;

    let r = env.update(&env.physical_id(), one, both.clone()).await;
    assert_success(&r);
    assert_eq!(r["PhysicalResourceId"], env.physical_id());
    assert_eq!(
        env.attached(&env.user_name()).await,
        ["AWSSecurityHubReadOnlyAccess", "SecurityAudit"]
    );
    assert_eq!(
        env.inline_policies(&env.user_name()).await,
        ["CloudAppSecurityAuditing"]
    );

    assert_success(&env.update(&env.physical_id(), both.clone(), config_only.clone()).await);
    assert!(env.inline_policies(&env.user_name()).await.is_empty());
    assert_eq!(env.attached(&env.user_name()).await.len(), 2);

    assert_success(&env.update(&env.physical_id(), config_only, env.props(json!({}))).await);
    assert!(env.attached(&env.user_name()).await.is_empty());
    assert_eq!(
        env.keys(&env.user_name()).await,
        key,
        "no rotation without a new KeyVersion"
    );
}

/// Portal mode: the previous key stays active, recorded as awaiting a paste, so the connector
/// keeps working until a person pastes the new one.
#[tokio::test]
async fn a_new_key_version_rotates_the_key_and_keeps_the_previous_one_for_the_paste() {
    let env = Env::new().await;
    let v1 = env.props(json!({}));
    let v2 = env.props(json!({"KeyVersion": "2"}));
    assert_success(&env.create(v1.clone()).await);
    let old = env.keys(&env.user_name()).await;
    let r = env.update(&env.physical_id(), v1, v2.clone()).await;
    assert_success(&r);
    let stored = env.secret_value(&env.secret_name()).await.unwrap();
    let new = stored["AccessKeyId"].as_str().unwrap().to_owned();
    assert_ne!(std::slice::from_ref(&new), old.as_slice(), "a new key");
    assert_eq!(stored["Bookkeeping"]["awaitingPaste"]["accessKeyId"], old[0]);
    let mut keys = env.keys(&env.user_name()).await;
    keys.sort();
    let mut expected = vec![old[0].clone(), new.clone()];
    expected.sort();
    assert_eq!(keys, expected, "the previous key stays until the paste");
    assert_eq!(r["Data"]["AccessKeyId"], new);
    // Lambda delivers the same Update twice: no second rotation.
    assert_success(&env.update(&env.physical_id(), env.props(json!({})), v2).await);
    assert_eq!(env.secret_value(&env.secret_name()).await.unwrap()["AccessKeyId"], new);
    assert_eq!(env.keys(&env.user_name()).await.len(), 2);
}

#[tokio::test]
async fn delete_schedules_the_secret_and_removes_the_user_and_is_repeatable() {
    let env = Env::new().await;
    let props = env.props(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}));
    assert_success(&env.create(props.clone()).await);
    let r = env.delete(&env.physical_id(), props.clone()).await;
    assert_success(&r);
    assert_eq!(r["PhysicalResourceId"], env.physical_id());
    assert!(!env.user_exists(&env.user_name()).await);
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(true));
    assert_success(&env.delete(&env.physical_id(), props).await);
}

#[tokio::test]
async fn delete_with_a_zero_recovery_window_removes_the_secret_at_once() {
    let env = Env::new().await;
    let props = env.props(json!({"SecretRecoveryWindowDays": "0"}));
    assert_success(&env.create(props.clone()).await);
    assert_success(&env.delete(&env.physical_id(), props).await);
    assert_eq!(
        env.secret_pending_deletion(&env.secret_name()).await,
        None,
        "gone, not pending"
    );
}

#[tokio::test]
async fn create_after_delete_replaces_the_released_secret_pending_deletion() {
    let env = Env::new().await;
    let props = env.props(json!({}));
    assert_success(&env.create(props.clone()).await);
    let first = env.secret_arn_of(&env.secret_name()).await;
    assert_success(&env.delete(&env.physical_id(), props.clone()).await);
    let r = env.create(props).await;
    assert_success(&r);
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(false));
    assert_ne!(
        env.secret_arn_of(&env.secret_name()).await,
        first,
        "a new secret (another ARN suffix), never the leftover restored"
    );
    let keys = env.keys(&env.user_name()).await;
    assert_eq!(
        env.secret_value(&env.secret_name()).await.unwrap()["AccessKeyId"],
        keys[0]
    );
}

#[tokio::test]
async fn the_rollback_delete_of_a_create_that_failed_half_way_leaves_nothing() {
    let env = Env::new().await;
    // In the aws-cn partition the managed policies' ARNs do not exist in moto: the Create fails
    // after the user and its inline policy were made.
    let mut create = env.request("create", json!({}));
    create["StackId"] = json!(env.stack.replace("arn:aws:", "arn:aws-cn:"));
    create["ResourceProperties"] = env.props(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}));
    let r = env.send(create.clone()).await;
    assert_failed(&r, "setting the user's permissions");
    // What the failed Create made stays for CloudFormation's rollback Delete: a duplicate
    // delivery of the Create could be using it.
    assert!(env.user_exists(&env.user_name()).await, "the half-made user is there");
    let physical = r["PhysicalResourceId"].as_str().unwrap().to_owned();
    assert_eq!(physical, env.physical_id().replace("arn:aws:", "arn:aws-cn:"));

    let mut delete = env.request("delete", json!({"PhysicalResourceId": physical}));
    delete["StackId"] = create["StackId"].clone();
    delete["ResourceProperties"] = create["ResourceProperties"].clone();
    assert_success(&env.send(delete).await);
    assert!(!env.user_exists(&env.user_name()).await);
}

#[tokio::test]
async fn a_foreign_user_fails_the_create_and_is_left_untouched() {
    let env = Env::new().await;
    env.iam
        .create_user()
        .user_name(env.user_name())
        .path("/cloud-app-security/")
        .send()
        .await
        .unwrap();
    let r = env.create(env.props(json!({}))).await;
    assert_failed(
        &r,
        &format!(
            "IAM user {} already exists and is not managed by this resource",
            env.user_name()
        ),
    );
    assert!(env.keys(&env.user_name()).await.is_empty());
    assert!(env.inline_policies(&env.user_name()).await.is_empty());
    let user = env.iam.get_user().user_name(env.user_name()).send().await.unwrap();
    assert!(user.user().unwrap().tags().is_empty());
    assert_eq!(
        env.secret_pending_deletion(&env.secret_name()).await,
        None,
        "no secret was created"
    );
    // The rollback Delete must not touch it either.
    assert_success(
        &env.delete(r["PhysicalResourceId"].as_str().unwrap(), env.props(json!({})))
            .await,
    );
    assert!(env.user_exists(&env.user_name()).await);
}

#[tokio::test]
async fn a_foreign_secret_fails_the_create_before_anything_is_made() {
    let env = Env::new().await;
    env.sm
        .create_secret()
        .name(env.secret_name())
        .secret_string("{}")
        .send()
        .await
        .unwrap();
    let r = env.create(env.props(json!({}))).await;
    assert_failed(
        &r,
        &format!(
            "secret {} already exists and is not managed by this resource",
            env.secret_name()
        ),
    );
    assert!(!env.user_exists(&env.user_name()).await);
    assert_eq!(env.secret_value(&env.secret_name()).await, Some(json!({})));
}

#[tokio::test]
async fn invalid_properties_fail_with_every_error_and_create_nothing() {
    let env = Env::new().await;
    let r = env
        .create(env.props(json!({"Connections": ["Billing"], "SecretRecoveryWindowDays": "3", "Colour": "red"})))
        .await;
    assert_failed(&r, "invalid properties: ");
    for needle in [
        "Connections: unknown connection",
        "SecretRecoveryWindowDays: must be 0 or 7-30",
        "Colour: unknown",
    ] {
        assert_failed(&r, needle);
    }
    assert!(!env.user_exists(&env.user_name()).await);
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, None);
    // CloudFormation then deletes the failed resource: that must succeed.
    assert_success(
        &env.delete(
            r["PhysicalResourceId"].as_str().unwrap(),
            env.props(json!({"Colour": "red"})),
        )
        .await,
    );
}

#[tokio::test]
async fn unknown_request_type_and_bad_stack_id_are_answered_failed() {
    let env = Env::new().await;
    let mut e = env.request("create", json!({"ResourceProperties": env.props(json!({}))}));
    e["RequestType"] = json!("Rename");
    assert_failed(&env.send(e).await, "unknown RequestType \"Rename\"");
    let mut e = env.request("create", json!({"ResourceProperties": env.props(json!({}))}));
    e["StackId"] = json!("not-a-stack");
    assert_failed(&env.send(e).await, "is not a CloudFormation stack ARN");
    let mut e = env.request("create", json!({}));
    e["ResourceProperties"] = json!(["not", "an", "object"]);
    assert_failed(&env.send(e).await, "ResourceProperties: must be an object");
}

#[tokio::test]
async fn a_new_user_path_moves_the_user_and_the_old_delete_leaves_it() {
    let env = Env::new().await;
    let old = env.props(json!({}));
    let new = env.props(json!({"UserPath": "/cloud-app-security/moved/"}));
    assert_success(&env.create(old.clone()).await);
    let key = env.keys(&env.user_name()).await;
    let r = env.update(&env.physical_id(), old.clone(), new).await;
    assert_success(&r);
    let moved = env.user_arn("/cloud-app-security/moved/", &env.user_name());
    assert_eq!(r["PhysicalResourceId"], moved);
    // CloudFormation deletes the old physical id: the user has moved, so it stays, and so does the secret.
    assert_success(&env.delete(&env.physical_id(), old).await);
    assert!(env.user_exists(&env.user_name()).await);
    assert_eq!(env.keys(&env.user_name()).await, key);
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(false));
}

#[tokio::test]
async fn a_new_user_name_replaces_the_user_and_keeps_the_secret() {
    let env = Env::new().await;
    let old = env.props(json!({}));
    let new_name = format!("{}-b", env.user_name());
    let new = env.props(json!({"UserName": new_name}));
    assert_success(&env.create(old.clone()).await);
    let r = env.update(&env.physical_id(), old.clone(), new).await;
    assert_success(&r);
    assert_eq!(r["PhysicalResourceId"], env.user_arn("/cloud-app-security/", &new_name));
    assert_success(&env.delete(&env.physical_id(), old).await);
    assert!(!env.user_exists(&env.user_name()).await, "old user deleted");
    let keys = env.keys(&new_name).await;
    assert_eq!(keys.len(), 1);
    let secret = env
        .secret_value(&env.secret_name())
        .await
        .expect("the secret now serves the new user");
    assert_eq!(secret["AccessKeyId"], keys[0]);
    assert_eq!(secret["UserName"], new_name);
}

#[tokio::test]
async fn a_new_secret_name_moves_the_key_and_deletes_the_old_secret() {
    let env = Env::new().await;
    let old = env.props(json!({}));
    let new_secret = format!("{}-moved", env.secret_name());
    let new = env.props(json!({"SecretName": new_secret}));
    assert_success(&env.create(old.clone()).await);
    let before = env.keys(&env.user_name()).await;
    let r = env.update(&env.physical_id(), old, new).await;
    assert_success(&r);
    // Deleted at once: a restorable copy of a live key would be a leftover another deployment
    // could adopt.
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, None);
    let keys = env.keys(&env.user_name()).await;
    assert_eq!(keys, before, "the same key: a key pasted in the portal keeps working");
    assert_eq!(env.secret_value(&new_secret).await.unwrap()["AccessKeyId"], keys[0]);
}

#[tokio::test]
async fn update_repairs_drift() {
    let env = Env::new().await;
    let props = env.props(json!({}));
    assert_success(&env.create(props.clone()).await);
    let user = env.user_name();
    env.iam
        .delete_user_policy()
        .user_name(&user)
        .policy_name("CloudAppSecurityAuditing")
        .send()
        .await
        .unwrap();
    for key in env.keys(&user).await {
        env.iam
            .delete_access_key()
            .user_name(&user)
            .access_key_id(key)
            .send()
            .await
            .unwrap();
    }
    assert_success(&env.update(&env.physical_id(), props.clone(), props).await);
    assert_eq!(env.inline_policies(&user).await, ["CloudAppSecurityAuditing"]);
    let keys = env.keys(&user).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        env.secret_value(&env.secret_name()).await.unwrap()["AccessKeyId"],
        keys[0]
    );
}
