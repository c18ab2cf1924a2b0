//! Upgrade (SPEC "Deployment"; tests/fixtures/README.md): every earlier release's AWS state, as
//! `scripts/capture_fixtures.py` captured it by running that release against moto, is seeded
//! into moto and taken through this release's Update (the code upgrade: only `CodeVersion`
//! changes), rotation turned on, a rotation, the key check and Delete — all as a principal
//! holding only the role's actions, with moto's IAM enforcement on. After each step the
//! invariant holds: the user's active keys are the stored one and, at most, the one awaiting a
//! paste; the upgrade keeps the stored key (a pasted key keeps working); the document is
//! rewritten in this release's layout and the first release's bookkeeping tags are gone.
//!
//! moto cannot issue an access key with a chosen id: a fixture names keys `@@KEY<n>@@` /
//! `@@SECRET<n>@@`, and seeding maps each to a key it creates (a key the fixture lists as
//! retired is created and deleted, so that its id is real and gone). An id left unmapped, or
//! a real-looking key id in a fixture, fails the test.
//!
//! The fixtures run one after another in moto's default account (the rotation function's
//! stand-in lives there), each cleaned away before the next; enforcement is server-wide and
//! this binary has a moto server of its own.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aws_sdk_iam::config::Credentials;
use aws_smithy_types::error::display::DisplayErrorContext;
use cloud_app_security_connector::key_material::{RELEASE, SCHEMA_VERSION};
use serde_json::{json, Value};
use support::env::{rotation_function, start_rotation, Env};
use support::role::{allow, moto_config, on_a_large_stack, principal, role_actions, Enforcement};
use support::{repo, unique, Recorder, Reply};

/// The first release's bookkeeping tags, which the upgrade removes.
const LEGACY_TAGS: [&str; 3] = [
    "cloud-app-security:key-version",
    "cloud-app-security:connector-id",
    "cloud-app-security:registration",
];

/// The releases whose state must upgrade; a missing one fails the test.
const RELEASES: [&str; 2] = ["0.1.0", "0.2.0"];

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// Every fixture file, sorted: `tests/fixtures/<release>/<scenario>.json`.
fn fixture_files() -> Vec<PathBuf> {
    let root = repo().join("tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures")
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).expect("a release folder").flatten())
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Whether `text` holds something shaped like a real access key id (`AKIA`/`ASIA` and 12 or
/// more capitals or digits): a fixture must hold placeholders only.
fn real_key_id_in(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(16)).find_map(|i| {
        let head = &text[i..i + 4];
        let tail = bytes[i + 4..]
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .count();
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        (boundary && (head == "AKIA" || head == "ASIA") && tail >= 12).then(|| text[i..i + 4 + tail].to_owned())
    })
}

/// Replaces `from` with `to` in every string of `value`.
fn replace_all(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_all(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_all(v, from, to)),
        _ => {}
    }
}

/// The placeholders still in `value` (none may be left when something is seeded).
fn placeholders_in(value: &Value) -> Vec<String> {
    let text = value.to_string();
    text.match_indices("@@")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|pair| match pair {
            [(a, _), (b, _)] => Some(text[*a..*b + 2].to_owned()),
            _ => None,
        })
        .collect()
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("fixture: {key} is not a string"))
}

fn tags_of(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Seeding, as an administrator with enforcement off.

/// moto's clients as its default administrator.
struct Admin {
    iam: aws_sdk_iam::Client,
    sm: aws_sdk_secretsmanager::Client,
    trails: aws_sdk_cloudtrail::Client,
}

impl Admin {
    async fn new() -> Admin {
        let config = moto_config(Credentials::new("testing", "testing", None, None, "admin")).await;
        Admin {
            iam: aws_sdk_iam::Client::new(&config),
            sm: aws_sdk_secretsmanager::Client::new(&config),
            trails: aws_sdk_cloudtrail::Client::new(&config),
        }
    }
}

/// Creates the fixture's buckets, under names of their own for this run (S3 names are global).
async fn seed_buckets(fixture: &mut Value) {
    let buckets: Vec<String> = fixture["buckets"]
        .as_array()
        .map(|b| b.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    for bucket in buckets {
        let renamed = unique(&format!("{bucket}-")).to_lowercase();
        let made = reqwest::Client::new()
            .put(format!("{}/{renamed}", support::moto()))
            .send()
            .await
            .expect("create bucket");
        assert!(made.status().is_success(), "create bucket {renamed}: {}", made.status());
        replace_all(fixture, &bucket, &renamed);
    }
}

/// Creates the secret a secret-holding call back reads its API credentials from.
async fn seed_api_credentials(admin: &Admin, fixture: &mut Value) {
    let Some(creds) = fixture["api_credentials_secret"].as_object().cloned() else {
        return;
    };
    let name = creds["name"].as_str().expect("api_credentials_secret.name");
    let made = admin
        .sm
        .create_secret()
        .name(name)
        .secret_string(creds["value"].to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret {name}: {}", DisplayErrorContext(&e)));
    let arn = made.arn().expect("an ARN").to_owned();
    let old = fixture["properties"]["CloudAppSecurityCredentials"]
        .as_str()
        .map(str::to_owned);
    if let Some(old) = old.filter(|o| !o.is_empty()) {
        replace_all(fixture, &old, &arn);
    }
}

/// Creates one access key of `user` and maps `placeholder` (`@@KEY<n>@@`) and its secret to it.
async fn issue(admin: &Admin, fixture: &mut Value, user: &str, placeholder: &str) -> String {
    let out = admin
        .iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateAccessKey {user}: {}", DisplayErrorContext(&e)));
    let key = out.access_key().expect("a key");
    let secret_placeholder = placeholder.replace("@@KEY", "@@SECRET");
    replace_all(fixture, placeholder, key.access_key_id());
    replace_all(fixture, &secret_placeholder, key.secret_access_key());
    key.access_key_id().to_owned()
}

/// Creates the users with their tags, boundary, policies and keys (retired ones made and
/// deleted first: a user holds two keys at most).
async fn seed_users(admin: &Admin, fixture: &mut Value) {
    let users = fixture["users"].as_array().cloned().unwrap_or_default();
    for user in &users {
        let name = str_of(user, "name");
        let tags: Vec<aws_sdk_iam::types::Tag> = tags_of(&user["tags"])
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("a tag")
            })
            .collect();
        admin
            .iam
            .create_user()
            .user_name(name)
            .path(str_of(user, "path"))
            .set_tags(Some(tags))
            .set_permissions_boundary(user["permissions_boundary"].as_str().map(str::to_owned))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateUser {name}: {}", DisplayErrorContext(&e)));
        for (policy, document) in user["inline_policies"].as_object().cloned().unwrap_or_default() {
            let put = admin.iam.put_user_policy().user_name(name).policy_name(&policy);
            put.policy_document(document.to_string())
                .send()
                .await
                .expect("PutUserPolicy");
        }
        for arn in user["attached_policies"].as_array().cloned().unwrap_or_default() {
            let arn = arn.as_str().expect("a policy ARN");
            let attach = admin.iam.attach_user_policy().user_name(name).policy_arn(arn);
            attach.send().await.expect("AttachUserPolicy");
        }
    }
    for retired in fixture["retired_keys"].as_array().cloned().unwrap_or_default() {
        let user = str_of(&retired, "user");
        let id = issue(admin, fixture, user, str_of(&retired, "id")).await;
        let delete = admin.iam.delete_access_key().user_name(user).access_key_id(&id);
        delete.send().await.expect("DeleteAccessKey (retired)");
    }
    for user in &users {
        let name = str_of(user, "name");
        for key in user["access_keys"].as_array().cloned().unwrap_or_default() {
            let id = issue(admin, fixture, name, str_of(&key, "id")).await;
            if key["status"] == "Inactive" {
                let update = admin.iam.update_access_key().user_name(name).access_key_id(&id);
                update
                    .status(aws_sdk_iam::types::StatusType::Inactive)
                    .send()
                    .await
                    .expect("UpdateAccessKey");
            }
        }
    }
}

/// A secret version's value as stored: its JSON text (or the string it was).
fn secret_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Creates one secret with its versions, their labels, rotation and deletion state, and maps
/// the ARN the fixture's release saw to the one moto gave it.
async fn seed_secret(admin: &Admin, fixture: &mut Value, index: usize) {
    let secret = fixture["secrets"][index].clone();
    let unmapped = placeholders_in(&secret);
    assert!(
        unmapped.is_empty(),
        "secret {}: unmapped placeholders {unmapped:?}",
        secret["name"]
    );
    let name = str_of(&secret, "name");
    let versions = secret["versions"].as_array().cloned().unwrap_or_default();
    let has = |v: &Value, label: &str| v["stages"].as_array().is_some_and(|s| s.iter().any(|l| l == label));
    let current = versions
        .iter()
        .find(|v| has(v, "AWSCURRENT"))
        .expect("a current version");
    let tags: Vec<aws_sdk_secretsmanager::types::Tag> = tags_of(&secret["tags"])
        .into_iter()
        .map(|(k, v)| aws_sdk_secretsmanager::types::Tag::builder().key(k).value(v).build())
        .collect();
    let made = admin
        .sm
        .create_secret()
        .name(name)
        .secret_string(secret_string(&current["value"]))
        .client_request_token(str_of(current, "id"))
        .set_tags(Some(tags))
        .set_kms_key_id(secret["kms_key_id"].as_str().map(str::to_owned))
        .set_description(secret["description"].as_str().map(str::to_owned))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret {name}: {}", DisplayErrorContext(&e)));
    let arn = made.arn().expect("an ARN").to_owned();
    let current_id = str_of(current, "id");
    for label in current["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if label != "AWSCURRENT" {
            let add = admin
                .sm
                .update_secret_version_stage()
                .secret_id(&arn)
                .version_stage(label);
            add.move_to_version_id(current_id)
                .send()
                .await
                .expect("label the current version");
        }
    }
    for version in versions.iter().filter(|v| !has(v, "AWSCURRENT")) {
        let mut stages: Vec<String> = version["stages"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let unlabelled = stages.is_empty();
        if unlabelled {
            stages.push("fixture-seed".to_owned());
        }
        let id = str_of(version, "id");
        let put = admin.sm.put_secret_value().secret_id(&arn).client_request_token(id);
        put.secret_string(secret_string(&version["value"]))
            .set_version_stages(Some(stages))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutSecretValue {name} {id}: {}", DisplayErrorContext(&e)));
        if unlabelled {
            let off = admin
                .sm
                .update_secret_version_stage()
                .secret_id(&arn)
                .version_stage("fixture-seed");
            off.remove_from_version_id(id)
                .send()
                .await
                .expect("remove the seeding label");
        }
    }
    if secret["rotation"]["enabled"] == true {
        // Rotation is turned on as the release did, by RotateSecret; moto starts a rotation with
        // it that the release's own state did not have: its label comes off again.
        let token = start_rotation(&admin.sm, &arn).await;
        let off = admin
            .sm
            .update_secret_version_stage()
            .secret_id(&arn)
            .version_stage("AWSPENDING");
        off.remove_from_version_id(&token)
            .send()
            .await
            .expect("remove moto's AWSPENDING");
    }
    assert_eq!(
        stages(admin, &arn).await,
        fixture_stages(&versions),
        "{name}: labels as the fixture has them"
    );
    if secret["pending_deletion"] == true {
        let delete = admin.sm.delete_secret().secret_id(&arn).recovery_window_in_days(7);
        delete.send().await.expect("DeleteSecret (pending)");
    }
    let seen = format!(
        "arn:aws:secretsmanager:{}:{}:secret:{name}-",
        str_of(fixture, "region"),
        str_of(fixture, "account")
    );
    for old in arns_with_prefix(fixture, &seen) {
        replace_all(fixture, &old, &arn);
    }
}

/// The ARNs in `value` that start with `prefix` followed by Secrets Manager's six-character suffix.
fn arns_with_prefix(value: &Value, prefix: &str) -> BTreeSet<String> {
    let text = value.to_string();
    text.match_indices(prefix)
        .filter_map(|(i, _)| text.get(i..i + prefix.len() + 6))
        .filter(|arn| arn[prefix.len()..].chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned)
        .collect()
}

/// The labelled versions of a secret: version id → labels.
async fn stages(admin: &Admin, arn: &str) -> BTreeMap<String, BTreeSet<String>> {
    let listed = admin
        .sm
        .list_secret_version_ids()
        .secret_id(arn)
        .include_deprecated(true);
    let listed = listed.send().await.expect("ListSecretVersionIds");
    listed
        .versions()
        .iter()
        .map(|v| {
            let labels = v.version_stages().iter().cloned().collect();
            (v.version_id().unwrap_or_default().to_owned(), labels)
        })
        .filter(|(_, labels): &(String, BTreeSet<String>)| !labels.is_empty())
        .collect()
}

fn fixture_stages(versions: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    versions
        .iter()
        .map(|v| {
            let labels = v["stages"]
                .as_array()
                .map(|s| s.iter().filter_map(Value::as_str).map(str::to_owned).collect());
            (str_of(v, "id").to_owned(), labels.unwrap_or_default())
        })
        .filter(|(_, labels): &(String, BTreeSet<String>)| !labels.is_empty())
        .collect()
}

/// Creates the trails, logging as they were.
async fn seed_trails(admin: &Admin, fixture: &Value) {
    for trail in fixture["trails"].as_array().cloned().unwrap_or_default() {
        let name = str_of(&trail, "name");
        let tags: Vec<aws_sdk_cloudtrail::types::Tag> = tags_of(&trail["tags"])
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_cloudtrail::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("a tag")
            })
            .collect();
        admin
            .trails
            .create_trail()
            .name(name)
            .s3_bucket_name(str_of(&trail, "bucket"))
            .is_multi_region_trail(trail["multi_region"] == true)
            .include_global_service_events(trail["include_global_events"] != false)
            .set_tags_list(Some(tags))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTrail {name}: {}", DisplayErrorContext(&e)));
        if trail["logging"] == true {
            admin
                .trails
                .start_logging()
                .name(name)
                .send()
                .await
                .expect("StartLogging");
        }
    }
}

/// Seeds everything; returns the fixture with every placeholder, bucket, URL and ARN mapped.
async fn seed(admin: &Admin, mut fixture: Value, tenant: &Recorder) -> Value {
    let text = fixture.to_string();
    assert!(
        real_key_id_in(&text).is_none(),
        "a real key id in the fixture: {:?}",
        real_key_id_in(&text)
    );
    if let Some(url) = fixture["properties"]["CloudAppSecurityUrl"].as_str().map(str::to_owned) {
        let local = tenant.url("");
        replace_all(&mut fixture, &url, local.trim_end_matches('/'));
    }
    seed_buckets(&mut fixture).await;
    seed_api_credentials(admin, &mut fixture).await;
    seed_users(admin, &mut fixture).await;
    for index in 0..fixture["secrets"].as_array().map_or(0, Vec::len) {
        seed_secret(admin, &mut fixture, index).await;
    }
    seed_trails(admin, &fixture).await;
    let unmapped = placeholders_in(&fixture);
    assert!(unmapped.is_empty(), "placeholders no key was mapped to: {unmapped:?}");
    fixture
}

// ---------------------------------------------------------------------------------------------
// The invariant.

/// What the resource's secret and user hold now.
struct Observed {
    doc: Value,
    tags: BTreeMap<String, String>,
    active: BTreeSet<String>,
}

async fn observe(admin: &Admin, user: &str, secret: &str) -> Observed {
    // By label: moto's GetSecretValue without one answers the version it last made current by
    // PutSecretValue, not the one UpdateSecretVersionStage moved AWSCURRENT to.
    let value = admin
        .sm
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT");
    let value = value.send().await.expect("GetSecretValue");
    let doc: Value = serde_json::from_str(value.secret_string().unwrap_or("{}")).expect("the document is JSON");
    let described = admin
        .sm
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .expect("DescribeSecret");
    let tags = described
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let keys = admin
        .iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .expect("ListAccessKeys");
    let active = keys
        .access_key_metadata()
        .iter()
        .filter(|k| k.status() == Some(&aws_sdk_iam::types::StatusType::Active))
        .filter_map(|k| k.access_key_id().map(str::to_owned))
        .collect();
    Observed { doc, tags, active }
}

impl Observed {
    fn stored(&self) -> &str {
        self.doc["AccessKeyId"].as_str().unwrap_or_default()
    }

    fn awaiting(&self) -> Option<&str> {
        let waiting = &self.doc["Bookkeeping"]["awaitingPaste"];
        waiting["deactivatedAt"]
            .is_null()
            .then(|| waiting["accessKeyId"].as_str())
            .flatten()
    }

    /// The stored key is active, and nothing else is but the key awaiting a paste; the
    /// document is in this release's layout, and the first release's tags are gone.
    fn holds(&self, what: &str) {
        assert!(
            self.active.contains(self.stored()),
            "{what}: the stored key {} is not active",
            self.stored()
        );
        let allowed: BTreeSet<&str> = [Some(self.stored()), self.awaiting()].into_iter().flatten().collect();
        let extra: Vec<&String> = self.active.iter().filter(|k| !allowed.contains(k.as_str())).collect();
        assert!(
            extra.is_empty(),
            "{what}: active keys neither stored nor awaiting a paste: {extra:?}"
        );
        let books = &self.doc["Bookkeeping"];
        let fields: Vec<&String> = books.as_object().map(|b| b.keys().collect()).unwrap_or_default();
        assert_eq!(
            books["schemaVersion"],
            json!(SCHEMA_VERSION),
            "{what}: layout (bookkeeping fields {fields:?})"
        );
        assert_eq!(books["writtenBy"], json!(RELEASE), "{what}: writer");
        let legacy: Vec<&&str> = LEGACY_TAGS.iter().filter(|k| self.tags.contains_key(**k)).collect();
        assert!(
            legacy.is_empty(),
            "{what}: the first release's tags are left: {legacy:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The upgrade.

#[test]
fn every_earlier_release_state_upgrades_under_the_role() {
    on_a_large_stack(upgrade_every_fixture);
}

async fn upgrade_every_fixture() {
    let files = fixture_files();
    for release in RELEASES {
        let marker = format!("/{release}/");
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains(&marker)),
            "no fixture of release {release}: run scripts/capture-fixtures.sh"
        );
    }
    let admin = Admin::new().await;
    rotation_function().await;
    let actions = role_actions();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a fixture");
        let fixture: Value = serde_json::from_str(&text).expect("a fixture is JSON");
        let name = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
        eprintln!("upgrading {name}");
        upgrade(&admin, &actions, fixture, &name).await;
    }
}

/// The resource's user and secret: the user its physical id names, the secret whose
/// `physical-id` tag names it.
fn resource_names(fixture: &Value) -> (String, String) {
    let physical_id = str_of(fixture, "physical_id");
    let user = physical_id.rsplit('/').next().expect("a user name").to_owned();
    let secrets = fixture["secrets"].as_array().cloned().unwrap_or_default();
    let secret = secrets
        .iter()
        .find(|s| s["tags"]["cloud-app-security:physical-id"] == physical_id)
        .expect("the resource's secret");
    (user, str_of(secret, "name").to_owned())
}

async fn upgrade(admin: &Admin, actions: &[String], fixture: Value, name: &str) {
    let tenant = Recorder::with(|_, _| Reply::json(200, r#"{"id": "fixture-connector-1", "status": "connected"}"#));
    assert_eq!(str_of(&fixture, "logical_id"), LOGICAL_ID, "{name}: logical id");
    let fixture = seed(admin, fixture, &tenant).await;
    let (user, secret) = resource_names(&fixture);
    let before = observe(admin, &user, &secret).await;
    let credentials = principal(&admin.iam, &unique("upgrader-"), allow(actions)).await;
    let env = Env::acting_as(credentials).await;
    let env = Env {
        stack: str_of(&fixture, "stack_id").to_owned(),
        ..env
    };
    let enforcement = Enforcement::on();
    let physical_id = str_of(&fixture, "physical_id");
    let old = fixture["properties"].clone();
    let mut upgraded = old.clone();
    upgraded["CodeVersion"] = json!(RELEASE);
    let answer = update(&env, physical_id, old, upgraded.clone()).await;
    assert_eq!(
        answer["Status"], "SUCCESS",
        "{name}: the upgrade Update: {}",
        answer["Reason"]
    );
    enforcement.pause();
    let after = observe(admin, &user, &secret).await;
    after.holds(&format!("{name}, after the upgrade"));
    assert_eq!(
        after.stored(),
        before.stored(),
        "{name}: the upgrade keeps the stored (pasted) key"
    );
    eprintln!("  upgraded: {}", rewritten(&before, &after));
    enforcement.resume();
    let resource = Resource {
        physical_id,
        user: &user,
        secret: &secret,
    };
    rotate_and_check(admin, &env, &enforcement, &upgraded, &resource, name).await;
    let fields =
        json!({"PhysicalResourceId": physical_id, "ResourceProperties": upgraded, "LogicalResourceId": LOGICAL_ID});
    let deleted = env.send(env.request("delete", fields)).await;
    assert_eq!(deleted["Status"], "SUCCESS", "{name}: Delete: {}", deleted["Reason"]);
    enforcement.pause();
    assert!(!env.user_exists(&user).await, "{name}: the user is gone");
    drop(enforcement);
    clean_up(admin, &fixture).await;
}

/// What the upgrade rewrote, for the log: layout, records, tags.
fn rewritten(before: &Observed, after: &Observed) -> String {
    let layout = |o: &Observed| match &o.doc["Bookkeeping"] {
        Value::Null => "layout 1 (no bookkeeping)".to_owned(),
        b => format!("layout {}", b["schemaVersion"].as_u64().unwrap_or(2)),
    };
    let fields = |o: &Observed| -> BTreeSet<String> {
        o.doc["Bookkeeping"]
            .as_object()
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    };
    let added: Vec<String> = fields(after).difference(&fields(before)).cloned().collect();
    let untagged: Vec<&str> = LEGACY_TAGS
        .iter()
        .copied()
        .filter(|k| before.tags.contains_key(*k))
        .collect();
    format!(
        "{} -> {}; records added {added:?}; tags removed {untagged:?}; stored key kept",
        layout(before),
        layout(after)
    )
}

/// The resource's logical id in every fixture.
const LOGICAL_ID: &str = "Connector";

/// An Update of the fixture's resource.
async fn update(env: &Env, physical_id: &str, old: Value, new: Value) -> Value {
    let fields = json!({"PhysicalResourceId": physical_id, "ResourceProperties": new, "OldResourceProperties": old,
        "LogicalResourceId": LOGICAL_ID});
    env.send(env.request("update", fields)).await
}

/// The connector resource a fixture holds.
#[derive(Clone, Copy)]
struct Resource<'a> {
    physical_id: &'a str,
    user: &'a str,
    secret: &'a str,
}

/// Rotation turned on by an Update, one rotation (refused while a key awaits a paste), the key
/// check; the invariant after each.
async fn rotate_and_check(
    admin: &Admin,
    env: &Env,
    enforcement: &Enforcement,
    upgraded: &Value,
    resource: &Resource<'_>,
    name: &str,
) {
    let Resource {
        physical_id,
        user,
        secret,
    } = *resource;
    let mut rotating = upgraded.clone();
    rotating["RotationDays"] = json!("30");
    let answer = update(env, physical_id, upgraded.clone(), rotating).await;
    assert_eq!(answer["Status"], "SUCCESS", "{name}: rotation on: {}", answer["Reason"]);
    enforcement.pause();
    let arn = admin
        .sm
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .expect("DescribeSecret");
    let arn = arn.arn().expect("an ARN").to_owned();
    let before = observe(admin, user, secret).await;
    let token = start_rotation(&admin.sm, &arn).await;
    enforcement.resume();
    let mut refused = None;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        if let Err(e) = env.rotation_event(Some(step), &arn, &token).await {
            refused = Some(e.to_string());
            break;
        }
    }
    enforcement.pause();
    let after = observe(admin, user, secret).await;
    after.holds(&format!("{name}, after a rotation"));
    match (before.awaiting(), refused) {
        (Some(_), Some(reason)) => assert!(reason.contains("waits to be pasted"), "{name}: {reason}"),
        (Some(_), None) => panic!("{name}: a rotation started while a key awaits a paste"),
        (None, Some(reason)) => panic!("{name}: the rotation failed: {reason}"),
        (None, None) => assert_ne!(after.stored(), before.stored(), "{name}: the rotation stored a new key"),
    }
    enforcement.resume();
    let checked = env.rotation_event(None, &arn, "").await;
    assert!(
        checked.is_ok(),
        "{name}: the key check: {:?}",
        checked.err().map(|e| e.to_string())
    );
    enforcement.pause();
    observe(admin, user, secret)
        .await
        .holds(&format!("{name}, after the key check"));
    enforcement.resume();
}

/// Removes what is left, so that the next fixture's names are free.
async fn clean_up(admin: &Admin, fixture: &Value) {
    for secret in fixture["secrets"].as_array().cloned().unwrap_or_default() {
        let name = str_of(&secret, "name");
        let _ = admin.sm.restore_secret().secret_id(name).send().await;
        let _ = admin
            .sm
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await;
    }
    if let Some(creds) = fixture["api_credentials_secret"]["name"].as_str() {
        let _ = admin
            .sm
            .delete_secret()
            .secret_id(creds)
            .force_delete_without_recovery(true)
            .send()
            .await;
    }
    for trail in fixture["trails"].as_array().cloned().unwrap_or_default() {
        let _ = admin.trails.delete_trail().name(str_of(&trail, "name")).send().await;
    }
}
