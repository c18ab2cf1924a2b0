//! The field table: one entry per property, each reading its value into [`Properties`] and
//! recording what is wrong with it. Unknown keys are errors (a typo must not be ignored).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::rules::{self, MAX_EXTRA_TAGS};
use super::{Connection, Properties, RecoveryWindow, TrailMode};

type Field = fn(&mut Parser<'_>, &mut Properties);

/// Every property, in the order errors are reported.
const FIELDS: &[(&str, Field)] = &[
    // Set by CloudFormation: accepted and ignored.
    ("ServiceToken", |_, _| {}),
    ("ServiceTimeout", |_, _| {}),
    ("ConnectorName", |p, out| {
        out.connector_name = p.checked(
            rules::is_connector_name,
            "must be 1-64 characters of A-Z a-z 0-9 + = . @ _ -",
        );
    }),
    ("Connections", |p, out| {
        out.connections = p.connections().unwrap_or(out.connections.clone())
    }),
    ("UserName", |p, out| {
        out.user_name = p.checked(
            rules::is_user_name,
            "must be 1-64 characters of A-Z a-z 0-9 + = , . @ _ -",
        );
    }),
    ("UserPath", |p, out| {
        let message =
            "must be /cloud-app-security/ or a path below it, ending in / (the function may act nowhere else)";
        if let Some(path) = p.checked(rules::is_user_path, message) {
            out.user_path = path;
        }
    }),
    ("PermissionsBoundary", |p, out| {
        let message = "must be a managed policy ARN (arn:<partition>:iam::<account or aws>:policy/<name>)";
        out.permissions_boundary = p.checked(rules::is_policy_arn, message);
    }),
    ("TrailMode", |p, out| {
        out.trail_mode = p.choice(&[
            ("Reuse", TrailMode::Reuse),
            ("Create", TrailMode::Create),
            ("Off", TrailMode::Off),
        ])
    }),
    ("TrailName", |p, out| {
        let message = "must be 3-128 characters of letters, digits, . _ -, starting and ending with a letter or digit";
        if let Some(name) = p.checked(rules::is_trail_name, message) {
            out.trail_name = name;
        }
    }),
    ("TrailBucket", |p, out| {
        out.trail_bucket = p.checked(
            rules::is_bucket_name,
            "must be an S3 bucket name (3-63 characters of a-z 0-9 . -)",
        );
    }),
    ("TrailKmsKeyId", |p, out| {
        out.trail_kms_key_id = p.checked(rules::is_kms_key, "must be a KMS key id, ARN or alias");
    }),
    ("SecretName", |p, out| {
        let message = "must start with cloud-app-security/ and use only A-Z a-z 0-9 / _ + = . @ - (at most 512)";
        out.secret_name = p.checked(rules::is_secret_name, message);
    }),
    ("SecretKmsKeyId", |p, out| {
        out.secret_kms_key_id = p.checked(rules::is_kms_key, "must be a KMS key id, ARN or alias");
    }),
    ("SecretRecoveryWindowDays", |p, out| {
        out.secret_recovery_window = match p.number() {
            None => out.secret_recovery_window,
            Some(0) => RecoveryWindow::Immediate,
            Some(n @ 7..=30) => RecoveryWindow::Days(n as u8),
            Some(n) => p.invalid(format!("must be 0 or 7-30, got {n}"), out.secret_recovery_window),
        }
    }),
    ("KeyVersion", |p, out| {
        if let Some(v) = p.checked(|v| v.len() <= 256, "must be at most 256 characters") {
            out.key_version = v;
        }
    }),
    ("RotationDays", |p, out| {
        out.rotation_days = match p.number() {
            None => 0,
            Some(n @ 0..=1000) => n,
            Some(n) => p.invalid(format!("must be 0 (off) or 1-1000 days, got {n}"), 0),
        }
    }),
    ("RotationGraceDays", |p, out| {
        out.rotation_grace_days = match p.number() {
            None => out.rotation_grace_days,
            Some(n @ 0..=365) => n,
            Some(n) => p.invalid(format!("must be 0-365 days, got {n}"), out.rotation_grace_days),
        }
    }),
    ("VerifyKey", |p, out| {
        out.verify_key = p.choice(&[("true", true), ("false", false)]);
    }),
    ("CloudAppSecurityUrl", |p, out| out.cloud_app_security_url = p.string()),
    ("CloudAppSecurityCredentials", |p, out| {
        let message = "must be the ARN or name of a Secrets Manager secret";
        out.cloud_app_security_credentials = p.checked(rules::is_secret_reference, message);
    }),
    ("Tags", |p, out| out.tags = p.tags()),
    ("ToleratedTagKeys", |p, out| {
        let keys = p.list().unwrap_or_default();
        for key in &keys {
            if !rules::is_tolerated_tag_key(key) {
                let message =
                    "each must be a tag key (1-128 characters of letters, digits, spaces and _ . : / = + - @), \
                               optionally ending in * for a prefix";
                p.invalid(format!("{key:?}: {message}"), ());
            }
        }
        out.tolerated_tag_keys = keys;
    }),
    ("CodeVersion", |p, out| out.code_version = p.string()),
    ("ValidateOnly", |p, out| {
        out.validate_only = p.choice(&[("false", false), ("true", true)]);
    }),
];

/// Reads `raw` into the lenient properties and the list of every problem.
pub(super) fn parse(raw: &Map<String, Value>) -> (Properties, Vec<String>) {
    let mut errors: Vec<String> = raw
        .keys()
        .filter(|key| !FIELDS.iter().any(|(known, _)| known == *key))
        .map(|key| {
            // CloudFormation's own keys are not worth suggesting.
            let known: Vec<&str> = FIELDS[2..].iter().map(|(k, _)| *k).collect();
            format!("{key}: unknown property (expected one of {})", known.join(", "))
        })
        .collect();
    let mut out = Properties::default();
    for (key, field) in FIELDS {
        let mut p = Parser {
            key,
            value: raw.get(*key),
            errors: &mut errors,
        };
        field(&mut p, &mut out);
    }
    cross_checks(&out, &mut errors);
    (out, errors)
}

/// Rules that involve more than one property.
fn cross_checks(p: &Properties, errors: &mut Vec<String>) {
    if p.cloud_app_security_url.is_some() && p.cloud_app_security_credentials.is_none() {
        errors.push("CloudAppSecurityCredentials: required with CloudAppSecurityUrl".to_owned());
    }
    // The default name depends on the account id, which has a fixed length.
    let name_len = match (&p.user_name, &p.connector_name) {
        (Some(name), _) => name.len(),
        (None, Some(connector)) => rules::default_user_name(connector).len(),
        (None, None) => rules::default_user_name("aws-123456789012").len(),
    };
    if !rules::user_arn_fits_a_tag(&p.user_path, name_len) {
        errors.push(format!(
            "UserPath: too long for this user name: the user's ARN is kept in a tag, whose value may have at most {} characters",
            rules::MAX_TAG_VALUE
        ));
    }
    if p.rotation_days > 0 && p.rotation_days <= p.rotation_grace_days + 7 {
        errors.push(format!(
            "RotationDays: must be more than RotationGraceDays + 7 ({}): a previous key waits up to the grace period \
             for a paste, then 7 days deactivated, before the next rotation may start",
            p.rotation_grace_days + 7
        ));
    }
}

/// One property's value and the shared list of problems.
struct Parser<'a> {
    key: &'a str,
    value: Option<&'a Value>,
    errors: &'a mut Vec<String>,
}

impl Parser<'_> {
    /// Records a problem and returns `fallback`.
    fn invalid<T>(&mut self, message: String, fallback: T) -> T {
        self.errors.push(format!("{}: {message}", self.key));
        fallback
    }

    /// A scalar as text; `""`, `null` and absence all mean "not set".
    fn string(&mut self) -> Option<String> {
        match self.value? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => self.invalid("must be a string".to_owned(), None),
        }
    }

    /// A string that passes `ok`. One that does not is recorded as a problem and kept for the
    /// lenient reading.
    fn checked(&mut self, ok: fn(&str) -> bool, message: &str) -> Option<String> {
        let value = self.string()?;
        if !ok(&value) {
            self.errors.push(format!("{}: {message}", self.key));
        }
        Some(value)
    }

    fn number(&mut self) -> Option<u32> {
        let text = self.string()?;
        match text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => self.invalid(format!("must be a whole number, got {text:?}"), None),
        }
    }

    /// One of `choices` (the first is the default).
    fn choice<T: Copy>(&mut self, choices: &[(&str, T)]) -> T {
        let default = choices[0].1;
        let Some(text) = self.string() else { return default };
        match choices.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.invalid(format!("must be {}, got {text:?}", names.join(" or ")), default)
            }
        }
    }

    /// A list as a JSON array of strings or one comma-separated string.
    fn list(&mut self) -> Option<Vec<String>> {
        match self.value? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Value::Array(items) => {
                let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                match strings {
                    Some(strings) => Some(
                        strings
                            .iter()
                            .map(|s| s.trim())
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    ),
                    None => self.invalid("must be a list of strings".to_owned(), None),
                }
            }
            _ => self.invalid("must be a list of strings or a comma-separated string".to_owned(), None),
        }
    }

    fn connections(&mut self) -> Option<std::collections::BTreeSet<Connection>> {
        let items = self.list()?;
        let mut set = std::collections::BTreeSet::new();
        for item in &items {
            match Connection::parse(item) {
                Some(connection) => set.insert(connection),
                None => self.invalid(
                    format!("unknown connection {item:?} (expected SecurityAuditing, SecurityConfiguration)"),
                    false,
                ),
            };
        }
        if items.is_empty() {
            let message = "must name at least one of SecurityAuditing, SecurityConfiguration";
            self.errors.push(format!("{}: {message}", self.key));
        }
        (!set.is_empty()).then_some(set)
    }

    /// A map, or CloudFormation's `[{"Key", "Value"}]` list.
    fn tags(&mut self) -> BTreeMap<String, String> {
        let tags = match self.value {
            None | Some(Value::Null) => return BTreeMap::new(),
            Some(Value::String(s)) if s.trim().is_empty() => return BTreeMap::new(),
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(key, value)| match value {
                    Value::String(v) => Some((key.clone(), v.clone())),
                    Value::Number(_) | Value::Bool(_) => Some((key.clone(), value.to_string())),
                    _ => self.invalid(format!("the value of {key:?} must be a string"), None),
                })
                .collect(),
            Some(Value::Array(items)) => {
                let pairs: Option<BTreeMap<String, String>> = items
                    .iter()
                    .map(|item| {
                        let o = item.as_object()?;
                        Some((o.get("Key")?.as_str()?.to_owned(), o.get("Value")?.as_str()?.to_owned()))
                    })
                    .collect();
                match pairs {
                    Some(pairs) => pairs,
                    None => {
                        return self.invalid(
                            "each list item must be {\"Key\": \"…\", \"Value\": \"…\"}".into(),
                            BTreeMap::new(),
                        )
                    }
                }
            }
            Some(_) => return self.invalid("must be a map or a list of {Key, Value}".into(), BTreeMap::new()),
        };
        for (key, value) in &tags {
            if let Some(problem) = rules::tag_problem(key, value) {
                self.errors.push(format!("Tags: {problem}"));
            }
        }
        if tags.len() > MAX_EXTRA_TAGS {
            let message = format!(
                "at most {MAX_EXTRA_TAGS} tags (AWS allows 50 and the resource adds 3 of its own), got {}",
                tags.len()
            );
            self.errors.push(format!("Tags: {message}"));
        }
        tags
    }
}
