//! The custom resource's `ResourceProperties`: parsed and validated once, at the edge.
//!
//! CloudFormation sends every scalar as a string, lists as arrays (or, from a parameter, one
//! comma-separated string) and `""` for an unset optional parameter. Everything is checked here
//! against AWS's own limits — so nothing valid here fails after the first write — and every
//! problem is reported together, so one failed deployment shows them all.
//!
//! One pass yields both readings: the strict one ([`Parsed::strict`]) that Create and Update
//! act on, and the lenient one ([`Parsed::lenient`]) that a Delete — or an Update's old
//! properties — uses to find what to clean up even after a newer version tightened the rules.

mod parser;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One of the procedure's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Connection {
    /// Audit events: the `CloudAppSecurityAuditing` inline policy.
    SecurityAuditing,
    /// CIS benchmark posture: the `SecurityAudit` and `AWSSecurityHubReadOnlyAccess` managed policies.
    SecurityConfiguration,
}

impl Connection {
    /// The name the properties and Cloud App Security use.
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::SecurityAuditing => "SecurityAuditing",
            Connection::SecurityConfiguration => "SecurityConfiguration",
        }
    }

    /// The connection of that name.
    pub fn parse(name: &str) -> Option<Connection> {
        match name {
            "SecurityAuditing" => Some(Connection::SecurityAuditing),
            "SecurityConfiguration" => Some(Connection::SecurityConfiguration),
            _ => None,
        }
    }
}

/// What the resource does about CloudTrail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrailMode {
    /// Keep an existing qualifying trail; create one only when none exists.
    #[default]
    Reuse,
    /// Always keep a dedicated trail.
    Create,
    /// Never call CloudTrail.
    Off,
}

/// What happens to the secret on Delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryWindow {
    /// `0`: deleted at once, without recovery.
    Immediate,
    /// `7`–`30` days during which the secret can be restored.
    Days(u8),
}

/// The validated properties. Defaults that depend on the account are resolved by
/// [`Properties::resolve`].
#[derive(Clone, Debug, PartialEq)]
pub struct Properties {
    /// `ConnectorName`; `None` for `aws-<AccountId>`.
    pub connector_name: Option<String>,
    /// `Connections`.
    pub connections: BTreeSet<Connection>,
    /// `UserName`; `None` for `CloudAppSecurity-<ConnectorName>`.
    pub user_name: Option<String>,
    /// `UserPath`.
    pub user_path: String,
    /// `PermissionsBoundary`.
    pub permissions_boundary: Option<String>,
    /// `TrailMode`.
    pub trail_mode: TrailMode,
    /// `TrailName`.
    pub trail_name: String,
    /// `TrailBucket`.
    pub trail_bucket: Option<String>,
    /// `TrailKmsKeyId`: the KMS key for a created trail's log files.
    pub trail_kms_key_id: Option<String>,
    /// `SecretName`; `None` for `cloud-app-security/<ConnectorName>`.
    pub secret_name: Option<String>,
    /// `SecretKmsKeyId`; `None` for the AWS managed key.
    pub secret_kms_key_id: Option<String>,
    /// `SecretRecoveryWindowDays`.
    pub secret_recovery_window: RecoveryWindow,
    /// `KeyVersion`.
    pub key_version: String,
    /// `RotationDays`; `0` for no scheduled rotation.
    pub rotation_days: u32,
    /// `RotationGraceDays`.
    pub rotation_grace_days: u32,
    /// `VerifyKey`.
    pub verify_key: bool,
    /// `ValidateOnly`: the resource only checks the properties (the template's step that runs
    /// before anything that outlives a rollback is made) and makes nothing.
    pub validate_only: bool,
    /// `CloudAppSecurityUrl`; `None` for portal mode.
    pub cloud_app_security_url: Option<String>,
    /// `CloudAppSecurityCredentials`.
    pub cloud_app_security_credentials: Option<String>,
    /// `Tags`, the deployer's.
    pub tags: BTreeMap<String, String>,
    /// `ToleratedTagKeys`: tag keys others may put on the secret (an organization's tagging
    /// policy) without the key being withheld from it; a trailing `*` matches a prefix.
    pub tolerated_tag_keys: Vec<String>,
    /// `CodeVersion`.
    pub code_version: Option<String>,
}

impl Default for Properties {
    fn default() -> Properties {
        Properties {
            connector_name: None,
            connections: BTreeSet::from([Connection::SecurityAuditing]),
            user_name: None,
            user_path: DEFAULT_USER_PATH.to_owned(),
            permissions_boundary: None,
            trail_mode: TrailMode::default(),
            trail_name: DEFAULT_TRAIL_NAME.to_owned(),
            trail_bucket: None,
            trail_kms_key_id: None,
            secret_name: None,
            secret_kms_key_id: None,
            secret_recovery_window: RecoveryWindow::Days(7),
            key_version: "1".to_owned(),
            rotation_days: 0,
            rotation_grace_days: DEFAULT_GRACE_DAYS,
            verify_key: true,
            validate_only: false,
            cloud_app_security_url: None,
            cloud_app_security_credentials: None,
            tags: BTreeMap::new(),
            tolerated_tag_keys: Vec::new(),
            code_version: None,
        }
    }
}

/// The properties with every default filled in for one account.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The connector's name.
    pub connector_name: String,
    /// The IAM user's name.
    pub user_name: String,
    /// The secret's name.
    pub secret_name: String,
}

/// The path the function's role may act under.
pub const DEFAULT_USER_PATH: &str = "/cloud-app-security/";
/// The prefix every secret the function writes must carry.
pub const SECRET_PREFIX: &str = "cloud-app-security/";
/// The trail's default name.
pub const DEFAULT_TRAIL_NAME: &str = "cloud-app-security";
/// How long a previous key waits for a paste, by default.
pub const DEFAULT_GRACE_DAYS: u32 = 7;

impl Properties {
    /// Parses strictly, reporting every problem at once.
    pub fn parse(raw: &Map<String, Value>) -> Result<Properties, PropertyErrors> {
        Parsed::from_map(raw).strict().cloned()
    }

    /// Fills in the defaults that depend on the account (`aws-<AccountId>` and the names built on it).
    pub fn resolve(&self, account_id: &str) -> Resolved {
        let connector_name = self
            .connector_name
            .clone()
            .unwrap_or_else(|| format!("aws-{account_id}"));
        let user_name = self
            .user_name
            .clone()
            .unwrap_or_else(|| rules::default_user_name(&connector_name));
        let secret_name = self
            .secret_name
            .clone()
            .unwrap_or_else(|| format!("{SECRET_PREFIX}{connector_name}"));
        Resolved {
            connector_name,
            user_name,
            secret_name,
        }
    }
}

/// Both readings of one `ResourceProperties` object.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// Every value that could be read; invalid ones kept where their type allows, so that a
    /// Delete still finds what they name.
    lenient: Properties,
    /// Every problem, for the strict reading.
    errors: Vec<String>,
    /// The object as CloudFormation sent it, without `ServiceToken` (which never changes for a
    /// resource): what the secret records as applied, and what a rollback is compared with.
    sent: Map<String, Value>,
}

impl Parsed {
    /// Parses one object.
    pub fn from_map(raw: &Map<String, Value>) -> Parsed {
        let (lenient, errors) = parser::parse(raw);
        let mut sent = raw.clone();
        sent.remove("ServiceToken");
        Parsed { lenient, errors, sent }
    }

    /// The object as sent, without `ServiceToken`.
    pub fn sent(&self) -> &Map<String, Value> {
        &self.sent
    }

    /// The properties, if they validate.
    pub fn strict(&self) -> Result<&Properties, PropertyErrors> {
        match self.errors.is_empty() {
            true => Ok(&self.lenient),
            false => Err(PropertyErrors(self.errors.clone())),
        }
    }

    /// The properties as far as they could be read, valid or not.
    pub fn lenient(&self) -> &Properties {
        &self.lenient
    }
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Parsed::from_map(&Map::new()),
            Some(Value::Object(map)) => Parsed::from_map(&map),
            Some(_) => Parsed {
                lenient: Properties::default(),
                errors: vec!["ResourceProperties: must be an object".to_owned()],
                sent: Map::new(),
            },
        })
    }
}

impl serde::Serialize for Parsed {
    // Required by the event type's bounds; requests are never serialised.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_none()
    }
}

/// Every problem found in the properties, reported in one `Reason`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PropertyErrors(pub Vec<String>);

impl fmt::Display for PropertyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid properties: {}", self.0.join("; "))
    }
}

#[cfg(test)]
mod tests;
