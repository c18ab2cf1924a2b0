//! Access-key material and the secret's JSON document. None of the key types implements `Debug`
//! or `Display`: the secret half can only be read through [`SecretAccessKey::expose`], which the
//! code calls where it serialises the secret's value, signs a verification request, and where
//! the IAM adapter receives the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The release this function is: `Cargo.toml`'s version, compiled in.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The layout of the secret's document this release writes.
///
/// - 1 (release 0.1.0): the three fields only; the key's version and the registration were
///   kept in the secret's tags (`cloud-app-security:key-version`, `…:connector-id`,
///   `…:registration`), which the next write removes.
/// - 2 (0.2.0): the function's records under `Bookkeeping`, without a version.
/// - 3 (0.3.0): `Bookkeeping.schemaVersion`, `writtenBy`, and the properties last applied.
///
/// Expand, then contract: a field is only ever added, and a release may write layout N only
/// once the release before it reads N (every release ignores fields it does not know). A
/// document of a newer layout is never rewritten (see [`SecretDocument::is_newer`]).
pub const SCHEMA_VERSION: u32 = 3;
/// What a document without a version is read as (layouts 1 and 2 read alike).
const UNVERSIONED: u32 = 2;
/// How many failed requests a document remembers.
const FAILED_KEPT: usize = 5;
/// How many applied property sets a document keeps: the last, and the one before it (the
/// target of a rollback, whichever order CloudFormation reverts the function and the resource).
const APPLIED_KEPT: usize = 2;

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
    /// When the daily key check first saw Cloud App Security using a key (the rotation rule's
    /// "seen"), and which key: the status stays `Connected` for that key across later requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_in_use: Option<SeenInUse>,
    /// A rotation's document: the version that was current when it was made. It becomes current
    /// only by moving `AWSCURRENT` from that version (compare-and-swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
    /// The layout of this document ([`SCHEMA_VERSION`] when this release wrote it; absent
    /// before 0.3.0). Stamped on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// The release that wrote it. Stamped on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    /// The properties of the last successful stack operations, newest first (at most two).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<Applied>,
    /// The last requests this resource answered `FAILED` (newest first, a few): a late delivery
    /// of one, after CloudFormation rolled it back, acts on nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedRequest>,
}

/// A request this resource answered `FAILED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedRequest {
    /// Its `RequestId`.
    pub request_id: String,
    /// When CloudFormation signed it, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// A stack operation this resource answered `SUCCESS`, as recorded in the secret: what an
/// older release needs to answer CloudFormation's rollback to it without rewriting the
/// document (see [`SecretDocument::is_newer`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The request's `RequestId`.
    pub request_id: String,
    /// The `PhysicalResourceId` it answered with.
    pub physical_id: String,
    /// Its `ResourceProperties` as CloudFormation sent them, without `ServiceToken`.
    pub properties: Map<String, Value>,
    /// The `Data` it answered with (identifiers and states, never key material).
    pub data: BTreeMap<String, String>,
    /// When CloudFormation signed it (`X-Amz-Date`, seconds since the epoch), where known: an
    /// older request is a late delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// A key Cloud App Security was seen using.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeenInUse {
    /// The key's id.
    pub access_key_id: String,
    /// When it was seen used (seconds since the epoch).
    pub at: u64,
}

impl Bookkeeping {
    /// When Cloud App Security was seen using `key`, if it was.
    pub fn seen_using(&self, key: &str) -> Option<u64> {
        self.seen_in_use
            .as_ref()
            .filter(|s| s.access_key_id == key)
            .map(|s| s.at)
    }
}

/// The resource's settings a rotation acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySettings {
    /// The connections the key must be able to read for (`Connections`).
    pub connections: Vec<String>,
    /// `RotationGraceDays`.
    pub grace_days: u32,
    /// The tag keys the secret may carry besides the function's own (the deployer's `Tags` and
    /// `ToleratedTagKeys`): a rotation withholds its key from a secret that carries others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_tags: Vec<String>,
    /// The KMS key the secret must be encrypted with (`SecretKmsKeyId`, the AWS managed key's
    /// alias when none is named); `None` in records older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
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

    /// The JSON text stored in Secrets Manager, stamped with this release's layout: any older
    /// document is rewritten in the current layout by its next write.
    pub fn to_secret_text(&self) -> SecretText {
        let mut stamped = self.clone();
        stamped.bookkeeping.schema_version = Some(SCHEMA_VERSION);
        stamped.bookkeeping.written_by = Some(RELEASE.to_owned());
        // Serialising a struct of strings and numbers cannot fail.
        SecretText(serde_json::to_string(&stamped).unwrap_or_default())
    }

    /// The layout this document was written in.
    pub fn schema(&self) -> u32 {
        self.bookkeeping.schema_version.unwrap_or(UNVERSIONED)
    }

    /// Whether a newer release wrote it. Such a document is never rewritten: this release
    /// would drop what it does not know. Only a Delete, and a rollback to properties the
    /// document records as applied, act on it.
    pub fn is_newer(&self) -> bool {
        self.schema() > SCHEMA_VERSION
    }

    /// Who wrote it, for a person: the release, or the layout when no release is recorded.
    pub fn writer(&self) -> String {
        match &self.bookkeeping.written_by {
            Some(release) => format!("release {release} (layout {})", self.schema()),
            None => format!("a release before 0.3.0 (layout {})", self.schema()),
        }
    }

    /// The recorded operation whose properties are `properties`, if any.
    pub fn applied_with(&self, properties: &Map<String, Value>) -> Option<&Applied> {
        self.bookkeeping.applied.iter().find(|a| a.properties == *properties)
    }

    /// Records a request answered `FAILED`; `false` when it already is.
    pub fn record_failed(&mut self, failed: FailedRequest) -> bool {
        let known = &mut self.bookkeeping.failed;
        if known.iter().any(|f| f.request_id == failed.request_id) {
            return false;
        }
        known.insert(0, failed);
        known.truncate(FAILED_KEPT);
        true
    }

    /// Records `applied` as the newest operation; `false` when it already is, with the same
    /// properties and `Data` (nothing to write) — unless `refresh` asks for the newer request's
    /// id and date anyway.
    pub fn record_applied(&mut self, applied: Applied, refresh: bool) -> bool {
        let newest = self.bookkeeping.applied.first();
        if !refresh && newest.is_some_and(|n| n.properties == applied.properties && n.data == applied.data) {
            return false;
        }
        self.bookkeeping.applied.retain(|a| a.properties != applied.properties);
        self.bookkeeping.applied.insert(0, applied);
        self.bookkeeping.applied.truncate(APPLIED_KEPT);
        true
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

    fn stamped(bookkeeping: Bookkeeping) -> Bookkeeping {
        Bookkeeping {
            schema_version: Some(SCHEMA_VERSION),
            written_by: Some(RELEASE.to_owned()),
            ..bookkeeping
        }
    }

    #[test]
    fn the_three_fields_a_person_copies_stay_at_the_top_beside_the_stamped_layout() {
        let doc = SecretDocument::new(key(), "CloudAppSecurity-x", Bookkeeping::default());
        let value: serde_json::Value = serde_json::from_str(doc.to_secret_text().expose()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "s3cr3t/+=", "UserName": "CloudAppSecurity-x",
                "Bookkeeping": {"schemaVersion": SCHEMA_VERSION, "writtenBy": RELEASE}})
        );
        let back = SecretDocument::from_secret_text(&doc.to_secret_text()).unwrap();
        assert!(back.bookkeeping == stamped(Bookkeeping::default()));
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
        assert_eq!(back.bookkeeping, stamped(bookkeeping));
    }

    #[test]
    fn every_earlier_layout_is_read_and_the_next_write_stamps_the_current_one() {
        // Release 0.1.0: the three fields alone. Release 0.2.0: bookkeeping without a version.
        let first = r#"{"AccessKeyId":"AKIA1","SecretAccessKey":"s","UserName":"u"}"#;
        let second = r#"{"AccessKeyId":"AKIA1","SecretAccessKey":"s","UserName":"u",
            "Bookkeeping":{"keyVersion":"1","registration":{"id":"c","url":"https://x","credentials":"arn",
            "physicalId":"p","fingerprint":"f"}}}"#;
        for text in [first, second] {
            let doc = SecretDocument::from_secret_text(&SecretText::new(text.into())).unwrap();
            assert_eq!(doc.schema(), 2);
            assert!(!doc.is_newer());
            assert!(doc.writer().contains("before 0.3.0"), "{}", doc.writer());
            let rewritten = SecretDocument::from_secret_text(&doc.to_secret_text()).unwrap();
            assert_eq!(rewritten.schema(), SCHEMA_VERSION);
            assert_eq!(rewritten.bookkeeping.registration, doc.bookkeeping.registration);
        }
    }

    #[test]
    fn a_newer_layout_is_recognised_and_named() {
        let text = format!(
            r#"{{"AccessKeyId":"AKIA1","SecretAccessKey":"s","UserName":"u",
            "Bookkeeping":{{"schemaVersion":{},"writtenBy":"9.0.0","somethingNew":{{"a":1}}}}}}"#,
            SCHEMA_VERSION + 1
        );
        let doc = SecretDocument::from_secret_text(&SecretText::new(text)).unwrap();
        assert!(doc.is_newer());
        assert_eq!(doc.writer(), format!("release 9.0.0 (layout {})", SCHEMA_VERSION + 1));
    }

    fn applied(properties: serde_json::Value, data: &str) -> Applied {
        Applied {
            request_id: format!("req-{data}"),
            physical_id: "p".into(),
            properties: properties.as_object().unwrap().clone(),
            data: BTreeMap::from([("AccessKeyId".to_owned(), data.to_owned())]),
            at: None,
        }
    }

    #[test]
    fn the_last_two_applied_property_sets_are_kept_newest_first() {
        let mut doc = SecretDocument::new(key(), "u", Bookkeeping::default());
        let (a, b, c) = (
            serde_json::json!({"KeyVersion": "1"}),
            serde_json::json!({"KeyVersion": "2"}),
            serde_json::json!({"KeyVersion": "3"}),
        );
        assert!(doc.record_applied(applied(a.clone(), "k1"), false));
        assert!(
            !doc.record_applied(applied(a.clone(), "k1"), false),
            "the same again writes nothing"
        );
        assert!(doc.record_applied(applied(b.clone(), "k2"), false));
        assert!(
            doc.record_applied(applied(a.clone(), "k1"), false),
            "a rollback moves to the front"
        );
        assert_eq!(doc.bookkeeping.applied.len(), 2);
        assert!(doc.record_applied(applied(c.clone(), "k3"), false));
        let kept: Vec<_> = doc
            .bookkeeping
            .applied
            .iter()
            .map(|x| x.data["AccessKeyId"].as_str())
            .collect();
        assert_eq!(kept, ["k3", "k1"]);
        assert!(doc.applied_with(b.as_object().unwrap()).is_none());
        assert_eq!(doc.applied_with(a.as_object().unwrap()).unwrap().request_id, "req-k1");
    }

    /// The readers of the earlier releases, as they were (types only): every document this
    /// release writes must still read in them, or a rolled-back function could not read the
    /// secret it left (expand, then contract).
    mod earlier_readers {
        use serde::Deserialize;

        /// 0.1.0's `StoredKey`.
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        #[allow(dead_code)]
        pub struct V1 {
            pub access_key_id: String,
            pub secret_access_key: String,
            pub user_name: String,
        }

        /// 0.2.0's `SecretDocument`, with its `Bookkeeping`.
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        #[allow(dead_code)]
        pub struct V2 {
            pub access_key_id: String,
            pub secret_access_key: String,
            pub user_name: String,
            #[serde(default)]
            pub bookkeeping: V2Books,
        }

        #[derive(Default, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        pub struct V2Books {
            pub key_version: Option<String>,
            pub self_use_until: Option<u64>,
            pub awaiting_paste: Option<serde_json::Value>,
            pub previous: Option<serde_json::Value>,
            pub registration: Option<serde_json::Value>,
            #[serde(default)]
            pub stale_registrations: Vec<serde_json::Value>,
            pub settings: Option<serde_json::Value>,
            pub switch_unseen_since: Option<u64>,
            pub rotated_from: Option<String>,
        }
    }

    #[test]
    fn what_this_release_writes_reads_in_the_earlier_releases() {
        let mut doc = SecretDocument::new(
            key(),
            "u",
            Bookkeeping {
                key_version: Some("2".into()),
                self_use_until: Some(1),
                ..Bookkeeping::default()
            },
        );
        doc.record_applied(applied(serde_json::json!({"KeyVersion": "2"}), "k"), false);
        let text = doc.to_secret_text();
        let v1: earlier_readers::V1 = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(v1.access_key_id, "AKIAEXAMPLE");
        let v2: earlier_readers::V2 = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(v2.bookkeeping.key_version.as_deref(), Some("2"));
        assert_eq!(v2.bookkeeping.self_use_until, Some(1));
    }
}
