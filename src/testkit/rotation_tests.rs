//! Rotation and the key check on the fakes: the protocol's four steps, the portal-mode rule for
//! the previous key, the guard, and what a failed or superseded rotation leaves behind.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::provision_tests::plant_credentials;
use super::*;
use crate::key_material::SecretDocument;
use crate::ports::{Clock, CURRENT, PENDING, PREVIOUS};
use crate::provision::Made;
use crate::provision::ProvisionError;
use crate::rotation::{RotationError, Step};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl World {
    /// A connector with scheduled rotation, converged.
    async fn connector(&self, extra: Value) -> Target {
        let mut props = json!({"RotationDays": "30"});
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let t = target(props);
        let p = self.provisioner("req-create");
        p.converge(&t, &Made::default()).await.unwrap();
        t
    }

    fn current(&self) -> SecretDocument {
        self.stored(SECRET).unwrap()
    }

    fn labels(&self, token: &str) -> Vec<String> {
        let secret = self.secrets.secret(SECRET).unwrap();
        let version = secret.versions.iter().find(|(id, _, _)| id == token);
        version.map(|(_, _, labels)| labels.clone()).unwrap_or_default()
    }

    fn used(&self, key: &str, at: SystemTime) {
        self.iam.last_used.lock().unwrap().insert(key.to_owned(), at);
    }
}

fn callback(w: &World) -> Value {
    json!({"CloudAppSecurityUrl": "http://127.0.0.1:9", "CloudAppSecurityCredentials": plant_credentials(w)})
}

#[tokio::test]
async fn in_portal_mode_a_rotation_stores_a_new_key_and_keeps_the_previous_one_awaiting_the_paste() {
    let w = World::new();
    let t = w.connector(json!({})).await;
    assert_eq!(
        w.secrets.secret(SECRET).unwrap().rotation,
        Some((FUNCTION.to_owned(), 30))
    );
    let before = w.current();
    w.rotate("rot-1").await.unwrap();
    let after = w.current();
    assert_ne!(after.access_key_id, before.access_key_id);
    assert_eq!(
        w.labels("rot-1"),
        [CURRENT],
        "the new version is current, its pending label gone"
    );
    let waiting = after.bookkeeping.awaiting_paste.as_ref().unwrap();
    assert_eq!(waiting.access_key_id, before.access_key_id);
    let mut keys = w.key_ids(USER);
    keys.sort();
    let mut expected = vec![before.access_key_id.clone(), after.access_key_id.clone()];
    expected.sort();
    assert_eq!(keys, expected, "both keys stay active until the paste is seen");
    let description = w.secrets.secret(SECRET).unwrap().description;
    assert!(
        description.contains(&after.access_key_id) && description.contains("waits to be pasted"),
        "{description}"
    );
    assert_eq!(after.bookkeeping.key_version, before.bookkeeping.key_version);
    assert!(w.registry.calls().is_empty(), "portal mode sends nothing");
    assert_eq!(w.probe.probed.lock().unwrap().last(), Some(&after.access_key_id));
    // The next stack update keeps the rotated key: it was issued for the same KeyVersion.
    let calls = w.faults.log().len();
    let again = w
        .provisioner("req-update")
        .converge(&t, &Made::default())
        .await
        .unwrap();
    assert_eq!(again.access_key_id, after.access_key_id);
    let since = &w.faults.log()[calls..];
    assert!(
        !since
            .iter()
            .any(|op| op.contains("CreateAccessKey") || op.contains("PutSecretValue")),
        "{since:?}"
    );
}

#[tokio::test]
async fn with_the_call_back_the_new_key_is_registered_in_set_and_the_old_one_deleted_in_finish() {
    let w = World::new();
    let t = w.connector(callback(&w)).await;
    let before = w.current();
    let key = crate::cloud_app_security::sha256_hex(&t.physical_id);
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    w.step(Step::Create, "rot-1").await.unwrap();
    w.step(Step::Set, "rot-1").await.unwrap();
    let pending = w.secrets.secret(SECRET).unwrap();
    let pending: SecretDocument = serde_json::from_str(pending.versions.last().map(|(_, v, _)| v).unwrap()).unwrap();
    assert_eq!(
        w.registry.registered(&key),
        [("http://127.0.0.1:9/".to_owned(), pending.access_key_id.clone())]
    );
    assert_eq!(
        w.key_ids(USER).len(),
        2,
        "the old key lives until the new one is current"
    );
    w.step(Step::Test, "rot-1").await.unwrap();
    w.step(Step::Finish, "rot-1").await.unwrap();
    let after = w.current();
    assert_eq!(after.access_key_id, pending.access_key_id);
    assert_eq!(w.key_ids(USER), vec![after.access_key_id.clone()]);
    assert!(after.bookkeeping.awaiting_paste.is_none());
    assert_ne!(before.access_key_id, after.access_key_id);
    // The record carries the new key's fingerprint: the next update calls nothing.
    let calls = w.registry.calls().len();
    w.provisioner("req-update")
        .converge(&t, &Made::default())
        .await
        .unwrap();
    assert_eq!(w.registry.calls().len(), calls);
}

#[tokio::test]
async fn every_step_repeated_changes_nothing_more() {
    let w = World::new();
    w.connector(callback(&w)).await;
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
        w.step(step, "rot-1").await.unwrap();
        w.step(step, "rot-1").await.unwrap();
    }
    assert_eq!(w.key_ids(USER), [w.current().access_key_id]);
    assert_eq!(
        w.iam.issued.lock().unwrap().len(),
        2,
        "one key at Create, one for the rotation"
    );
}

#[tokio::test]
async fn a_rotation_while_a_paste_is_pending_fails_before_issuing_and_clears_its_pending_label() {
    let w = World::new();
    w.connector(json!({})).await;
    w.rotate("rot-1").await.unwrap();
    let issued = w.iam.issued.lock().unwrap().len();
    let e = w.rotate("rot-2").await.unwrap_err();
    assert!(
        matches!(e, RotationError::Provision(ProvisionError::PastePending { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("waits to be pasted"), "{e}");
    assert_eq!(w.iam.issued.lock().unwrap().len(), issued);
    assert!(w.labels("rot-2").is_empty(), "the next RotateSecret is not refused");
    w.secrets.begin_rotation(SECRET, "rot-3").unwrap();
}

#[tokio::test]
async fn the_check_retires_the_previous_key_once_the_new_one_is_seen_and_deletes_it_a_week_later() {
    let w = World::new();
    w.connector(json!({})).await;
    let old = w.current().access_key_id;
    w.rotate("rot-1").await.unwrap();
    let new = w.current().access_key_id;
    let checked = w.check().await.unwrap();
    assert_eq!(checked["PastePending"], true);
    // Cloud App Security starts using the new key; the old one falls idle.
    w.clock.advance(2 * DAY);
    let now = w.clock.now();
    w.used(&new, now - Duration::from_secs(3600));
    w.used(&old, now - DAY - Duration::from_secs(60));
    let checked = w.check().await.unwrap();
    assert_eq!(checked["PastePending"], false, "{checked}");
    let user = w.iam.user(USER).unwrap();
    assert!(
        user.keys.iter().any(|k| k.access_key_id == old && !k.active),
        "deactivated, not deleted"
    );
    assert!(!w.secrets.secret(SECRET).unwrap().description.contains("waits"));
    w.clock.advance(6 * DAY);
    w.check().await.unwrap();
    assert_eq!(w.key_ids(USER).len(), 2, "kept for a week after it was deactivated");
    w.clock.advance(DAY);
    w.check().await.unwrap();
    assert_eq!(w.key_ids(USER), [new]);
    assert!(w.current().bookkeeping.awaiting_paste.is_none());
    // Nothing waits any more: the next rotation may start.
    w.rotate("rot-2").await.unwrap();
}

#[tokio::test]
async fn the_grace_period_ends_the_wait_when_the_switch_is_never_seen() {
    let w = World::new();
    w.connector(json!({"RotationGraceDays": "3", "RotationDays": "20"}))
        .await;
    let old = w.current().access_key_id;
    w.rotate("rot-1").await.unwrap();
    w.clock.advance(2 * DAY);
    w.used(&old, w.clock.now());
    assert_eq!(w.check().await.unwrap()["PastePending"], true);
    w.clock.advance(DAY);
    let checked = w.check().await.unwrap();
    assert_eq!(checked["PastePending"], false);
    assert!(
        checked["PreviousKey"]
            .as_str()
            .unwrap()
            .contains("without Cloud App Security seen"),
        "{checked}"
    );
    assert!(!w
        .iam
        .user(USER)
        .unwrap()
        .keys
        .iter()
        .any(|k| k.access_key_id == old && k.active));
}

#[tokio::test]
async fn a_failed_test_step_deletes_the_new_key_gives_the_tenant_the_current_one_back_and_unblocks_rotation() {
    let w = World::new();
    let t = w.connector(callback(&w)).await;
    let before = w.current();
    *w.probe.denied.lock().unwrap() = true;
    let e = w.rotate("rot-1").await.unwrap_err();
    assert!(matches!(e, RotationError::KeyFailed { .. }), "{e}");
    assert!(e.to_string().contains("could not make the connector's reads"), "{e}");
    assert_eq!(
        w.current().access_key_id,
        before.access_key_id,
        "the current key is untouched"
    );
    assert_eq!(
        w.key_ids(USER),
        vec![before.access_key_id.clone()],
        "the new key is gone"
    );
    let key = crate::cloud_app_security::sha256_hex(&t.physical_id);
    assert_eq!(
        w.registry.registered(&key),
        [("http://127.0.0.1:9/".to_owned(), before.access_key_id.clone())]
    );
    assert!(!w.labels("rot-1").contains(&PENDING.to_owned()));
    *w.probe.denied.lock().unwrap() = false;
    w.rotate("rot-2").await.unwrap();
}

#[tokio::test]
async fn a_stack_update_during_the_rotation_wins_and_the_rotation_leaves_nothing_behind() {
    let w = World::new();
    let t = w.connector(json!({})).await;
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    w.step(Step::Create, "rot-1").await.unwrap();
    w.step(Step::Set, "rot-1").await.unwrap();
    // A stack update writes the secret (here: new tags change nothing; a new connection does).
    let mut wider = t.clone();
    wider
        .connections
        .insert(crate::properties::Connection::SecurityConfiguration);
    w.provisioner("req-update")
        .converge(&wider, &Made::default())
        .await
        .unwrap();
    let stored = w.current();
    let e = w.step(Step::Finish, "rot-1").await.unwrap_err();
    assert!(matches!(e, RotationError::Superseded { .. }), "{e}");
    assert_eq!(w.current().access_key_id, stored.access_key_id);
    assert_eq!(
        w.key_ids(USER),
        [stored.access_key_id],
        "the rotation's key was deleted"
    );
}

#[tokio::test]
async fn the_guard_acts_only_on_this_stacks_secret_with_rotation_on_for_a_pending_version() {
    let w = World::new();
    w.connector(json!({"RotationDays": "0"})).await;
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    let e = w.step(Step::Create, "rot-1").await.unwrap_err();
    assert!(matches!(e, RotationError::NotEnabled(_)), "{e}");
    w.secrets.secrets.lock().unwrap().get_mut(SECRET).unwrap().rotation = Some((FUNCTION.into(), 30));
    let e = w.step(Step::Create, "no-such-version").await.unwrap_err();
    assert!(matches!(e, RotationError::NotPending { .. }), "{e}");
    let other = "arn:aws:cloudformation:us-east-1:123456789012:stack/other/1";
    w.secrets
        .secrets
        .lock()
        .unwrap()
        .get_mut(SECRET)
        .unwrap()
        .tags
        .insert(crate::ownership::TAG_STACK_ID.into(), other.into());
    let e = w.step(Step::Create, "rot-1").await.unwrap_err();
    assert!(matches!(e, RotationError::NotOurs(_)), "{e}");
    assert_eq!(
        w.iam.issued.lock().unwrap().len(),
        1,
        "no key was issued for any of them"
    );
}

#[tokio::test]
async fn secrets_managers_configuration_test_passes_without_a_new_key() {
    let w = World::new();
    w.connector(json!({})).await;
    // RotateSecret with RotateImmediately = false: testSecret on a version without a new key,
    // empty (as Secrets Manager makes it) or a copy of the current value (as moto does).
    w.secrets.begin_rotation(SECRET, "cfg").unwrap();
    w.step(Step::Test, "cfg").await.unwrap();
    let current = w.secrets.secret(SECRET).unwrap().staged(CURRENT).unwrap().to_owned();
    w.secrets
        .secrets
        .lock()
        .unwrap()
        .get_mut(SECRET)
        .unwrap()
        .versions
        .last_mut()
        .unwrap()
        .1 = current;
    w.step(Step::Test, "cfg").await.unwrap();
    assert_eq!(w.iam.issued.lock().unwrap().len(), 1);
    assert!(w.labels("cfg").contains(&PENDING.to_owned()) && !w.labels("cfg").contains(&PREVIOUS.to_owned()));
}

#[tokio::test]
async fn create_secret_makes_room_by_deleting_only_a_stale_key_never_the_current_or_a_young_one() {
    use crate::ports::AccessKeys;
    let w = World::new();
    w.connector(json!({})).await;
    let current = w.current().access_key_id;
    // A key someone made by hand: young, it may be another invocation's about to be stored.
    let extra = w.iam.create_access_key(USER).await.unwrap().access_key_id;
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    let e = w.step(Step::Create, "rot-1").await.unwrap_err();
    assert!(e.to_string().contains("already has two access keys"), "{e}");
    assert_eq!(w.key_ids(USER).len(), 2, "neither key was deleted");
    // An hour later it cannot be any invocation's: it goes, the current key stays.
    w.clock.advance(Duration::from_secs(3600));
    w.secrets.begin_rotation(SECRET, "rot-2").unwrap();
    w.step(Step::Create, "rot-2").await.unwrap();
    let keys = w.key_ids(USER);
    assert!(keys.contains(&current) && !keys.contains(&extra), "{keys:?}");
    assert_eq!(keys.len(), 2, "the current key and the new pending one");
}

#[tokio::test]
async fn a_planted_secret_with_our_tags_naming_our_user_mints_and_deletes_nothing() {
    let w = World::new();
    w.connector(json!({})).await;
    let ours = w.secrets.secret(SECRET).unwrap();
    let stored = w.current();
    // Someone allowed to create secrets copies our tags and names our user and key id, without
    // the key's secret half.
    let forged = format!(
        r#"{{"AccessKeyId":"{}","SecretAccessKey":"guess","UserName":"{USER}"}}"#,
        stored.access_key_id
    );
    w.secrets.plant(
        "cloud-app-security/evil",
        secrets::FakeSecret {
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cloud-app-security/evil-XyZ".into(),
            tags: ours.tags.clone(),
            rotation: Some((FUNCTION.into(), 30)),
            versions: vec![("v1".into(), forged, vec![CURRENT.into()])],
            ..Default::default()
        },
    );
    w.secrets.begin_rotation("cloud-app-security/evil", "evil-1").unwrap();
    let request = crate::rotation::RotationRequest {
        step: Step::Create,
        secret_id: "cloud-app-security/evil".into(),
        client_request_token: "evil-1".into(),
    };
    let e = w
        .other_event(&crate::rotation::Event::Rotation(request))
        .await
        .unwrap_err();
    assert!(matches!(e, RotationError::Unproven { .. }), "{e}");
    let check = crate::rotation::CheckRequest {
        secret_id: "cloud-app-security/evil".into(),
    };
    let e = w.other_event(&crate::rotation::Event::Check(check)).await.unwrap_err();
    assert!(e.refused(), "{e}");
    assert_eq!(
        w.key_ids(USER),
        vec![stored.access_key_id],
        "no key minted, none deleted"
    );
    assert_eq!(w.iam.issued.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_finish_before_set_still_gives_the_tenant_the_new_key_before_the_old_one_goes() {
    let w = World::new();
    let t = w.connector(callback(&w)).await;
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    w.step(Step::Create, "rot-1").await.unwrap();
    w.step(Step::Finish, "rot-1").await.unwrap();
    w.step(Step::Set, "rot-1").await.unwrap();
    let stored = w.current().access_key_id;
    let key = crate::cloud_app_security::sha256_hex(&t.physical_id);
    assert_eq!(
        w.registry.registered(&key),
        [("http://127.0.0.1:9/".to_owned(), stored.clone())]
    );
    assert_eq!(w.key_ids(USER), vec![stored]);
}

#[tokio::test]
async fn the_switch_not_seen_alarm_stays_on_until_the_tenant_uses_the_new_key() {
    let w = World::new();
    w.connector(json!({"RotationGraceDays": "2", "RotationDays": "20"}))
        .await;
    w.rotate("rot-1").await.unwrap();
    let new = w.current().access_key_id;
    w.clock.advance(3 * DAY);
    let checked = w.check().await.unwrap();
    assert_eq!(
        checked["PreviousKey"],
        "deactivated: the grace period ended without Cloud App Security seen using the new key"
    );
    for _ in 0..3 {
        w.clock.advance(DAY);
        w.check().await.unwrap();
        assert!(
            w.current().bookkeeping.switch_unseen_since.is_some(),
            "still unseen: the alarm stays on"
        );
    }
    // Someone pastes the key at last; Cloud App Security uses it.
    w.used(&new, w.clock.now());
    w.clock.advance(DAY);
    w.check().await.unwrap();
    assert!(w.current().bookkeeping.switch_unseen_since.is_none());
}

#[tokio::test]
async fn turning_rotation_off_mid_rotation_abandons_it_so_that_it_can_be_turned_on_again() {
    let w = World::new();
    let t = w.connector(json!({})).await;
    let stored = w.current().access_key_id;
    w.secrets.begin_rotation(SECRET, "rot-1").unwrap();
    w.step(Step::Create, "rot-1").await.unwrap();
    let mut off = t.clone();
    off.rotation_days = 0;
    w.provisioner("req-off").converge(&off, &Made::default()).await.unwrap();
    assert!(!w.labels("rot-1").contains(&PENDING.to_owned()));
    assert_eq!(w.key_ids(USER), vec![stored.clone()], "the rotation's key is gone");
    w.provisioner("req-on").converge(&t, &Made::default()).await.unwrap();
    w.rotate("rot-2").await.unwrap();
    assert_ne!(w.current().access_key_id, stored);
}

#[tokio::test]
async fn a_rotation_issues_no_key_for_a_secret_someone_tagged_and_accepts_the_deployers_tags() {
    for (extra, fails) in [("org:owner", false), ("abac-readers", true)] {
        let w = World::new();
        w.connector(json!({"Tags": {"team": "security"}, "ToleratedTagKeys": "org:*"}))
            .await;
        {
            let mut secrets = w.secrets.secrets.lock().unwrap();
            let tags = &mut secrets.get_mut(SECRET).unwrap().tags;
            tags.insert(extra.into(), "someone".into());
        }
        let keys = w.iam.user(USER).unwrap().keys.len();
        let rotated = w.rotate("rot-1").await;
        match fails {
            false => assert!(rotated.is_ok(), "{:?}", rotated.err().map(|e| e.to_string())),
            true => {
                let err = rotated.unwrap_err().to_string();
                assert!(
                    err.contains("carries tags this stack did not set (abac-readers)"),
                    "{err}"
                );
                assert_eq!(w.iam.user(USER).unwrap().keys.len(), keys, "no key issued");
            }
        }
    }
}

#[tokio::test]
async fn a_registration_a_switch_to_portal_mode_could_not_remove_goes_at_the_check_or_the_delete() {
    use crate::ownership::StackArn;
    use crate::ports::ErrorKind;
    use crate::provision::DeleteTarget;
    for by_check in [true, false] {
        let w = World::new();
        let mut with_callback = callback(&w);
        with_callback["RotationDays"] = json!("30");
        let t = w.connector(with_callback.clone()).await;
        assert_eq!(w.registry.connectors.lock().unwrap().len(), 1);
        w.faults.fail_next("cloudappsecurity:Remove", ErrorKind::Other);
        let portal = update(with_callback, json!({"RotationDays": "30"}));
        w.provisioner("req-2")
            .converge(&portal, &Made::default())
            .await
            .unwrap();
        assert_eq!(w.registry.connectors.lock().unwrap().len(), 1, "the removal failed");
        assert_eq!(w.current().bookkeeping.stale_registrations.len(), 1, "and was recorded");
        match by_check {
            true => {
                w.check().await.unwrap();
                assert!(w.current().bookkeeping.stale_registrations.is_empty());
            }
            false => {
                let stack = StackArn::parse(STACK).unwrap();
                let gone = DeleteTarget::new(t.owner.clone(), stack, &t.physical_id, &props(json!({})));
                w.provisioner("req-d").delete(&gone).await.unwrap();
            }
        }
        assert!(
            w.registry.connectors.lock().unwrap().is_empty(),
            "removed by the {}",
            if by_check { "check" } else { "portal-mode Delete" }
        );
    }
}

/// The last status report sent.
fn last_report(w: &World) -> Value {
    w.status.reports().last().cloned().expect("a report was sent")
}

#[tokio::test]
async fn the_daily_check_reports_the_first_keys_status_pending_overdue_then_connected() {
    let w = World::new();
    w.connector(json!({})).await;
    let key = w.current().access_key_id;
    w.check().await.unwrap();
    let report = last_report(&w);
    assert_eq!(
        (report["trigger"].as_str(), report["status"].as_str()),
        (Some("Check"), Some("PendingPortal"))
    );
    assert_eq!(report["accessKeyId"], key.as_str());
    assert!(report["keyCreatedAt"].is_string(), "{report}");
    assert_eq!(report["stackId"], STACK);
    w.clock.advance(3 * DAY);
    w.check().await.unwrap();
    assert_eq!(
        last_report(&w)["status"],
        "PasteOverdue",
        "never seen for PasteOverdueDays"
    );
    // Cloud App Security uses the key, well after the function's own verification.
    let now = w.clock.now();
    w.used(&key, now - Duration::from_secs(60));
    w.check().await.unwrap();
    let report = last_report(&w);
    assert_eq!(report["status"], "Connected");
    assert!(report["lastSeenUsed"].is_string());
    let json = serde_json::to_string(&w.status.reports()).unwrap();
    assert!(!json.contains("secret-of-"), "never a key's secret half: {json}");
}

#[tokio::test]
async fn a_registered_connector_reports_registered_and_a_failed_step_failing() {
    let w = World::new();
    let mut with_callback = callback(&w);
    with_callback["RotationDays"] = json!("30");
    w.connector(with_callback).await;
    w.check().await.unwrap();
    assert_eq!(last_report(&w)["status"], "Registered");
    assert_eq!(last_report(&w)["mode"], "callback");
    w.faults
        .fail_next("iam:CreateAccessKey", crate::ports::ErrorKind::Other);
    assert!(w.rotate("rot-1").await.is_err());
    let report = last_report(&w);
    assert_eq!(
        (report["trigger"].as_str(), report["status"].as_str()),
        (Some("Rotation"), Some("Failing"))
    );
    assert!(
        report["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("CreateAccessKey")),
        "{report}"
    );
}

#[tokio::test]
async fn an_event_refused_as_another_stacks_reports_nothing() {
    let w = World::new();
    w.connector(json!({})).await;
    w.secrets.secrets.lock().unwrap().get_mut(SECRET).unwrap().tags.insert(
        crate::ownership::TAG_STACK_ID.into(),
        "arn:aws:cloudformation:us-east-1:123456789012:stack/other/1".into(),
    );
    assert!(w.check().await.is_err());
    assert!(w.status.reports().is_empty());
}

#[tokio::test]
async fn a_rotation_issues_no_key_for_a_secret_someone_moved_to_another_kms_key() {
    let w = World::new();
    w.connector(json!({})).await;
    let theirs = "arn:aws:kms:us-east-1:999999999999:key/theirs";
    w.secrets.secrets.lock().unwrap().get_mut(SECRET).unwrap().kms_key_id = Some(theirs.into());
    let keys = w.iam.user(USER).unwrap().keys.len();
    let err = w.rotate("rot-1").await.unwrap_err().to_string();
    assert!(err.contains(&format!("is encrypted with KMS key {theirs}")), "{err}");
    assert_eq!(w.iam.user(USER).unwrap().keys.len(), keys, "no key issued");
}

#[tokio::test]
async fn a_check_of_a_secret_not_proven_the_connectors_reports_nothing() {
    let w = World::new();
    w.connector(json!({})).await;
    for secret_id in [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:cloud-app-security/nope-AbCdEf",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
    ] {
        let check = crate::rotation::CheckRequest {
            secret_id: secret_id.to_owned(),
        };
        assert!(w.other_event(&crate::rotation::Event::Check(check)).await.is_err());
    }
    assert!(w.status.reports().is_empty(), "{:?}", w.status.reports());
}
