//! Branching logic of provisioning, on in-memory fakes that are as strict as real AWS.

use serde_json::{json, Value};

use super::fake::{FakeIam, FakeSecrets, FakeTrails, FakeUser};
use super::ports::{AccessKeyInfo, Iam};
use super::*;
use crate::identity::{TAG_LOGICAL_ID, TAG_PHYSICAL_ID, TAG_STACK_ID};

const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/cas/11111111-2222-3333-4444-555555555555";
const USER: &str = "CloudAppSecurity-test";
const SECRET: &str = "cloud-app-security/test";

fn owner() -> Owner {
    Owner {
        stack_id: STACK.into(),
        logical_id: "Connector".into(),
    }
}

fn target(extra: Value) -> Target {
    let mut props = json!({"ConnectorName": "test", "TrailMode": "Off"});
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let properties = Properties::parse(props.as_object().unwrap()).unwrap();
    Target::new(owner(), StackArn::parse(STACK).unwrap(), &properties, None)
}

struct World {
    iam: FakeIam,
    secrets: FakeSecrets,
    trails: FakeTrails,
    progress: Progress,
    client: crate::cloud_app_security::client::Client,
    allowed: crate::cloud_app_security::endpoint::AllowedHosts,
}

impl World {
    fn new() -> World {
        World {
            iam: FakeIam::default(),
            secrets: FakeSecrets::default(),
            trails: FakeTrails::default(),
            progress: Progress::new("test"),
            client: crate::cloud_app_security::client::Client::new().unwrap(),
            allowed: Default::default(),
        }
    }
    fn provisioner(&self) -> Provisioner<'_, FakeIam, FakeSecrets, FakeTrails> {
        Provisioner {
            iam: &self.iam,
            secrets: &self.secrets,
            trails: &self.trails,
            progress: &self.progress,
            // Portal mode in these tests: the client is never called.
            callback: CallbackContext {
                client: &self.client,
                allowed: &self.allowed,
                deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(30),
            },
        }
    }
    fn writes(&self) -> usize {
        self.iam.writes().len() + self.secrets.writes().len() + self.trails.writes().len()
    }
    fn stored_key_id(&self) -> String {
        let value: Value = serde_json::from_str(&self.secrets.secret(SECRET).unwrap().value.unwrap()).unwrap();
        value["AccessKeyId"].as_str().unwrap().to_owned()
    }
    fn key_ids(&self) -> Vec<String> {
        self.iam
            .user(USER)
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.access_key_id)
            .collect()
    }
}

#[tokio::test]
async fn create_makes_user_policy_one_key_and_secret() {
    let w = World::new();
    let t = target(json!({"Tags": {"team": "secops"}}));
    let done = w.provisioner().converge(&t).await.unwrap();
    let user = w.iam.user(USER).unwrap();
    assert_eq!(user.path, "/cloud-app-security/");
    assert_eq!(user.tags.get(TAG_STACK_ID).map(String::as_str), Some(STACK));
    assert_eq!(user.tags.get(TAG_LOGICAL_ID).map(String::as_str), Some("Connector"));
    assert_eq!(user.tags.get(TAG_PHYSICAL_ID), Some(&t.physical_id));
    assert_eq!(user.tags.get("team").map(String::as_str), Some("secops"));
    let doc: Value = serde_json::from_str(&user.inline["CloudAppSecurityAuditing"]).unwrap();
    assert_eq!(doc["Statement"][0]["Action"].as_array().unwrap().len(), 12);
    assert!(user.attached.is_empty());
    assert_eq!(w.key_ids(), vec![done.access_key_id.clone()]);
    assert_eq!(w.stored_key_id(), done.access_key_id);
    let secret = w.secrets.secret(SECRET).unwrap();
    assert_eq!(secret.tags.get(TAG_KEY_VERSION).map(String::as_str), Some("1"));
    assert_eq!(done.secret_arn, secret.arn);
}

#[tokio::test]
async fn repeating_a_converge_writes_nothing() {
    let w = World::new();
    let t = target(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"], "Tags": {"a": "b"}}));
    let first = w.provisioner().converge(&t).await.unwrap();
    let before = w.writes();
    let second = w.provisioner().converge(&t).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        w.writes(),
        before,
        "iam: {:?} secrets: {:?}",
        w.iam.writes(),
        w.secrets.writes()
    );
}

#[tokio::test]
async fn a_new_key_version_rotates_once() {
    let w = World::new();
    let first = w.provisioner().converge(&target(json!({}))).await.unwrap();
    let t2 = target(json!({"KeyVersion": "2"}));
    let second = w.provisioner().converge(&t2).await.unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_eq!(w.key_ids(), vec![second.access_key_id.clone()]);
    assert_eq!(w.stored_key_id(), second.access_key_id);
    // The same Update delivered again rotates nothing.
    let third = w.provisioner().converge(&t2).await.unwrap();
    assert_eq!(third.access_key_id, second.access_key_id);
}

#[tokio::test]
async fn rotation_with_both_key_slots_taken_drops_the_stale_key_first() {
    let w = World::new();
    let first = w.provisioner().converge(&target(json!({}))).await.unwrap();
    w.iam.create_access_key(USER).await.map(drop).unwrap(); // someone made a second key
    let second = w
        .provisioner()
        .converge(&target(json!({"KeyVersion": "2"})))
        .await
        .unwrap();
    assert_eq!(w.key_ids(), vec![second.access_key_id.clone()]);
    // The stale key went before the new one was made; the stored one only after it was replaced.
    let writes = w.iam.writes();
    let create = writes.iter().rposition(|op| op == "CreateAccessKey").unwrap();
    assert_eq!(writes[create - 1], "DeleteAccessKey");
    assert_eq!(writes[create + 1..], ["DeleteAccessKey".to_owned()]);
    assert_ne!(first.access_key_id, second.access_key_id);
}

#[tokio::test]
async fn drift_is_repaired() {
    let w = World::new();
    let t = target(json!({"Connections": "SecurityAuditing,SecurityConfiguration"}));
    let done = w.provisioner().converge(&t).await.unwrap();
    {
        let mut users = w.iam.users.lock().unwrap();
        let u = users.get_mut(USER).unwrap();
        u.inline.clear();
        u.attached.clear();
        u.keys[0].active = false;
        u.tags.remove(TAG_PHYSICAL_ID);
    }
    let again = w.provisioner().converge(&t).await.unwrap();
    assert_eq!(
        again.access_key_id, done.access_key_id,
        "a deactivated key is reactivated, not replaced"
    );
    let user = w.iam.user(USER).unwrap();
    assert!(user.inline.contains_key("CloudAppSecurityAuditing"));
    assert_eq!(user.attached.len(), 2);
    assert!(user.keys[0].active);
    assert!(user.tags.contains_key(TAG_PHYSICAL_ID));
}

#[tokio::test]
async fn a_deleted_key_is_replaced_and_stored() {
    let w = World::new();
    let t = target(json!({}));
    let done = w.provisioner().converge(&t).await.unwrap();
    w.iam.users.lock().unwrap().get_mut(USER).unwrap().keys.clear();
    let again = w.provisioner().converge(&t).await.unwrap();
    assert_ne!(again.access_key_id, done.access_key_id);
    assert_eq!(w.stored_key_id(), again.access_key_id);
}

#[tokio::test]
async fn connections_converge_both_ways() {
    let w = World::new();
    w.provisioner().converge(&target(json!({}))).await.unwrap();
    w.provisioner()
        .converge(&target(json!({"Connections": ["SecurityConfiguration"]})))
        .await
        .unwrap();
    let user = w.iam.user(USER).unwrap();
    assert!(user.inline.is_empty());
    assert_eq!(
        user.attached.iter().cloned().collect::<Vec<_>>(),
        vec![
            "arn:aws:iam::aws:policy/AWSSecurityHubReadOnlyAccess",
            "arn:aws:iam::aws:policy/SecurityAudit"
        ]
    );
    w.provisioner()
        .converge(&target(json!({"Connections": ["SecurityAuditing"]})))
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
        FakeUser {
            path: "/".into(),
            ..Default::default()
        },
    );
    let err = w.provisioner().converge(&target(json!({}))).await.unwrap_err();
    assert!(matches!(err, ProvisionError::ForeignUser(ref n) if n == USER), "{err}");
    assert_eq!(w.writes(), 0);
    assert!(w.secrets.secret(SECRET).is_none());
}

#[tokio::test]
async fn a_user_of_another_stack_is_foreign() {
    let w = World::new();
    let mut other = target(json!({}));
    other.owner.stack_id = STACK.replace("stack/cas/", "stack/other/");
    w.provisioner().converge(&other).await.unwrap();
    let before = w.writes();
    let err = w.provisioner().converge(&target(json!({}))).await.unwrap_err();
    assert!(matches!(err, ProvisionError::ForeignUser(_)), "{err}");
    assert_eq!(w.writes(), before);
}

#[tokio::test]
async fn a_foreign_secret_fails_before_anything_is_written() {
    let w = World::new();
    w.secrets.secrets.lock().unwrap().insert(
        SECRET.into(),
        super::fake::FakeSecret {
            arn: "arn:foreign".into(),
            ..Default::default()
        },
    );
    let err = w.provisioner().converge(&target(json!({}))).await.unwrap_err();
    assert!(
        matches!(err, ProvisionError::ForeignSecret(ref n) if n == SECRET),
        "{err}"
    );
    assert_eq!(w.writes(), 0);
    assert!(w.iam.user(USER).is_none());
}

#[tokio::test]
async fn a_leftover_secret_pending_deletion_is_restored_and_reused() {
    let w = World::new();
    let mut old = target(json!({}));
    old.owner.stack_id = STACK.replace("11111111", "99999999");
    w.provisioner().converge(&old).await.unwrap();
    w.provisioner()
        .delete(&DeleteTarget {
            owner: old.owner.clone(),
            physical_id: old.physical_id.clone(),
            secret: Some((SECRET.into(), RecoveryWindow::Days(7))),
            trail: None,
            callback: None,
        })
        .await
        .unwrap();
    assert!(w.secrets.secret(SECRET).unwrap().pending_deletion);
    let t = target(json!({}));
    let done = w.provisioner().converge(&t).await.unwrap();
    let secret = w.secrets.secret(SECRET).unwrap();
    assert!(!secret.pending_deletion);
    assert_eq!(secret.tags.get(TAG_STACK_ID).map(String::as_str), Some(STACK));
    assert_eq!(w.stored_key_id(), done.access_key_id);
    assert!(w.secrets.writes().contains(&"RestoreSecret".to_owned()));
}

#[tokio::test]
async fn delete_clears_what_iam_requires_before_deleting_the_user() {
    let w = World::new();
    let t = target(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}));
    w.provisioner().converge(&t).await.unwrap();
    {
        let mut users = w.iam.users.lock().unwrap();
        let u = users.get_mut(USER).unwrap();
        u.inline.insert("AddedByHand".into(), "{}".into());
        u.groups.insert("auditors".into());
        u.login_profile = true;
        u.keys.push(AccessKeyInfo {
            access_key_id: "AKIAHAND".into(),
            active: false,
        });
    }
    // The fake is as strict as IAM: the user cannot simply be deleted.
    assert_eq!(
        w.iam.delete_user(USER).await.unwrap_err().code.as_deref(),
        Some("DeleteConflict")
    );
    let d = DeleteTarget {
        owner: owner(),
        physical_id: t.physical_id.clone(),
        secret: Some((SECRET.into(), RecoveryWindow::Immediate)),
        trail: None,
        callback: None,
    };
    w.provisioner().delete(&d).await.unwrap();
    assert!(w.iam.user(USER).is_none());
    assert!(w.secrets.secret(SECRET).is_none());
    // A second Delete finds nothing and succeeds.
    w.provisioner().delete(&d).await.unwrap();
}

#[tokio::test]
async fn delete_leaves_what_is_not_its_own() {
    let w = World::new();
    let t = target(json!({}));
    w.provisioner().converge(&t).await.unwrap();
    // Another resource's delete: other logical id.
    let stranger = Owner {
        stack_id: STACK.into(),
        logical_id: "Other".into(),
    };
    let d = DeleteTarget {
        owner: stranger,
        physical_id: t.physical_id.clone(),
        secret: Some((SECRET.into(), RecoveryWindow::Immediate)),
        trail: None,
        callback: None,
    };
    w.provisioner().delete(&d).await.unwrap();
    assert!(w.iam.user(USER).is_some());
    assert!(w.secrets.secret(SECRET).is_some());
    // The old physical id after the user moved path: user and secret now serve the new id.
    let moved = target(json!({"UserPath": "/cloud-app-security/moved/"}));
    w.provisioner().converge(&moved).await.unwrap();
    let d = DeleteTarget {
        owner: owner(),
        physical_id: t.physical_id.clone(),
        secret: Some((SECRET.into(), RecoveryWindow::Immediate)),
        trail: None,
        callback: None,
    };
    w.provisioner().delete(&d).await.unwrap();
    assert_eq!(w.iam.user(USER).unwrap().path, "/cloud-app-security/moved/");
    assert!(w.secrets.secret(SECRET).is_some());
}

#[tokio::test]
async fn removed_extra_tags_are_untagged() {
    let w = World::new();
    let props = |tags: Value| {
        Properties::parse(
            json!({"ConnectorName": "test", "TrailMode": "Off", "Tags": tags})
                .as_object()
                .unwrap(),
        )
        .unwrap()
    };
    let (old, new) = (props(json!({"a": "1", "b": "2"})), props(json!({"a": "1"})));
    let stack = StackArn::parse(STACK).unwrap();
    w.provisioner()
        .converge(&Target::new(owner(), stack.clone(), &old, None))
        .await
        .unwrap();
    w.provisioner()
        .converge(&Target::new(owner(), stack, &new, Some(&old)))
        .await
        .unwrap();
    assert!(!w.iam.user(USER).unwrap().tags.contains_key("b"));
    assert!(!w.secrets.secret(SECRET).unwrap().tags.contains_key("b"));
}

#[tokio::test]
async fn off_mode_makes_no_cloudtrail_call() {
    let w = World::new();
    w.provisioner().converge(&target(json!({}))).await.unwrap();
    assert_eq!(*w.trails.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn create_mode_creates_a_logging_trail_beside_the_iam_chain() {
    let w = World::new();
    let done = w
        .provisioner()
        .converge(&target(json!({"TrailMode": "Create", "TrailBucket": "logs"})))
        .await
        .unwrap();
    let trail = w.trails.trail("cloud-app-security").unwrap();
    assert!(trail.logging);
    assert_eq!(trail.tags.get(TAG_STACK_ID).map(String::as_str), Some(STACK));
    assert_eq!(done.trail.arn.as_deref(), Some(trail.info.arn.as_str()));
    assert!(done.trail.created);
    let before = w.writes();
    w.provisioner()
        .converge(&target(json!({"TrailMode": "Create", "TrailBucket": "logs"})))
        .await
        .unwrap();
    assert_eq!(w.writes(), before, "repeating changes nothing");
}

#[tokio::test]
async fn a_missing_trail_bucket_fails_before_anything_is_created() {
    let w = World::new();
    let err = w
        .provisioner()
        .converge(&target(json!({"TrailMode": "Reuse"})))
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::TrailBucketMissing(_)), "{err}");
    assert_eq!(w.writes(), 0);
}

#[tokio::test]
async fn a_bucket_cloudtrail_cannot_write_to_names_the_code_and_the_policy() {
    let w = World::new();
    let err = w
        .provisioner()
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
    let t = target(json!({"TrailMode": "Create", "TrailBucket": "logs"}));
    w.provisioner().converge(&t).await.unwrap();
    let trail_target = t.trail.clone();
    let delete = |physical_id: &str| DeleteTarget {
        owner: owner(),
        physical_id: physical_id.to_owned(),
        secret: None,
        trail: Some((trail_target.clone(), "us-east-1".to_owned())),
        callback: None,
    };
    w.provisioner()
        .delete(&delete("arn:aws:iam::123456789012:user/cloud-app-security/other"))
        .await
        .unwrap();
    assert!(
        w.trails.trail("cloud-app-security").is_some(),
        "serves another physical id"
    );
    w.provisioner().delete(&delete(&t.physical_id)).await.unwrap();
    assert!(w.trails.trail("cloud-app-security").is_none());
}
