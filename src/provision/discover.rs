//! Read-only discovery, all at once, before anything is written: a foreign user, secret or
//! trail, a missing `TrailBucket` or unusable API credentials fail the request with nothing made.

use super::secret::Standing;
use super::{steps, trail, InStep, Kind, ProvisionError, Provisioner, Target};
use crate::cloud_app_security::credentials::Credentials;
use crate::ports::{Ports, SecretInfo, SecretStore, User, Users};

/// What discovery found.
pub(super) struct Seen {
    /// The user, checked to be ours.
    pub user: Option<User>,
    /// The target secret and how it relates to this resource.
    pub secret: Standing,
    /// After a `SecretName` change: the previous secret, when it is ours.
    pub old_secret: Option<SecretInfo>,
    /// What to do about CloudTrail.
    pub trail: trail::Plan,
    /// The call back's credentials (`None` in portal mode).
    pub credentials: Option<Credentials>,
}

impl<P: Ports> Provisioner<'_, P> {
    /// Reads the user, the secret(s), the trails and the API credentials concurrently.
    pub(super) async fn discover(&self, target: &Target) -> Result<Seen, ProvisionError> {
        self.progress.set(steps::DISCOVER);
        let secrets = self.ports.secrets();
        let old_secret = async {
            match target.moved_from_secret() {
                Some(name) => secrets.describe(name).await.in_step(steps::DISCOVER),
                None => Ok(None),
            }
        };
        let (user, secret, old_secret, trail, credentials) = futures::try_join!(
            async {
                self.ports
                    .iam()
                    .get_user(&target.user.name)
                    .await
                    .in_step(steps::DISCOVER)
            },
            async { secrets.describe(&target.secret_name).await.in_step(steps::DISCOVER) },
            old_secret,
            Box::pin(trail::discover(self.ports.trails(), target)),
            self.credentials(target.callback.as_ref().map(|c| c.credentials_arn.as_str())),
        )?;
        if user.as_ref().is_some_and(|u| !target.owner.owns(&u.tags)) {
            return Err(ProvisionError::Foreign {
                kind: Kind::User,
                name: target.user.name.clone(),
            });
        }
        if let Some(old) = old_secret.as_ref().filter(|o| super::secret::buried(target, o)) {
            return Err(ProvisionError::Superseded(format!(
                "secret {} this request would move the key from was scheduled for deletion by this resource's Delete \
                 after this request was sent",
                old.arn
            )));
        }
        Ok(Seen {
            user,
            secret: Standing::judge(target, secret)?,
            old_secret: old_secret.filter(|o| target.owner.owns(&o.tags)),
            trail,
            credentials,
        })
    }
}
