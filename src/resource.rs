//! The custom resource's lifecycle: what Create, Update and Delete each do, and the answer each
//! gives. The protocol around it (envelope, deadline, panics, sending) is `crate::handler`'s.

use std::collections::BTreeMap;

use crate::cfn::response::Answer;
use crate::cfn::{properties_of, Envelope, Parsed, Request};
use crate::cloud_app_security::PORTAL_URL;
use crate::identity::{unnamed_physical_id, Owner, StackArn, UserRef};
use crate::progress::Progress;
use crate::properties::Properties;
use crate::provision::ports::{Iam, SecretStore, Trails};
use crate::provision::trail::TrailTarget;
use crate::provision::{Callback, CallbackContext, DeleteTarget, Provisioned, Provisioner, Target};

/// The physical id to answer with if the request fails or runs out of time: the one
/// CloudFormation sent (Update, Delete), or the user ARN the properties name (Create), so the
/// rollback Delete cleans up whatever was made.
pub fn failure_physical_id(envelope: &Envelope, properties: Option<&Properties>) -> String {
    if let Some(id) = envelope.physical_resource_id.as_ref().filter(|id| !id.is_empty()) {
        return id.clone();
    }
    match (StackArn::parse(&envelope.stack_id), properties) {
        (Ok(stack), Some(p)) => stack.user_arn(&p.user_path, &p.resolve(&stack.account_id).user_name),
        _ => unnamed_physical_id(&envelope.request_id),
    }
}

/// Runs one typed request to its answer.
pub async fn run<I: Iam, S: SecretStore, T: Trails>(
    services: (&I, &S, &T),
    callback: CallbackContext<'_>,
    progress: &Progress,
    envelope: &Envelope,
    request: Request,
) -> Answer {
    let fallback = failure_physical_id(envelope, properties_of(&request));
    let stack = match StackArn::parse(&envelope.stack_id) {
        Ok(stack) => stack,
        Err(e) => return Answer::failed(fallback, e.to_string()),
    };
    let owner = Owner {
        stack_id: envelope.stack_id.clone(),
        logical_id: envelope.logical_resource_id.clone(),
    };
    let (iam, secrets, trails) = services;
    let provisioner = Provisioner {
        iam,
        secrets,
        trails,
        progress,
        callback,
    };
    match request {
        Request::Create(r) => {
            let props = match r.resource_properties {
                Parsed(Ok(p)) => p,
                Parsed(Err(e)) => return Answer::failed(fallback, e.to_string()),
            };
            let mut target = Target::new(owner, stack, &props, None);
            target.callback = match Callback::from_properties(&props, provisioner.callback.allowed) {
                Ok(callback) => callback,
                Err(e) => return Answer::failed(target.physical_id.clone(), format!("CloudAppSecurityUrl: {e}")),
            };
            match provisioner.converge(&target).await {
                Ok(done) => Answer::success(target.physical_id.clone(), "created", data(&done)),
                Err(e) => Answer::failed(target.physical_id.clone(), e.to_string()),
            }
        }
        Request::Update(r) => {
            let props = match r.resource_properties {
                Parsed(Ok(p)) => p,
                Parsed(Err(e)) => return Answer::failed(fallback, e.to_string()),
            };
            let previous = r.old_resource_properties.0.ok();
            update(
                &provisioner,
                owner,
                stack,
                &r.physical_resource_id,
                &props,
                previous.as_ref(),
            )
            .await
        }
        Request::Delete(r) => {
            let target = match r.resource_properties {
                Parsed(Ok(p)) => DeleteTarget {
                    secret: Some((p.resolve(&stack.account_id).secret_name, p.secret_recovery_window)),
                    trail: Some((TrailTarget::new(&p, None), stack.region.clone())),
                    callback: Callback::from_properties(&p, provisioner.callback.allowed)
                        .ok()
                        .flatten(),
                    owner,
                    physical_id: r.physical_resource_id.clone(),
                },
                Parsed(Err(e)) => {
                    // Never block a stack deletion on properties that no longer validate: the
                    // user is found from the physical id; the rest cannot be named.
                    tracing::warn!(error = %e, "properties do not validate; deleting the user only");
                    DeleteTarget {
                        owner,
                        physical_id: r.physical_resource_id.clone(),
                        secret: None,
                        trail: None,
                        callback: None,
                    }
                }
            };
            match provisioner.delete(&target).await {
                Ok(()) => Answer::success(r.physical_resource_id, "deleted", BTreeMap::new()),
                Err(e) => Answer::failed(r.physical_resource_id, e.to_string()),
            }
        }
        _ => Answer::failed(fallback, format!("unsupported RequestType {:?}", envelope.request_type)),
    }
}

async fn update<I: Iam, S: SecretStore, T: Trails>(
    provisioner: &Provisioner<'_, I, S, T>,
    owner: Owner,
    stack: StackArn,
    old_physical_id: &str,
    props: &Properties,
    previous: Option<&Properties>,
) -> Answer {
    let account = stack.account_id.clone();
    let mut target = Target::new(owner, stack, props, previous);
    let allowed = provisioner.callback.allowed;
    target.callback = match Callback::from_properties(props, allowed) {
        Ok(callback) => callback,
        Err(e) => return Answer::failed(old_physical_id.to_owned(), format!("CloudAppSecurityUrl: {e}")),
    };
    // After a URL change the registration at the old URL is removed, once the new one succeeded.
    let old_callback = previous.and_then(|p| Callback::from_properties(p, allowed).ok().flatten());
    target.previous_callback = old_callback
        .filter(|old| target.callback.as_ref().is_none_or(|new| new.url != old.url))
        .map(|old| (old, old_physical_id.to_owned()));
    // A new UserName is a replacement: a new user under a new physical id, and CloudFormation
    // deletes the old one afterwards. A new UserPath moves the same user.
    let replacement = UserRef::from_physical_id(old_physical_id).is_none_or(|old| old.name != target.user.name);
    let done = match provisioner.converge(&target).await {
        Ok(done) => done,
        Err(e) => {
            if replacement {
                // CloudFormation keeps the old physical id after a failed update and never
                // deletes the half-made new user: remove it here.
                let cleanup = DeleteTarget {
                    owner: target.owner.clone(),
                    physical_id: target.physical_id.clone(),
                    secret: None,
                    trail: None,
                    callback: None,
                };
                if let Err(cleanup_error) = provisioner.delete(&cleanup).await {
                    tracing::error!(error = %cleanup_error, "could not remove the new user after a failed replacement");
                }
            }
            return Answer::failed(old_physical_id.to_owned(), e.to_string());
        }
    };
    if let Some(previous) = previous {
        let old_secret = previous.resolve(&account).secret_name;
        if old_secret != target.secret_name {
            let window = props.secret_recovery_window;
            if let Err(e) = provisioner
                .delete_previous_secret(&target, &old_secret, old_physical_id, window)
                .await
            {
                return Answer::failed(old_physical_id.to_owned(), e.to_string());
            }
        }
    }
    Answer::success(target.physical_id.clone(), "updated", data(&done))
}

/// `Data` for `Fn::GetAtt`: identifiers only, never key material.
fn data(done: &Provisioned) -> BTreeMap<String, String> {
    let trail = &done.trail;
    let connector = &done.connector;
    BTreeMap::from([
        ("UserName".to_owned(), done.user_name.clone()),
        ("UserArn".to_owned(), done.user_arn.clone()),
        ("AccessKeyId".to_owned(), done.access_key_id.clone()),
        ("SecretArn".to_owned(), done.secret_arn.clone()),
        ("TrailArn".to_owned(), trail.arn.clone().unwrap_or_default()),
        ("TrailCreated".to_owned(), trail.created.to_string()),
        ("ConnectorId".to_owned(), connector.id.clone().unwrap_or_default()),
        ("ConnectorStatus".to_owned(), connector.status.as_str().to_owned()),
        ("PortalUrl".to_owned(), PORTAL_URL.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::ResponseUrl;

    fn envelope(physical_id: Option<&str>) -> Envelope {
        Envelope {
            response_url: ResponseUrl::new("https://example.invalid/".into()),
            request_type: "Create".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/g".into(),
            request_id: "req-7".into(),
            logical_resource_id: "Connector".into(),
            physical_resource_id: physical_id.map(Into::into),
        }
    }

    #[test]
    fn a_failure_keeps_the_physical_id_cloudformation_knows_or_names_the_user() {
        let props = Properties::parse(serde_json::json!({"ConnectorName": "x"}).as_object().unwrap()).unwrap();
        // Update and Delete: the id CloudFormation sent, whatever the properties say.
        assert_eq!(failure_physical_id(&envelope(Some("arn:old")), Some(&props)), "arn:old");
        // Create: the user ARN the properties name, so the rollback Delete finds what was made.
        assert_eq!(
            failure_physical_id(&envelope(None), Some(&props)),
            "arn:aws:iam::123456789012:user/cloud-app-security/CloudAppSecurity-x"
        );
        // Create whose properties do not validate: a marker a Delete recognises as "nothing made".
        let marker = failure_physical_id(&envelope(None), None);
        assert_eq!(marker, "cloud-app-security-connector:not-created:req-7");
        assert_eq!(UserRef::from_physical_id(&marker), None);
    }
}
