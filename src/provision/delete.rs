//! Delete: removes the user (after everything IAM requires gone first) and the secret, each only
//! when it is ours and still serves the physical id being deleted.

use super::connector::{self, Callback};
use super::ports::{Iam, SecretStore, Trails};
use super::trail::TrailTarget;
use super::{secret, steps, trail, InStep, ProvisionError, Provisioner};
use crate::aws::AwsError;
use crate::identity::{Owner, UserRef};
use crate::properties::RecoveryWindow;

/// What one Delete request acts on.
#[derive(Clone, Debug)]
pub struct DeleteTarget {
    pub owner: Owner,
    pub physical_id: String,
    /// The secret's name and recovery window; `None` when the properties could not be read.
    pub secret: Option<(String, RecoveryWindow)>,
    /// The trail settings and the stack's region; `None` when the properties could not be read.
    pub trail: Option<(TrailTarget, String)>,
    /// Where the connector was registered; `None` in portal mode.
    pub callback: Option<Callback>,
}

pub(super) async fn run<I: Iam, S: SecretStore, T: Trails>(
    p: &Provisioner<'_, I, S, T>,
    t: &DeleteTarget,
) -> Result<(), ProvisionError> {
    let user = async {
        match UserRef::from_physical_id(&t.physical_id) {
            Some(user) => {
                p.progress.set(steps::DELETE_USER);
                delete_user(p.iam, &t.owner, &user).await.in_step(steps::DELETE_USER)
            }
            None => Ok(()),
        }
    };
    let secret = async {
        match &t.secret {
            Some((name, window)) => {
                secret::delete_if_ours(p.secrets, &t.owner, name, &[t.physical_id.as_str()], *window)
                    .await
                    .in_step(steps::DELETE_SECRET)
            }
            None => Ok(()),
        }
    };
    let trail = async {
        match &t.trail {
            Some((target, region)) => trail::delete(p.trails, &t.owner, &t.physical_id, target, region)
                .await
                .in_step(steps::DELETE_TRAIL),
            None => Ok(()),
        }
    };
    // Best effort: a registration that cannot be removed is logged, and the clean-up goes on.
    let registration = async {
        if let Some(callback) = &t.callback {
            connector::unregister(p.secrets, &p.callback, callback, &t.physical_id).await;
        }
    };
    // All run to the end: a failure of one must not leave the others undone.
    let (user, secret, trail, ()) = futures::join!(user, secret, trail, registration);
    user.and(secret).and(trail)
}

/// Real IAM refuses `DeleteUser` (`DeleteConflict`) while the user has access keys, inline or
/// attached policies, group memberships or a console password, so those go first.
async fn delete_user<I: Iam>(iam: &I, owner: &Owner, user: &UserRef) -> Result<(), AwsError> {
    let name = &user.name;
    let Some(found) = iam.get_user(name).await? else {
        return Ok(());
    };
    if !owner.owns(&found.tags) {
        tracing::warn!(user = %name, "IAM user is not managed by this resource; left untouched");
        return Ok(());
    }
    if found.path != user.path {
        // UserPath changed: the same user now serves the new physical id.
        tracing::info!(user = %name, path = %found.path, "IAM user has moved to another path; left in place");
        return Ok(());
    }
    let (keys, inline, attached, groups) = futures::try_join!(
        iam.list_access_keys(name),
        iam.list_inline_policies(name),
        iam.list_attached_policies(name),
        iam.list_groups(name),
    )?;
    let keys = futures::future::try_join_all(keys.iter().map(|k| iam.delete_access_key(name, &k.access_key_id)));
    let inline = futures::future::try_join_all(inline.iter().map(|p| iam.delete_inline_policy(name, p)));
    let attached = futures::future::try_join_all(attached.iter().map(|p| iam.detach_policy(name, p)));
    let groups = futures::future::try_join_all(groups.iter().map(|g| iam.remove_from_group(name, g)));
    futures::try_join!(keys, inline, attached, groups, iam.delete_login_profile(name))?;
    iam.delete_user(name).await
}
