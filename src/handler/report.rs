//! The status report of each request, step and check, sent to the organization's bus (when one is
//! configured) beside the answer: bounded in time, and its failure only logged.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::cfn::response::{Answer, Status as AnswerStatus};
use crate::cfn::Envelope;
use crate::ports::Ports;
use crate::status::{Report, Snapshot, Trigger};

/// The report of a CloudFormation request's answer; `None` for what is no connector's state: a
/// `ValidateOnly` resource, a late delivery that acted on nothing, a request of another stack.
pub(super) fn of_answer(envelope: &Envelope, answer: &Answer, overdue: Duration) -> Option<Report> {
    if !crate::lifecycle::reportable(answer) {
        return None;
    }
    let trigger = match envelope.request_type.as_str() {
        "Create" => Trigger::Create,
        "Update" => Trigger::Update,
        "Delete" => Trigger::Delete,
        _ => return None,
    };
    // What the request converged, or else (an answer from the record) its `Data`.
    let data = |key: &str| answer.data.get(key).filter(|v| !v.is_empty()).cloned();
    let snapshot = answer.snapshot.clone().unwrap_or_else(|| Snapshot {
        connector_name: data("ConnectorName"),
        secret_arn: data("SecretArn"),
        registered: data("ConnectorStatus").as_deref() == Some("Registered"),
        access_key_id: data("AccessKeyId"),
        ..Snapshot::default()
    });
    let snapshot = Snapshot {
        stack_id: envelope.stack_id.clone(),
        logical_id: envelope.logical_resource_id.clone(),
        physical_id: Some(answer.physical_id.clone()),
        ..snapshot
    };
    let outcome = match answer.status {
        AnswerStatus::Success => Ok(()),
        AnswerStatus::Failed => Err(answer.reason.as_str()),
    };
    Some(Report::new(trigger, snapshot, outcome, overdue, SystemTime::now()))
}

/// Sends `report`, if there is one (see [`crate::status::send`]).
pub(super) async fn send<P: Ports>(ports: &P, report: Option<Report>, until: Instant) {
    if let Some(report) = report {
        crate::status::send(ports.status(), &report, until).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cfn::ResponseUrl;
    use crate::status::Status;

    fn envelope(request_type: &str) -> Envelope {
        Envelope {
            response_url: ResponseUrl::new("https://example.invalid/signed".into()),
            request_type: request_type.into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid".into(),
            request_id: "req-1".into(),
            logical_resource_id: "Connector".into(),
            physical_resource_id: None,
        }
    }

    #[test]
    fn an_answer_reports_the_connector_a_late_delivery_or_a_validation_nothing() {
        let day = Duration::from_secs(86_400);
        let data = BTreeMap::from([
            ("ConnectorStatus".to_owned(), "Registered".to_owned()),
            ("KeyVerified".to_owned(), "true".to_owned()),
            ("ConnectorName".to_owned(), "aws-1".to_owned()),
        ]);
        let created = Answer::success("arn:aws:iam::1:user/cloud-app-security/u".into(), "done", data);
        let report = of_answer(&envelope("Create"), &created, day).unwrap();
        assert_eq!((report.status, report.trigger), (Status::Registered, Trigger::Create));
        assert_eq!(report.connector_name.as_deref(), Some("aws-1"));
        let failed = Answer::failed("arn:aws:iam::1:user/cloud-app-security/u".into(), "step: AccessDenied");
        let report = of_answer(&envelope("Update"), &failed, day).unwrap();
        assert_eq!(report.status, Status::Failing);
        assert_eq!(report.last_error.as_deref(), Some("step: AccessDenied"));
        let late = Answer::failed("arn:x".into(), "superseded: request r was answered FAILED before");
        assert!(of_answer(&envelope("Update"), &late, day).is_none());
        let check = Answer::success("cloud-app-security-validation/Check".into(), "valid", BTreeMap::new());
        assert!(of_answer(&envelope("Create"), &check, day).is_none());
        let deleted = Answer::success("arn:x".into(), "deleted", BTreeMap::new());
        assert_eq!(
            of_answer(&envelope("Delete"), &deleted, day).unwrap().status,
            Status::Deleted
        );
    }
}
