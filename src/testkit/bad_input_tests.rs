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
