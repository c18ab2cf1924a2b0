//! The secret's layout across releases, on the fakes: what this release records, and what it
//! does with a document a newer release wrote (never rewritten; a rollback to what it recorded
//! and a Delete still succeed).

use serde_json::{json, Value};

use super::{event, World, SECRET, STACK, USER};
use crate::cfn::response::{Answer, Status};
use crate::key_material::{SecretDocument, SCHEMA_VERSION};
use crate::ports::CURRENT;
use crate::rotation::RotationError;

pub(super) const PHYSICAL: &str = "arn:aws:iam::123456789012:user/cloud-app-security/CloudAppSecurity-test";

pub(super) fn base() -> Value {
    json!({"ServiceToken": super::FUNCTION, "ConnectorName": "test", "TrailMode": "Off", "CodeVersion": "0.3.0"})
}

pub(super) fn with(extra: Value) -> Value {
    let mut props = base();
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    props
}

pub(super) async fn created(w: &World) -> Answer {
    let answer = w.handle(event(STACK, "Create", "r-create", None, &base(), None)).await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    answer
}

pub(super) async fn update(w: &World, id: &str, old: &Value, new: &Value) -> Answer {
    w.handle(event(STACK, "Update", id, Some(PHYSICAL), new, Some(old)))
        .await
}

/// Rewrites the current document as a later release would: a newer layout, a field this
/// release does not know, and `applied` as given.
fn from_a_newer_release(w: &World, applied: Value) {
    w.edit_current(SECRET, |doc| {
        doc["Bookkeeping"]["schemaVersion"] = json!(SCHEMA_VERSION + 1);
        doc["Bookkeeping"]["writtenBy"] = json!("9.0.0");
        doc["Bookkeeping"]["somethingNew"] = json!({"kept": true});
        doc["Bookkeeping"]["applied"] = applied;
    });
}

fn current_text(w: &World) -> String {
    w.secrets.secret(SECRET).unwrap().staged(CURRENT).unwrap().to_owned()
}

#[tokio::test]
async fn every_success_records_its_properties_and_data_in_the_current_layout() {
    let w = World::new();
    let answer = created(&w).await;
    let doc = w.stored(SECRET).unwrap();
    assert_eq!(doc.schema(), SCHEMA_VERSION);
    let recorded = &doc.bookkeeping.applied[0];
    assert_eq!(recorded.request_id, "r-create");
    assert_eq!(recorded.physical_id, PHYSICAL);
    assert_eq!(recorded.data, answer.data);
    assert!(!recorded.properties.contains_key("ServiceToken"));
    let next = with(json!({"Tags": {"team": "sec"}}));
    let updated = update(&w, "r-tags", &base(), &next).await;
    assert_eq!(updated.status, Status::Success, "{}", updated.reason);
    let doc = w.stored(SECRET).unwrap();
    let ids: Vec<_> = doc.bookkeeping.applied.iter().map(|a| a.request_id.as_str()).collect();
    assert_eq!(ids, ["r-tags", "r-create"]);
    let again = update(&w, "r-again", &next, &next).await;
    assert_eq!(again.status, Status::Success);
    let ids: Vec<_> = w
        .stored(SECRET)
        .unwrap()
        .bookkeeping
        .applied
        .iter()
        .map(|a| a.request_id.clone())
        .collect();
    assert_eq!(
        ids,
        ["r-again", "r-create"],
        "the newest request replaces the entry of the same properties"
    );
}

#[tokio::test]
async fn a_newer_document_is_never_rewritten_and_the_update_names_its_release() {
    let w = World::new();
    created(&w).await;
    from_a_newer_release(&w, json!([]));
    let before = (current_text(&w), w.key_ids(USER));
    let answer = update(&w, "r-rekey", &base(), &with(json!({"KeyVersion": "2"}))).await;
    assert_eq!(answer.status, Status::Failed);
    assert!(
        answer.reason.contains("written by release 9.0.0 (layout 4)"),
        "{}",
        answer.reason
    );
    assert!(answer.reason.contains("never rewrites"), "{}", answer.reason);
    assert_eq!((current_text(&w), w.key_ids(USER)), before, "nothing changed");
    assert!(current_text(&w).contains("somethingNew"));
}

#[tokio::test]
async fn a_rollback_to_properties_a_newer_release_recorded_succeeds_as_recorded() {
    let w = World::new();
    created(&w).await;
    // Properties this release refuses (an unknown property), which the newer release applied.
    let newer = with(json!({"SomethingNew": "yes", "CodeVersion": "9.0.0"}));
    let mut sent = newer.clone();
    sent.as_object_mut().unwrap().remove("ServiceToken");
    let data = json!({"UserName": USER, "AccessKeyId": "AKIARECORDED", "ConnectorStatus": "PendingPortal"});
    let applied = json!([{"requestId": "r9", "physicalId": PHYSICAL, "properties": sent, "data": data}]);
    from_a_newer_release(&w, applied);
    let before = current_text(&w);
    let answer = update(&w, "r-rollback", &base(), &newer).await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    assert_eq!(answer.physical_id, PHYSICAL);
    assert_eq!(answer.data["AccessKeyId"], "AKIARECORDED");
    assert_eq!(current_text(&w), before, "the newer document is left as it is");
    // The same properties under another physical id are no rollback of this resource.
    let elsewhere = w
        .handle(event(
            STACK,
            "Update",
            "r-x",
            Some("arn:aws:iam::123456789012:user/cloud-app-security/other"),
            &newer,
            Some(&base()),
        ))
        .await;
    assert_eq!(elsewhere.status, Status::Failed);
}

#[tokio::test]
async fn properties_recorded_as_applied_succeed_even_when_validation_now_refuses_them() {
    let w = World::new();
    created(&w).await;
    let odd = with(json!({"RetiredProperty": "1"}));
    let mut sent = odd.clone();
    sent.as_object_mut().unwrap().remove("ServiceToken");
    let applied = json!([{"requestId": "r0", "physicalId": PHYSICAL, "properties": sent, "data": {"UserName": USER}}]);
    w.edit_current(SECRET, |doc| doc["Bookkeeping"]["applied"] = applied);
    let answer = update(&w, "r-back", &base(), &odd).await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    let refused = update(&w, "r-typo", &base(), &with(json!({"Typo": "1"}))).await;
    assert_eq!(refused.status, Status::Failed);
    assert!(refused.reason.contains("Typo"), "{}", refused.reason);
}

#[tokio::test]
async fn a_delete_of_a_newer_document_still_removes_everything_it_owns() {
    let w = World::new();
    created(&w).await;
    from_a_newer_release(&w, json!([]));
    let deleted = w
        .handle(event(STACK, "Delete", "r-del", Some(PHYSICAL), &base(), None))
        .await;
    assert_eq!(deleted.status, Status::Success, "{}", deleted.reason);
    assert!(w.iam.user(USER).is_none());
    assert!(w.secrets.secret(SECRET).unwrap().pending_deletion);
}

#[tokio::test]
async fn rotation_and_the_key_check_refuse_a_newer_document() {
    let w = World::new();
    let props = with(json!({"RotationDays": "30"}));
    let answer = w.handle(event(STACK, "Create", "r1", None, &props, None)).await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    from_a_newer_release(&w, json!([]));
    let before = current_text(&w);
    let refused = |e: RotationError| e.to_string().contains("written by release 9.0.0");
    assert!(w.check().await.is_err_and(refused));
    assert!(w.rotate("tok-1").await.is_err_and(refused));
    assert_eq!(current_text(&w), before);
    assert!(
        SecretDocument::from_secret_text(&crate::key_material::SecretText::new(before)).is_some_and(|d| d.is_newer())
    );
}

#[tokio::test]
async fn a_previous_keys_secret_half_is_kept_only_while_the_key_exists() {
    let w = World::new();
    created(&w).await;
    // Portal mode: the previous key waits for the paste, and a rollback may hand it back.
    let v2 = with(json!({"KeyVersion": "2"}));
    assert_eq!(update(&w, "r-v2", &base(), &v2).await.status, Status::Success);
    let doc = w.stored(SECRET).unwrap();
    let previous = doc
        .bookkeeping
        .previous
        .clone()
        .expect("the previous key is kept")
        .access_key_id;
    assert!(w.key_ids(USER).contains(&previous));
    // The key goes (retired, or deleted by a person): the next write drops its record.
    w.iam.with(USER, |u| u.keys.retain(|k| k.access_key_id != previous));
    let tagged = with(json!({"KeyVersion": "2", "Tags": {"a": "b"}}));
    assert_eq!(update(&w, "r-tags", &v2, &tagged).await.status, Status::Success);
    let doc = w.stored(SECRET).unwrap();
    assert!(
        doc.bookkeeping.previous.is_none(),
        "no secret half of a key that no longer exists"
    );
    let text = w.secrets.secret(SECRET).unwrap().staged(CURRENT).unwrap().to_owned();
    assert!(!text.contains(&format!("secret-of-{previous}")));
}
