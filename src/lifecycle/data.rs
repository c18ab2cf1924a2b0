//! `Data` for `Fn::GetAtt`, and the status report's view of a converged resource: identifiers,
//! states and dates, never key material.

use std::collections::BTreeMap;

use crate::cloud_app_security::PORTAL_URL;
use crate::provision::{Connector, Provisioned};
use crate::status::Snapshot;

/// The attributes of a converged resource.
pub(super) fn of(done: &Provisioned) -> BTreeMap<String, String> {
    let (connector_id, status) = match &done.connector {
        Connector::Registered(id) => (id.clone(), "Registered"),
        Connector::PendingPortal => (String::new(), "PendingPortal"),
    };
    BTreeMap::from([
        ("UserName".to_owned(), done.user_name.clone()),
        ("UserArn".to_owned(), done.user_arn.clone()),
        ("ConnectorName".to_owned(), done.connector_name.clone()),
        ("AccessKeyId".to_owned(), done.access_key_id.clone()),
        ("SecretArn".to_owned(), done.secret_arn.clone()),
        ("TrailArn".to_owned(), done.trail.arn.clone().unwrap_or_default()),
        ("TrailCreated".to_owned(), done.trail.created.to_string()),
        ("ConnectorId".to_owned(), connector_id),
        ("ConnectorStatus".to_owned(), status.to_owned()),
        ("PortalUrl".to_owned(), PORTAL_URL.to_owned()),
        ("KeyVerified".to_owned(), (done.key_verified == Some(true)).to_string()),
    ])
}

/// What the status report says of a converged resource (the handler adds the stack, the logical
/// id and the physical id from the envelope and the answer).
pub(super) fn snapshot(done: &Provisioned) -> Snapshot {
    Snapshot {
        connector_name: Some(done.connector_name.clone()),
        secret_arn: Some(done.secret_arn.clone()),
        registered: matches!(done.connector, Connector::Registered(_)),
        access_key_id: Some(done.access_key_id.clone()),
        key_created_at: done.key_created.map(crate::provision::epoch),
        awaiting_paste_since: done.stored.awaiting_paste_since(),
        last_seen_used: done.stored.seen_in_use(),
        verified: done.key_verified,
        ..Snapshot::default()
    }
}
