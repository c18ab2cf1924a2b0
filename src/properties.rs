//! The custom resource's `ResourceProperties`: parsed and validated once, at the edge.
//!
//! CloudFormation sends every scalar as a string, lists as arrays (or, from a parameter, one
//! comma-separated string) and `""` for an unset optional parameter. Everything is checked here
//! and every problem is reported together, so one failed deployment shows them all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{Deserializer, Error as _};
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
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::SecurityAuditing => "SecurityAuditing",
            Connection::SecurityConfiguration => "SecurityConfiguration",
        }
    }
}

/// What the resource does about CloudTrail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrailMode {
    #[default]
    Reuse,
    Create,
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
    pub connector_name: Option<String>,
    pub connections: BTreeSet<Connection>,
    pub user_name: Option<String>,
    pub user_path: String,
    pub permissions_boundary: Option<String>,
    pub trail_mode: TrailMode,
    pub trail_name: String,
    pub trail_bucket: Option<String>,
    pub secret_name: Option<String>,
    pub secret_kms_key_id: Option<String>,
    pub secret_recovery_window: RecoveryWindow,
    pub key_version: String,
    pub rotation_days: u32,
    pub cloud_app_security_url: Option<String>,
    pub cloud_app_security_credentials: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub code_version: Option<String>,
}

/// The properties with every default filled in for one account.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub connector_name: String,
    pub user_name: String,
    pub secret_name: String,
}

pub const DEFAULT_USER_PATH: &str = "/cloud-app-security/";
pub const SECRET_PREFIX: &str = "cloud-app-security/";
pub const DEFAULT_TRAIL_NAME: &str = "cloud-app-security";
/// IAM allows 50 tags on a user; three are ours.
pub const MAX_EXTRA_TAGS: usize = 47;
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["aws:", "cloud-app-security:"];

impl Properties {
    /// Parses the `ResourceProperties` object, reporting every problem at once.
    pub fn parse(raw: &Map<String, Value>) -> Result<Properties, PropertyErrors> {
        let mut p = Parser {
            raw,
            errors: Vec::new(),
        };
        for key in raw.keys() {
            if !KNOWN.contains(&key.as_str()) {
                p.errors.push(format!(
                    "{key}: unknown property (expected one of {})",
                    KNOWN[2..].join(", ")
                ));
            }
        }
        let properties = Properties {
            connector_name: p.string("ConnectorName").filter(|v| {
                p.check(
                    "ConnectorName",
                    (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || "+=.@_-".contains(c)),
                    "must be 1-64 characters of A-Z a-z 0-9 + = . @ _ -",
                )
            }),
            connections: p.connections(),
            user_name: p.string("UserName").filter(|v| {
                p.check(
                    "UserName",
                    (1..=64).contains(&v.len())
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)),
                    "must be 1-64 characters of A-Z a-z 0-9 + = , . @ _ -",
                )
            }),
            user_path: p
                .string("UserPath")
                .filter(|v| {
                    p.check(
                "UserPath",
                v.starts_with(DEFAULT_USER_PATH) && v.ends_with('/') && v.len() <= 512
                    && !v.contains("//") && v.chars().all(|c| ('!'..='~').contains(&c)),
                "must be /cloud-app-security/ or a path below it, ending in / (the function may act nowhere else)",
            )
                })
                .unwrap_or_else(|| DEFAULT_USER_PATH.to_owned()),
            permissions_boundary: p.string("PermissionsBoundary").filter(|v| {
                p.check(
                    "PermissionsBoundary",
                    is_policy_arn(v),
                    "must be a managed policy ARN (arn:<partition>:iam::<account or aws>:policy/<name>)",
                )
            }),
            trail_mode: p.trail_mode(),
            trail_name: p
                .string("TrailName")
                .filter(|v| {
                    p.check(
                        "TrailName",
                        is_trail_name(v),
                        "must be 3-128 characters of letters, digits, . _ -, starting with a letter or digit",
                    )
                })
                .unwrap_or_else(|| DEFAULT_TRAIL_NAME.to_owned()),
            trail_bucket: p.string("TrailBucket").filter(|v| {
                p.check(
                    "TrailBucket",
                    is_bucket_name(v),
                    "must be an S3 bucket name (3-63 characters of a-z 0-9 . -)",
                )
            }),
            secret_name: p.string("SecretName").filter(|v| {
                p.check(
                    "SecretName",
                    v.starts_with(SECRET_PREFIX)
                        && v.len() > SECRET_PREFIX.len()
                        && v.len() <= 512
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)),
                    "must start with cloud-app-security/ and use only A-Z a-z 0-9 / _ + = . @ -",
                )
            }),
            secret_kms_key_id: p.string("SecretKmsKeyId").filter(|v| {
                p.check(
                    "SecretKmsKeyId",
                    v.len() <= 2048 && !v.chars().any(char::is_whitespace),
                    "must be a KMS key id, ARN or alias",
                )
            }),
            secret_recovery_window: p.recovery_window(),
            key_version: p.string("KeyVersion").unwrap_or_else(|| "1".to_owned()),
            rotation_days: p.rotation_days(),
            cloud_app_security_url: p.string("CloudAppSecurityUrl"),
            cloud_app_security_credentials: p.string("CloudAppSecurityCredentials"),
            tags: p.tags(),
            code_version: p.string("CodeVersion"),
        };
        if properties.cloud_app_security_url.is_some() && properties.cloud_app_security_credentials.is_none() {
            p.errors
                .push("CloudAppSecurityCredentials: required with CloudAppSecurityUrl".to_owned());
        }
        if p.errors.is_empty() {
            Ok(properties)
        } else {
            Err(PropertyErrors(p.errors))
        }
    }

    /// Fills in the defaults that depend on the account (`aws-<AccountId>` and the names built on it).
    pub fn resolve(&self, account_id: &str) -> Resolved {
        let connector_name = self
            .connector_name
            .clone()
            .unwrap_or_else(|| format!("aws-{account_id}"));
        let user_name = self.user_name.clone().unwrap_or_else(|| {
            let mut name = format!("CloudAppSecurity-{connector_name}");
            name.truncate(64);
            name
        });
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

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default();
        Properties::parse(&raw).map_err(D::Error::custom)
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

const KNOWN: [&str; 19] = [
    "ServiceToken",
    "ServiceTimeout",
    "ConnectorName",
    "Connections",
    "UserName",
    "UserPath",
    "PermissionsBoundary",
    "TrailMode",
    "TrailName",
    "TrailBucket",
    "SecretName",
    "SecretKmsKeyId",
    "SecretRecoveryWindowDays",
    "KeyVersion",
    "RotationDays",
    "CloudAppSecurityUrl",
    "CloudAppSecurityCredentials",
    "Tags",
    "CodeVersion",
];

struct Parser<'a> {
    raw: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl Parser<'_> {
    fn check(&mut self, key: &str, ok: bool, message: &str) -> bool {
        if !ok {
            self.errors.push(format!("{key}: {message}"));
        }
        ok
    }

    /// A scalar as text; `""`, `null` and absence all mean "not set".
    fn string(&mut self, key: &str) -> Option<String> {
        match self.raw.get(key)? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.errors.push(format!("{key}: must be a string"));
                None
            }
        }
    }

    fn number(&mut self, key: &str) -> Option<u32> {
        let text = self.string(key)?;
        match text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.errors.push(format!("{key}: must be a whole number, got {text:?}"));
                None
            }
        }
    }

    /// A list as a JSON array of strings or one comma-separated string.
    fn list(&mut self, key: &str) -> Option<Vec<String>> {
        let items: Vec<String> = match self.raw.get(key)? {
            Value::Null => return None,
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                        Value::String(_) => {}
                        _ => {
                            self.errors.push(format!("{key}: must be a list of strings"));
                            return None;
                        }
                    }
                }
                out
            }
            _ => {
                self.errors
                    .push(format!("{key}: must be a list of strings or a comma-separated string"));
                return None;
            }
        };
        Some(items)
    }

    fn connections(&mut self) -> BTreeSet<Connection> {
        let Some(items) = self.list("Connections") else {
            return BTreeSet::from([Connection::SecurityAuditing]);
        };
        let mut set = BTreeSet::new();
        for item in &items {
            match item.as_str() {
                "SecurityAuditing" => set.insert(Connection::SecurityAuditing),
                "SecurityConfiguration" => set.insert(Connection::SecurityConfiguration),
                other => {
                    self.errors.push(format!(
                        "Connections: unknown connection {other:?} (expected SecurityAuditing, SecurityConfiguration)"
                    ));
                    false
                }
            };
        }
        if items.is_empty() {
            self.errors
                .push("Connections: must name at least one of SecurityAuditing, SecurityConfiguration".to_owned());
        }
        set
    }

    fn trail_mode(&mut self) -> TrailMode {
        match self.string("TrailMode").as_deref() {
            None | Some("Reuse") => TrailMode::Reuse,
            Some("Create") => TrailMode::Create,
            Some("Off") => TrailMode::Off,
            Some(other) => {
                self.errors
                    .push(format!("TrailMode: must be Reuse, Create or Off, got {other:?}"));
                TrailMode::default()
            }
        }
    }

    fn recovery_window(&mut self) -> RecoveryWindow {
        match self.number("SecretRecoveryWindowDays") {
            None => RecoveryWindow::Days(7),
            Some(0) => RecoveryWindow::Immediate,
            Some(n @ 7..=30) => RecoveryWindow::Days(n as u8),
            Some(n) => {
                self.errors
                    .push(format!("SecretRecoveryWindowDays: must be 0 or 7-30, got {n}"));
                RecoveryWindow::Days(7)
            }
        }
    }

    fn rotation_days(&mut self) -> u32 {
        match self.number("RotationDays") {
            None | Some(0) => 0,
            // Scheduled rotation arrives with its own release; until then a request for it must not
            // be silently ignored. A new KeyVersion rotates the key on Update.
            Some(_) => {
                self.errors.push(
                    "RotationDays: scheduled rotation is not available in this version; use 0 and change KeyVersion to rotate"
                        .to_owned(),
                );
                0
            }
        }
    }

    fn tags(&mut self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        match self.raw.get("Tags") {
            None | Some(Value::Null) => return tags,
            Some(Value::String(s)) if s.trim().is_empty() => return tags,
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    match value {
                        Value::String(v) => tags.insert(key.clone(), v.clone()),
                        Value::Number(_) | Value::Bool(_) => tags.insert(key.clone(), value.to_string()),
                        _ => {
                            self.errors.push(format!("Tags: the value of {key:?} must be a string"));
                            None
                        }
                    };
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    let pair = item
                        .as_object()
                        .and_then(|o| Some((o.get("Key")?.as_str()?, o.get("Value")?.as_str()?)));
                    match pair {
                        Some((key, value)) => tags.insert(key.to_owned(), value.to_owned()),
                        None => {
                            self.errors
                                .push("Tags: each list item must be {\"Key\": \"…\", \"Value\": \"…\"}".to_owned());
                            return tags;
                        }
                    };
                }
            }
            Some(_) => {
                self.errors
                    .push("Tags: must be a map or a list of {Key, Value}".to_owned());
                return tags;
            }
        }
        for (key, value) in &tags {
            if RESERVED_TAG_PREFIXES
                .iter()
                .any(|p| key.to_ascii_lowercase().starts_with(p))
            {
                self.errors.push(format!(
                    "Tags: key {key:?} is reserved (aws: and cloud-app-security: are not allowed)"
                ));
            } else if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
                self.errors.push(format!(
                    "Tags: key {key:?} must be 1-128 characters and its value at most 256"
                ));
            }
        }
        if tags.len() > MAX_EXTRA_TAGS {
            self.errors
                .push(format!("Tags: at most {MAX_EXTRA_TAGS} tags, got {}", tags.len()));
        }
        tags
    }
}

fn is_policy_arn(v: &str) -> bool {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && (*account == "aws" || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
            && resource.starts_with("policy/") && resource.len() > "policy/".len())
}

fn is_trail_name(v: &str) -> bool {
    (3..=128).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn is_bucket_name(v: &str) -> bool {
    (3..=63).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Properties, PropertyErrors> {
        Properties::parse(v.as_object().expect("test input is an object"))
    }

    #[test]
    fn defaults_follow_the_spec() {
        let p = parse(json!({"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f"})).unwrap();
        assert_eq!(p.connections, BTreeSet::from([Connection::SecurityAuditing]));
        assert_eq!(p.user_path, "/cloud-app-security/");
        assert_eq!(p.trail_mode, TrailMode::Reuse);
        assert_eq!(p.trail_name, "cloud-app-security");
        assert_eq!(p.secret_recovery_window, RecoveryWindow::Days(7));
        assert_eq!(p.key_version, "1");
        assert_eq!(p.rotation_days, 0);
        assert!(p.tags.is_empty());
        let r = p.resolve("123456789012");
        assert_eq!(r.connector_name, "aws-123456789012");
        assert_eq!(r.user_name, "CloudAppSecurity-aws-123456789012");
        assert_eq!(r.secret_name, "cloud-app-security/aws-123456789012");
    }

    #[test]
    fn default_user_name_is_cut_to_64_characters() {
        let p = parse(json!({"ConnectorName": "c".repeat(64)})).unwrap();
        let r = p.resolve("123456789012");
        assert_eq!(r.user_name.len(), 64);
        assert!(r.user_name.starts_with("CloudAppSecurity-ccc"));
    }

    #[test]
    fn empty_strings_mean_absent() {
        let p = parse(json!({"UserName": "", "SecretKmsKeyId": "", "Connections": "", "TrailBucket": " ", "Tags": ""}));
        // An empty Connections string is "not set", so the default applies.
        let p = p.unwrap();
        assert_eq!(p.user_name, None);
        assert_eq!(p.secret_kms_key_id, None);
        assert_eq!(p.trail_bucket, None);
        assert_eq!(p.connections, BTreeSet::from([Connection::SecurityAuditing]));
    }

    #[test]
    fn scalars_accept_strings_numbers_and_booleans() {
        let a = parse(json!({"SecretRecoveryWindowDays": "0", "KeyVersion": 2, "RotationDays": "0"})).unwrap();
        assert_eq!(a.secret_recovery_window, RecoveryWindow::Immediate);
        assert_eq!(a.key_version, "2");
        let b = parse(json!({"SecretRecoveryWindowDays": 30, "KeyVersion": true})).unwrap();
        assert_eq!(b.secret_recovery_window, RecoveryWindow::Days(30));
        assert_eq!(b.key_version, "true");
    }

    #[test]
    fn lists_accept_arrays_and_comma_strings() {
        let both = BTreeSet::from([Connection::SecurityAuditing, Connection::SecurityConfiguration]);
        let a = parse(json!({"Connections": ["SecurityAuditing", "SecurityConfiguration"]})).unwrap();
        let b = parse(json!({"Connections": "SecurityConfiguration, SecurityAuditing"})).unwrap();
        assert_eq!(a.connections, both);
        assert_eq!(b.connections, both);
    }

    #[test]
    fn tags_accept_a_map_or_cloudformation_list() {
        let a = parse(json!({"Tags": {"team": "secops", "cost": 7}})).unwrap();
        let b = parse(json!({"Tags": [{"Key": "team", "Value": "secops"}, {"Key": "cost", "Value": "7"}]})).unwrap();
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.tags.get("cost").map(String::as_str), Some("7"));
    }

    #[test]
    fn every_error_is_reported_together() {
        let err = parse(json!({
            "ConnectorName": "has space",
            "Connections": ["SecurityAuditing", "Billing"],
            "UserPath": "/elsewhere/",
            "TrailMode": "Sometimes",
            "SecretName": "other/name",
            "SecretRecoveryWindowDays": "3",
            "Tags": {"aws:owner": "x"},
            "Colour": "blue"
        }))
        .unwrap_err();
        let text = err.to_string();
        for expected in [
            "Colour: unknown property",
            "ConnectorName: must be 1-64 characters",
            "Connections: unknown connection \"Billing\"",
            "UserPath: must be /cloud-app-security/",
            "TrailMode: must be Reuse, Create or Off, got \"Sometimes\"",
            "SecretName: must start with cloud-app-security/",
            "SecretRecoveryWindowDays: must be 0 or 7-30, got 3",
            "Tags: key \"aws:owner\" is reserved",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
        assert_eq!(err.0.len(), 8, "{text}");
    }

    #[test]
    fn each_field_has_its_own_message() {
        let cases = [
            (json!({"UserName": "a/b"}), "UserName: must be 1-64 characters"),
            (
                json!({"UserPath": "/cloud-app-security"}),
                "UserPath: must be /cloud-app-security/",
            ),
            (
                json!({"PermissionsBoundary": "arn:aws:iam::123:policy/x"}),
                "PermissionsBoundary: must be a managed policy ARN",
            ),
            (json!({"TrailName": "a"}), "TrailName: must be 3-128 characters"),
            (
                json!({"TrailBucket": "Upper_Case"}),
                "TrailBucket: must be an S3 bucket name",
            ),
            (json!({"SecretKmsKeyId": "a b"}), "SecretKmsKeyId: must be a KMS key id"),
            (
                json!({"SecretRecoveryWindowDays": "seven"}),
                "SecretRecoveryWindowDays: must be a whole number",
            ),
            (
                json!({"RotationDays": "30"}),
                "RotationDays: scheduled rotation is not available",
            ),
            (json!({"Connections": []}), "Connections: must name at least one"),
            (json!({"Connections": [1]}), "Connections: must be a list of strings"),
            (json!({"ConnectorName": {"a": 1}}), "ConnectorName: must be a string"),
            (
                json!({"CloudAppSecurityUrl": "https://x.portal.cloudappsecurity.com"}),
                "CloudAppSecurityCredentials: required",
            ),
            (json!({"Tags": [{"Key": "a"}]}), "Tags: each list item must be"),
            (json!({"Tags": {"cloud-app-security:stack-id": "x"}}), "is reserved"),
        ];
        for (input, expected) in cases {
            let err = parse(input.clone()).expect_err(&input.to_string()).to_string();
            assert!(err.contains(expected), "{input}: expected {expected:?}, got {err:?}");
        }
    }

    #[test]
    fn valid_values_pass() {
        let p = parse(json!({
            "ConnectorName": "prod+eu=1.x@y_z-w",
            "UserName": "CasUser",
            "UserPath": "/cloud-app-security/prod/",
            "PermissionsBoundary": "arn:aws-us-gov:iam::123456789012:policy/boundary/CasBoundary",
            "TrailMode": "Off",
            "TrailName": "my.trail_1",
            "TrailBucket": "my-bucket.logs",
            "SecretName": "cloud-app-security/prod",
            "SecretKmsKeyId": "alias/cas",
            "ServiceTimeout": "300",
            "CodeVersion": "abc123"
        }))
        .unwrap();
        assert_eq!(p.trail_mode, TrailMode::Off);
        assert_eq!(p.user_path, "/cloud-app-security/prod/");
        assert_eq!(p.code_version.as_deref(), Some("abc123"));
    }

    #[test]
    fn deserializes_from_a_request_and_reports_as_one_message() {
        let ok: Properties = serde_json::from_value(json!({"KeyVersion": "3"})).unwrap();
        assert_eq!(ok.key_version, "3");
        let err = serde_json::from_value::<Properties>(json!({"Nope": 1, "TrailMode": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid properties: "), "{err}");
        assert!(
            err.contains("Nope: unknown property") && err.contains("TrailMode"),
            "{err}"
        );
    }
}
