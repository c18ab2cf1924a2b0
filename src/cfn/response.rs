//! The answer to CloudFormation: status, reason, physical id and `Data`, encoded within the
//! 4096-byte limit.

use std::collections::{BTreeMap, HashMap};

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceResponse, CloudFormationCustomResourceResponseStatus,
};

use super::Envelope;

/// CloudFormation rejects a response body larger than this.
pub const MAX_BODY: usize = 4096;
const CUT_MARKER: &str = "[…] ";

/// The answer's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `SUCCESS`.
    Success,
    /// `FAILED`.
    Failed,
}

/// What the handler decided; the envelope supplies the rest of the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `SUCCESS` or `FAILED`.
    pub status: Status,
    /// The `Reason` a person reads in the stack's events.
    pub reason: String,
    /// The `PhysicalResourceId`.
    pub physical_id: String,
    /// `Data`, for `Fn::GetAtt`.
    pub data: BTreeMap<String, String>,
    /// What the request left, for the status report (never sent to CloudFormation); `None`
    /// where the request converged nothing (a failure, a Delete, an answer from the record).
    pub snapshot: Option<crate::status::Snapshot>,
}

impl Answer {
    /// A `SUCCESS` with `Data`.
    pub fn success(physical_id: String, reason: &str, data: BTreeMap<String, String>) -> Answer {
        Answer {
            status: Status::Success,
            reason: reason.to_owned(),
            physical_id,
            data,
            snapshot: None,
        }
    }

    /// The same answer, with what the request left for the status report.
    pub fn with_snapshot(self, snapshot: crate::status::Snapshot) -> Answer {
        Answer {
            snapshot: Some(snapshot),
            ..self
        }
    }

    /// A `FAILED` with its `Reason`.
    pub fn failed(physical_id: String, reason: impl Into<String>) -> Answer {
        Answer {
            status: Status::Failed,
            reason: reason.into(),
            physical_id,
            data: BTreeMap::new(),
            snapshot: None,
        }
    }

    /// The response body, at most [`MAX_BODY`] bytes: a long `Reason` is cut at its start, since
    /// the end of an error chain says what finally failed.
    pub fn encode(&self, envelope: &Envelope) -> Vec<u8> {
        let mut response = CloudFormationCustomResourceResponse::default();
        response.status = match self.status {
            Status::Success => CloudFormationCustomResourceResponseStatus::Success,
            Status::Failed => CloudFormationCustomResourceResponseStatus::Failed,
        };
        response.reason = Some(self.reason.clone());
        response.physical_resource_id = self.physical_id.clone();
        response.stack_id = envelope.stack_id.clone();
        response.request_id = envelope.request_id.clone();
        response.logical_resource_id = envelope.logical_resource_id.clone();
        response.no_echo = false;
        response.data = self
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>();
        loop {
            let body = serde_json::to_vec(&response).unwrap_or_default();
            if body.len() <= MAX_BODY {
                return body;
            }
            let reason = response.reason.get_or_insert_with(String::new);
            let text = reason.strip_prefix(CUT_MARKER).unwrap_or(reason).to_owned();
            if !text.is_empty() {
                // JSON escaping only ever makes the encoded text longer than the raw text, so
                // removing `over` raw bytes removes at least `over` encoded ones.
                let over = body.len() - MAX_BODY
                    + if reason.starts_with(CUT_MARKER) {
                        0
                    } else {
                        CUT_MARKER.len()
                    };
                let mut cut = over.min(text.len());
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                *reason = format!("{CUT_MARKER}{}", &text[cut..]);
            } else if !response.data.is_empty() {
                response.data.clear();
                response.status = CloudFormationCustomResourceResponseStatus::Failed;
                response.reason = Some("the response Data exceeded CloudFormation's 4096-byte limit".to_owned());
            } else {
                // Only the ids are left and they are CloudFormation's own: nothing more to cut.
                return body;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::ResponseUrl;
    use serde_json::Value;

    fn envelope() -> Envelope {
        Envelope {
            response_url: ResponseUrl::new("https://example.invalid/signed?X-Amz-Signature=abc".into()),
            request_type: "Create".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid".into(),
            request_id: "req-1".into(),
            logical_resource_id: "Connector".into(),
            physical_resource_id: None,
        }
    }

    fn decode(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn success_maps_status_ids_and_data() {
        let data = BTreeMap::from([("UserName".to_owned(), "u".to_owned())]);
        let body = decode(&Answer::success("arn:x".into(), "created", data).encode(&envelope()));
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], "arn:x");
        assert_eq!(
            body["StackId"],
            "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid"
        );
        assert_eq!(body["RequestId"], "req-1");
        assert_eq!(body["LogicalResourceId"], "Connector");
        assert_eq!(body["NoEcho"], false);
        assert_eq!(body["Data"]["UserName"], "u");
        assert!(
            !String::from_utf8_lossy(&Answer::success("a".into(), "", BTreeMap::new()).encode(&envelope()))
                .contains("X-Amz-Signature")
        );
    }

    #[test]
    fn failed_maps_status_and_reason() {
        let body = decode(&Answer::failed("arn:x".into(), "it broke").encode(&envelope()));
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["Reason"], "it broke");
        assert_eq!(body["Data"], serde_json::json!({}));
    }

    #[test]
    fn long_reason_is_cut_keeping_its_end() {
        let reason = format!("{}THE-END", "start ".repeat(2000));
        let body = Answer::failed("arn:x".into(), reason).encode(&envelope());
        assert!(body.len() <= MAX_BODY, "{}", body.len());
        assert!(body.len() > MAX_BODY - 16, "cut too much: {}", body.len());
        let reason = decode(&body)["Reason"].as_str().unwrap().to_owned();
        assert!(
            reason.starts_with(CUT_MARKER) && reason.ends_with("THE-END"),
            "{reason}"
        );
    }

    #[test]
    fn cut_respects_multibyte_characters_and_escapes() {
        for filler in ["é", "\"", "\n", "漢", "\u{1F600}"] {
            let reason = format!("{}tail", filler.repeat(3000));
            let body = Answer::failed("arn:x".into(), reason).encode(&envelope());
            assert!(body.len() <= MAX_BODY, "{filler:?}: {}", body.len());
            assert!(decode(&body)["Reason"].as_str().unwrap().ends_with("tail"));
        }
    }

    #[test]
    fn oversized_data_turns_into_a_failure_that_fits() {
        let data = (0..200).map(|i| (format!("Key{i}"), "v".repeat(40))).collect();
        let body = Answer::success("arn:x".into(), "created", data).encode(&envelope());
        assert!(body.len() <= MAX_BODY);
        let body = decode(&body);
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["Data"], serde_json::json!({}));
    }
}
