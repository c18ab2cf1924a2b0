//! Access-key material and the secret's JSON document. None of the key types implements `Debug`
//! or `Display`: the secret half can only be read through [`SecretAccessKey::expose`], which the
//! code calls where it serialises the secret's value, signs a verification request, and where
//! the IAM adapter receives the key.

use serde::{Deserialize, Serialize};

/// The secret half of an access key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretAccessKey(String);

impl SecretAccessKey {
    /// Wraps a secret access key.
    pub fn new(value: String) -> SecretAccessKey {
        SecretAccessKey(value)
    }

    /// The key itself: for serialising the secret's value and signing requests, nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A key IAM has just issued.
#[derive(Clone)]
pub struct NewAccessKey {
    /// The key's id.
    pub access_key_id: String,
    /// Its secret half.
    pub secret_access_key: SecretAccessKey,
}

/// A secret's text as Secrets Manager holds it; opaque until parsed.
pub struct SecretText(String);

impl SecretText {
    /// Wraps a secret's text.
    pub fn new(value: String) -> SecretText {
        SecretText(value)
    }

    /// The text itself: for parsing and for sending to Secrets Manager.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The secret's value: `{"AccessKeyId", "SecretAccessKey", "UserName"}` — what a person copies
/// into the portal — plus the function's own bookkeeping under one more key, which a person
/// can ignore.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretDocument {
    /// The key's id.
    pub access_key_id: String,
    /// The key's secret half.
    pub secret_access_key: SecretAccessKey,
    /// The user the key belongs to.
    pub user_name: String,
    /// What the function remembers about this key.
    #[serde(default, skip_serializing_if = "Bookkeeping::is_empty")]
    pub bookkeeping: Bookkeeping,
}

/// The function's records, kept in the secret's value — never in tags, which anyone allowed to
/// tag the secret could change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bookkeeping {
    /// The `KeyVersion` the key was issued for: a changed `KeyVersion` rotates exactly once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<String>,
    /// Until when (seconds since the epoch) the function itself may use this key to verify it;
    /// a later use is someone else's (Cloud App Security's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_use_until: Option<u64>,
    /// The previous key, still active until a person pastes this one (portal mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_paste: Option<AwaitingPaste>,
    /// The key pair this document replaced, so that CloudFormation's rollback can put it back
    /// instead of issuing a third key (a key a person pasted keeps working).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousKey>,
    /// The registration this resource made at Cloud App Security. Written before the call
    /// (with an empty id and fingerprint: it may exist), completed after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RecordedRegistration>,
    /// Registrations of this resource at another URL or for another physical id, still to be
    /// removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_registrations: Vec<RecordedRegistration>,
    /// What a rotation needs that is not in the registration: kept here, never in tags alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<KeySettings>,
    /// Since when (seconds since the epoch) the previous key has been retired without Cloud App
    /// Security ever seen using this one: the alarm stays on until it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_unseen_since: Option<u64>,
    /// A rotation's document: the version that was current when it was made. It becomes current
    /// only by moving `AWSCURRENT` from that version (compare-and-swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
}

/// The resource's settings a rotation acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySettings {
    /// The connections the key must be able to read for (`Connections`).
    pub connections: Vec<String>,
    /// `RotationGraceDays`.
    pub grace_days: u32,
}

/// A previous key kept active after a rotation in portal mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwaitingPaste {
    /// The previous key's id.
    pub access_key_id: String,
    /// When the new key was stored (seconds since the epoch).
    pub since: u64,
    /// When the previous key was deactivated, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<u64>,
}

/// The key pair a document replaced.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreviousKey {
    /// The key's id.
    pub access_key_id: String,
    /// Its secret half.
    pub secret_access_key: SecretAccessKey,
    /// The user it belongs to.
    pub user_name: String,
    /// The `KeyVersion` it was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<String>,
    /// The key that was awaiting a paste beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_paste: Option<AwaitingPaste>,
}

impl std::fmt::Debug for PreviousKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret half never reaches a log, even through a debug print of the bookkeeping.
        f.debug_struct("PreviousKey")
            .field("access_key_id", &self.access_key_id)
            .field("user_name", &self.user_name)
            .finish_non_exhaustive()
    }
}

/// A registration at Cloud App Security, as the resource that made it recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRegistration {
    /// The connector's id in Cloud App Security.
    pub id: String,
    /// The tenant URL it was made at.
    pub url: String,
    /// The ARN of the credentials secret it was made with.
    pub credentials: String,
    /// The `PhysicalResourceId` it serves (its key is this id's digest).
    pub physical_id: String,
    /// A digest of everything it carried: when it still matches, nothing changed.
    pub fingerprint: String,
    /// The connector's name it carried.
    #[serde(default)]
    pub name: String,
    /// The connections it carried.
    #[serde(default)]
    pub connections: Vec<String>,
    /// The trail ARN it carried.
    #[serde(default)]
    pub trail_arn: String,
    /// The region it carried.
    #[serde(default)]
    pub region: String,
}

impl RecordedRegistration {
    /// Whether it holds everything a rotation needs to send it again (the previous release
    /// recorded less).
    pub fn is_complete(&self) -> bool {
        !self.name.is_empty() && !self.connections.is_empty() && !self.region.is_empty()
    }
}

impl Bookkeeping {
    fn is_empty(&self) -> bool {
        *self == Bookkeeping::default()
    }
}

impl SecretDocument {
    /// The key pair of this document, to record as a successor's [`Bookkeeping::previous`].
    pub fn as_previous(&self) -> PreviousKey {
        PreviousKey {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            user_name: self.user_name.clone(),
            key_version: self.bookkeeping.key_version.clone(),
            awaiting_paste: self.bookkeeping.awaiting_paste.clone(),
        }
    }

    /// The document the previous key had (its other records are this one's).
    pub fn restore_previous(&self) -> Option<SecretDocument> {
        let previous = self.bookkeeping.previous.as_ref()?;
        let mut bookkeeping = self.bookkeeping.clone();
        bookkeeping.previous = None;
        bookkeeping.key_version = previous.key_version.clone();
        bookkeeping.awaiting_paste = previous.awaiting_paste.clone();
        Some(SecretDocument {
            access_key_id: previous.access_key_id.clone(),
            secret_access_key: previous.secret_access_key.clone(),
            user_name: previous.user_name.clone(),
            bookkeeping,
        })
    }

    /// A document for a key just issued to `user_name`.
    pub fn new(key: NewAccessKey, user_name: &str, bookkeeping: Bookkeeping) -> SecretDocument {
        SecretDocument {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            user_name: user_name.to_owned(),
            bookkeeping,
        }
    }

    /// The JSON text stored in Secrets Manager.
    pub fn to_secret_text(&self) -> SecretText {
        // Serialising a struct of strings and numbers cannot fail.
        SecretText(serde_json::to_string(self).unwrap_or_default())
    }

    /// `None` when the secret holds something else (edited by hand): the caller then issues a
    /// new key.
    pub fn from_secret_text(text: &SecretText) -> Option<SecretDocument> {
        serde_json::from_str(text.expose()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NewAccessKey {
        NewAccessKey {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SecretAccessKey::new("s3cr3t/+=".into()),
        }
    }

    #[test]
    fn a_document_without_bookkeeping_is_exactly_the_three_fields_a_person_copies() {
        let doc = SecretDocument::new(key(), "CloudAppSecurity-x", Bookkeeping::default());
        let value: serde_json::Value = serde_json::from_str(doc.to_secret_text().expose()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "s3cr3t/+=", "UserName": "CloudAppSecurity-x"})
        );
        assert!(SecretDocument::from_secret_text(&doc.to_secret_text()) == Some(doc));
        assert!(SecretDocument::from_secret_text(&SecretText::new("not json".into())).is_none());
    }

    #[test]
    fn bookkeeping_round_trips_under_one_key_and_unknown_fields_are_ignored() {
        let bookkeeping = Bookkeeping {
            key_version: Some("2".into()),
            awaiting_paste: Some(AwaitingPaste {
                access_key_id: "AKIAOLD".into(),
                since: 1_800_000_000,
                deactivated_at: None,
            }),
            ..Bookkeeping::default()
        };
        let doc = SecretDocument::new(key(), "u", bookkeeping.clone());
        let value: serde_json::Value = serde_json::from_str(doc.to_secret_text().expose()).unwrap();
        assert_eq!(value["Bookkeeping"]["keyVersion"], "2");
        assert_eq!(value["Bookkeeping"]["awaitingPaste"]["accessKeyId"], "AKIAOLD");
        let mut newer = value.clone();
        newer["Bookkeeping"]["fromAFutureVersion"] = serde_json::json!(true);
        let back = SecretDocument::from_secret_text(&SecretText::new(newer.to_string())).unwrap();
        assert_eq!(back.bookkeeping, bookkeeping);
    }
}
