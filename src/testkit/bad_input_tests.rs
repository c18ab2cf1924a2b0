//! Bad input on the way back (SPEC "Behaviour"), on the fakes: a typo never leaves a stack in
//! `UPDATE_ROLLBACK_FAILED`, and nothing invalid is sent to AWS to be deleted.

use serde_json::json;

use super::upgrade_tests::{base, created, update, with, PHYSICAL};
use super::{World, USER};
use crate::cfn::response::Status;

#[tokio::test]
async fn the_rollback_of_an_update_with_an_invalid_name_succeeds_and_deletes_nothing() {
    let w = World::new();
    created(&w).await;
    let typo = with(json!({"UserName": "bad name!"}));
    let failed = update(&w, "r-typo", &base(), &typo).await;
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.reason.contains("UserName"), "{}", failed.reason);
    let keys = w.key_ids(USER);
    let rollback = update(&w, "r-rollback", &typo, &base()).await;
    assert_eq!(rollback.status, Status::Success, "{}", rollback.reason);
    assert_eq!(rollback.physical_id, PHYSICAL);
    assert_eq!(w.key_ids(USER), keys, "the user and its key are untouched");
}

#[tokio::test]
async fn a_validate_only_resource_checks_every_property_and_makes_nothing() {
    let w = World::new();
    let check = |props| super::event(super::STACK, "Create", "r-check", None, props, None);
    let bad = with(json!({"ValidateOnly": "true", "RotationDays": "10", "SecretRecoveryWindowDays": "3"}));
    let refused = w.handle(check(&bad)).await;
    assert_eq!(refused.status, Status::Failed);
    assert!(
        refused.reason.contains("RotationDays") && refused.reason.contains("SecretRecoveryWindowDays"),
        "{}",
        refused.reason
    );
    assert_eq!(refused.physical_id, "cloud-app-security-validation/Connector");
    let good = with(json!({"ValidateOnly": "true"}));
    let accepted = w.handle(check(&good)).await;
    assert_eq!(accepted.status, Status::Success, "{}", accepted.reason);
    assert!(
        w.iam.user(USER).is_none() && w.secrets.secret(super::SECRET).is_none(),
        "nothing made"
    );
    let delete = super::event(
        super::STACK,
        "Delete",
        "r-del",
        Some(&accepted.physical_id),
        &good,
        None,
    );
    assert_eq!(w.handle(delete).await.status, Status::Success);
    // A Delete of the validation id with the connector's properties still removes nothing.
    created(&w).await;
    let keys = w.key_ids(USER);
    let delete = super::event(
        super::STACK,
        "Delete",
        "r-del2",
        Some(&accepted.physical_id),
        &base(),
        None,
    );
    assert_eq!(w.handle(delete).await.status, Status::Success);
    assert_eq!(w.key_ids(USER), keys);
}

/// The state the first sequence of `model::FOUND` reached: the call back's record in the secret
/// left "in doubt" (written before the call, never completed) by a duplicate that failed after
/// its twin registered. A rotation then must still end with only the stored key active, or
/// the old one recorded as awaiting a paste.
#[tokio::test(start_paused = true)]
async fn a_rotation_over_a_registration_in_doubt_retires_the_old_key() {
    let w = World::new();
    let credentials = super::provision_tests::plant_credentials(&w);
    let props = with(
        json!({"RotationDays": "30", "CloudAppSecurityUrl": "http://127.0.0.1:9",
        "CloudAppSecurityCredentials": credentials}),
    );
    let answer = w
        .handle(super::event(super::STACK, "Create", "r1", None, &props, None))
        .await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    w.edit_current(super::SECRET, |doc| {
        doc["Bookkeeping"]["registration"]["id"] = json!("");
        doc["Bookkeeping"]["registration"]["fingerprint"] = json!("");
    });
    let rotated = w.rotate("tok-doubt").await;
    let stored = w.stored(super::SECRET).unwrap();
    let awaiting = stored
        .bookkeeping
        .awaiting_paste
        .as_ref()
        .map(|a| a.access_key_id.clone());
    let active: Vec<String> = w
        .iam
        .user(USER)
        .unwrap()
        .keys
        .into_iter()
        .filter(|k| k.active)
        .map(|k| k.access_key_id)
        .collect();
    let allowed = [Some(stored.access_key_id.clone()), awaiting]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    assert!(
        active.iter().all(|k| allowed.contains(k)),
        "rotation {rotated:?}: active {active:?}, stored {}, awaiting {:?}",
        stored.access_key_id,
        stored.bookkeeping.awaiting_paste
    );
}
