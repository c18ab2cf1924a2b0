//! Status reports (issue 20) through the real EventBridge adapter, against moto: the connector in
//! an account of its own, the organization's bus named by an ARN of another account (the
//! security account).
//!
//! What moto leaves unproven: it resolves a bus by name in the *sender's* account and evaluates
//! no bus policy. A stand-in bus of the same name in the connector's account receives the events
//! here (with a rule sending them to a queue; `deploy/fleet.yaml`'s writes a log group); whether the real
//! bus in another account admits exactly the connectors' roles of the organization is checked
//! only in a real organization (docs/fleet.md).

mod support;

use cloud_app_security_connector::handler::Services;
use serde_json::{json, Value};
use support::env::{assert_success, Env};
use support::unique;

/// A bus named `name` in the connector's account, whose rule sends every connector report to a
/// queue (moto's log-group target writes timestamps the SDK cannot read); returns the queue's URL.
async fn stand_in_bus(env: &Env, name: &str) -> String {
    let events = aws_sdk_eventbridge::Client::new(&env.sdk);
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    events.create_event_bus().name(name).send().await.unwrap();
    let queue = sqs.create_queue().queue_name(name).send().await.unwrap();
    let pattern = json!({"source": ["cloud-app-security-connector"], "detail-type": ["Connector Status"]});
    let rule = events.put_rule().name("keep").event_bus_name(name);
    rule.event_pattern(pattern.to_string()).send().await.unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(format!("arn:aws:sqs:us-east-1:{}:{name}", env.account))
        .build()
        .unwrap();
    let put = events.put_targets().rule("keep").event_bus_name(name).targets(target);
    put.send().await.unwrap();
    queue.queue_url().unwrap().to_owned()
}

/// The `detail` of every report the queue holds, in order, and the raw events.
async fn reports(env: &Env, queue: &str) -> (Vec<Value>, Vec<String>) {
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let mut messages = Vec::new();
    loop {
        let out = sqs.receive_message().queue_url(queue).max_number_of_messages(10);
        let out = out.send().await.unwrap();
        if out.messages().is_empty() {
            break;
        }
        messages.extend(out.messages().iter().filter_map(|m| m.body().map(str::to_owned)));
    }
    let details = messages
        .iter()
        .map(|m| serde_json::from_str::<Value>(m).unwrap()["detail"].clone())
        .collect();
    (details, messages)
}

#[tokio::test]
async fn every_request_reports_its_status_to_the_organizations_bus_and_never_a_key() {
    let mut env = Env::in_own_account().await;
    let name = unique("fleet");
    let queue = stand_in_bus(&env, &name).await;
    let bus = format!("arn:aws:events:us-east-1:999999999999:event-bus/{name}");
    env.handler.services = Services::new(&env.sdk).map(|s| s.reporting_to(Some(bus)));
    let props = env.props(json!({}));
    assert_success(&env.create(props.clone()).await);
    let secret = env.secret_value(&env.secret_name()).await.unwrap();
    let rekeyed = env.props(json!({"KeyVersion": "2"}));
    assert_success(&env.update(&env.physical_id(), props, rekeyed.clone()).await);
    assert_success(&env.delete(&env.physical_id(), rekeyed).await);

    let (details, messages) = reports(&env, &queue).await;
    let seen: Vec<(&str, &str)> = details
        .iter()
        .map(|d| (d["trigger"].as_str().unwrap(), d["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("Create", "PendingPortal"),
            ("Update", "PendingPortal"),
            ("Delete", "Deleted")
        ]
    );
    let create = &details[0];
    assert_eq!(create["stackId"], env.stack);
    assert_eq!(create["physicalId"], env.physical_id());
    assert_eq!(create["mode"], "portal");
    assert_eq!(create["verified"], true);
    assert_eq!(create["connectorName"], env.connector);
    assert_eq!(create["accessKeyId"], secret["AccessKeyId"]);
    let key = secret["SecretAccessKey"].as_str().unwrap();
    assert!(messages.iter().all(|m| !m.contains(key)), "never the key's secret half");
}

#[tokio::test]
async fn a_bus_that_cannot_take_the_report_never_fails_the_request() {
    let mut env = Env::in_own_account().await;
    let bus = format!("arn:aws:events:us-east-1:999999999999:event-bus/{}", unique("absent"));
    env.handler.services = Services::new(&env.sdk).map(|s| s.reporting_to(Some(bus)));
    let props = env.props(json!({}));
    assert_success(&env.create(props.clone()).await);
    assert_success(&env.delete(&env.physical_id(), props).await);
}
