//! CloudTrail: make sure the account has a multi-region trail that is logging, without paying
//! for a second one. Discovery is read-only and runs first; the plan is a pure decision over
//! what discovery saw; the writes then run beside the IAM chain.

use super::{steps, InStep, Kind, ProvisionError, Target, TrailTarget};
use crate::ownership::{Owner, TAG_PHYSICAL_ID};
use crate::ports::{CallError, Created, ErrorKind, Tags, TrailInfo, TrailSettings, Trails};
use crate::properties::TrailMode;

/// The trail the connector reads, as reported in `Data`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrailState {
    /// The trail's ARN; `None` when `TrailMode` is `Off`.
    pub arn: Option<String>,
    /// Whether this resource created (and keeps) it.
    pub created: bool,
}

/// One trail as discovery saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// What `DescribeTrails` said.
    pub trail: TrailInfo,
    /// `None` when the status could not be read (an organization trail seen from a member account).
    pub logging: Option<bool>,
    /// Whether it records management events, reads and writes; `None` when not read or not readable.
    pub management: Option<bool>,
    /// Read only for the trails this resource may own (its names, in its region).
    pub tags: Option<Tags>,
}

/// What to do about the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `Off`: no trail is managed or reported.
    Nothing,
    /// Another qualifying trail exists: report it, change nothing about it.
    Reuse(String),
    /// No qualifying trail and none of ours: create one.
    Create(TrailSettings),
    /// Our trail exists: repair its settings and logging.
    Adopt(Observed),
}

/// The decision over what discovery saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The trail Cloud App Security reads.
    pub action: Action,
    /// Names of our own trails (all homed in this region) that are no longer wanted.
    pub remove: Vec<String>,
}

impl Plan {
    fn nothing() -> Plan {
        Plan {
            action: Action::Nothing,
            remove: Vec::new(),
        }
    }
}

fn qualifies(o: &Observed) -> bool {
    // A trail whose status or selectors cannot be read counts only if it is an organization
    // trail: the management account runs it, and a member account may not see its settings.
    let readable_or_org = |v: Option<bool>| v.unwrap_or(o.trail.organization);
    o.trail.multi_region && o.trail.global_service_events && readable_or_org(o.logging) && readable_or_org(o.management)
}

/// Decides what to do from what discovery saw. Pure: tested on its own.
pub fn plan(target: &TrailTarget, owner: &Owner, region: &str, seen: &[Observed]) -> Result<Plan, ProvisionError> {
    let home = |name: &str| {
        seen.iter()
            .find(|o| o.trail.name == name && o.trail.home_region == region)
    };
    let ours = |o: &&Observed| o.tags.as_ref().is_some_and(|t| owner.owns(t));
    let named = home(&target.name);
    let named_ours = named.filter(ours);
    let mut remove: Vec<String> = target
        .previous
        .as_ref()
        .filter(|(_, previous_name)| *previous_name != target.name)
        .and_then(|(_, previous_name)| home(previous_name))
        .filter(ours)
        .map(|o| o.trail.name.clone())
        .into_iter()
        .collect();

    if target.mode == TrailMode::Off {
        remove.extend(named_ours.map(|o| o.trail.name.clone()));
        return Ok(Plan {
            action: Action::Nothing,
            remove,
        });
    }
    if target.mode == TrailMode::Reuse {
        // Our own trail gives way only to an organization trail: anyone allowed to create a
        // trail in the account could otherwise have ours deleted, then delete theirs.
        let other =
            best_other(seen, region, &remove, named_ours).filter(|o| named_ours.is_none() || o.trail.organization);
        if let Some(other) = other {
            remove.extend(named_ours.map(|o| o.trail.name.clone()));
            return Ok(Plan {
                action: Action::Reuse(other.trail.arn.clone()),
                remove,
            });
        }
    }
    let action = match (named, named_ours) {
        (_, Some(ours)) => Action::Adopt(ours.clone()),
        (Some(_), None) => {
            return Err(ProvisionError::Foreign {
                kind: Kind::Trail,
                name: target.name.clone(),
            })
        }
        (None, _) => match &target.bucket {
            Some(bucket) => Action::Create(TrailSettings {
                name: target.name.clone(),
                bucket: bucket.clone(),
                kms_key_id: target.kms_key_id.clone(),
            }),
            None => return Err(ProvisionError::TrailBucketMissing(target.mode)),
        },
    };
    Ok(Plan { action, remove })
}

/// The qualifying trail `Reuse` keeps, other than ours and the ones being removed: an
/// organization trail first, then one homed here, then a stable order.
fn best_other<'a>(
    seen: &'a [Observed],
    region: &str,
    remove: &[String],
    named_ours: Option<&Observed>,
) -> Option<&'a Observed> {
    seen.iter()
        .filter(|o| {
            qualifies(o)
                && !(o.trail.home_region == region && remove.contains(&o.trail.name))
                && named_ours.is_none_or(|n| n.trail.arn != o.trail.arn)
        })
        .min_by_key(|o| {
            (
                !o.trail.organization,
                o.trail.home_region != region,
                o.trail.arn.clone(),
            )
        })
}

/// Reads what the plan needs. No CloudTrail call at all when the mode is, and was, `Off`.
pub(super) async fn discover<T: Trails>(trails: &T, target: &Target) -> Result<Plan, ProvisionError> {
    let t = &target.trail;
    let was_off = t.previous.as_ref().is_none_or(|(mode, _)| *mode == TrailMode::Off);
    if t.mode == TrailMode::Off && was_off {
        return Ok(Plan::nothing());
    }
    let region = target.stack.region.as_str();
    let listed = trails.list().await.in_step(steps::TRAIL)?;
    let observe = listed.into_iter().map(|trail| observe(trails, t, region, trail));
    let seen = futures::future::try_join_all(observe).await.in_step(steps::TRAIL)?;
    plan(t, &target.owner, region, &seen)
}

/// Reads one trail's tags (when it may be ours), status and selectors (when it may be reused).
async fn observe<T: Trails>(
    trails: &T,
    t: &TrailTarget,
    region: &str,
    trail: TrailInfo,
) -> Result<Observed, CallError> {
    let mine = trail.home_region == region
        && (trail.name == t.name || t.previous.as_ref().is_some_and(|(_, previous)| *previous == trail.name));
    let candidate = t.mode == TrailMode::Reuse && trail.multi_region && trail.global_service_events;
    let tags = async {
        match mine {
            true => trails.tags(&trail.arn).await.map(Some),
            false => Ok(None),
        }
    };
    let logging = readable(&trail, mine || candidate, trails.is_logging(&trail.arn));
    let management = readable(&trail, candidate, trails.records_management_events(&trail.arn));
    let (tags, logging, management) = futures::try_join!(tags, logging, management)?;
    Ok(Observed {
        trail,
        logging,
        management,
        tags,
    })
}

/// A setting of `trail`, read only when `wanted`; an organization trail's may be unreadable
/// from a member account, which is not an error.
async fn readable(
    trail: &TrailInfo,
    wanted: bool,
    read: impl std::future::Future<Output = Result<bool, CallError>>,
) -> Result<Option<bool>, CallError> {
    if !wanted {
        return Ok(None);
    }
    match read.await {
        Ok(value) => Ok(Some(value)),
        Err(e) if trail.organization => {
            tracing::info!(trail = %trail.arn, error = %e, "organization trail setting not readable; it counts");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Carries out the plan.
pub(super) async fn apply<T: Trails>(trails: &T, target: &Target, plan: Plan) -> Result<TrailState, ProvisionError> {
    let state = match plan.action {
        Action::Nothing => TrailState::default(),
        Action::Reuse(arn) => TrailState {
            arn: Some(arn),
            created: false,
        },
        Action::Create(settings) => TrailState {
            arn: Some(create(trails, target, &settings).await?),
            created: true,
        },
        Action::Adopt(observed) => {
            adopt(trails, target, &observed).await?;
            TrailState {
                arn: Some(observed.trail.arn),
                created: true,
            }
        }
    };
    let removals = plan.remove.iter().map(|name| trails.delete(name));
    futures::future::try_join_all(removals).await.in_step(steps::TRAIL)?;
    Ok(state)
}

/// Creates the trail and starts it. A trail of that name made a moment ago by a duplicate
/// delivery is adopted if it is ours.
async fn create<T: Trails>(trails: &T, target: &Target, settings: &TrailSettings) -> Result<String, ProvisionError> {
    let created = trails
        .create(settings, &target.resource_tags())
        .await
        .map_err(|source| bucket_error(&settings.bucket, source))?;
    let arn = match created {
        Created::New(arn) => arn,
        Created::AlreadyExists => {
            let listed = trails.list().await.in_step(steps::TRAIL)?;
            let region = &target.stack.region;
            let found = listed
                .into_iter()
                .find(|t| t.name == settings.name && &t.home_region == region);
            let foreign = || ProvisionError::Foreign {
                kind: Kind::Trail,
                name: settings.name.clone(),
            };
            let trail = found.ok_or_else(foreign)?;
            let tags = trails.tags(&trail.arn).await.in_step(steps::TRAIL)?;
            if !target.owner.owns(&tags) {
                return Err(foreign());
            }
            trail.arn
        }
    };
    trails.start_logging(&arn).await.in_step(steps::TRAIL)?;
    Ok(arn)
}

async fn adopt<T: Trails>(trails: &T, target: &Target, o: &Observed) -> Result<(), ProvisionError> {
    let t = &o.trail;
    let bucket = target
        .trail
        .bucket
        .clone()
        .or_else(|| t.bucket.clone())
        .unwrap_or_default();
    let kms_differs = target.trail.kms_key_id.is_some() && target.trail.kms_key_id != t.kms_key_id;
    if !t.multi_region
        || !t.global_service_events
        || !t.log_file_validation
        || t.bucket.as_ref() != Some(&bucket)
        || kms_differs
    {
        let settings = TrailSettings {
            name: t.name.clone(),
            bucket: bucket.clone(),
            kms_key_id: target.trail.kms_key_id.clone(),
        };
        trails
            .update(&settings)
            .await
            .map_err(|source| bucket_error(&bucket, source))?;
    }
    let tags = target.resource_tags();
    if o.tags
        .as_ref()
        .is_none_or(|have| tags.iter().any(|(k, v)| have.get(k) != Some(v)))
    {
        trails.add_tags(&t.arn, &tags).await.in_step(steps::TRAIL)?;
    }
    if o.logging != Some(true) {
        trails.start_logging(&t.arn).await.in_step(steps::TRAIL)?;
    }
    Ok(())
}

fn bucket_error(bucket: &str, source: CallError) -> ProvisionError {
    match source.kind {
        ErrorKind::BucketRejected => ProvisionError::TrailBucketRejected {
            bucket: bucket.to_owned(),
            source,
        },
        _ => ProvisionError::Call {
            step: steps::TRAIL,
            source,
        },
    }
}

/// Delete: removes the trail only if this resource created it and it still serves `physical_id`.
/// A reused trail is never touched; in `Off` mode CloudTrail is not called at all.
pub(super) async fn delete<T: Trails>(
    trails: &T,
    owner: &Owner,
    physical_id: &str,
    target: &TrailTarget,
    region: &str,
) -> Result<(), CallError> {
    if target.mode == TrailMode::Off {
        return Ok(());
    }
    let listed = trails.list().await?;
    let Some(trail) = listed.iter().find(|t| t.name == target.name && t.home_region == region) else {
        return Ok(());
    };
    let tags = trails.tags(&trail.arn).await?;
    if owner.owns(&tags) && tags.get(TAG_PHYSICAL_ID).map(String::as_str) == Some(physical_id) {
        trails.delete(&trail.name).await
    } else {
        tracing::info!(trail = %trail.arn, "trail is not this resource's to delete; left in place");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "us-east-1";

    fn owner() -> Owner {
        Owner {
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/g".into(),
            logical_id: "C".into(),
        }
    }

    fn target(mode: TrailMode, bucket: Option<&str>) -> TrailTarget {
        TrailTarget {
            mode,
            name: "cloud-app-security".into(),
            bucket: bucket.map(Into::into),
            kms_key_id: None,
            previous: None,
        }
    }

    fn trail(name: &str, region: &str) -> TrailInfo {
        TrailInfo {
            name: name.into(),
            arn: format!("arn:aws:cloudtrail:{region}:123456789012:trail/{name}"),
            home_region: region.into(),
            multi_region: true,
            global_service_events: true,
            organization: false,
            log_file_validation: true,
            bucket: Some("logs".into()),
            kms_key_id: None,
        }
    }

    fn seen(trail: TrailInfo, logging: Option<bool>, ours: bool) -> Observed {
        let tags = ours.then(|| owner().tags("arn:aws:iam::123456789012:user/cloud-app-security/u", &Tags::new()));
        let management = logging.map(|_| true);
        Observed {
            trail,
            logging,
            management,
            tags,
        }
    }

    #[test]
    fn a_trail_without_management_events_does_not_count() {
        let mut data_only = seen(trail("data-events", REGION), Some(true), false);
        data_only.management = Some(false);
        let p = plan(&target(TrailMode::Reuse, Some("b")), &owner(), REGION, &[data_only]).unwrap();
        assert!(matches!(p.action, Action::Create(_)), "{p:?}");
        let mut org = seen(trail("org", "eu-west-1"), None, false);
        org.trail.organization = true;
        org.management = None;
        let p = plan(&target(TrailMode::Reuse, None), &owner(), REGION, &[org.clone()]).unwrap();
        assert_eq!(
            p.action,
            Action::Reuse(org.trail.arn),
            "unreadable selectors of an organization trail count"
        );
    }

    #[test]
    fn reuse_takes_a_logging_multi_region_trail() {
        let other = seen(trail("org-audit", REGION), Some(true), false);
        let p = plan(
            &target(TrailMode::Reuse, None),
            &owner(),
            REGION,
            std::slice::from_ref(&other),
        )
        .unwrap();
        assert_eq!(p.action, Action::Reuse(other.trail.arn));
        assert!(p.remove.is_empty());
    }

    #[test]
    fn a_shadow_trail_homed_elsewhere_counts() {
        let shadow = seen(trail("main", "eu-west-1"), Some(true), false);
        let p = plan(
            &target(TrailMode::Reuse, None),
            &owner(),
            REGION,
            std::slice::from_ref(&shadow),
        )
        .unwrap();
        assert_eq!(p.action, Action::Reuse(shadow.trail.arn));
    }

    #[test]
    fn an_organization_trail_counts_even_when_its_status_is_unreadable() {
        let mut org = trail("org", "eu-central-1");
        org.organization = true;
        let p = plan(
            &target(TrailMode::Reuse, None),
            &owner(),
            REGION,
            &[seen(org.clone(), None, false)],
        )
        .unwrap();
        assert_eq!(p.action, Action::Reuse(org.arn));
    }

    #[test]
    fn an_unreadable_status_of_an_ordinary_trail_does_not_count() {
        let p = plan(
            &target(TrailMode::Reuse, Some("b")),
            &owner(),
            REGION,
            &[seen(trail("x", REGION), None, false)],
        );
        assert!(matches!(p.unwrap().action, Action::Create(_)));
    }

    #[test]
    fn stopped_or_single_region_or_regional_only_trails_do_not_count() {
        let stopped = seen(trail("stopped", REGION), Some(false), false);
        let mut single = seen(trail("single", REGION), Some(true), false);
        single.trail.multi_region = false;
        let mut no_global = seen(trail("noglobal", REGION), Some(true), false);
        no_global.trail.global_service_events = false;
        let p = plan(
            &target(TrailMode::Reuse, Some("bucket")),
            &owner(),
            REGION,
            &[stopped, single, no_global],
        )
        .unwrap();
        assert_eq!(
            p.action,
            Action::Create(TrailSettings {
                name: "cloud-app-security".into(),
                bucket: "bucket".into(),
                kms_key_id: None
            })
        );
    }

    #[test]
    fn organization_trails_are_preferred() {
        let plain = seen(trail("a-plain", REGION), Some(true), false);
        let mut org = seen(trail("z-org", "eu-west-1"), Some(true), false);
        org.trail.organization = true;
        let p = plan(&target(TrailMode::Reuse, None), &owner(), REGION, &[plain, org.clone()]).unwrap();
        assert_eq!(p.action, Action::Reuse(org.trail.arn));
    }

    #[test]
    fn a_needed_trail_without_a_bucket_names_the_property() {
        let err = plan(&target(TrailMode::Reuse, None), &owner(), REGION, &[]).unwrap_err();
        assert!(err.to_string().starts_with("TrailBucket is required"), "{err}");
        let err = plan(&target(TrailMode::Create, None), &owner(), REGION, &[]).unwrap_err();
        assert!(err.to_string().contains("TrailMode Create"), "{err}");
    }

    #[test]
    fn create_mode_adopts_ours_and_refuses_a_foreign_trail_of_its_name() {
        let ours = seen(trail("cloud-app-security", REGION), Some(false), true);
        let p = plan(
            &target(TrailMode::Create, None),
            &owner(),
            REGION,
            std::slice::from_ref(&ours),
        )
        .unwrap();
        assert_eq!(p.action, Action::Adopt(ours));
        let foreign = seen(trail("cloud-app-security", REGION), Some(true), false);
        let err = plan(&target(TrailMode::Create, Some("b")), &owner(), REGION, &[foreign]).unwrap_err();
        assert!(
            matches!(err, ProvisionError::Foreign { kind: Kind::Trail, ref name } if name == "cloud-app-security"),
            "{err}"
        );
    }

    #[test]
    fn create_mode_keeps_its_own_trail_even_when_another_qualifies() {
        let ours = seen(trail("cloud-app-security", REGION), Some(true), true);
        let other = seen(trail("org", REGION), Some(true), false);
        let p = plan(
            &target(TrailMode::Create, None),
            &owner(),
            REGION,
            &[ours.clone(), other],
        )
        .unwrap();
        assert_eq!(p.action, Action::Adopt(ours));
    }

    #[test]
    fn reuse_keeps_ours_against_an_account_trail_and_drops_it_for_an_organization_trail() {
        let ours = seen(trail("cloud-app-security", REGION), Some(true), true);
        let alone = plan(
            &target(TrailMode::Reuse, None),
            &owner(),
            REGION,
            std::slice::from_ref(&ours),
        )
        .unwrap();
        assert_eq!(alone.action, Action::Adopt(ours.clone()));
        assert!(alone.remove.is_empty());
        // Someone who can only create a trail in the account makes one that qualifies.
        let planted = seen(trail("planted", REGION), Some(true), false);
        let kept = plan(
            &target(TrailMode::Reuse, None),
            &owner(),
            REGION,
            &[ours.clone(), planted.clone()],
        )
        .unwrap();
        assert_eq!(kept.action, Action::Adopt(ours.clone()), "ours stays");
        assert!(kept.remove.is_empty());
        let mut org = seen(trail("org", REGION), Some(true), false);
        org.trail.organization = true;
        let p = plan(
            &target(TrailMode::Reuse, None),
            &owner(),
            REGION,
            &[ours.clone(), planted, org.clone()],
        )
        .unwrap();
        assert_eq!(p.action, Action::Reuse(org.trail.arn));
        assert_eq!(p.remove, vec![ours.trail.name]);
    }

    #[test]
    fn off_removes_only_our_trail() {
        let ours = seen(trail("cloud-app-security", REGION), Some(true), true);
        let p = plan(
            &target(TrailMode::Off, None),
            &owner(),
            REGION,
            std::slice::from_ref(&ours),
        )
        .unwrap();
        assert_eq!(
            p,
            Plan {
                action: Action::Nothing,
                remove: vec![ours.trail.name]
            }
        );
        let foreign = seen(trail("cloud-app-security", REGION), Some(true), false);
        assert_eq!(
            plan(&target(TrailMode::Off, None), &owner(), REGION, &[foreign]).unwrap(),
            Plan::nothing()
        );
    }

    #[test]
    fn a_renamed_trail_of_ours_is_removed() {
        let old = seen(trail("old-name", REGION), Some(true), true);
        let mut t = target(TrailMode::Create, Some("b"));
        t.previous = Some((TrailMode::Create, "old-name".into()));
        let p = plan(&t, &owner(), REGION, std::slice::from_ref(&old)).unwrap();
        assert!(matches!(p.action, Action::Create(_)));
        assert_eq!(p.remove, vec![old.trail.name]);
    }
}
