//! Create and Update: discovery, then the IAM chain beside the trail, then the secret's tags and
//! rotation settings, the call back, and last the retirement of old keys.

use tokio::time::Instant;

use super::chain::KeyState;
use super::discover::Seen;
use super::{secret, steps, trail, InStep, Made, ProvisionError, Provisioned, Provisioner, Target};
use std::collections::BTreeSet;

use crate::key_material::SecretDocument;
use crate::ports::{KeyProbe, Ports, ProbeError, SecretStore};
use crate::properties::Connection;

/// How long key verification waits between attempts while IAM propagates a new key.
const PROBE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a stack operation waits for a new key to become valid before it reports
/// `KeyVerified: false` and answers anyway. A new key usually authenticates within seconds;
/// a minute is well past that, and a stack is not held for the function's whole timeout.
const VERIFY_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

impl<P: Ports> Provisioner<'_, P> {
    /// Creates or repairs everything `target` describes. Safe to repeat; what it makes is
    /// recorded in `made` for [`Provisioner::undo`].
    pub async fn converge(&self, target: &Target, made: &Made) -> Result<Provisioned, ProvisionError> {
        let Seen {
            user,
            secret,
            old_secret,
            trail: plan,
            credentials,
        } = self.discover(target).await?;
        // The trail is independent of the IAM chain: both run at once. Boxed: the SDK's
        // futures are large, and debug builds copy them on the stack.
        let (chain, trail) = futures::join!(
            Box::pin(self.chain(target, user, secret, old_secret.as_ref(), made)),
            Box::pin(trail::apply(self.ports.trails(), target, plan)),
        );
        let (chain, trail) = super::both(chain, trail)?;
        let (user, state) = chain;
        if let Some(before) = &state.before {
            self.tidy_secret(target, before, state.secured).await?;
        }
        self.configure_rotation(target, &state).await?;
        let trail_arn = trail.arn.as_deref().unwrap_or_default();
        let (state, connector) = self
            .register(target, credentials.as_ref(), state, trail_arn, made)
            .await?;
        let retired = self.retire(target, &state).await?;
        // A previous key's secret half is kept only while the key exists (a rollback may hand
        // it back); once it is gone, the record of it goes with the next write.
        // (Only for a key of this user: the listing is this user's.)
        let previous_gone = state.doc.bookkeeping.previous.as_ref().is_some_and(|p| {
            p.user_name == target.user.name
                && (retired.contains(&p.access_key_id)
                    || !state.listed.iter().any(|k| k.access_key_id == p.access_key_id))
        });
        let description = state
            .before
            .as_ref()
            .map_or(Some(secret::DESCRIPTION), |b| b.description.as_deref());
        self.align_description(&state.arn, description, &state.doc).await?;
        let key_verified = match target.verify_key {
            true => Some(self.verify(target, &state).await),
            false => None,
        };
        let mut state = state;
        if key_verified.is_some() {
            // This request used the stored key itself: a use until then is the function's own,
            // not Cloud App Security's (the rotation rule's "seen"). Written with the record.
            let until = super::epoch(self.now() + super::access_key::IN_FLIGHT);
            let own = &mut state.doc.bookkeeping.self_use_until;
            *own = Some(own.map_or(until, |t| t.max(until)));
        }
        Ok(Provisioned {
            user_name: target.user.name.clone(),
            user_arn: user.arn,
            connector_name: target.connector_name.clone(),
            access_key_id: state.doc.access_key_id.clone(),
            secret_arn: state.arn.clone(),
            trail,
            connector,
            key_verified,
            key_created: state.stored_created(self.now()),
            stored: super::Stored {
                arn: state.arn.clone(),
                version: state.version.clone(),
                doc: state.doc,
                previous_gone,
            },
        })
    }

    /// Deletes the stale keys: every key that is neither stored, awaiting a paste, nor possibly
    /// about to be stored by another invocation.
    async fn retire(&self, target: &Target, state: &KeyState) -> Result<Vec<String>, ProvisionError> {
        self.progress.set(steps::RETIRE);
        let awaiting = state
            .doc
            .bookkeeping
            .awaiting_paste
            .as_ref()
            .map(|a| a.access_key_id.as_str());
        let protected: Vec<&str> = [Some(state.doc.access_key_id.as_str()), awaiting]
            .into_iter()
            .flatten()
            .collect();
        let now = self.now();
        let mut stale = super::access_key::stale(&state.listed, &protected, state.stored_created(now), now);
        if let Some(replaced) = state.replaced.as_ref().filter(|id| !stale.contains(id)) {
            stale.push(replaced.clone());
        }
        self.delete_keys(&target.user.name, &stale).await?;
        Ok(stale)
    }

    /// Turns scheduled rotation on or off to match `RotationDays`.
    async fn configure_rotation(&self, target: &Target, state: &KeyState) -> Result<(), ProvisionError> {
        let current = state.before.as_ref().and_then(|b| b.rotation.as_ref());
        let secrets = self.ports.secrets();
        let days = target.rotation_days;
        // A rotation left half-way (turned off mid-rotation, or failed before this release undid
        // failures) would make Secrets Manager refuse every later one: abandoned when rotation
        // is turned off, and before it is turned on.
        let before = state.before.as_ref().filter(|_| days == 0 || current.is_none());
        if days == 0 {
            if current.is_some() {
                self.progress.set(steps::ROTATION);
                secrets.disable_rotation(&state.arn).await.in_step(steps::ROTATION)?;
            }
            if let Some(info) = before {
                self.abandon_rotation(info).await?;
            }
            return Ok(());
        }
        let Some(function) = self.context.function_arn else {
            return Err(ProvisionError::Credentials(
                "RotationDays needs the function's own ARN, which this invocation did not carry".to_owned(),
            ));
        };
        if current.is_some_and(|(arn, d)| arn == function && *d == days) {
            return Ok(());
        }
        self.progress.set(steps::ROTATION);
        if let Some(info) = before {
            self.abandon_rotation(info).await?;
        }
        secrets
            .enable_rotation(&state.arn, function, days)
            .await
            .in_step(steps::ROTATION)
    }

    /// "Test API", automated: the stored key authenticates and can make the connector's reads,
    /// retried while IAM propagates it, until the deadline. Never fails the request.
    pub(super) async fn verify(&self, target: &Target, state: &KeyState) -> bool {
        let until = self.context.deadline.min(Instant::now() + VERIFY_WITHIN);
        match self.verify_key(&state.doc, &target.connections, until).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(key = %state.doc.access_key_id, error = %error, "the stored key could not make the connector's reads");
                false
            }
        }
    }

    /// Proves `doc`'s key authenticates and can make the reads of `connections`, retrying
    /// while IAM propagates a new key, until `until`.
    pub(crate) async fn verify_key(
        &self,
        doc: &SecretDocument,
        connections: &BTreeSet<Connection>,
        until: Instant,
    ) -> Result<(), ProbeError> {
        self.progress.set(steps::VERIFY);
        loop {
            let attempt = tokio::time::timeout_at(until, self.ports.probe().probe(doc, connections));
            let error = match attempt.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => ProbeError::Failed("no answer within the time verification has".to_owned()),
            };
            let retry = matches!(error, ProbeError::NotYetValid(_)) && Instant::now() + PROBE_RETRY < until;
            if !retry {
                return Err(error);
            }
            tokio::time::sleep(PROBE_RETRY).await;
        }
    }
}
