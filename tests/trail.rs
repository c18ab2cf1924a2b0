//! Integration: the CloudTrail modes through the handler against moto server. Which trails
//! exist is account-wide, so each test runs in an account of its own.

mod support;

use serde_json::{json, Value};
use support::env::{assert_failed, assert_success, Env};

struct TrailView {
    arn: String,
    multi_region: bool,
    logging: bool,
    tags: Vec<(String, String)>,
}

impl Env {
    async fn trail(&self, name: &str) -> Option<TrailView> {
        // moto ignores trailNameList: filter here.
        let out = self.trails.describe_trails().send().await.unwrap();
        let t = out.trail_list().iter().find(|t| t.name() == Some(name))?;
        let arn = t.trail_arn()?.to_owned();
        let status = self.trails.get_trail_status().name(&arn).send().await.unwrap();
        let tags = self.trails.list_tags().resource_id_list(&arn).send().await.unwrap();
        let tags = tags
            .resource_tag_list()
            .iter()
            .flat_map(|r| r.tags_list())
            .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
            .collect();
        Some(TrailView {
            arn,
            multi_region: t.is_multi_region_trail() == Some(true),
            logging: status.is_logging() == Some(true),
            tags,
        })
    }

    /// A trail made outside the resource, as a customer's existing trail.
    async fn existing_trail(&self, name: &str, multi_region: bool, logging: bool) -> String {
        let bucket = self.bucket().await;
        let out = self
            .trails
            .create_trail()
            .name(name)
            .s3_bucket_name(bucket)
            .is_multi_region_trail(multi_region)
            .include_global_service_events(true)
            .send()
            .await
            .unwrap();
        if logging {
            self.trails.start_logging().name(name).send().await.unwrap();
        }
        out.trail_arn().unwrap().to_owned()
    }

    /// An organization trail (the management account's; moto lets any account make one).
    async fn organization_trail(&self, name: &str) -> String {
        let bucket = self.bucket().await;
        let request = self.trails.create_trail().name(name).s3_bucket_name(bucket);
        let request = request.is_multi_region_trail(true).include_global_service_events(true);
        let out = request.is_organization_trail(true).send().await.unwrap();
        self.trails.start_logging().name(name).send().await.unwrap();
        out.trail_arn().unwrap().to_owned()
    }

    async fn trail_props(&self, mode: &str) -> Value {
        self.props(json!({"TrailMode": mode, "TrailBucket": self.bucket().await}))
    }
}

#[tokio::test]
async fn reuse_without_any_trail_creates_one_that_is_logging() {
    let env = Env::in_own_account().await;
    let r = env.create(env.trail_props("Reuse").await).await;
    assert_success(&r);
    let trail = env.trail("cloud-app-security").await.expect("trail created");
    assert!(trail.multi_region && trail.logging);
    assert!(trail
        .tags
        .iter()
        .any(|(k, v)| k == "cloud-app-security:stack-id" && *v == env.stack));
    assert_eq!(r["Data"]["TrailArn"], trail.arn);
    assert_eq!(r["Data"]["TrailCreated"], "true");
}

#[tokio::test]
async fn an_existing_logging_multi_region_trail_is_reused_and_never_touched() {
    let env = Env::in_own_account().await;
    let existing = env.existing_trail("organization-audit", true, true).await;
    let props = env.trail_props("Reuse").await;
    let r = env.create(props.clone()).await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailArn"], existing);
    assert_eq!(r["Data"]["TrailCreated"], "false");
    assert!(
        env.trail("cloud-app-security").await.is_none(),
        "no second trail, no second bill"
    );
    let updated = env.props(json!({"TrailMode": "Reuse", "TrailBucket": props["TrailBucket"], "KeyVersion": "2"}));
    assert_success(&env.update(&env.physical_id(), props, updated.clone()).await);
    assert_success(&env.delete(&env.physical_id(), updated).await);
    let after = env.trail("organization-audit").await.expect("still there");
    assert!(after.logging);
    assert!(after.tags.is_empty(), "not tagged: {:?}", after.tags);
}

#[tokio::test]
async fn a_stopped_or_single_region_trail_is_not_reused() {
    let env = Env::in_own_account().await;
    env.existing_trail("stopped", true, false).await;
    env.existing_trail("regional", false, true).await;
    let r = env.create(env.trail_props("Reuse").await).await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailCreated"], "true");
    assert_eq!(
        r["Data"]["TrailArn"],
        env.trail("cloud-app-security").await.unwrap().arn
    );
    assert!(
        !env.trail("stopped").await.unwrap().logging,
        "the stopped trail is left as it was"
    );
}

#[tokio::test]
async fn create_mode_adopts_its_own_trail_and_restarts_logging() {
    let env = Env::in_own_account().await;
    let props = env.trail_props("Create").await;
    let first = env.create(props.clone()).await;
    assert_success(&first);
    let arn = env.trail("cloud-app-security").await.unwrap().arn;
    env.trails.stop_logging().name(&arn).send().await.unwrap();
    let again = env.create(props).await;
    assert_success(&again);
    assert_eq!(again["Data"]["TrailArn"], arn);
    assert!(env.trail("cloud-app-security").await.unwrap().logging);
}

#[tokio::test]
async fn a_foreign_trail_of_the_same_name_fails_and_is_left_untouched() {
    let env = Env::in_own_account().await;
    let foreign = env.existing_trail("cloud-app-security", false, false).await;
    let r = env.create(env.trail_props("Create").await).await;
    assert_failed(
        &r,
        "trail cloud-app-security already exists and is not managed by this resource",
    );
    let after = env.trail("cloud-app-security").await.unwrap();
    assert_eq!(after.arn, foreign);
    assert!(!after.logging && !after.multi_region && after.tags.is_empty());
    assert!(
        !env.user_exists(&env.user_name()).await,
        "checked before anything was created"
    );
}

#[tokio::test]
async fn a_missing_trail_bucket_fails_naming_it_and_creates_nothing() {
    let env = Env::in_own_account().await;
    let r = env.create(env.props(json!({"TrailMode": "Reuse"}))).await;
    assert_failed(&r, "TrailBucket is required");
    assert!(!env.user_exists(&env.user_name()).await);
    assert!(env.secret_value(&env.secret_name()).await.is_none());
    assert!(env.trail("cloud-app-security").await.is_none());
}

#[tokio::test]
async fn mode_changes_create_off_create_converge() {
    let env = Env::in_own_account().await;
    let create = env.trail_props("Create").await;
    let off = env.props(json!({"TrailMode": "Off", "TrailBucket": create["TrailBucket"]}));
    assert_success(&env.create(create.clone()).await);
    assert!(env.trail("cloud-app-security").await.is_some());
    let r = env.update(&env.physical_id(), create.clone(), off.clone()).await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailArn"], "");
    assert!(
        env.trail("cloud-app-security").await.is_none(),
        "Off deletes the trail we created"
    );
    let r = env.update(&env.physical_id(), off, create.clone()).await;
    assert_success(&r);
    assert!(env.trail("cloud-app-security").await.unwrap().logging);
    assert_success(&env.delete(&env.physical_id(), create.clone()).await);
    assert!(env.trail("cloud-app-security").await.is_none());
    assert_success(&env.delete(&env.physical_id(), create).await);
}

#[tokio::test]
async fn create_to_reuse_drops_ours_only_for_an_organization_trail() {
    let env = Env::in_own_account().await;
    let create = env.trail_props("Create").await;
    let reuse = env.props(json!({"TrailMode": "Reuse", "TrailBucket": create["TrailBucket"]}));
    assert_success(&env.create(create.clone()).await);
    // Alone, ours is the qualifying trail and stays.
    let r = env.update(&env.physical_id(), create.clone(), reuse.clone()).await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailCreated"], "true");
    // A trail anyone allowed to create one could make does not get ours deleted.
    env.existing_trail("planted", true, true).await;
    let r = env.update(&env.physical_id(), reuse.clone(), reuse.clone()).await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailCreated"], "true");
    assert!(env.trail("cloud-app-security").await.is_some(), "ours stays");
    // An organization trail qualifies: one bill, ours goes.
    let other = env.organization_trail("central").await;
    let r = env.update(&env.physical_id(), reuse.clone(), reuse).await;
    assert_success(&r);
    assert_eq!(r["Data"]["TrailArn"], other);
    assert_eq!(r["Data"]["TrailCreated"], "false");
    assert!(env.trail("cloud-app-security").await.is_none());
}
