//! The two events this function serves besides CloudFormation's requests: a step of Secrets
//! Manager's rotation, and the scheduled key check the template sends every day.

use serde::Deserialize;
use serde_json::Value;

/// The key of the scheduled check's event: `{"CheckKeys": {"SecretId": "<secret ARN>"}}`.
pub const CHECK_KEY: &str = "CheckKeys";

/// A step of the Secrets Manager rotation protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Step {
    /// Issue the new key and store it as `AWSPENDING`.
    #[serde(rename = "createSecret")]
    Create,
    /// Hand the new key to Cloud App Security (nothing in portal mode).
    #[serde(rename = "setSecret")]
    Set,
    /// Prove the new key works.
    #[serde(rename = "testSecret")]
    Test,
    /// Make the new key `AWSCURRENT`.
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    /// The protocol's name of the step.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }
}

/// What Secrets Manager sends for each step. Other fields (`RotationToken`) are ignored.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationRequest {
    /// The step.
    pub step: Step,
    /// The secret's ARN.
    pub secret_id: String,
    /// The id of the version the rotation makes.
    pub client_request_token: String,
}

/// The scheduled check of one secret's keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CheckRequest {
    /// The secret's ARN (or name).
    pub secret_id: String,
}

/// An event that is not a CloudFormation request.
#[derive(Clone, Debug)]
pub enum Event {
    /// A rotation step.
    Rotation(RotationRequest),
    /// The scheduled key check.
    Check(CheckRequest),
}

impl Event {
    /// `None` when `value` is neither kind (a CloudFormation request, or something else);
    /// an error when it looks like one but does not parse.
    pub fn recognise(value: &Value) -> Option<Result<Event, String>> {
        if value.get("RequestType").is_some() {
            return None;
        }
        if value.get("Step").is_some() {
            let parsed = RotationRequest::deserialize(value).map(Event::Rotation);
            return Some(parsed.map_err(|e| format!("not a Secrets Manager rotation event: {e}")));
        }
        let check = value.get(CHECK_KEY)?;
        let parsed = CheckRequest::deserialize(check).map(Event::Check);
        Some(parsed.map_err(|e| format!("not a key check event ({{\"{CHECK_KEY}\": {{\"SecretId\": …}}}}): {e}")))
    }

    /// The secret the event is about.
    pub fn secret_id(&self) -> &str {
        match self {
            Event::Rotation(r) => &r.secret_id,
            Event::Check(c) => &c.secret_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rotation_steps_and_the_check_are_told_apart_from_cloudformation() {
        let step = json!({"Step": "testSecret", "SecretId": "arn:s", "ClientRequestToken": "t", "RotationToken": "x"});
        match Event::recognise(&step) {
            Some(Ok(Event::Rotation(r))) => {
                assert_eq!(
                    (r.step, r.secret_id.as_str(), r.client_request_token.as_str()),
                    (Step::Test, "arn:s", "t")
                )
            }
            other => panic!("{other:?}"),
        }
        let check = json!({"CheckKeys": {"SecretId": "arn:s"}});
        assert!(matches!(Event::recognise(&check), Some(Ok(Event::Check(c))) if c.secret_id == "arn:s"));
        assert!(Event::recognise(&json!({"RequestType": "Create", "Step": "x"})).is_none());
        assert!(Event::recognise(&json!({"hello": 1})).is_none());
    }

    #[test]
    fn a_malformed_event_of_either_kind_is_an_error_naming_what_it_should_be() {
        let bad_step = Event::recognise(&json!({"Step": "dropSecret", "SecretId": "s", "ClientRequestToken": "t"}));
        assert!(matches!(bad_step, Some(Err(e)) if e.contains("rotation event")));
        let bad_check = Event::recognise(&json!({"CheckKeys": {"Secret": "s"}}));
        assert!(matches!(bad_check, Some(Err(e)) if e.contains("CheckKeys")));
    }
}
