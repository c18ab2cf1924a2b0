//! Late deliveries (SPEC "Behaviour", Concurrency), on the fakes: a request CloudFormation has
//! moved on from — repeated by `RequestId`, or signed before what the resource applied since,
//! or before its own Delete — acts on nothing.

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use super::upgrade_tests::{base, created, with, PHYSICAL};
use super::{event, World, SECRET, STACK, USER};
use crate::cfn::response::{Answer, Status};
use crate::ports::Clock;

/// `e` with a `ResponseURL` signed `ago` seconds before the world's clock.
fn signed(w: &World, mut e: Value, ago: u64) -> Value {
    let now = w.clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs() - ago;
    let t = super::amz_date(now);
    e["ResponseURL"] = json!(format!("http://127.0.0.1/response?X-Amz-Date={t}&X-Amz-Signature=0"));
    e
}

async fn send(w: &World, e: Value) -> Answer {
    w.clock.advance(std::time::Duration::from_secs(10));
    w.handle(e).await
}

#[tokio::test]
async fn a_late_duplicate_of_a_failed_rename_does_not_come_back_after_the_rollback() {
    let w = World::new();
    created(&w).await;
    // The rename fails (the new user's name is taken by someone else), then rolls back.
    let foreign = super::iam::FakeUser {
        path: "/".into(),
        ..Default::default()
    };
    w.iam
        .users
        .lock()
        .unwrap()
        .insert("CloudAppSecurity-renamed".into(), foreign);
    let renamed = with(json!({"UserName": "CloudAppSecurity-renamed"}));
    let rename = signed(
        &w,
        event(STACK, "Update", "r-rename", Some(PHYSICAL), &renamed, Some(&base())),
        0,
    );
    let failed = send(&w, rename.clone()).await;
    assert_eq!(
        failed.status,
        Status::Failed,
        "{} {}",
        failed.reason,
        failed.physical_id
    );
    let back = signed(
        &w,
        event(STACK, "Update", "r-back", Some(PHYSICAL), &base(), Some(&renamed)),
        0,
    );
    let back = send(&w, back).await;
    assert_eq!(back.status, Status::Success, "{}", back.reason);
    // The name is free again, and the failed request is delivered once more, late.
    w.iam.users.lock().unwrap().remove("CloudAppSecurity-renamed");
    let late = send(&w, rename).await;
    assert_eq!(late.status, Status::Failed);
    assert!(
        late.reason
            .starts_with("superseded: request r-rename was answered FAILED before"),
        "{}",
        late.reason
    );
    assert!(w.iam.user("CloudAppSecurity-renamed").is_none(), "no user resurrected");
}

#[tokio::test]
async fn a_repeated_delivery_of_the_last_request_is_answered_as_it_was() {
    let w = World::new();
    created(&w).await;
    let tagged = with(json!({"Tags": {"team": "sec"}}));
    let e = signed(
        &w,
        event(STACK, "Update", "r-tags", Some(PHYSICAL), &tagged, Some(&base())),
        0,
    );
    let first = send(&w, e.clone()).await;
    assert_eq!(first.status, Status::Success, "{}", first.reason);
    let calls = w.faults.calls();
    let again = send(&w, e).await;
    assert_eq!((again.status, again.data.clone()), (Status::Success, first.data));
    assert_eq!(again.reason, "already applied (a repeated delivery)");
    assert_eq!(
        w.faults.calls(),
        calls + 2,
        "the record read (DescribeSecret and GetSecretValue), nothing else"
    );
}

#[tokio::test]
async fn a_late_create_after_the_delete_leaves_the_tombstone_alone() {
    let w = World::new();
    let create = signed(&w, event(STACK, "Create", "r-create", None, &base(), None), 0);
    assert_eq!(send(&w, create.clone()).await.status, Status::Success);
    let delete = signed(&w, event(STACK, "Delete", "r-del", Some(PHYSICAL), &base(), None), 0);
    assert_eq!(send(&w, delete).await.status, Status::Success);
    let late = send(&w, create).await;
    assert_eq!(late.status, Status::Failed);
    assert!(
        late.reason.contains("scheduled for deletion by this resource's Delete"),
        "{}",
        late.reason
    );
    assert!(w.iam.user(USER).is_none(), "no user brought back");
    assert!(
        w.secrets.secret(SECRET).unwrap().pending_deletion,
        "the secret stays scheduled for deletion"
    );
}

#[tokio::test]
async fn a_forged_future_date_is_ignored_and_freezes_nothing() {
    let w = World::new();
    created(&w).await;
    let mut future = event(
        STACK,
        "Update",
        "r-future",
        Some(PHYSICAL),
        &with(json!({"KeyVersion": "2"})),
        Some(&base()),
    );
    future["ResponseURL"] = json!("http://127.0.0.1/response?X-Amz-Date=20991231T000000Z");
    assert_eq!(send(&w, future).await.status, Status::Success);
    let next = with(json!({"KeyVersion": "2", "Tags": {"a": "b"}}));
    let later = signed(
        &w,
        event(
            STACK,
            "Update",
            "r-next",
            Some(PHYSICAL),
            &next,
            Some(&with(json!({"KeyVersion": "2"}))),
        ),
        0,
    );
    let answer = send(&w, later).await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
}

#[tokio::test]
async fn a_request_signed_before_the_last_one_applied_acts_on_nothing() {
    let w = World::new();
    created(&w).await;
    let v2 = with(json!({"KeyVersion": "2"}));
    // Signed first, delivered late: another request was signed and applied meanwhile.
    let early = signed(
        &w,
        event(STACK, "Update", "r-early", Some(PHYSICAL), &v2, Some(&base())),
        60,
    );
    let tags = with(json!({"Tags": {"a": "b"}}));
    let applied = signed(
        &w,
        event(STACK, "Update", "r-applied", Some(PHYSICAL), &tags, Some(&base())),
        0,
    );
    assert_eq!(send(&w, applied).await.status, Status::Success);
    let stored = w.stored(SECRET).unwrap().access_key_id;
    let late = send(&w, early).await;
    assert_eq!(late.status, Status::Failed);
    assert!(
        late.reason
            .contains("before request r-applied that the resource applied since"),
        "{}",
        late.reason
    );
    assert_eq!(w.stored(SECRET).unwrap().access_key_id, stored, "no re-key");
}

/// Rewrites the current document's newest `applied` entry's date, as someone allowed to write
/// the secret's value could.
fn forge_applied_at(w: &World, at: u64) {
    w.edit_current(SECRET, |doc| doc["Bookkeeping"]["applied"][0]["at"] = json!(at));
}

#[tokio::test]
async fn a_recorded_date_from_the_future_orders_nothing_and_freezes_nothing() {
    for forged in [4_102_444_800, u64::MAX] {
        let w = World::new();
        created(&w).await;
        forge_applied_at(&w, forged);
        let tagged = with(json!({"Tags": {"a": "b"}}));
        let update = signed(
            &w,
            event(STACK, "Update", "r-up", Some(PHYSICAL), &tagged, Some(&base())),
            0,
        );
        let answer = send(&w, update).await;
        assert_eq!(answer.status, Status::Success, "{}", answer.reason);
        forge_applied_at(&w, forged);
        let delete = signed(&w, event(STACK, "Delete", "r-del", Some(PHYSICAL), &tagged, None), 0);
        let deleted = send(&w, delete).await;
        assert_eq!(deleted.status, Status::Success, "{}", deleted.reason);
        assert!(w.iam.user(USER).is_none());
    }
}

#[tokio::test]
async fn a_secret_planted_before_the_create_does_not_steer_it() {
    let w = World::new();
    // Someone who may create secrets under the prefix plants one with this stack's two tags
    // and a record whose dates lie ahead.
    let doc = json!({"AccessKeyId": "AKIAPLANTED", "SecretAccessKey": "x", "UserName": USER,
        "Bookkeeping": {"schemaVersion": 3, "applied": [{"requestId": "r-x", "physicalId": PHYSICAL,
        "properties": {}, "data": {}, "at": 1_800_000_200u64}]}});
    let tags = super::owner().tags(PHYSICAL, &Default::default());
    w.secrets.plant(
        SECRET,
        super::secrets::FakeSecret {
            arn: "arn:planted".into(),
            tags,
            versions: vec![("v0".into(), doc.to_string(), vec![crate::ports::CURRENT.into()])],
            ..Default::default()
        },
    );
    let create = signed(&w, event(STACK, "Create", "r-create", None, &base(), None), 0);
    let answer = send(&w, create).await;
    assert!(!answer.reason.starts_with("superseded"), "{}", answer.reason);
}
