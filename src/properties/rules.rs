//! What AWS accepts, written down once: names, paths, ARNs and tags, with the limits of the
//! strictest service that will hold them.

use super::{DEFAULT_USER_PATH, SECRET_PREFIX};

/// IAM, Secrets Manager and CloudTrail each allow 50 tags; the resource adds three of its own.
pub const MAX_EXTRA_TAGS: usize = 47;
/// Secrets Manager's limit for a tag key (IAM's and CloudTrail's is 128).
pub const MAX_TAG_KEY: usize = 127;
/// Secrets Manager's limit for a tag value (IAM's and CloudTrail's is 256). The
/// `cloud-app-security:physical-id` tag holds the user's ARN, so that ARN must fit too.
pub const MAX_TAG_VALUE: usize = 255;
/// Keys nobody may set: AWS's own and the resource's ownership tags.
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["aws:", "cloud-app-security:"];
/// `arn:` + the longest partition (`aws-us-gov`) + `:iam::` + account + `:user`: what a user ARN
/// adds to the path and the name.
const USER_ARN_OVERHEAD: usize = "arn:aws-us-gov:iam::123456789012:user".len();

/// `CloudAppSecurity-<ConnectorName>`, cut to IAM's 64 characters.
pub fn default_user_name(connector_name: &str) -> String {
    let name = format!("CloudAppSecurity-{connector_name}");
    // Cut on a character boundary: a ConnectorName that failed validation is still read
    // leniently (a Delete finds what it names), and it may hold multi-byte characters.
    name.chars()
        .scan(0, |bytes, c| {
            *bytes += c.len_utf8();
            (*bytes <= 64).then_some(c)
        })
        .collect()
}

/// Valid both as part of an IAM user name and of a secret name.
pub fn is_connector_name(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || "+=.@_-".contains(c))
}

/// IAM's user-name rule.
pub fn is_user_name(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// `/cloud-app-security/` or below, as IAM accepts paths.
pub fn is_user_path(v: &str) -> bool {
    v.starts_with(DEFAULT_USER_PATH)
        && v.ends_with('/')
        && v.len() <= 512
        && !v.contains("//")
        && v.chars().all(|c| ('!'..='~').contains(&c))
}

/// Whether the user's ARN fits a tag value.
pub fn user_arn_fits_a_tag(path: &str, user_name_len: usize) -> bool {
    USER_ARN_OVERHEAD + path.len() + user_name_len <= MAX_TAG_VALUE
}

/// A managed policy ARN in any partition.
pub fn is_policy_arn(v: &str) -> bool {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && (*account == "aws" || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
            && resource.starts_with("policy/") && resource.len() > "policy/".len()
            && v.len() <= 2048)
}

/// CloudTrail's trail-name rule.
pub fn is_trail_name(v: &str) -> bool {
    (3..=128).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// S3's bucket-name rule (the subset every region accepts).
pub fn is_bucket_name(v: &str) -> bool {
    (3..=63).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c))
}

/// A secret name under the prefix, in Secrets Manager's alphabet and length.
pub fn is_secret_name(v: &str) -> bool {
    v.starts_with(SECRET_PREFIX)
        && v.len() > SECRET_PREFIX.len()
        && v.len() <= 512
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

/// A KMS key id, key ARN, alias name or alias ARN (the service checks it exists).
pub fn is_kms_key(v: &str) -> bool {
    (1..=2048).contains(&v.len()) && v.chars().all(|c| c.is_ascii_graphic())
}

/// A secret name or ARN the API credentials may be read from.
pub fn is_secret_reference(v: &str) -> bool {
    (1..=2048).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c))
}

/// A `ToleratedTagKeys` entry: a tag key, or a prefix of one ending in `*`.
pub fn is_tolerated_tag_key(key: &str) -> bool {
    let key = key.strip_suffix('*').unwrap_or(key);
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    !key.is_empty() && key.chars().count() <= MAX_TAG_KEY && key.chars().all(allowed)
}

/// Why a deployer's tag cannot be used, if it cannot.
pub fn tag_problem(key: &str, value: &str) -> Option<String> {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    if RESERVED_TAG_PREFIXES
        .iter()
        .any(|p| key.to_ascii_lowercase().starts_with(p))
    {
        Some(format!(
            "key {key:?} is reserved (aws: and cloud-app-security: prefixes)"
        ))
    } else if key.is_empty() || key.chars().count() > MAX_TAG_KEY {
        Some(format!("key {key:?} must be 1-{MAX_TAG_KEY} characters"))
    } else if value.chars().count() > MAX_TAG_VALUE {
        Some(format!(
            "the value of {key:?} must be at most {MAX_TAG_VALUE} characters"
        ))
    } else if !key.chars().all(allowed) || !value.chars().all(allowed) {
        Some(format!(
            "{key:?}: keys and values may hold only letters, digits, spaces and _ . : / = + - @"
        ))
    } else {
        None
    }
}
