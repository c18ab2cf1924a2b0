//! Delete: the user (stripped of what IAM requires gone first), the secret, the trail and the
//! registration — each only when it is ours and still serves the physical id being deleted.

use std::collections::BTreeSet;

use super::permissions::{CONFIGURATION_POLICIES, INLINE_POLICY_NAME};
use super::{steps, trail, InStep, ProvisionError, Provisioner, TrailTarget};
use crate::key_material::Bookkeeping;
use crate::ownership::{Owner, StackArn, UserRef};
use crate::ports::{AccessKeys, Attachment, Attachments, Depth, ErrorKind, Ports, UserPolicies, Users};
use crate::properties::{Connection, Properties, RecoveryWindow};

/// What one Delete request acts on.
#[derive(Clone, Debug)]
pub struct DeleteTarget {
    /// Whose things may be deleted.
    pub owner: Owner,
    /// The stack's partition, region and account.
    pub stack: StackArn,
    /// The `PhysicalResourceId` being deleted.
    pub physical_id: String,
    /// The connections whose policies the user should hold (removed without listing first).
    pub connections: BTreeSet<Connection>,
    /// The secret's name and recovery window.
    pub secret: (String, RecoveryWindow),
    /// The trail settings.
    pub trail: TrailTarget,
    /// When CloudFormation signed the Delete (seconds since the epoch), where known.
    pub signed_at: Option<u64>,
    /// The secret's records as the request read them first (the lifecycle's record), if it
    /// did: not read again.
    pub recorded: Option<Bookkeeping>,
}

/// How much later than a Delete was signed a user must have been created for the Delete to be
/// a late delivery: a user created after the Delete was sent is another resource's (the same
/// names deployed again), with a margin for the clocks of CloudFormation and IAM.
const CREATED_AFTER_MARGIN: u64 = 5;

impl DeleteTarget {
    /// From the properties as far as they can be read: a Delete must never be blocked by
    /// properties that no longer validate.
    pub fn new(owner: Owner, stack: StackArn, physical_id: &str, properties: &Properties) -> DeleteTarget {
        DeleteTarget {
            secret: (
                properties.resolve(&stack.account_id).secret_name,
                properties.secret_recovery_window,
            ),
            connections: properties.connections.clone(),
            trail: TrailTarget::new(properties, None),
            owner,
            stack,
            physical_id: physical_id.to_owned(),
            signed_at: None,
            recorded: None,
        }
    }
}

impl<P: Ports> Provisioner<'_, P> {
    /// Removes what `target` owns. Anything already gone, or not ours, is left as it is. Every
    /// part runs to its end: a failure of one must not leave the others undone.
    pub async fn delete(&self, target: &DeleteTarget) -> Result<(), ProvisionError> {
        let user = async {
            match UserRef::from_physical_id(&target.physical_id) {
                Some(user) => self.delete_user(target, &user).await,
                None => Ok(()),
            }
        };
        let secret = async {
            let (name, window) = &target.secret;
            let served = [target.physical_id.as_str()];
            // Known in either mode: a portal-mode resource may still record registrations it
            // could not remove when it left call-back mode.
            let doc = self
                .delete_secret_if_ours(&target.owner, name, &served, *window, (target.recorded.as_ref(), false))
                .await?;
            let books = doc.unwrap_or_default();
            let current = books.registration.filter(|r| r.physical_id == target.physical_id);
            self.unregister_all(current.into_iter().chain(books.stale_registrations).collect())
                .await;
            Ok(())
        };
        let trail = async {
            let region = &target.stack.region;
            trail::delete(
                self.ports.trails(),
                &target.owner,
                &target.physical_id,
                &target.trail,
                region,
            )
            .await
            .in_step(steps::DELETE_TRAIL)
        };
        let (user, secret, trail) = futures::join!(user, secret, trail);
        user.and(secret).and(trail)
    }

    /// Deletes the user if it is ours and still at the path of the physical id. What this
    /// resource made goes first, without listing; only if IAM still refuses is the rest listed.
    async fn delete_user(&self, target: &DeleteTarget, user: &UserRef) -> Result<(), ProvisionError> {
        self.progress.set(steps::DELETE_USER);
        let iam = self.ports.iam();
        let name = &user.name;
        let Some(found) = iam.get_user(name).await.in_step(steps::DELETE_USER)? else {
            return Ok(());
        };
        if !target.owner.owns(&found.tags) {
            tracing::warn!(user = %name, "IAM user is not managed by this resource; left untouched");
            return Ok(());
        }
        if found.path != user.path {
            tracing::info!(user = %name, path = %found.path, "IAM user has moved to another path; left in place");
            return Ok(());
        }
        if found
            .created
            .zip(target.signed_at)
            .is_some_and(|(c, s)| c > s + CREATED_AFTER_MARGIN)
        {
            return Err(ProvisionError::Superseded(format!(
                "IAM user {name} was created after this Delete was sent: it belongs to the connector deployed again \
                 under the same names"
            )));
        }
        let keys = async {
            let keys = iam.list_access_keys(name).await?;
            futures::future::try_join_all(keys.iter().map(|k| iam.delete_access_key(name, &k.access_key_id))).await
        };
        let managed = CONFIGURATION_POLICIES
            .iter()
            .filter(|_| target.connections.contains(&Connection::SecurityConfiguration))
            .map(|p| target.stack.managed_policy_arn(p));
        let managed =
            futures::future::try_join_all(managed.map(|arn| async move { iam.detach_policy(name, &arn).await }));
        futures::try_join!(keys, self.delete_own_policy(name), managed).in_step(steps::DELETE_USER)?;
        self.remove_user(name).await
    }

    /// Deletes the connector's inline policy, unless a person turned it into a Deny (incident
    /// response): that one stays, and `strip` fails the Delete naming it.
    async fn delete_own_policy(&self, name: &str) -> Result<(), crate::ports::CallError> {
        let iam = self.ports.iam();
        match iam.get_inline_policy(name, INLINE_POLICY_NAME).await? {
            Some(document) if denies(&document) => Ok(()),
            Some(_) => iam.delete_inline_policy(name, INLINE_POLICY_NAME).await,
            None => Ok(()),
        }
    }

    /// `DeleteUser`; on IAM's `DeleteConflict`, what is usually attached is listed and removed
    /// (except group memberships, another principal's grant), then `DeleteUser` again; on a
    /// second conflict, the rarer credentials too. Only what IAM says is left is listed.
    pub(super) async fn remove_user(&self, name: &str) -> Result<(), ProvisionError> {
        for depth in [Depth::Usual, Depth::Rest] {
            match self.ports.iam().delete_user(name).await {
                Err(e) if e.kind == ErrorKind::Conflict => self.strip(name, depth).await?,
                other => return other.in_step(steps::DELETE_USER),
            }
        }
        self.ports.iam().delete_user(name).await.in_step(steps::DELETE_USER)
    }

    /// Removes the user's attachments of one depth; fails naming the groups it cannot leave and
    /// the quarantine policies it never removes.
    async fn strip(&self, name: &str, depth: Depth) -> Result<(), ProvisionError> {
        let iam = self.ports.iam();
        let attachments = iam.list_attachments(name, depth).await.in_step(steps::DELETE_USER)?;
        let groups: Vec<String> = attachments
            .iter()
            .filter_map(|a| match a {
                Attachment::Group(g) => Some(g.clone()),
                _ => None,
            })
            .collect();
        let quarantine = self.quarantine(name, &attachments).await?;
        let removals = attachments
            .iter()
            .filter(|a| !matches!(a, Attachment::Group(_)) && !quarantine.contains(a))
            .map(|a| iam.remove_attachment(name, a));
        futures::future::try_join_all(removals)
            .await
            .in_step(steps::DELETE_USER)?;
        if !quarantine.is_empty() {
            let policies = quarantine.iter().map(attachment_name).collect();
            return Err(ProvisionError::Quarantined {
                user: name.to_owned(),
                policies,
            });
        }
        match groups.is_empty() {
            true => Ok(()),
            false => Err(ProvisionError::InGroups {
                user: name.to_owned(),
                groups,
            }),
        }
    }

    /// The policies that quarantine the user now, by name (the key check's alarm).
    pub async fn quarantined(&self, name: &str) -> Result<Vec<String>, ProvisionError> {
        let iam = self.ports.iam();
        let attachments = match iam.list_attachments(name, Depth::Policies).await {
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.in_step(steps::DELETE_USER)?,
        };
        let held = self.quarantine(name, &attachments).await?;
        Ok(held.iter().map(attachment_name).collect())
    }

    /// The attachments that quarantine the user — AWS's `AWSCompromisedKeyQuarantine*` managed
    /// policies, and any other policy but ours that denies something (an inline one, a customer
    /// managed one, AWS's `AWSDenyAll`). Detaching only narrows, except these: removing a Deny
    /// widens the user, and undoes an incident responder's work.
    pub(super) async fn quarantine(
        &self,
        name: &str,
        attachments: &[Attachment],
    ) -> Result<Vec<Attachment>, ProvisionError> {
        let iam = self.ports.iam();
        let mut held = Vec::new();
        for attachment in attachments {
            let hold = match attachment {
                Attachment::ManagedPolicy(arn) if is_quarantine_policy(arn) => true,
                Attachment::ManagedPolicy(arn) if !is_configuration_policy(arn) => {
                    let document = iam.get_managed_policy(arn).await.in_step(steps::DELETE_USER)?;
                    document.is_some_and(|d| denies(&d))
                }
                // The connector's own policy too: a person may have turned it into a Deny.
                Attachment::InlinePolicy(policy) => {
                    let document = iam.get_inline_policy(name, policy).await.in_step(steps::DELETE_USER)?;
                    document.is_some_and(|d| denies(&d))
                }
                _ => false,
            };
            if hold {
                held.push(attachment.clone());
            }
        }
        Ok(held)
    }
}

impl<P: Ports> Provisioner<'_, P> {
    /// After a `SecretName` change: deletes the previous secret at once if it is ours and serves
    /// this resource (the old or the new physical id). The new secret holds the key by now, and a
    /// copy left restorable for days would be a live key another deployment could adopt as a
    /// leftover; a rollback of the move copies the key back from the new secret.
    pub async fn delete_previous_secret(&self, target: &super::Target) -> Result<(), ProvisionError> {
        let (Some(name), Some(before)) = (target.moved_from_secret(), &target.before) else {
            return Ok(());
        };
        self.progress.set(steps::OLD_SECRET);
        let served = [before.physical_id.as_str(), target.physical_id.as_str()];
        self.delete_secret_if_ours(&target.owner, name, &served, RecoveryWindow::Immediate, (None, true))
            .await?;
        Ok(())
    }
}

/// One of the two managed policies the connector attaches (no `Deny` in either).
fn is_configuration_policy(arn: &str) -> bool {
    let partition = arn.split(':').nth(1).unwrap_or_default();
    CONFIGURATION_POLICIES
        .iter()
        .any(|p| arn == format!("arn:{partition}:iam::aws:policy/{p}"))
}

/// An AWS managed quarantine policy (`AWSCompromisedKeyQuarantine`, `…V2`, `…V3`, …).
pub(crate) fn is_quarantine_policy(arn: &str) -> bool {
    arn.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("AWSCompromisedKeyQuarantine"))
}

/// Whether a policy document holds a `Deny` statement.
pub(crate) fn denies(document: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(document) else {
        // Unreadable: treated as a Deny, so that nothing that might quarantine is removed.
        return true;
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    statements.iter().any(|s| s["Effect"] == "Deny")
}

fn attachment_name(attachment: &Attachment) -> String {
    match attachment {
        Attachment::ManagedPolicy(arn) => arn.clone(),
        Attachment::InlinePolicy(name) => format!("inline policy {name}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_policies_are_recognised_by_name_and_by_a_deny() {
        assert!(is_quarantine_policy(
            "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
        ));
        assert!(is_quarantine_policy(
            "arn:aws-cn:iam::aws:policy/AWSCompromisedKeyQuarantine"
        ));
        assert!(!is_quarantine_policy("arn:aws:iam::aws:policy/SecurityAudit"));
        assert!(denies(
            r#"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#
        ));
        assert!(denies(r#"{"Statement": [{"Effect": "Allow"}, {"Effect": "Deny"}]}"#));
        assert!(!denies(
            r#"{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}"#
        ));
        assert!(denies("not json"));
    }
}
