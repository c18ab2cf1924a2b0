//! AWS calls per request type, counted at moto (issue 12). The handler's SDK clients reach the
//! test binary's moto server through a counting proxy (`support::proxy`) that holds every
//! request for a moment, so calls made together overlap there and round trips can be counted
//! too. A request that makes one call more — or one round trip more — fails here, and the
//! message names the calls that differ.
//!
//! The workload is the benchmark's (`bench/`): portal mode, `TrailMode: Off`, `VerifyKey: false`.

mod support;

use std::time::Duration;

use aws_sdk_iam::config::{Credentials, Region};
use cloud_app_security_connector::handler::Services;
use serde_json::{json, Value};
use support::env::{assert_success, Env};
use support::moto;
use support::proxy::{rounds, Call, Proxy};

/// Each request waits this long at the proxy: calls made concurrently overlap even on a loaded
/// machine, and calls made one after another cannot.
const LATENCY: Duration = Duration::from_millis(40);

/// An [`Env`] whose handler reaches moto only through a fresh counting proxy (the test's own
/// clients still talk to moto directly, uncounted).
async fn counted() -> (Env, Proxy) {
    let proxy = Proxy::with_latency(moto(), LATENCY);
    let mut env = Env::new().await;
    let config = cloud_app_security_connector::aws::config_loader()
        .endpoint_url(proxy.url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await;
    env.handler.services = Services::new(&config);
    (env, proxy)
}

fn props(env: &Env) -> Value {
    env.props(json!({"VerifyKey": "false"}))
}

/// The operations of `calls`, sorted.
fn ops(calls: &[Call]) -> Vec<String> {
    let mut ops: Vec<String> = calls.iter().map(|c| c.op.clone()).collect();
    ops.sort();
    ops
}

/// `a` less `b`, as multisets.
fn less(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest = b.to_vec();
    a.iter()
        .filter(|op| match rest.iter().position(|r| r == *op) {
            Some(i) => {
                rest.remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// Exactly `want` (in any order), in at most `max_rounds` round trips.
fn assert_calls(what: &str, calls: &[Call], want: &[&str], max_rounds: usize) {
    let got = ops(calls);
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    let in_order: Vec<&str> = calls.iter().map(|c| c.op.as_str()).collect();
    assert!(
        got == want,
        "{what}: {} AWS calls where {} are expected\n  extra:   {:?}\n  missing: {:?}\n  made, in order: {in_order:?}",
        got.len(),
        want.len(),
        less(&got, &want),
        less(&want, &got),
    );
    let rounds = rounds(calls);
    assert!(
        rounds <= max_rounds,
        "{what}: {rounds} AWS round trips where at most {max_rounds} are expected\n  made, in order: {in_order:?}"
    );
}

/// Reads only: no operation that writes.
fn assert_reads_only(what: &str, calls: &[Call]) {
    let writes: Vec<&str> = calls
        .iter()
        .map(|c| c.op.as_str())
        .filter(|op| {
            let name = op.split(':').nth(1).unwrap_or(op);
            !["Get", "List", "Describe"].iter().any(|read| name.starts_with(read))
        })
        .collect();
    assert!(writes.is_empty(), "{what} wrote: {writes:?}");
}

/// A Create that made the user, its policy, one key and the secret; the calls it made are
/// forgotten.
async fn created(env: &Env, proxy: &Proxy) -> (Value, String) {
    let event = env.request("create", json!({"ResourceProperties": props(env)}));
    let response = env.send(event.clone()).await;
    assert_success(&response);
    proxy.take();
    let physical_id = response["PhysicalResourceId"].as_str().unwrap().to_owned();
    (event, physical_id)
}

#[tokio::test]
/// The first round trip reads the secret's record, its tags and value together (a late delivery
/// acts on nothing; another stack's secret is never read as a record); the last two
/// record the request, its properties and `Data` in the secret (what tells a later request's
/// late duplicate apart, and what an older release answers a rollback from).
async fn a_portal_create_with_the_trail_off_makes_ten_calls_in_seven_round_trips() {
    let (env, proxy) = counted().await;
    assert_success(&env.create(props(&env)).await);
    assert_calls(
        "Create",
        &proxy.take(),
        &[
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "iam:GetUser",
            "secretsmanager:DescribeSecret",
            "iam:CreateUser",
            "iam:PutUserPolicy",
            "iam:CreateAccessKey",
            "secretsmanager:CreateSecret",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        ],
        7,
    );
}

/// A Create delivered again converges again (a Create is never answered from the record: a
/// secret planted under its name before it existed must not steer it) and records itself.
#[tokio::test]
async fn the_same_create_delivered_again_only_reads_and_records_itself() {
    let (env, proxy) = counted().await;
    let (event, physical_id) = created(&env, &proxy).await;
    let again = env.send(event).await;
    assert_success(&again);
    assert_eq!(again["PhysicalResourceId"], physical_id.as_str());
    let calls = proxy.take();
    assert_calls(
        "the repeated Create",
        &calls,
        &[
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "iam:GetUser",
            "secretsmanager:DescribeSecret",
            "iam:GetUserPolicy",
            "iam:ListAttachedUserPolicies",
            "iam:ListAccessKeys",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        ],
        5,
    );
}

/// A repeated delivery of an Update is answered from the record: one read (the secret's tags
/// and value, together).
#[tokio::test]
async fn the_same_update_delivered_again_only_reads_the_record() {
    let (env, proxy) = counted().await;
    let (_, physical_id) = created(&env, &proxy).await;
    let fields = json!({"PhysicalResourceId": physical_id, "ResourceProperties": props(&env),
        "OldResourceProperties": props(&env)});
    let event = env.request("update", fields);
    assert_success(&env.send(event.clone()).await);
    proxy.take();
    assert_success(&env.send(event).await);
    let calls = proxy.take();
    assert_reads_only("the repeated Update", &calls);
    let record = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"];
    assert_calls("the repeated Update", &calls, &record, 1);
}

/// The first read is the record, before anything acts: a document a newer release wrote is
/// never rewritten, and properties it records as applied are answered from it. The only writes
/// record the request (every request applied is recorded, so that a late delivery of one before
/// it acts on nothing).
#[tokio::test]
async fn a_no_change_update_only_reads_and_records_the_request() {
    let (env, proxy) = counted().await;
    let (_, physical_id) = created(&env, &proxy).await;
    let response = env.update(&physical_id, props(&env), props(&env)).await;
    assert_success(&response);
    let calls = proxy.take();
    assert_calls(
        "the no-change Update",
        &calls,
        &[
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "iam:GetUser",
            "secretsmanager:DescribeSecret",
            "iam:GetUserPolicy",
            "iam:ListAttachedUserPolicies",
            "iam:ListAccessKeys",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        ],
        5,
    );
}

#[tokio::test]
async fn a_delete_of_a_clean_user_makes_eleven_calls() {
    let (env, proxy) = counted().await;
    let (_, physical_id) = created(&env, &proxy).await;
    assert_success(&env.delete(&physical_id, props(&env)).await);
    assert_calls(
        "Delete",
        &proxy.take(),
        &[
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "iam:GetUser",
            "secretsmanager:DescribeSecret",
            "iam:ListAccessKeys",
            "iam:DeleteAccessKey",
            // Issue 17: the connector's own policy is read before it is deleted (one a person
            // turned into a Deny stays),
            "iam:GetUserPolicy",
            "iam:DeleteUserPolicy",
            // the secret is released before its deletion is scheduled, so that a
            // later Create may replace it (never restore it); its records come from the first
            // read, in portal mode too.
            "secretsmanager:TagResource",
            "secretsmanager:DeleteSecret",
            "iam:DeleteUser",
        ],
        5,
    );
    assert!(!env.user_exists(&env.user_name()).await);
}

/// What `VerifyKey` costs a Create (issue 11): the key's identity, then the connector's reads
/// together — three calls in two more round trips, signed with the new key itself.
#[tokio::test]
async fn verifying_the_key_adds_three_calls_in_two_round_trips() {
    let (env, proxy) = counted().await;
    assert_success(&env.create(env.props(json!({}))).await);
    assert_calls(
        "Create with VerifyKey",
        &proxy.take(),
        &[
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "iam:GetUser",
            "secretsmanager:DescribeSecret",
            "iam:CreateUser",
            "iam:PutUserPolicy",
            "iam:CreateAccessKey",
            "secretsmanager:CreateSecret",
            "sts:GetCallerIdentity",
            "cloudtrail:DescribeTrails",
            "iam:ListUsers",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        ],
        9,
    );
}
