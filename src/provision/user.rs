//! The IAM user: created under its path with the ownership tags and boundary, or brought back in
//! line (path, tags, boundary).

use super::{steps, InStep, Kind, ProvisionError, Provisioner, Target};
use crate::ports::{Created, Ports, User, Users};

impl<P: Ports> Provisioner<'_, P> {
    /// The user as the target wants it; `true` when this request created it.
    pub(super) async fn converge_user(
        &self,
        target: &Target,
        existing: Option<User>,
    ) -> Result<(User, bool), ProvisionError> {
        let iam = self.ports.iam();
        let name = &target.user.name;
        let user = match existing {
            Some(user) => user,
            None => match iam
                .create_user(
                    name,
                    &target.user.path,
                    target.boundary.as_deref(),
                    &target.resource_tags(),
                )
                .await
                .in_step(steps::USER)?
            {
                Created::New(user) => {
                    return Ok((user, true));
                }
                // A duplicate delivery of this request created it a moment ago: adopt it if it is ours.
                Created::AlreadyExists => match iam.get_user(name).await.in_step(steps::USER)? {
                    Some(user) if target.owner.owns(&user.tags) => user,
                    _ => {
                        return Err(ProvisionError::Foreign {
                            kind: Kind::User,
                            name: name.clone(),
                        })
                    }
                },
            },
        };
        Ok((self.repair_user(target, user).await?, false))
    }

    /// Path, tags and boundary of an existing user.
    async fn repair_user(&self, target: &Target, mut user: User) -> Result<User, ProvisionError> {
        let iam = self.ports.iam();
        let name = &target.user.name;
        if user.path != target.user.path {
            iam.move_user(name, &target.user.path).await.in_step(steps::USER)?;
            user.path = target.user.path.clone();
            user.arn = target.physical_id.clone();
        }
        let tags = target.resource_tags();
        let changed = tags.iter().any(|(k, v)| user.tags.get(k) != Some(v));
        let stale: Vec<String> = target
            .removed_tags
            .iter()
            .filter(|k| user.tags.contains_key(*k))
            .cloned()
            .collect();
        // A boundary removed from the properties is left in place: dropping it would widen what
        // the user may do, which a security tool must not do silently. One a person put in place
        // of ours (a deny-all, in incident response) is never replaced: only a user with no
        // boundary, or still under the one the previous properties named, gets the new one.
        let previous = target.before.as_ref().and_then(|b| b.boundary.as_deref());
        let ours = |found: Option<&str>| found.is_none() || found == previous;
        let boundary = target
            .boundary
            .as_deref()
            .filter(|b| user.boundary.as_deref() != Some(*b));
        if boundary.is_some() && !ours(user.boundary.as_deref()) {
            tracing::warn!(user = %name, "the user's permissions boundary was changed by a person: left as it is");
        }
        let boundary = boundary.filter(|_| ours(user.boundary.as_deref()));
        futures::try_join!(
            async {
                if changed {
                    iam.tag_user(name, &tags).await
                } else {
                    Ok(())
                }
            },
            async {
                if stale.is_empty() {
                    Ok(())
                } else {
                    iam.untag_user(name, &stale).await
                }
            },
            async {
                if let Some(arn) = boundary {
                    iam.put_boundary(name, arn).await
                } else {
                    Ok(())
                }
            },
        )
        .in_step(steps::USER)?;
        user.tags = tags;
        Ok(user)
    }
}
