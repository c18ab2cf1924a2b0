//! Integration: the edges the contract promises (issue 8), one test per behaviour, each through
//! the handler against moto server, with recording stand-ins for CloudFormation's ResponseURL and
//! for the Cloud App Security tenant. Every test asserts the state AWS (and the tenant) is left
//! in, never only the answer.

mod support;

use std::collections::BTreeSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudtrail::types::{DataResource, EventSelector, ReadWriteType};
use aws_sdk_iam::types::StatusType;
use cloud_app_security_connector::cloud_app_security::sha256_hex;
use cloud_app_security_connector::handler::{HandlerError, Invoked};
use serde_json::{json, Value};
use support::env::{assert_failed, assert_success, kms_client, Env, FUNCTION};
use support::{unique, Recorded, Recorder, Reply};

const REGISTERED: &str = r#"{"id": "conn-edges", "status": "connected"}"#;

/// Time each invocation is given.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A self-signed X.509 certificate (`openssl req -x509 -newkey rsa:2048 -subj /CN=edges-test`):
/// moto's UploadSigningCertificate parses what it is given.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIDDTCCAfWgAwIBAgIUTKvC7JzYWvEan0eNnWIBhWjSjsYwDQYJKoZIhvcNAQEL
BQAwFTETMBEGA1UEAwwKZWRnZXMtdGVzdDAgFw0yNjExMjkxMTIzNDVaGA8yMTI2
MTEwNTExMjM0NVowFTETMBEGA1UEAwwKZWRnZXMtdGVzdDCCASIwDQYJKoZIhvcN
AQEBBQADggEPADCCAQoCggEBAMX5YFzz3BWXLfK3MIK5+5y42whNcUds1SqtN+zF
BiX6/Gt4UdTzQcGAmVf9oRoKlgNey37NZdNAsJ0zt0Vyhurd5Y9ghe465KAoqrAf
EOzyvfmyk9ZN4qA6CE7pgDFTZHkb+VUf6Nd0Y46PJvKl9q6dGt673+nBbDrpNNnI
BGu9sZ3zzMq6qlBiC/33dfwRTeozJQkfhLHecw8hJj4ICaXY9NeO0ve3s6Pdg4yd
vN1XApGYiAK6IvczLACfHiUwyXg9z8kxa14HSexNc+zMurOcUHYr6bLnPaqgAjQG
0b6ezuIvck1S2wkBeS1GB5oONDqOaYShuH/tw6oNzev147kCAwEAAaNTMFEwHQYD
VR0OBBYEFHRfjJ9HNFy97KuOrSiBMpWcxD7jMB8GA1UdIwQYMBaAFHRfjJ9HNFy9
7KuOrSiBMpWcxD7jMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQADggEB
ABmpm0bbR+H8gWSVPLkK4JnmlA+L41Nb9Znjl4yGrmzUS+xLT6q4rR+5Sdq02zeY
ZrHkvIFR86V6GX2pLLnj0/uDEbpMQyUO0h9+JMu+RuohyYAyxdFQAi1ffZI8N9Tf
LjybcA83BejXP2HQPFay9LqjucDDbHtSjkg9M9KBKMd8bzYQ+qv3BmeL/YyMrUN+
akS7eDhll7WJu+Py2Cb6z14Lzlv9iGOlR9kkf8IaU4cQedFx9qTd7ubcFADEUDIo
x7Yi3s0KbZfKd2ZPSi0D3PEoCcpSdrhv4UCPJO9jxzRz5ulZfm67Abne/EKWdbOe
oXNRZR+AKnU6xG+X/D3wSMo=
-----END CERTIFICATE-----
";

const SSH_PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICwX9E0uK/HOWsmJbbX1Vgu++U5y6+jszYfEl2S+ZBOF";

/// An inline policy an administrator adds to the user.
const ADMIN_POLICY: &str =
    r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}"#;

/// The tenant's path for the registration of `physical_id`.
fn connector_path(physical_id: &str) -> String {
    format!("/api/v1/app_connectors/aws/{}/", sha256_hex(physical_id))
}

/// A Cloud App Security stand-in that keeps the set of registered connectors (by path): a PUT it
/// accepts registers, a DELETE removes. `refuse` picks the requests it answers 401 instead.
struct Tenant {
    recorder: Recorder,
    registered: Arc<Mutex<BTreeSet<String>>>,
}

impl Tenant {
    fn new(refuse: impl Fn(&Recorded) -> bool + Send + Sync + 'static) -> Tenant {
        let registered: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let state = registered.clone();
        let recorder = Recorder::with(move |r, _| {
            if refuse(r) {
                return Reply::json(401, r#"{"message": "Invalid token"}"#);
            }
            let mut state = state.lock().unwrap();
            match r.method.as_str() {
                "PUT" => {
                    state.insert(r.path.clone());
                    Reply::json(200, REGISTERED)
                }
                "DELETE" => {
                    state.remove(&r.path);
                    Reply::empty(204)
                }
                _ => Reply::empty(404),
            }
        });
        Tenant { recorder, registered }
    }

    fn registered(&self) -> Vec<String> {
        self.registered.lock().unwrap().iter().cloned().collect()
    }

    fn calls(&self, method: &str) -> Vec<Recorded> {
        self.recorder
            .requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }
}

impl Env {
    /// A Cloud App Security API-credentials secret in moto holding `value`; its ARN.
    async fn api_credentials(&self, value: Value) -> String {
        let out = self
            .sm
            .create_secret()
            .name(unique("edges-api-credentials-"))
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
        out.arn().unwrap().to_owned()
    }

    /// Properties in callback mode against `tenant`, with a legacy token.
    async fn callback_mode(&self, tenant: &Recorder, token: &str, extra: Value) -> Value {
        let mut props = self.props(json!({
            "CloudAppSecurityUrl": format!("http://{}", tenant.addr),
            "CloudAppSecurityCredentials": self.api_credentials(json!({"token": token})).await,
        }));
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        props
    }

    /// The user's keys that are active, sorted.
    async fn active_keys(&self, user: &str) -> Vec<String> {
        let out = self.iam.list_access_keys().user_name(user).send().await.unwrap();
        let mut keys: Vec<String> = out
            .access_key_metadata()
            .iter()
            .filter(|k| k.status() == Some(&StatusType::Active))
            .filter_map(|k| k.access_key_id().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// The access key the default secret holds.
    async fn stored_key(&self) -> String {
        let doc = self.secret_value(&self.secret_name()).await.expect("the secret exists");
        doc["AccessKeyId"].as_str().unwrap().to_owned()
    }

    /// Lambda delivers the identical event twice, both running at the same time; the two answers
    /// CloudFormation received.
    async fn deliver_twice(&self, event: Value) -> Vec<Value> {
        let before = self.recorder.requests().len();
        tokio::join!(self.invoke(event.clone(), TIMEOUT), self.invoke(event, TIMEOUT));
        let got = self.recorder.requests();
        assert_eq!(got.len(), before + 2, "one answer per invocation");
        got[before..].iter().map(Recorded::json).collect()
    }

    /// The trails of the account (this region's view): `(name, arn)`.
    async fn all_trails(&self) -> Vec<(String, String)> {
        let out = self.trails.describe_trails().send().await.unwrap();
        out.trail_list()
            .iter()
            .map(|t| (t.name().unwrap().to_owned(), t.trail_arn().unwrap().to_owned()))
            .collect()
    }

    async fn trail_logging(&self, arn: &str) -> bool {
        let status = self.trails.get_trail_status().name(arn).send().await.unwrap();
        status.is_logging() == Some(true)
    }

    async fn trail_tags(&self, arn: &str) -> Vec<(String, String)> {
        let out = self.trails.list_tags().resource_id_list(arn).send().await.unwrap();
        out.resource_tag_list()
            .iter()
            .flat_map(|r| r.tags_list())
            .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
            .collect()
    }

    /// Whether a secret of that name exists at all (pending deletion or not).
    async fn secret_exists(&self, name: &str) -> bool {
        self.secret_pending_deletion(name).await.is_some()
    }
}

/// At least one answer is SUCCESS, and every SUCCESS names `key` (a duplicate that lost a race
/// may answer FAILED; CloudFormation keeps the first answer it receives).
fn every_success_names(answers: &[Value], key: &str) {
    let successes: Vec<&Value> = answers.iter().filter(|a| a["Status"] == "SUCCESS").collect();
    assert!(!successes.is_empty(), "no delivery succeeded: {answers:#?}");
    for a in &successes {
        assert_eq!(a["Data"]["AccessKeyId"], key, "a SUCCESS names another key: {a:#}");
    }
    for a in answers.iter().filter(|a| a["Status"] != "SUCCESS") {
        println!("a duplicate delivery answered {}: {}", a["Status"], a["Reason"]);
    }
}

fn reason(response: &Value) -> &str {
    response["Reason"].as_str().unwrap_or_default()
}

// 1. Duplicate deliveries at once.

#[tokio::test]
async fn two_deliveries_of_one_create_at_once_leave_one_active_key_the_one_the_secret_holds() {
    let env = Env::new().await;
    let event = env.request("create", json!({"ResourceProperties": env.props(json!({}))}));
    let answers = env.deliver_twice(event).await;
    let stored = env.stored_key().await;
    assert_eq!(env.active_keys(&env.user_name()).await, std::slice::from_ref(&stored));
    assert_eq!(
        env.keys(&env.user_name()).await,
        std::slice::from_ref(&stored),
        "no inactive leftover either"
    );
    every_success_names(&answers, &stored);
}

/// With the call back: Cloud App Security ends up holding the key the secret holds.
#[tokio::test]
async fn two_deliveries_of_one_create_at_once_register_the_key_the_secret_holds() {
    let env = Env::new().await;
    let tenant = Tenant::new(|_| false);
    let props = env.callback_mode(&tenant.recorder, "tok-twice", json!({})).await;
    let answers = env
        .deliver_twice(env.request("create", json!({"ResourceProperties": props})))
        .await;
    let stored = env.stored_key().await;
    assert_eq!(env.active_keys(&env.user_name()).await, std::slice::from_ref(&stored));
    every_success_names(&answers, &stored);
    assert_eq!(tenant.registered(), [connector_path(&env.physical_id())]);
    let last_put = tenant.calls("PUT").pop().unwrap();
    assert_eq!(
        last_put.json()["accessKeyId"],
        stored.as_str(),
        "the tenant holds another key"
    );
}

/// Portal mode: the previous key stays active as `awaitingPaste`; nothing else is active.
#[tokio::test]
async fn two_deliveries_of_one_key_version_update_at_once_store_one_new_key_and_keep_only_the_awaiting_one() {
    let env = Env::new().await;
    let v1 = env.props(json!({}));
    let v2 = env.props(json!({"KeyVersion": "2"}));
    assert_success(&env.create(v1.clone()).await);
    let old = env.stored_key().await;
    let event = env.request(
        "update",
        json!({"PhysicalResourceId": env.physical_id(), "ResourceProperties": v2, "OldResourceProperties": v1}),
    );
    let answers = env.deliver_twice(event).await;
    let doc = env.secret_value(&env.secret_name()).await.unwrap();
    let stored = doc["AccessKeyId"].as_str().unwrap().to_owned();
    assert_ne!(stored, old, "the key was rotated");
    assert_eq!(doc["Bookkeeping"]["keyVersion"], "2");
    assert_eq!(doc["Bookkeeping"]["awaitingPaste"]["accessKeyId"], old);
    let mut expected = vec![stored.clone(), old];
    expected.sort();
    assert_eq!(
        env.active_keys(&env.user_name()).await,
        expected,
        "exactly the stored key and the one awaiting the paste"
    );
    assert_eq!(env.keys(&env.user_name()).await.len(), 2, "the loser's key is gone");
    every_success_names(&answers, &stored);
}

/// "The handler still tolerates duplicates": CloudFormation keeps the first answer it receives,
/// so a duplicate that answers FAILED fails the stack update although nothing went wrong.
#[tokio::test]
async fn both_deliveries_of_one_key_version_update_at_once_answer_success_with_the_stored_key() {
    let env = Env::new().await;
    let v1 = env.props(json!({}));
    let v2 = env.props(json!({"KeyVersion": "2"}));
    assert_success(&env.create(v1.clone()).await);
    let event = env.request(
        "update",
        json!({"PhysicalResourceId": env.physical_id(), "ResourceProperties": v2, "OldResourceProperties": v1}),
    );
    let answers = env.deliver_twice(event).await;
    let stored = env.stored_key().await;
    let statuses: Vec<&Value> = answers.iter().map(|a| &a["Status"]).collect();
    for a in &answers {
        assert_eq!(
            a["Status"], "SUCCESS",
            "answers in the order CloudFormation received them: {statuses:?}; {a:#}"
        );
        assert_eq!(a["Data"]["AccessKeyId"], stored.as_str());
    }
}

// 2. Another stack's colliding Create and its rollback Delete.

#[tokio::test]
async fn a_second_stack_colliding_on_names_fails_and_its_rollback_delete_leaves_the_first_connector_alone() {
    let first = Env::new().await;
    let tenant = Tenant::new(|_| false);
    let props = first.callback_mode(&tenant.recorder, "tok-first", json!({})).await;
    assert_success(&first.create(props).await);
    let key = first.stored_key().await;
    let secret_before = first.secret_value(&first.secret_name()).await.unwrap();
    assert_eq!(tenant.registered(), [connector_path(&first.physical_id())]);

    // Another stack in the account, same ConnectorName: the same user, secret and physical id.
    let mut second = Env::new().await;
    second.connector = first.connector.clone();
    assert_ne!(second.stack, first.stack);
    let props = second.callback_mode(&tenant.recorder, "tok-second", json!({})).await;
    let r = second.create(props.clone()).await;
    assert_failed(
        &r,
        &format!(
            "IAM user {} already exists and is not managed by this resource",
            first.user_name()
        ),
    );
    assert_eq!(r["PhysicalResourceId"], first.physical_id());
    // CloudFormation's rollback Delete of the failed Create, with that same physical id.
    assert_success(&second.delete(&first.physical_id(), props).await);

    assert!(
        tenant.calls("DELETE").is_empty(),
        "the first stack's registration was removed"
    );
    assert_eq!(tenant.calls("PUT").len(), 1, "the second stack sent nothing");
    assert_eq!(tenant.registered(), [connector_path(&first.physical_id())]);
    assert!(first.user_exists(&first.user_name()).await);
    assert_eq!(first.active_keys(&first.user_name()).await, [key]);
    assert_eq!(
        first.inline_policies(&first.user_name()).await,
        ["CloudAppSecurityAuditing"]
    );
    assert_eq!(first.secret_pending_deletion(&first.secret_name()).await, Some(false));
    assert_eq!(
        first.secret_value(&first.secret_name()).await.unwrap(),
        secret_before,
        "the first stack's secret is unchanged"
    );
}

// 3. A replacement that fails after its first write, then CloudFormation's rollback Update.

#[tokio::test]
async fn a_replacement_failing_after_its_first_write_rolls_back_to_the_old_user_and_its_original_key() {
    let env = Env::new().await;
    let new_name = format!("{}-b", env.user_name());
    let new_id = env.user_arn("/cloud-app-security/", &new_name);
    let refused = connector_path(&new_id);
    let tenant = Tenant::new(move |r| r.method == "PUT" && r.path == refused);
    let old = env.callback_mode(&tenant.recorder, "tok-replace", json!({})).await;
    let mut new = old.clone();
    new["UserName"] = json!(new_name);
    assert_success(&env.create(old.clone()).await);
    let original = env.stored_key().await;

    let r = env.update(&env.physical_id(), old.clone(), new.clone()).await;
    assert_failed(&r, "Cloud App Security answered HTTP 401");
    assert_eq!(r["PhysicalResourceId"], env.physical_id(), "the old physical id");
    // It failed after its first writes: the new user's key was issued and stored before the call.
    let refused_put = tenant.calls("PUT").pop().unwrap();
    assert_eq!(refused_put.path, connector_path(&new_id));
    assert_ne!(refused_put.json()["accessKeyId"], original.as_str());

    // CloudFormation's rollback Update: back to the old properties, on the old physical id.
    let rollback = env.update(&env.physical_id(), new, old).await;
    assert_success(&rollback);
    assert_eq!(rollback["PhysicalResourceId"], env.physical_id());
    assert_eq!(rollback["Data"]["AccessKeyId"], original.as_str());

    assert!(!env.user_exists(&new_name).await, "the new user is gone");
    let doc = env.secret_value(&env.secret_name()).await.unwrap();
    assert_eq!(doc["AccessKeyId"], original.as_str(), "the old user's original key");
    assert_eq!(doc["UserName"], env.user_name());
    assert_eq!(env.active_keys(&env.user_name()).await, std::slice::from_ref(&original));
    assert_eq!(env.keys(&env.user_name()).await, std::slice::from_ref(&original));
    assert_eq!(
        tenant.registered(),
        [connector_path(&env.physical_id())],
        "the tenant knows the old connector only"
    );
    // Cloud App Security holds the old user's original key again.
    let last_put = tenant.calls("PUT").pop().unwrap();
    assert_eq!(last_put.path, connector_path(&env.physical_id()));
    assert_eq!(last_put.json()["accessKeyId"], original.as_str());
}

// 4. A stack rollback after a successful replacement, whose first attempt fails.

#[tokio::test]
async fn a_rollback_after_a_successful_replacement_never_deletes_the_user_it_restores() {
    let env = Env::new().await;
    let path_a = connector_path(&env.physical_id());
    let puts_to_a = AtomicUsize::new(0);
    let refused_path = path_a.clone();
    // The Create's PUT is accepted; the next PUT for A (the first rollback attempt) is refused.
    let tenant = Tenant::new(move |r| {
        r.method == "PUT" && r.path == refused_path && puts_to_a.fetch_add(1, Ordering::SeqCst) == 1
    });
    let a = env.callback_mode(&tenant.recorder, "tok-rollback", json!({})).await;
    let new_name = format!("{}-b", env.user_name());
    let mut b = a.clone();
    b["UserName"] = json!(new_name);
    assert_success(&env.create(a.clone()).await);
    let original = env.stored_key().await;

    let r = env.update(&env.physical_id(), a.clone(), b.clone()).await;
    assert_success(&r);
    let id_b = env.user_arn("/cloud-app-security/", &new_name);
    assert_eq!(r["PhysicalResourceId"], id_b);

    // A later resource failed: CloudFormation rolls this one back, A over B on physical id B.
    let rollback = env.request(
        "update",
        json!({"PhysicalResourceId": id_b, "ResourceProperties": a, "OldResourceProperties": b}),
    );
    let first = env.send(rollback.clone()).await;
    assert_failed(&first, "Cloud App Security answered HTTP 401");
    assert_eq!(first["PhysicalResourceId"], id_b);
    assert!(
        env.user_exists(&env.user_name()).await,
        "the user being restored was deleted"
    );
    assert!(env.active_keys(&env.user_name()).await.contains(&original));

    let mut retry = rollback;
    retry["RequestId"] = json!(unique("req-"));
    let second = env.send(retry).await;
    assert_success(&second);
    assert_eq!(second["PhysicalResourceId"], env.physical_id());
    assert_eq!(second["Data"]["AccessKeyId"], original.as_str());
    let doc = env.secret_value(&env.secret_name()).await.unwrap();
    assert_eq!(doc["AccessKeyId"], original.as_str(), "A's original key is back");
    assert_eq!(doc["UserName"], env.user_name());

    // CloudFormation's clean-up: Delete of B.
    assert_success(&env.delete(&id_b, b).await);
    assert!(!env.user_exists(&new_name).await, "user B is gone");
    assert!(env.user_exists(&env.user_name()).await);
    assert_eq!(env.active_keys(&env.user_name()).await, std::slice::from_ref(&original));
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(false));
    assert_eq!(env.stored_key().await, original);
    let last_put = tenant.calls("PUT").pop().unwrap();
    assert_eq!(last_put.json()["accessKeyId"], original.as_str());
    assert_eq!(tenant.registered(), [path_a], "A is registered again, B is not");
}

// 5. Delete of a user an administrator added things to.

#[tokio::test]
async fn delete_removes_a_user_an_administrator_added_policies_and_credentials_to() {
    let env = Env::new().await;
    let props = env.props(json!({}));
    assert_success(&env.create(props.clone()).await);
    let user = env.user_name();
    let iam = &env.iam;
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("AddedByAdmin")
        .policy_document(ADMIN_POLICY)
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name(&user)
        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
        .send()
        .await
        .unwrap();
    iam.create_login_profile()
        .user_name(&user)
        .password("Adm1n-Added-Passw0rd!")
        .send()
        .await
        .unwrap();
    let device = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(unique("edges-mfa-"))
        .send()
        .await
        .unwrap();
    let serial = device.virtual_mfa_device().unwrap().serial_number().to_owned();
    iam.enable_mfa_device()
        .user_name(&user)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    iam.upload_ssh_public_key()
        .user_name(&user)
        .ssh_public_key_body(SSH_PUBLIC_KEY)
        .send()
        .await
        .unwrap();
    iam.upload_signing_certificate()
        .user_name(&user)
        .certificate_body(CERTIFICATE)
        .send()
        .await
        .unwrap();
    // Not covered: a service-specific credential (moto 5.2 has no
    // iam:CreateServiceSpecificCredential). And moto's DeleteUser refuses only while policies
    // remain, so the MFA device, SSH key and certificate go with the user here; the order real
    // IAM demands is covered by the fakes in src/testkit.
    let mfa = iam.list_mfa_devices().user_name(&user).send().await.unwrap();
    assert_eq!(mfa.mfa_devices().len(), 1, "the MFA device is enabled on the user");

    let r = env.delete(&env.physical_id(), props).await;
    assert_success(&r);
    assert!(!env.user_exists(&user).await, "the user is gone");
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(true));
}

#[tokio::test]
async fn delete_of_a_user_in_a_group_strips_it_and_fails_with_the_command_that_frees_it() {
    let env = Env::new().await;
    let props = env.props(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]}));
    assert_success(&env.create(props.clone()).await);
    let user = env.user_name();
    let group = unique("edges-admins-");
    env.iam.create_group().group_name(&group).send().await.unwrap();
    env.iam
        .add_user_to_group()
        .group_name(&group)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    // moto's DeleteUser ignores group memberships (real IAM answers DeleteConflict): an inline
    // policy the administrator also added makes moto refuse the first DeleteUser as IAM would.
    env.iam
        .put_user_policy()
        .user_name(&user)
        .policy_name("AddedByAdmin")
        .policy_document(ADMIN_POLICY)
        .send()
        .await
        .unwrap();

    let r = env.delete(&env.physical_id(), props.clone()).await;
    assert_failed(&r, &group);
    assert_failed(
        &r,
        &format!("aws iam remove-user-from-group --user-name {user} --group-name {group}"),
    );
    let text = reason(&r);
    assert!(!text.contains('\n'), "one line: {text:?}");
    for dump in ["{", "SdkError", "ServiceError", "DispatchFailure", "Some("] {
        assert!(!text.contains(dump), "a debug dump ({dump}) in {text:?}");
    }
    assert!(env.user_exists(&user).await, "IAM keeps a user in a group");
    assert!(env.keys(&user).await.is_empty(), "no access key left");
    assert!(env.inline_policies(&user).await.is_empty(), "no inline policy left");
    assert!(env.attached(&user).await.is_empty(), "no managed policy left");

    // Once the administrator takes it out of the group, the retried Delete finishes.
    env.iam
        .remove_user_from_group()
        .group_name(&group)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_success(&env.delete(&env.physical_id(), props).await);
    assert!(!env.user_exists(&user).await);
}

// 6. Reuse ignores a trail that records data events only.

#[tokio::test]
async fn reuse_does_not_take_a_logging_multi_region_trail_that_records_only_data_events() {
    let env = Env::in_own_account().await;
    let data_bucket = env.bucket().await;
    let data_trail = env
        .trails
        .create_trail()
        .name("data-events-only")
        .s3_bucket_name(data_bucket)
        .is_multi_region_trail(true)
        .include_global_service_events(true)
        .send()
        .await
        .unwrap()
        .trail_arn()
        .unwrap()
        .to_owned();
    env.trails.start_logging().name(&data_trail).send().await.unwrap();
    let selector = EventSelector::builder()
        .read_write_type(ReadWriteType::All)
        .include_management_events(false)
        .data_resources(
            DataResource::builder()
                .r#type("AWS::S3::Object")
                .values("arn:aws:s3")
                .build(),
        )
        .build();
    env.trails
        .put_event_selectors()
        .trail_name(&data_trail)
        .event_selectors(selector)
        .send()
        .await
        .unwrap();

    let r = env
        .create(env.props(json!({"TrailMode": "Reuse", "TrailBucket": env.bucket().await})))
        .await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailCreated"], "true");
    let trails = env.all_trails().await;
    let ours = trails
        .iter()
        .find(|(name, _)| name == "cloud-app-security")
        .map(|(_, arn)| arn.clone())
        .expect("the resource created its own trail");
    assert_eq!(r["Data"]["TrailArn"], ours.as_str());
    assert_ne!(ours, data_trail);
    assert!(env.trail_logging(&ours).await);
    assert!(env
        .trail_tags(&ours)
        .await
        .contains(&("cloud-app-security:stack-id".to_owned(), env.stack.clone())));
    assert!(
        env.trail_logging(&data_trail).await,
        "the data-events trail is left as it was"
    );
    assert!(env.trail_tags(&data_trail).await.is_empty(), "and not tagged");
}

// 7. Duplicate deliveries of a Create that creates a trail.

#[tokio::test]
async fn two_deliveries_of_a_trail_creating_create_at_once_leave_one_logging_trail_of_ours_and_one_key() {
    let env = Env::in_own_account().await;
    let props = env.props(json!({"TrailMode": "Create", "TrailBucket": env.bucket().await}));
    let answers = env
        .deliver_twice(env.request("create", json!({"ResourceProperties": props})))
        .await;
    let trails = env.all_trails().await;
    assert_eq!(trails.len(), 1, "one trail: {trails:?}");
    let (name, arn) = &trails[0];
    assert_eq!(name, "cloud-app-security");
    assert!(env.trail_logging(arn).await, "logging");
    let tags = env.trail_tags(arn).await;
    for (key, value) in [
        ("cloud-app-security:stack-id", env.stack.clone()),
        ("cloud-app-security:physical-id", env.physical_id()),
    ] {
        assert!(tags.contains(&(key.to_owned(), value)), "{key} in {tags:?}");
    }
    let stored = env.stored_key().await;
    assert_eq!(env.active_keys(&env.user_name()).await, std::slice::from_ref(&stored));
    every_success_names(&answers, &stored);
    for a in answers.iter().filter(|a| a["Status"] == "SUCCESS") {
        assert_eq!(a["Data"]["TrailArn"], arn.as_str());
        assert_eq!(a["Data"]["TrailCreated"], "true");
    }
}

// 8. Removing SecretKmsKeyId.

#[tokio::test]
async fn removing_secret_kms_key_id_brings_the_secret_back_to_the_aws_managed_key() {
    let env = Env::new().await;
    let kms = kms_client().await;
    let key = kms
        .create_key()
        .description(unique("edges-secret-key-"))
        .send()
        .await
        .unwrap();
    let key_arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    let with_key = env.props(json!({"SecretKmsKeyId": key_arn}));
    let without = env.props(json!({}));
    assert_success(&env.create(with_key.clone()).await);
    let described = env
        .sm
        .describe_secret()
        .secret_id(env.secret_name())
        .send()
        .await
        .unwrap();
    assert_eq!(described.kms_key_id(), Some(key_arn.as_str()));
    let before = env.stored_key().await;

    assert_success(&env.update(&env.physical_id(), with_key, without.clone()).await);
    let described = env
        .sm
        .describe_secret()
        .secret_id(env.secret_name())
        .send()
        .await
        .unwrap();
    let now = described.kms_key_id();
    assert!(
        now.is_none() || now == Some("alias/aws/secretsmanager"),
        "still encrypted with {now:?}"
    );
    assert_eq!(env.stored_key().await, before, "no rotation for a key change");

    let v2 = env.props(json!({"KeyVersion": "2"}));
    let r = env.update(&env.physical_id(), without, v2).await;
    assert_success(&r);
    let rotated = env.stored_key().await;
    assert_ne!(rotated, before);
    assert_eq!(r["Data"]["AccessKeyId"], rotated.as_str());
    assert!(env.active_keys(&env.user_name()).await.contains(&rotated));
}

// 9. Validation against AWS's limits, before anything is made.

#[tokio::test]
async fn properties_beyond_aws_limits_fail_at_once_naming_the_property_and_create_nothing() {
    let env = Env::new().await;
    let many: serde_json::Map<String, Value> = (0..48).map(|i| (format!("tag{i}"), json!("v"))).collect();
    let long_path = format!("/cloud-app-security/{}/", "p".repeat(200));
    let cases = [
        ("Tags", json!({"Tags": many})),
        ("Tags", json!({"Tags": {"k".repeat(128): "v"}})),
        ("UserPath", json!({"UserPath": long_path})),
    ];
    for (property, extra) in cases {
        let started = Instant::now();
        let r = env.create(env.props(extra)).await;
        assert_failed(&r, "invalid properties: ");
        assert_failed(&r, &format!("{property}: "));
        assert!(started.elapsed() < Duration::from_secs(10), "not at once");
        assert!(!env.user_exists(&env.user_name()).await, "{property}: a user was made");
        assert!(
            !env.secret_exists(&env.secret_name()).await,
            "{property}: a secret was made"
        );
    }

    let tenant = Recorder::start();
    let props = env.callback_mode(&tenant, "tok-with-a-bell\u{7}", json!({})).await;
    let r = env.create(props).await;
    assert_failed(&r, "CloudAppSecurityCredentials: ");
    assert!(!reason(&r).contains("tok-with-a-bell"), "the token is never echoed");
    assert!(tenant.requests().is_empty(), "the tenant was contacted");
    assert!(!env.user_exists(&env.user_name()).await);
    assert!(!env.secret_exists(&env.secret_name()).await);

    // The limits are AWS's, not stricter: 47 tags of the deployer's (50 with the resource's own
    // three) and a 127-character key are accepted.
    let fits = Env::new().await;
    let mut tags: serde_json::Map<String, Value> = (0..46).map(|i| (format!("tag{i}"), json!("v"))).collect();
    tags.insert("k".repeat(127), json!("v"));
    assert_success(&fits.create(fits.props(json!({"Tags": tags}))).await);
    let user = fits.iam.get_user().user_name(fits.user_name()).send().await.unwrap();
    assert_eq!(user.user().unwrap().tags().len(), 50);
}

// 10. A Delete whose properties no longer validate.

#[tokio::test]
async fn a_delete_whose_properties_no_longer_validate_still_removes_what_the_resource_made() {
    let env = Env::in_own_account().await;
    let props = env.props(json!({"TrailMode": "Create", "TrailBucket": env.bucket().await}));
    let r = env.create(props.clone()).await;
    assert_success(&r);
    let trail = r["Data"]["TrailArn"].as_str().unwrap().to_owned();
    assert!(env.all_trails().await.iter().any(|(_, arn)| *arn == trail));
    let mut stale = props.clone();
    stale["Colour"] = json!("red");
    // They do not validate: an Update with them fails.
    assert_failed(
        &env.update(&env.physical_id(), props, stale.clone()).await,
        "Colour: unknown property",
    );

    assert_success(&env.delete(&env.physical_id(), stale).await);
    assert!(!env.user_exists(&env.user_name()).await, "the user is gone");
    assert_eq!(
        env.secret_pending_deletion(&env.secret_name()).await,
        Some(true),
        "the secret is scheduled for deletion"
    );
    assert!(env.all_trails().await.is_empty(), "the created trail is gone");
}

// 11. The function serves its own stack, and answers only where it may.

#[tokio::test]
async fn a_function_serving_one_stack_refuses_another_stacks_requests_and_does_nothing() {
    let mut env = Env::new().await;
    let props = env.props(json!({}));
    let deploying = support::stack_id("the-deploying-stack");
    env.handler.settings.stack_id = Some(deploying.clone());

    let r = env.create(props.clone()).await;
    assert_failed(&r, "serves stack");
    assert_failed(&r, &deploying);
    assert!(!env.user_exists(&env.user_name()).await, "a user was made");
    assert!(!env.secret_exists(&env.secret_name()).await, "a secret was made");

    // Nor does it delete for another stack: a connector of env.stack made while the function
    // served it survives a Delete once the function serves another.
    env.handler.settings.stack_id = Some(env.stack.clone());
    assert_success(&env.create(props.clone()).await);
    let key = env.stored_key().await;
    env.handler.settings.stack_id = Some(deploying);
    assert_failed(&env.delete(&env.physical_id(), props).await, "serves stack");
    assert!(env.user_exists(&env.user_name()).await);
    assert_eq!(env.active_keys(&env.user_name()).await, [key]);
    assert_eq!(env.secret_pending_deletion(&env.secret_name()).await, Some(false));
}

/// A name other than `localhost` that resolves to 127.0.0.1 here (the machine's own host name,
/// usually), so that a request to it would reach the recorder; else an unresolvable one.
fn loopback_alias(port: u16) -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let reaches = !name.is_empty()
        && name != "localhost"
        && (name.as_str(), port)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.any(|a| a.ip().is_loopback()));
    match reaches {
        true => name,
        false => "example.invalid".to_owned(),
    }
}

#[tokio::test]
async fn a_response_url_outside_the_partition_or_loopback_is_never_contacted() {
    let env = Env::new().await;
    let port = env.recorder.addr.port();
    let alias = loopback_alias(port);
    if alias != "example.invalid" {
        // Reachable by that name: a request would have been recorded.
        let probe = TcpStream::connect((alias.as_str(), port));
        assert!(probe.is_ok(), "{alias}:{port} should reach the recorder");
    }
    let urls = [
        format!("http://{alias}:{port}/response/plain-http"),
        format!("https://{alias}:{port}/response/not-the-suffix"),
        format!("https://{alias}.evilamazonaws.com:{port}/response/suffix-without-dot"),
        format!("http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:{port}/response/http"),
    ];
    for url in urls {
        let mut event = env.request("create", json!({"ResourceProperties": env.props(json!({}))}));
        event["ResponseURL"] = json!(url);
        let invoked = Invoked {
            deadline: SystemTime::now() + TIMEOUT,
            function_arn: Some(FUNCTION.to_owned()),
        };
        let result = env.handler.handle(event, &invoked).await;
        match result {
            Err(HandlerError::UnsafeResponseUrl(e)) => {
                assert!(e.to_string().contains("nothing was sent"), "{e}");
            }
            other => panic!("{url}: expected UnsafeResponseUrl, got {other:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(env.recorder.requests().is_empty(), "the recorder was contacted");
    assert!(!env.user_exists(&env.user_name()).await, "the request was acted on");
}
