//! The IAM user: created under its path with the ownership tags and boundary, or brought back in
//! line (path, tags, boundary).

use super::ports::{Created, Iam, User};
use super::{steps, InStep, ProvisionError, Target};

pub(super) async fn converge<I: Iam>(iam: &I, target: &Target, existing: Option<User>) -> Result<User, ProvisionError> {
    let name = &target.user.name;
    let tags = target.resource_tags();
    let mut user = match existing {
        Some(user) => user,
        None => match iam
            .create_user(name, &target.user.path, target.boundary.as_deref(), &tags)
            .await
            .in_step(steps::USER)?
        {
            Created::New(user) => return Ok(user),
            // A duplicate delivery of this request created it a moment ago: adopt it if it is ours.
            Created::AlreadyExists => match iam.get_user(name).await.in_step(steps::USER)? {
                Some(user) if target.owner.owns(&user.tags) => user,
                _ => return Err(ProvisionError::ForeignUser(name.clone())),
            },
        },
    };

    if user.path != target.user.path {
        iam.move_user(name, &target.user.path).await.in_step(steps::USER)?;
        user.path = target.user.path.clone();
        user.arn = target.physical_id.clone();
    }
    let changed: bool = tags.iter().any(|(k, v)| user.tags.get(k) != Some(v));
    let stale: Vec<String> = target
        .removed_tags
        .iter()
        .filter(|k| user.tags.contains_key(*k))
        .cloned()
        .collect();
    let boundary = target
        .boundary
        .as_deref()
        .filter(|b| user.boundary.as_deref() != Some(*b));
    futures::try_join!(
        async {
            match changed {
                true => iam.tag_user(name, &tags).await,
                false => Ok(()),
            }
        },
        async {
            match stale.is_empty() {
                false => iam.untag_user(name, &stale).await,
                true => Ok(()),
            }
        },
        async {
            match boundary {
                // A boundary removed from the properties is left in place: dropping it would widen
                // what the user may do, which a security tool must not do silently.
                Some(arn) => iam.put_boundary(name, arn).await,
                None => Ok(()),
            }
        },
    )
    .in_step(steps::USER)?;
    user.tags = tags;
    Ok(user)
}
