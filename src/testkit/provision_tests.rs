//! Provisioning's branches on the fakes, one behaviour per test.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::ownership::{TAG_LOGICAL_ID, TAG_PHYSICAL_ID, TAG_RELEASED, TAG_STACK_ID};
use crate::ports::{AccessKeys, ErrorKind, Users, CURRENT};
use crate::provision::{DeleteTarget, Kind, Made, ProvisionError, Provisioned};
use secrets::FakeSecret;

const READS: [&str; 4] = [":Get", ":List", ":Describe", "iam:List*"];

fn writes(world: &World) -> Vec<&'static str> {
    world
        .faults
        .log()
        .into_iter()
        .filter(|op| !READS.iter().any(|r| op.contains(r)))
        .collect()
}

impl World {
    async fn converge(&self, target: &Target) -> Result<Provisioned, ProvisionError> {
        self.converge_as("req", target).await
    }

    /// What the lifecycle does: converge, and undo on failure.
    async fn converge_as(&self, request: &str, target: &Target) -> Result<Provisioned, ProvisionError> {
        let made = Made::default();
        let p = self.provisioner(request);
        let outcome = p.converge(target, &made).await;
        if outcome.is_err() {
            p.undo(target, &made).await;
        }
        outcome
    }

    async fn delete(&self, physical_id: &str, extra: serde_json::Value) -> Result<(), ProvisionError> {
        let stack = StackArn::parse(STACK).unwrap();
        let target = DeleteTarget::new(owner(), stack, physical_id, &props(extra));
        self.provisioner("req-delete").delete(&target).await
    }
}

#[tokio::test]
async fn create_makes_user_policy_one_key_and_secret() {
    let w = World::new();
    let t = target(json!({"Tags": {"team": "secops"}}));
    let done = w.converge(&t).await.unwrap();
    let user = w.iam.user(USER).unwrap();
    assert_eq!(user.path, "/cloud-app-security/");
    assert_eq!(user.tags.get(TAG_STACK_ID).map(String::as_str), Some(STACK));
    assert_eq!(user.tags.get(TAG_LOGICAL_ID).map(String::as_str), Some("Connector"));
    assert_eq!(user.tags.get(TAG_PHYSICAL_ID), Some(&t.physical_id));
    assert_eq!(user.tags.get("team").map(String::as_str), Some("secops"));
    let doc: serde_json::Value = serde_json::from_str(&user.inline["CloudAppSecurityAuditing"]).unwrap();
    assert_eq!(doc["Statement"][0]["Action"].as_array().unwrap().len(), 12);
    assert!(user.attached.is_empty());
    assert_eq!(w.key_ids(USER), vec![done.access_key_id.clone()]);
    let stored = w.stored(SECRET).unwrap();
    assert_eq!(stored.access_key_id, done.access_key_id);
    assert_eq!(stored.bookkeeping.key_version.as_deref(), Some("1"));
    assert_eq!(done.secret_arn, w.secrets.secret(SECRET).unwrap().arn);
    assert_eq!(done.key_verified, Some(true));
}

#[tokio::test]
async fn a_create_makes_six_calls_on_four_round_trips() {
    let w = World::new();
    w.converge(&target(json!({"VerifyKey": "false"}))).await.unwrap();
    assert_eq!(
        w.faults.log(),
        [
            "iam:GetUser",
            "secretsmanager:DescribeSecret",
            "iam:CreateUser",
            "iam:PutUserPolicy",
            "iam:CreateAccessKey",
            "secretsmanager:CreateSecret",
        ]
    );
}

#[tokio::test]
async fn repeating_a_converge_writes_nothing() {
    let w = World::new();
    let t = target(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"], "Tags": {"a": "b"}}));
    let first = w.converge(&t).await.unwrap();
    let before = writes(&w);
    let second = w.converge(&t).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(writes(&w), before);
}

#[tokio::test]
async fn a_new_key_version_rotates_once_and_in_portal_mode_keeps_the_previous_key_for_the_paste() {
    let w = World::new();
    let first = w.converge(&target(json!({}))).await.unwrap();
    let t2 = update(json!({}), json!({"KeyVersion": "2"}));
    let second = w.converge_as("req-2", &t2).await.unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    let stored = w.stored(SECRET).unwrap();
    assert_eq!(stored.access_key_id, second.access_key_id);
    let awaiting = stored
        .bookkeeping
        .awaiting_paste
        .expect("the previous key waits for a paste");
    assert_eq!(awaiting.access_key_id, first.access_key_id);
    assert_eq!(
        w.key_ids(USER),
        vec![first.access_key_id.clone(), second.access_key_id.clone()]
    );
    // The same Update delivered again rotates nothing.
    let third = w.converge_as("req-2", &t2).await.unwrap();
    assert_eq!(third.access_key_id, second.access_key_id);
    assert_eq!(w.key_ids(USER).len(), 2);
    // A new rotation waits for the paste.
    let t3 = update(json!({"KeyVersion": "2"}), json!({"KeyVersion": "3"}));
    let err = w.converge_as("req-3", &t3).await.unwrap_err();
    assert!(matches!(err, ProvisionError::PastePending { .. }), "{err}");
    assert!(err.to_string().contains("aws iam delete-access-key"), "{err}");
    assert_eq!(w.key_ids(USER).len(), 2, "the failed rotation left nothing behind");
}

#[tokio::test]
async fn with_the_call_back_a_rotation_deletes_the_old_key_once_the_new_one_is_registered() {
    let w = World::new();
    let credentials = callback_credentials(&w);
    let callback = json!({"CloudAppSecurityUrl": "http://127.0.0.1:9", "CloudAppSecurityCredentials": credentials});
    let first = w.converge(&target(callback.clone())).await.unwrap();
    let mut v2 = callback.clone();
    v2["KeyVersion"] = json!("2");
    let second = w.converge_as("req-2", &update(callback, v2)).await.unwrap();
    assert_eq!(w.key_ids(USER), vec![second.access_key_id.clone()]);
    let key = crate::cloud_app_security::sha256_hex(&target(json!({})).physical_id);
    assert_eq!(
        w.registry.registered(&key),
        [("http://127.0.0.1:9/".to_owned(), second.access_key_id.clone())]
    );
    assert_ne!(first.access_key_id, second.access_key_id);
}

/// The API-credentials secret the call-back tests name.
pub(super) fn plant_credentials(w: &World) -> &'static str {
    callback_credentials(w)
}

fn callback_credentials(w: &World) -> &'static str {
    w.secrets.plant(
        "cas-api",
        FakeSecret {
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cas-api".into(),
            versions: vec![("v1".into(), r#"{"token": "t0ken"}"#.into(), vec![CURRENT.into()])],
            ..Default::default()
        },
    );
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:cas-api"
}

// Paused: the request waits, in vain, for a duplicate delivery to store a key.
#[tokio::test(start_paused = true)]
async fn a_second_key_made_by_hand_is_deleted_only_once_it_cannot_be_a_running_invocations() {
    let w = World::new();
    let credentials = callback_credentials(&w);
    let callback = json!({"CloudAppSecurityUrl": "http://127.0.0.1:9", "CloudAppSecurityCredentials": credentials});
    let first = w.converge(&target(callback.clone())).await.unwrap();
    w.iam.create_access_key(USER).await.map(drop).unwrap();
    let mut v2 = callback.clone();
    v2["KeyVersion"] = json!("2");
    let t2 = update(callback.clone(), v2);
    let err = w.converge_as("req-2", &t2).await.unwrap_err();
    assert!(matches!(err, ProvisionError::KeySlotsTaken { .. }), "{err}");
    w.clock.advance(Duration::from_secs(20 * 60));
    let second = w.converge_as("req-3", &t2).await.unwrap();
    assert_eq!(w.key_ids(USER), vec![second.access_key_id.clone()]);
    assert_ne!(first.access_key_id, second.access_key_id);
}

#[tokio::test]
async fn drift_is_repaired() {
    let w = World::new();
    let t = target(json!({"Connections": "SecurityAuditing,SecurityConfiguration"}));
    let done = w.converge(&t).await.unwrap();
    w.iam.with(USER, |u| {
        u.inline.clear();
        u.attached.clear();
        u.keys[0].active = false;
        u.tags.remove(TAG_PHYSICAL_ID);
    });
    let again = w.converge(&t).await.unwrap();
    assert_ne!(
        again.access_key_id, done.access_key_id,
        "a deactivated key is replaced, never reactivated (a person deactivated it: a leak)"
    );
    let user = w.iam.user(USER).unwrap();
    assert!(user.inline.contains_key("CloudAppSecurityAuditing"));
    assert_eq!(user.attached.len(), 2);
    let states: Vec<(String, bool)> = user.keys.iter().map(|k| (k.access_key_id.clone(), k.active)).collect();
    assert!(states.contains(&(done.access_key_id.clone(), false)), "{states:?}");
    assert!(states.contains(&(again.access_key_id.clone(), true)), "{states:?}");
    assert!(user.tags.contains_key(TAG_PHYSICAL_ID));
}

#[tokio::test]
async fn a_deleted_key_is_replaced_and_stored() {
    let w = World::new();
    let t = target(json!({}));
    let done = w.converge(&t).await.unwrap();
    w.iam.with(USER, |u| u.keys.clear());
    let again = w.converge_as("req-2", &t).await.unwrap();
    assert_ne!(again.access_key_id, done.access_key_id);
    assert_eq!(w.stored(SECRET).unwrap().access_key_id, again.access_key_id);
}

#[tokio::test]
async fn a_key_missing_from_a_lagging_listing_is_kept_not_replaced() {
    let w = World::new();
    let t = target(json!({}));
    let done = w.converge(&t).await.unwrap();
    *w.iam.list_lag.lock().unwrap() = Duration::from_secs(3600);
    let again = w.converge_as("req-2", &t).await.unwrap();
    assert_eq!(again.access_key_id, done.access_key_id);
    assert_eq!(w.key_ids(USER).len(), 1);
}

#[tokio::test]
async fn connections_converge_both_ways() {
    let w = World::new();
    w.converge(&target(json!({}))).await.unwrap();
    w.converge(&target(json!({"Connections": ["SecurityConfiguration"]})))
        .await
        .unwrap();
    let user = w.iam.user(USER).unwrap();
    assert!(user.inline.is_empty());
    assert_eq!(
        user.attached.iter().cloned().collect::<Vec<_>>(),
        [
            "arn:aws:iam::aws:policy/AWSSecurityHubReadOnlyAccess",
            "arn:aws:iam::aws:policy/SecurityAudit"
        ]
    );
    w.converge(&target(json!({"Connections": ["SecurityAuditing"]})))
        .await
        .unwrap();
    let user = w.iam.user(USER).unwrap();
    assert!(user.attached.is_empty());
    assert_eq!(user.inline.len(), 1);
}

#[tokio::test]
async fn a_foreign_user_fails_before_anything_is_written() {
    let w = World::new();
    w.iam.users.lock().unwrap().insert(
        USER.into(),
        iam::FakeUser {
            path: "/".into(),
            ..Default::default()
        },
    );
    let err = w.converge(&target(json!({}))).await.unwrap_err();
    assert!(
        matches!(err, ProvisionError::Foreign { kind: Kind::User, ref name } if name == USER),
        "{err}"
    );
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
}

#[tokio::test]
async fn a_user_of_another_stack_is_foreign() {
    let w = World::new();
    let mut other = target(json!({}));
    other.owner.stack_id = STACK.replace("stack/cas/", "stack/other/");
    w.converge(&other).await.unwrap();
    let before = writes(&w);
    let err = w.converge(&target(json!({}))).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Foreign { kind: Kind::User, .. }), "{err}");
    assert_eq!(writes(&w), before);
}

#[tokio::test]
async fn a_foreign_secret_fails_before_anything_is_written() {
    let w = World::new();
    w.secrets.plant(
        SECRET,
        FakeSecret {
            arn: "arn:foreign".into(),
            ..Default::default()
        },
    );
    let err = w.converge(&target(json!({}))).await.unwrap_err();
    assert!(
        matches!(err, ProvisionError::Foreign { kind: Kind::Secret, .. }),
        "{err}"
    );
    assert!(writes(&w).is_empty());
    assert!(w.iam.user(USER).is_none());
}

#[tokio::test]
async fn a_released_leftover_is_force_deleted_and_replaced_never_restored() {
    let w = World::new();
    let mut old = target(json!({}));
    old.owner.stack_id = STACK.replace("11111111", "99999999");
    w.converge(&old).await.unwrap();
    let stack = StackArn::parse(STACK).unwrap();
    let gone = DeleteTarget::new(old.owner.clone(), stack, &old.physical_id, &props(json!({})));
    w.provisioner("req-d").delete(&gone).await.unwrap();
    let leftover = w.secrets.secret(SECRET).unwrap();
    assert!(leftover.pending_deletion);
    assert_eq!(leftover.tags.get(TAG_RELEASED).map(String::as_str), Some("true"));
    let done = w.converge_as("req-2", &target(json!({}))).await.unwrap();
    let secret = w.secrets.secret(SECRET).unwrap();
    assert!(!secret.pending_deletion);
    assert_eq!(
        secret.versions.len(),
        1,
        "a new secret: none of the leftover's versions"
    );
    assert_eq!(secret.tags.get(TAG_STACK_ID).map(String::as_str), Some(STACK));
    assert_eq!(
        secret.tags.get(TAG_RELEASED).map(String::as_str),
        Some("false"),
        "claimed"
    );
    assert_eq!(w.stored(SECRET).unwrap().access_key_id, done.access_key_id);
    assert!(!w.faults.log().contains(&"secretsmanager:RestoreSecret"));
}

/// Planted pending deletion: another stack's tag but never released, or released with replicas.
fn plant_leftover(w: &World, released: bool, replicated: bool) {
    let mut tags = Tags::new();
    tags.insert(
        TAG_STACK_ID.into(),
        "arn:aws:cloudformation:us-east-1:123456789012:stack/gone/1".into(),
    );
    tags.insert("team".into(), "theirs".into());
    if released {
        tags.insert(TAG_RELEASED.into(), "true".into());
    }
    w.secrets.plant(
        SECRET,
        FakeSecret {
            arn: "arn:planted".into(),
            tags,
            pending_deletion: true,
            deleted_at: Some(1),
            replicated,
            versions: vec![("v0".into(), "{}".into(), vec![CURRENT.into()])],
            ..Default::default()
        },
    );
}

#[tokio::test]
async fn a_leftover_not_released_or_replicated_is_never_touched_and_the_create_fails_naming_it() {
    for (released, replicated, problem) in [(false, false, "did not release it"), (true, true, "has replicas")] {
        let w = World::new();
        plant_leftover(&w, released, replicated);
        let props = json!({"ConnectorName": "test", "TrailMode": "Off"});
        let created = w.handle(event(STACK, "Create", "r1", None, &props, None)).await;
        assert_eq!(created.status, crate::cfn::response::Status::Failed);
        assert!(
            created
                .reason
                .contains(&format!("secret {SECRET} is scheduled for deletion"))
                && created.reason.contains(problem)
                && created.reason.contains("--force-delete-without-recovery"),
            "{}",
            created.reason
        );
        let secret = w.secrets.secret(SECRET).unwrap();
        assert!(secret.pending_deletion && secret.arn == "arn:planted", "left as it was");
        assert_eq!(secret.versions.len(), 1, "the key never went in");
        assert!(!w.faults.log().contains(&"secretsmanager:TagResource"));
        let rollback = w
            .handle(event(STACK, "Delete", "r2", Some(&created.physical_id), &props, None))
            .await;
        assert_eq!(
            rollback.status,
            crate::cfn::response::Status::Success,
            "{}",
            rollback.reason
        );
        assert!(w.iam.user(USER).is_none(), "the rollback Delete removed the user");
        assert_eq!(w.secrets.secret(SECRET).unwrap().arn, "arn:planted");
    }
}

#[tokio::test]
async fn an_update_never_replaces_a_secret_pending_deletion() {
    let w = World::new();
    w.converge(&target(json!({}))).await.unwrap();
    plant_leftover(&w, true, false);
    let err = w
        .converge_as("req-2", &update(json!({}), json!({"KeyVersion": "2"})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("an Update never replaces"), "{err}");
    assert_eq!(w.secrets.secret(SECRET).unwrap().arn, "arn:planted");
}

#[tokio::test]
async fn a_secret_name_change_moves_the_same_key_and_deletes_the_old_secret() {
    let w = World::new();
    let first = w.converge(&target(json!({}))).await.unwrap();
    let moved = update(json!({}), json!({"SecretName": "cloud-app-security/moved"}));
    let p = w.provisioner("req-2");
    let done = p.converge(&moved, &Made::default()).await.unwrap();
    p.delete_previous_secret(&moved).await.unwrap();
    assert_eq!(done.access_key_id, first.access_key_id, "the pasted key keeps working");
    assert_eq!(
        w.stored("cloud-app-security/moved").unwrap().access_key_id,
        first.access_key_id
    );
    assert!(
        w.secrets.secret(SECRET).is_none(),
        "no restorable copy of a live key is left behind"
    );
    assert_eq!(w.key_ids(USER), vec![first.access_key_id]);
}

#[tokio::test]
async fn delete_clears_what_iam_requires_before_deleting_the_user() {
    let w = World::new();
    let t = target(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}));
    w.converge(&t).await.unwrap();
    w.iam.with(USER, |u| {
        u.inline.insert("AddedByHand".into(), "{}".into());
        u.attached.insert("arn:aws:iam::aws:policy/ReadOnlyAccess".into());
        u.login_profile = true;
        u.mfa.insert("arn:aws:iam::123456789012:mfa/x".into());
        u.ssh.insert("APKAEXAMPLE".into());
        u.certificates.insert("CERT1".into());
        u.service_credentials.insert("ACCA1".into());
    });
    assert_eq!(w.iam.delete_user(USER).await.unwrap_err().kind, ErrorKind::Conflict);
    w.delete(
        &t.physical_id,
        json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}),
    )
    .await
    .unwrap();
    assert!(w.iam.user(USER).is_none());
    assert!(w.secrets.secret(SECRET).unwrap().pending_deletion);
    // A second Delete finds nothing and succeeds.
    w.delete(&t.physical_id, json!({})).await.unwrap();
}

#[tokio::test]
async fn a_user_in_a_group_is_left_without_key_or_policy_and_the_reason_names_the_group() {
    let w = World::new();
    let t = target(json!({}));
    w.converge(&t).await.unwrap();
    w.iam.with(USER, |u| u.groups.insert("auditors".into()));
    let err = w.delete(&t.physical_id, json!({})).await.unwrap_err().to_string();
    assert!(err.contains("auditors"), "{err}");
    assert!(
        err.contains(&format!(
            "aws iam remove-user-from-group --user-name {USER} --group-name auditors"
        )),
        "{err}"
    );
    let user = w.iam.user(USER).unwrap();
    assert!(user.keys.is_empty() && user.inline.is_empty() && user.attached.is_empty());
}

#[tokio::test]
async fn a_clean_delete_lists_only_what_iam_says_is_left() {
    let w = World::new();
    let t = target(json!({}));
    w.converge(&t).await.unwrap();
    let before = w.faults.calls();
    w.delete(&t.physical_id, json!({})).await.unwrap();
    let mut calls = w.faults.log()[before..].to_vec();
    calls.sort();
    assert_eq!(
        calls,
        [
            "iam:DeleteAccessKey",
            "iam:DeleteUser",
            "iam:DeleteUserPolicy",
            "iam:GetUser",
            // The connector's own policy is read first: one a person turned into a Deny stays.
            "iam:GetUserPolicy",
            "iam:ListAccessKeys",
            "secretsmanager:DeleteSecret",
            "secretsmanager:DescribeSecret",
            // The record, for registrations left to remove (in portal mode too).
            "secretsmanager:GetSecretValue",
            // The released tag, before the deletion is scheduled.
            "secretsmanager:TagResource",
        ]
    );
}

#[tokio::test]
async fn delete_leaves_what_is_not_its_own() {
    let w = World::new();
    let t = target(json!({}));
    w.converge(&t).await.unwrap();
    let stranger = Owner {
        stack_id: STACK.into(),
        logical_id: "Other".into(),
    };
    let stack = StackArn::parse(STACK).unwrap();
    let d = DeleteTarget::new(stranger, stack, &t.physical_id, &props(json!({})));
    w.provisioner("req-d").delete(&d).await.unwrap();
    assert!(w.iam.user(USER).is_some());
    assert!(!w.secrets.secret(SECRET).unwrap().pending_deletion);
    // The old physical id after the user moved path: user and secret now serve the new id.
    let moved = update(json!({}), json!({"UserPath": "/cloud-app-security/moved/"}));
    w.converge_as("req-2", &moved).await.unwrap();
    w.delete(&t.physical_id, json!({})).await.unwrap();
    assert_eq!(w.iam.user(USER).unwrap().path, "/cloud-app-security/moved/");
    assert!(!w.secrets.secret(SECRET).unwrap().pending_deletion);
}

#[tokio::test]
async fn removed_extra_tags_are_untagged() {
    let w = World::new();
    w.converge(&target(json!({"Tags": {"a": "1", "b": "2"}})))
        .await
        .unwrap();
    w.converge(&update(
        json!({"Tags": {"a": "1", "b": "2"}}),
        json!({"Tags": {"a": "1"}}),
    ))
    .await
    .unwrap();
    assert!(!w.iam.user(USER).unwrap().tags.contains_key("b"));
    assert!(!w.secrets.secret(SECRET).unwrap().tags.contains_key("b"));
}

#[tokio::test]
async fn off_mode_makes_no_cloudtrail_call() {
    let w = World::new();
    w.converge(&target(json!({}))).await.unwrap();
    assert!(!w.faults.log().iter().any(|op| op.starts_with("cloudtrail:")));
}

#[tokio::test]
async fn create_mode_creates_a_logging_trail_beside_the_iam_chain() {
    let w = World::new();
    let t = target(json!({"TrailMode": "Create", "TrailBucket": "logs"}));
    let done = w.converge(&t).await.unwrap();
    let trail = w.trails.trail("cloud-app-security").unwrap();
    assert!(trail.logging);
    assert_eq!(trail.tags.get(TAG_STACK_ID).map(String::as_str), Some(STACK));
    assert_eq!(done.trail.arn.as_deref(), Some(trail.info.arn.as_str()));
    assert!(done.trail.created);
    let before = writes(&w);
    w.converge(&t).await.unwrap();
    assert_eq!(writes(&w), before, "repeating changes nothing");
}

#[tokio::test]
async fn a_trail_made_a_moment_ago_by_a_duplicate_delivery_is_adopted() {
    let w = World::new();
    let t = target(json!({"TrailMode": "Create", "TrailBucket": "logs"}));
    // Discovery sees no trail; the duplicate creates it before this request does.
    w.faults.fail_next("cloudtrail:CreateTrail", ErrorKind::Other);
    let _ = w.converge(&t).await;
    let trails = &w.trails;
    trails.trails.lock().unwrap().clear();
    let plan_seen_nothing = w.provisioner("req-2");
    let made = Made::default();
    let racing = async {
        tokio::task::yield_now().await;
        let tags = t.resource_tags();
        let settings = crate::ports::TrailSettings {
            name: "cloud-app-security".into(),
            bucket: "logs".into(),
            kms_key_id: None,
        };
        crate::ports::Trails::create(trails, &settings, &tags).await.map(drop)
    };
    let (done, raced) = tokio::join!(plan_seen_nothing.converge(&t, &made), racing);
    raced.unwrap();
    assert!(done.unwrap().trail.created);
    assert_eq!(trails.trails.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_missing_trail_bucket_fails_before_anything_is_created() {
    let w = World::new();
    let err = w.converge(&target(json!({"TrailMode": "Reuse"}))).await.unwrap_err();
    assert!(matches!(err, ProvisionError::TrailBucketMissing(_)), "{err}");
    assert!(writes(&w).is_empty());
}

#[tokio::test]
async fn a_bucket_cloudtrail_cannot_write_to_names_the_code_and_the_policy() {
    let w = World::new();
    w.trails.refusing_buckets.lock().unwrap().insert("no-policy".into());
    let err = w
        .converge(&target(json!({"TrailMode": "Create", "TrailBucket": "no-policy"})))
        .await;
    let text = err.unwrap_err().to_string();
    assert!(
        text.contains("InsufficientS3BucketPolicyException") && text.contains("bucket policy"),
        "{text}"
    );
}

#[tokio::test]
async fn delete_removes_only_a_trail_it_created() {
    let w = World::new();
    let trail = json!({"TrailMode": "Create", "TrailBucket": "logs"});
    let t = target(trail.clone());
    w.converge(&t).await.unwrap();
    w.delete("arn:aws:iam::123456789012:user/cloud-app-security/other", trail.clone())
        .await
        .unwrap();
    assert!(
        w.trails.trail("cloud-app-security").is_some(),
        "serves another physical id"
    );
    w.delete(&t.physical_id, trail).await.unwrap();
    assert!(w.trails.trail("cloud-app-security").is_none());
}

#[tokio::test]
async fn a_stack_whose_create_collided_never_unregisters_the_owner_connector() {
    let w = World::new();
    let credentials = callback_credentials(&w);
    let callback = json!({"CloudAppSecurityUrl": "http://127.0.0.1:9", "CloudAppSecurityCredentials": credentials});
    let ours = target(callback.clone());
    w.converge(&ours).await.unwrap();
    let mut intruder = target(callback.clone());
    intruder.owner.stack_id = STACK.replace("stack/cas/", "stack/second/");
    assert!(w.converge_as("req-2", &intruder).await.is_err());
    let stack = StackArn::parse(&intruder.owner.stack_id).unwrap_or_else(|_| StackArn::parse(STACK).unwrap());
    let rollback = DeleteTarget::new(intruder.owner.clone(), stack, &intruder.physical_id, &props(callback));
    w.provisioner("req-3").delete(&rollback).await.unwrap();
    assert!(
        w.registry.calls().iter().all(|(method, _, _)| *method == "PUT"),
        "{:?}",
        w.registry.calls()
    );
    assert!(w.iam.user(USER).is_some());
}

#[tokio::test]
async fn a_rollback_after_a_replacement_restores_the_old_users_key_and_never_deletes_that_user() {
    let w = World::new();
    let old = json!({});
    let new = json!({"UserName": "CloudAppSecurity-test-b"});
    let first = w.converge(&target(old.clone())).await.unwrap();
    w.converge_as("req-2", &update(old.clone(), new.clone())).await.unwrap();
    // CloudFormation rolls the stack back: properties back to the old name, physical id the new one.
    let mut rollback = update(new, old);
    w.faults.fail_next("iam:ListAccessKeys", ErrorKind::Transient);
    assert!(w.converge_as("req-3", &rollback).await.is_err());
    assert!(w.iam.user(USER).is_some(), "the user being restored was not deleted");
    rollback.before.as_mut().unwrap().secret_kms_key_id = None;
    let done = w.converge_as("req-4", &rollback).await.unwrap();
    assert_eq!(
        done.access_key_id, first.access_key_id,
        "the pasted key is back in the secret"
    );
    assert_eq!(w.stored(SECRET).unwrap().user_name, USER);
}

/// A replacement that fails part-way keeps what a duplicate delivery could be using; the
/// rollback Update CloudFormation sends next removes what was made for the abandoned properties.
#[tokio::test]
async fn a_failed_replacement_is_cleaned_up_by_its_rollback() {
    let w = World::new();
    let (a, b) = (
        json!({"ConnectorName": "test", "TrailMode": "Off"}),
        json!({"ConnectorName": "test", "TrailMode": "Off", "UserName": "CloudAppSecurity-test-b"}),
    );
    let created = w.handle(event(STACK, "Create", "r1", None, &a, None)).await;
    let first = created.data["AccessKeyId"].clone();
    w.faults.fail_next("secretsmanager:TagResource", ErrorKind::Transient);
    let failed = w
        .handle(event(STACK, "Update", "r2", Some(&created.physical_id), &b, Some(&a)))
        .await;
    assert_eq!(failed.status, crate::cfn::response::Status::Failed, "{}", failed.reason);
    assert_eq!(failed.physical_id, created.physical_id);
    let rollback = w
        .handle(event(STACK, "Update", "r3", Some(&created.physical_id), &a, Some(&b)))
        .await;
    assert_eq!(
        rollback.status,
        crate::cfn::response::Status::Success,
        "{}",
        rollback.reason
    );
    assert!(
        w.iam.user("CloudAppSecurity-test-b").is_none(),
        "the abandoned user is gone"
    );
    assert_eq!(
        w.stored(SECRET).unwrap().access_key_id,
        first,
        "the old user's key is back"
    );
    assert_eq!(w.key_ids(USER), vec![first]);
}

#[tokio::test]
async fn two_deliveries_of_one_create_at_once_end_with_one_key_both_answers_name() {
    for seed in 0..40 {
        let w = World::seeded(seed, 3);
        let t = target(json!({"VerifyKey": "false"}));
        let (a, b) = tokio::join!(w.converge_as("req", &t), w.converge_as("req", &t));
        let stored = w.stored(SECRET).expect("a secret");
        assert_eq!(w.key_ids(USER), vec![stored.access_key_id.clone()], "seed {seed}");
        for answer in [a, b].into_iter().flatten() {
            assert_eq!(answer.access_key_id, stored.access_key_id, "seed {seed}");
        }
    }
}

/// Someone adds a tag (or a replica) to the connector's secret, as an attribute-based policy
/// would need.
fn tamper(w: &World, tag: Option<(&str, &str)>, replicated: bool) {
    let mut secrets = w.secrets.secrets.lock().unwrap();
    let secret = secrets.get_mut(SECRET).unwrap();
    if let Some((k, v)) = tag {
        secret.tags.insert(k.into(), v.into());
    }
    secret.replicated |= replicated;
}

#[tokio::test]
async fn a_key_is_never_written_into_a_secret_with_a_tag_this_stack_did_not_set_or_a_replica() {
    for (tag, replicated, tolerated, problem) in [
        (
            Some(("abac-readers", "attackers")),
            false,
            json!(""),
            Some("carries tags this stack did not set (abac-readers)"),
        ),
        (Some(("abac-readers", "attackers")), false, json!("abac-readers"), None),
        (Some(("org:cost-centre", "42")), false, json!(["org:*", "other"]), None),
        (None, true, json!(""), Some("is replicated to other regions")),
    ] {
        let w = World::new();
        let props = json!({"ToleratedTagKeys": tolerated});
        let first = w.converge(&target(props.clone())).await.unwrap();
        tamper(&w, tag, replicated);
        let mut new = props.clone();
        new["KeyVersion"] = json!("2");
        let result = w.converge_as("req-2", &update(props, new)).await;
        match problem {
            Some(problem) => {
                let err = result.unwrap_err().to_string();
                assert!(err.contains(problem), "{err}");
                assert_eq!(
                    w.stored(SECRET).unwrap().access_key_id,
                    first.access_key_id,
                    "nothing written"
                );
                assert_eq!(w.iam.user(USER).unwrap().keys.len(), 1, "the issued key was taken back");
            }
            None => assert_ne!(result.unwrap().access_key_id, first.access_key_id),
        }
    }
}

#[test]
fn unexpected_tags_are_those_neither_ours_nor_aws_nor_accepted() {
    use crate::provision::secret::unexpected_tags;
    let tags: Tags = [
        (TAG_STACK_ID, "s"),
        (TAG_RELEASED, "true"),
        ("cloud-app-security:key-version", "1"),
        ("aws:cloudformation:stack-name", "x"),
        ("team", "security"),
        ("cost:centre", "1"),
        ("cloud-app-security:other", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(
        unexpected_tags(&tags, &["team".into(), "cost:*".into()]),
        ["cloud-app-security:other"]
    );
    assert_eq!(
        unexpected_tags(&tags, &[]),
        ["cloud-app-security:other", "cost:centre", "team"]
    );
    assert_eq!(
        unexpected_tags(&tags, &["Team".into()]).len(),
        3,
        "Secrets Manager's keys are case-sensitive"
    );
}
