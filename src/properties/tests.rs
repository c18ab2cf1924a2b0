//! The properties' rules, one behaviour per test.

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
    assert_eq!((p.rotation_days, p.rotation_grace_days), (0, 7));
    assert!(p.verify_key);
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
fn a_name_that_failed_validation_is_cut_on_a_character_boundary() {
    // 17 + 46 ASCII bytes, then "é" (2 bytes) would straddle byte 64.
    let raw = json!({"ConnectorName": format!("{}éé", "c".repeat(46))});
    let parsed = crate::properties::Parsed::from_map(raw.as_object().unwrap());
    assert!(parsed.strict().is_err(), "not a valid ConnectorName");
    let r = parsed.lenient().resolve("123456789012");
    assert_eq!(
        r.user_name,
        format!("CloudAppSecurity-{}", "c".repeat(46)),
        "63 bytes: the \"é\" would end at 65"
    );
}

#[test]
fn empty_strings_mean_absent() {
    let p = parse(json!({"UserName": "", "SecretKmsKeyId": "", "Connections": "", "TrailBucket": " ", "Tags": ""}));
    let p = p.unwrap();
    assert_eq!(p.user_name, None);
    assert_eq!(p.secret_kms_key_id, None);
    assert_eq!(p.trail_bucket, None);
    assert_eq!(p.connections, BTreeSet::from([Connection::SecurityAuditing]));
}

#[test]
fn scalars_accept_strings_numbers_and_booleans() {
    let a = parse(json!({"SecretRecoveryWindowDays": "0", "KeyVersion": 2, "RotationDays": "0", "VerifyKey": "false"}))
        .unwrap();
    assert_eq!(a.secret_recovery_window, RecoveryWindow::Immediate);
    assert_eq!(a.key_version, "2");
    assert!(!a.verify_key);
    let b = parse(json!({"SecretRecoveryWindowDays": 30, "KeyVersion": true, "VerifyKey": true, "RotationDays": 30}))
        .unwrap();
    assert_eq!(b.secret_recovery_window, RecoveryWindow::Days(30));
    assert_eq!(b.key_version, "true");
    assert_eq!(b.rotation_days, 30);
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
        "TrailMode: must be Reuse or Create or Off, got \"Sometimes\"",
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
        (json!({"TrailKmsKeyId": "a b"}), "TrailKmsKeyId: must be a KMS key id"),
        (
            json!({"SecretRecoveryWindowDays": "seven"}),
            "SecretRecoveryWindowDays: must be a whole number",
        ),
        (
            json!({"RotationDays": "5000"}),
            "RotationDays: must be 0 (off) or 1-1000",
        ),
        (
            json!({"RotationDays": "10"}),
            "RotationDays: must be more than RotationGraceDays + 7 (14)",
        ),
        (json!({"RotationGraceDays": "400"}), "RotationGraceDays: must be 0-365"),
        (json!({"VerifyKey": "yes"}), "VerifyKey: must be true or false"),
        (json!({"Connections": []}), "Connections: must name at least one"),
        (json!({"Connections": [1]}), "Connections: must be a list of strings"),
        (json!({"ConnectorName": {"a": 1}}), "ConnectorName: must be a string"),
        (
            json!({"CloudAppSecurityUrl": "https://x.portal.cloudappsecurity.com"}),
            "CloudAppSecurityCredentials: required",
        ),
        (
            json!({"CloudAppSecurityCredentials": "a b"}),
            "CloudAppSecurityCredentials: must be the ARN",
        ),
        (json!({"Tags": [{"Key": "a"}]}), "Tags: each list item must be"),
        (json!({"Tags": {"cloud-app-security:stack-id": "x"}}), "is reserved"),
        (json!({"Tags": {"AWS:x": "y"}}), "is reserved"),
    ];
    for (input, expected) in cases {
        let err = parse(input.clone()).expect_err(&input.to_string()).to_string();
        assert!(err.contains(expected), "{input}: expected {expected:?}, got {err:?}");
    }
}

#[test]
fn tags_are_held_to_the_strictest_service_limits() {
    let many: BTreeMap<String, String> = (0..48).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let err = parse(json!({ "Tags": many })).unwrap_err().to_string();
    assert!(err.contains("at most 47 tags"), "{err}");
    let fits: BTreeMap<String, String> = (0..47).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    assert!(parse(json!({ "Tags": fits })).is_ok());
    // Secrets Manager: keys up to 127 characters, values up to 255.
    assert!(parse(json!({"Tags": {"k".repeat(127): "v".repeat(255)}})).is_ok());
    let err = parse(json!({"Tags": {"k".repeat(128): "v"}})).unwrap_err().to_string();
    assert!(err.contains("must be 1-127 characters"), "{err}");
    let err = parse(json!({"Tags": {"k": "v".repeat(256)}})).unwrap_err().to_string();
    assert!(err.contains("at most 255 characters"), "{err}");
    let err = parse(json!({"Tags": {"team": "a;b"}})).unwrap_err().to_string();
    assert!(err.contains("may hold only letters"), "{err}");
}

#[test]
fn a_user_path_whose_arn_overflows_the_physical_id_tag_is_refused() {
    // 37 characters of ARN around the path, a 33-character default name: 185 for the path.
    let deep = |n: usize| format!("/cloud-app-security/{}/", "p".repeat(n - 21));
    assert!(parse(json!({ "UserPath": deep(185) })).is_ok());
    let err = parse(json!({ "UserPath": deep(186) })).unwrap_err().to_string();
    assert!(err.contains("UserPath: too long for this user name"), "{err}");
    let err = parse(json!({"UserPath": deep(155), "UserName": "u".repeat(64)}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("UserPath: too long"), "{err}");
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
        "TrailKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/abc",
        "SecretName": "cloud-app-security/prod",
        "SecretKmsKeyId": "alias/cas",
        "ServiceTimeout": "300",
        "RotationDays": "30",
        "RotationGraceDays": "10",
        "CodeVersion": "abc123"
    }))
    .unwrap();
    assert_eq!(p.trail_mode, TrailMode::Off);
    assert_eq!(p.user_path, "/cloud-app-security/prod/");
    assert_eq!(p.code_version.as_deref(), Some("abc123"));
    assert_eq!((p.rotation_days, p.rotation_grace_days), (30, 10));
}

#[test]
fn the_lenient_reading_keeps_what_names_resources_even_when_invalid() {
    let raw = json!({"SecretName": "legacy/name", "TrailName": "cloud-app-security", "TrailMode": "Create",
                     "Tags": {"aws:old": "x"}, "Retired": "property"});
    let parsed = Parsed::from_map(raw.as_object().unwrap());
    let err = parsed.strict().unwrap_err().to_string();
    assert!(
        err.contains("SecretName") && err.contains("Retired: unknown property"),
        "{err}"
    );
    let lenient = parsed.lenient();
    assert_eq!(lenient.secret_name.as_deref(), Some("legacy/name"));
    assert_eq!(lenient.trail_mode, TrailMode::Create);
}

#[test]
fn deserializes_from_a_request_and_reports_as_one_message() {
    let ok: Parsed = serde_json::from_value(json!({"KeyVersion": "3"})).unwrap();
    assert_eq!(ok.strict().unwrap().key_version, "3");
    let bad: Parsed = serde_json::from_value(json!({"Nope": 1, "TrailMode": "x"})).unwrap();
    let err = bad.strict().unwrap_err().to_string();
    assert!(err.starts_with("invalid properties: "), "{err}");
    assert!(
        err.contains("Nope: unknown property") && err.contains("TrailMode"),
        "{err}"
    );
    let shape: Parsed = serde_json::from_value(json!(["not", "an", "object"])).unwrap();
    assert!(shape
        .strict()
        .unwrap_err()
        .to_string()
        .contains("ResourceProperties: must be an object"));
    let null: Parsed = serde_json::from_value(Value::Null).unwrap();
    assert!(null.strict().is_ok());
}
