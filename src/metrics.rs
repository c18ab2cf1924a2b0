//! CloudWatch metrics in the embedded metric format: one JSON line on standard output, which
//! CloudWatch Logs turns into metrics as Lambda delivers it — no API call, no permission, nothing
//! to wait for. The template's alarms watch these.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// The metrics' namespace (the template's alarms name it).
pub const NAMESPACE: &str = "CloudAppSecurityConnector";
/// The one dimension: the secret (its ARN) the metric is about.
pub const DIMENSION: &str = "SecretArn";

/// A rotation step or a key check failed (1).
pub const ROTATION_FAILED: &str = "RotationFailed";
/// A key waits to be pasted into Cloud App Security (1) or none does (0); sent by each check.
pub const PASTE_PENDING: &str = "PastePending";
/// A previous key was retired when its grace period ended, without Cloud App Security ever seen
/// using the new key (1).
pub const SWITCH_NOT_SEEN: &str = "KeySwitchNotSeen";

/// The connector's user holds a quarantine policy or another `Deny` (1) or none (0); sent by each
/// check: the function never detaches one, and its key is of no use to Cloud App Security meanwhile.
pub const QUARANTINED: &str = "UserQuarantined";

/// The embedded-metric-format line for `values` about `secret`, at `at`.
pub fn line(secret: &str, values: &[(&str, u32)], at: SystemTime) -> String {
    let millis = at.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let definitions: Vec<Value> = values
        .iter()
        .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
        .collect();
    let mut body = Map::new();
    body.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [[DIMENSION]], "Metrics": definitions}],
        }),
    );
    body.insert(DIMENSION.to_owned(), Value::from(secret));
    for (name, value) in values {
        body.insert((*name).to_owned(), Value::from(*value));
    }
    Value::Object(body).to_string()
}

/// Writes the line for `values` about `secret` to standard output.
pub fn emit(secret: &str, values: &[(&str, u32)]) {
    if !values.is_empty() {
        println!("{}", line(secret, values, SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_line_declares_each_metric_under_the_namespace_with_the_secret_as_its_dimension() {
        let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let line = line(
            "arn:aws:secretsmanager:us-east-1:1:secret:s",
            &[(PASTE_PENDING, 1), (SWITCH_NOT_SEEN, 0)],
            at,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(!line.contains('\n'), "one log event is one line");
        assert_eq!(v["_aws"]["Timestamp"], 1_800_000_000_123u64);
        let definition = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(definition["Namespace"], NAMESPACE);
        assert_eq!(definition["Dimensions"], json!([["SecretArn"]]));
        assert_eq!(
            definition["Metrics"],
            json!([{"Name": "PastePending", "Unit": "Count"}, {"Name": "KeySwitchNotSeen", "Unit": "Count"}])
        );
        assert_eq!(v["SecretArn"], "arn:aws:secretsmanager:us-east-1:1:secret:s");
        assert_eq!(
            (v["PastePending"].as_u64(), v["KeySwitchNotSeen"].as_u64()),
            (Some(1), Some(0))
        );
    }
}
