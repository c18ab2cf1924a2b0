//! Incident response (SPEC "Identity and ownership"), on the fakes: a stored key a person
//! deactivated is never reactivated — a new key is issued, the deactivated one gives up its
//! slot first — and a quarantine policy is never detached, by Update or by Delete.

use serde_json::json;

use super::upgrade_tests::{base, created, update, with, PHYSICAL};
use super::{event, World, SECRET, STACK, USER};
use crate::cfn::response::Status;

fn deactivate(w: &World, key: &str) {
    w.iam.with(USER, |u| {
        u.keys
            .iter_mut()
            .filter(|k| k.access_key_id == key)
            .for_each(|k| k.active = false)
    });
}

fn active(w: &World) -> Vec<String> {
    let keys = w.iam.user(USER).unwrap().keys;
    keys.into_iter().filter(|k| k.active).map(|k| k.access_key_id).collect()
}

#[tokio::test]
async fn a_deactivated_stored_key_is_replaced_never_reactivated() {
    let w = World::new();
    created(&w).await;
    let leaked = w.stored(SECRET).unwrap().access_key_id;
    deactivate(&w, &leaked);
    let answer = update(&w, "r-after-leak", &base(), &with(json!({"Tags": {"a": "b"}}))).await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    let stored = w.stored(SECRET).unwrap();
    assert_ne!(stored.access_key_id, leaked, "a new key is stored");
    assert_eq!(
        active(&w),
        std::slice::from_ref(&stored.access_key_id),
        "only the new key is active"
    );
    let waiting = stored
        .bookkeeping
        .awaiting_paste
        .expect("the deactivated key is recorded");
    assert_eq!(waiting.access_key_id, leaked);
    assert!(
        waiting.deactivated_at.is_some(),
        "recorded as deactivated: the key check deletes it a week on"
    );
    // Another Update reactivates nothing either.
    let again = update(
        &w,
        "r-again",
        &with(json!({"Tags": {"a": "b"}})),
        &with(json!({"Tags": {"a": "b"}})),
    )
    .await;
    assert_eq!(again.status, Status::Success, "{}", again.reason);
    assert_eq!(active(&w), [stored.access_key_id]);
}

#[tokio::test]
async fn a_deactivated_stored_key_gives_up_its_slot_to_the_key_awaiting_a_paste() {
    let w = World::new();
    created(&w).await;
    // Portal mode: a key change leaves the previous key active, awaiting the paste.
    let rekeyed = update(&w, "r-rekey", &base(), &with(json!({"KeyVersion": "2"}))).await;
    assert_eq!(rekeyed.status, Status::Success, "{}", rekeyed.reason);
    let doc = w.stored(SECRET).unwrap();
    let waiting = doc.bookkeeping.awaiting_paste.clone().unwrap().access_key_id;
    deactivate(&w, &doc.access_key_id);
    let answer = update(
        &w,
        "r-after-leak",
        &with(json!({"KeyVersion": "2"})),
        &with(json!({"KeyVersion": "2", "Tags": {"a": "b"}})),
    )
    .await;
    assert_eq!(answer.status, Status::Success, "{}", answer.reason);
    let stored = w.stored(SECRET).unwrap();
    assert_ne!(stored.access_key_id, doc.access_key_id);
    let mut want = vec![stored.access_key_id.clone(), waiting.clone()];
    want.sort();
    let mut got = active(&w);
    got.sort();
    assert_eq!(got, want, "the new key, and the working key still awaiting its paste");
    assert_eq!(stored.bookkeeping.awaiting_paste.unwrap().access_key_id, waiting);
    assert!(
        !w.key_ids(USER).contains(&doc.access_key_id),
        "the deactivated key went first"
    );
}

#[tokio::test]
async fn a_quarantine_policy_survives_update_and_delete() {
    let w = World::new();
    created(&w).await;
    let quarantine = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";
    let deny = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}"#;
    w.iam.with(USER, |u| {
        u.attached.insert(quarantine.to_owned());
        u.inline.insert("responder-deny".to_owned(), deny.to_owned());
    });
    let updated = update(
        &w,
        "r-up",
        &base(),
        &with(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]})),
    )
    .await;
    assert_eq!(updated.status, Status::Success, "{}", updated.reason);
    let deleted = w
        .handle(event(STACK, "Delete", "r-del", Some(PHYSICAL), &base(), None))
        .await;
    assert_eq!(deleted.status, Status::Failed);
    assert!(
        deleted.reason.contains("quarantined") && deleted.reason.contains("AWSCompromisedKeyQuarantineV3"),
        "{}",
        deleted.reason
    );
    assert!(
        deleted.reason.contains("inline policy responder-deny"),
        "{}",
        deleted.reason
    );
    let user = w.iam.user(USER).expect("the quarantined user stays");
    assert!(user.attached.contains(quarantine) && user.inline.contains_key("responder-deny"));
    assert!(user.keys.is_empty(), "its keys are gone");
    assert!(
        !user.inline.contains_key(crate::provision::INLINE_POLICY_NAME),
        "and the connector's policy"
    );
}

#[tokio::test]
async fn a_managed_policy_with_a_deny_survives_delete_and_the_check_raises_the_alarm() {
    let w = World::new();
    created(&w).await;
    let deny = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}"#;
    let allow =
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}"#;
    let responder = "arn:aws:iam::123456789012:policy/responder-deny";
    let deny_all = "arn:aws:iam::aws:policy/AWSDenyAll";
    let extra = "arn:aws:iam::123456789012:policy/extra-reads";
    for (arn, document) in [(responder, deny), (deny_all, deny), (extra, allow)] {
        w.iam
            .managed
            .lock()
            .unwrap()
            .insert(arn.to_owned(), document.to_owned());
        w.iam.with(USER, |u| {
            u.attached.insert(arn.to_owned());
        });
    }
    let checked = w.check().await.unwrap();
    assert_eq!(checked["Quarantined"], json!([responder, deny_all]), "{checked}");
    let deleted = w
        .handle(event(STACK, "Delete", "r-del", Some(PHYSICAL), &base(), None))
        .await;
    assert_eq!(deleted.status, Status::Failed);
    assert!(
        deleted.reason.contains(responder) && deleted.reason.contains(deny_all),
        "{}",
        deleted.reason
    );
    let user = w.iam.user(USER).expect("the quarantined user stays");
    assert!(user.attached.contains(responder) && user.attached.contains(deny_all));
    assert!(
        !user.attached.contains(extra),
        "a policy without a Deny is stripped as before"
    );
}

#[tokio::test]
async fn the_check_names_a_deactivated_stored_key_and_issues_nothing() {
    let w = World::new();
    created(&w).await;
    let stored = w.stored(SECRET).unwrap().access_key_id;
    deactivate(&w, &stored);
    let err = w.check().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("({stored}) was deactivated by a person"))
            && err.contains("The next stack update issues"),
        "{err}"
    );
    assert_eq!(active(&w), Vec::<String>::new(), "nothing issued, nothing reactivated");
}

#[tokio::test]
async fn a_quarantined_user_reports_failing_from_the_check() {
    let w = World::new();
    created(&w).await;
    let quarantine = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";
    w.iam.with(USER, |u| {
        u.attached.insert(quarantine.to_owned());
    });
    w.check().await.unwrap();
    let report = w.status.reports().last().cloned().unwrap();
    assert_eq!(report["status"], "Failing", "{report}");
    assert!(
        report["lastError"].as_str().is_some_and(|e| e.contains("quarantined")),
        "{report}"
    );
}

#[tokio::test]
async fn once_seen_in_use_a_key_stays_connected_in_the_reports_of_later_requests() {
    use crate::ports::Clock;
    use crate::status::{status, Status as Fleet};
    let w = World::new();
    let first = created(&w).await;
    let snapshot = first.snapshot.expect("a Create reports what it converged");
    let now = w.clock.now();
    assert_eq!(
        status(Ok(()), &snapshot, super::PASTE_OVERDUE, now),
        Fleet::PendingPortal
    );
    assert!(snapshot.key_created_at.is_some());
    let key = w.stored(SECRET).unwrap().access_key_id;
    w.clock.advance(std::time::Duration::from_secs(10 * 86_400));
    let used = w.clock.now() - std::time::Duration::from_secs(60);
    w.iam.last_used.lock().unwrap().insert(key.clone(), used);
    w.check().await.unwrap();
    assert_eq!(w.status.reports().last().unwrap()["status"], "Connected");
    // An Update that keeps the key (a new tag) reports it Connected, not PasteOverdue.
    let updated = update(&w, "r-tag", &base(), &with(json!({"Tags": {"team": "security"}}))).await;
    assert_eq!(updated.status, Status::Success, "{}", updated.reason);
    let snapshot = updated.snapshot.expect("an Update reports what it converged");
    assert_eq!(snapshot.access_key_id.as_deref(), Some(key.as_str()));
    assert_eq!(
        status(Ok(()), &snapshot, super::PASTE_OVERDUE, w.clock.now()),
        Fleet::Connected
    );
}

#[tokio::test]
async fn a_deny_put_into_the_connectors_own_policy_or_boundary_is_never_undone() {
    let w = World::new();
    created(&w).await;
    let own = crate::provision::INLINE_POLICY_NAME;
    let deny = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}"#;
    let deny_all = "arn:aws:iam::123456789012:policy/deny-all-boundary";
    w.iam.with(USER, |u| {
        u.inline.insert(own.to_owned(), deny.to_owned());
        u.boundary = Some(deny_all.to_owned());
    });
    let updated = update(&w, "r-up", &base(), &with(json!({"KeyVersion": "2"}))).await;
    assert_eq!(updated.status, Status::Success, "{}", updated.reason);
    let user = w.iam.user(USER).unwrap();
    assert_eq!(user.inline.get(own).map(String::as_str), Some(deny), "the Deny stays");
    assert_eq!(
        user.boundary.as_deref(),
        Some(deny_all),
        "the responder's boundary stays"
    );
    let checked = w.check().await.unwrap();
    assert_eq!(
        checked["Quarantined"],
        json!([format!("inline policy {own}")]),
        "{checked}"
    );
    let deleted = w
        .handle(event(
            STACK,
            "Delete",
            "r-del",
            Some(PHYSICAL),
            &with(json!({"KeyVersion": "2"})),
            None,
        ))
        .await;
    assert_eq!(deleted.status, Status::Failed);
    assert!(
        deleted.reason.contains(&format!("inline policy {own}")),
        "{}",
        deleted.reason
    );
    assert_eq!(
        w.iam.user(USER).unwrap().inline.get(own).map(String::as_str),
        Some(deny)
    );
}
