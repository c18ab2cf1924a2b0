//! The connector's status, defined once (SPEC "Status and the fleet"), and the report each
//! request, rotation step and daily check sends to the organization's status bus: identifiers,
//! states and dates — never key material. `docs/fleet.md` is the event's contract.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The event's `source` (the fleet bus's policy admits only this one).
pub const SOURCE: &str = "cloud-app-security-connector";
/// The event's `detail-type`.
pub const DETAIL_TYPE: &str = "Connector Status";
/// The layout of [`Report`].
pub const REPORT_SCHEMA: u32 = 1;
/// The longest `lastError` sent (a `Reason` is at most about 4 KB; an event's detail stays small).
const MAX_ERROR: usize = 1024;

/// Where a connector stands. `Silent` (no report for 26 hours) is the fleet's to derive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Status {
    /// The call back was accepted.
    Registered,
    /// Portal mode: Cloud App Security was seen using the stored key.
    Connected,
    /// Portal mode: the stored key was not seen in use yet.
    PendingPortal,
    /// Pending for longer than the configured number of days.
    PasteOverdue,
    /// The stored key could not be proven to work.
    KeyNotVerified,
    /// The last request, step or check failed.
    Failing,
    /// The resource was deleted.
    Deleted,
}

/// What set off a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Trigger {
    /// A CloudFormation Create.
    Create,
    /// A CloudFormation Update.
    Update,
    /// A CloudFormation Delete.
    Delete,
    /// A step of Secrets Manager's rotation.
    Rotation,
    /// The daily key check.
    Check,
}

/// How Cloud App Security gets the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The function registers it (the call back).
    Callback,
    /// A person pastes it into the portal.
    Portal,
}

/// What the reporter knows of the connector, from the request's answer or the secret's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The stack.
    pub stack_id: String,
    /// The resource's logical id.
    pub logical_id: String,
    /// The `PhysicalResourceId`.
    pub physical_id: Option<String>,
    /// The connector's name, where known.
    pub connector_name: Option<String>,
    /// The secret's ARN.
    pub secret_arn: Option<String>,
    /// Whether the call back registered the stored key.
    pub registered: bool,
    /// The stored key's id (an identifier, not a secret).
    pub access_key_id: Option<String>,
    /// When the stored key was made (seconds since the epoch).
    pub key_created_at: Option<u64>,
    /// Since when a key waits to be pasted (seconds since the epoch).
    pub awaiting_paste_since: Option<u64>,
    /// When Cloud App Security was last seen using the stored key (seconds since the epoch).
    pub last_seen_used: Option<u64>,
    /// Whether the stored key was proven to work, where known.
    pub verified: Option<bool>,
    /// Why Cloud App Security cannot use the connector although the request or check succeeded
    /// (a quarantined user): the status is `Failing`, with this as its `lastError`.
    pub problem: Option<String>,
}

/// The status of a connector whose last request, step or check ended as `outcome`.
pub fn status(outcome: Result<(), &str>, s: &Snapshot, overdue: Duration, now: SystemTime) -> Status {
    if outcome.is_err() || s.problem.is_some() {
        return Status::Failing;
    }
    if s.verified == Some(false) {
        return Status::KeyNotVerified;
    }
    if s.registered {
        return Status::Registered;
    }
    if s.last_seen_used.is_some() && s.awaiting_paste_since.is_none() {
        return Status::Connected;
    }
    let since = s.awaiting_paste_since.or(s.key_created_at);
    let overdue_at = since.map(|t| UNIX_EPOCH + Duration::from_secs(t) + overdue);
    match overdue_at {
        Some(at) if at <= now => Status::PasteOverdue,
        _ => Status::PendingPortal,
    }
}

/// The longest a report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `report`, giving up at `until` or after two seconds; a failure is only logged: a
/// report never fails or delays much the request it reports on.
pub async fn send<B: crate::ports::StatusBus>(bus: &B, report: &Report, until: tokio::time::Instant) {
    let until = until.min(tokio::time::Instant::now() + REPORT_TIMEOUT);
    match tokio::time::timeout_at(until, bus.send(report)).await {
        Ok(Ok(())) => tracing::debug!(status = ?report.status, "status reported"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the status report was not delivered"),
        Err(_) => tracing::warn!("the status report timed out"),
    }
}

/// The event's `detail`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema_version: u32,
    /// The status.
    pub status: Status,
    /// What set the report off.
    pub trigger: Trigger,
    /// The connector's name.
    pub connector_name: Option<String>,
    /// The stack.
    pub stack_id: String,
    /// The resource's logical id.
    pub logical_id: String,
    /// The `PhysicalResourceId`.
    pub physical_id: Option<String>,
    /// The secret's ARN.
    pub secret_arn: Option<String>,
    /// Where a person pastes the key (portal mode).
    pub portal_url: Option<String>,
    /// `callback` or `portal`.
    pub mode: Mode,
    /// The stored key's id.
    pub access_key_id: Option<String>,
    /// RFC 3339.
    pub key_created_at: Option<String>,
    /// RFC 3339.
    pub awaiting_paste_since: Option<String>,
    /// RFC 3339.
    pub last_seen_used: Option<String>,
    /// Whether the stored key was proven to work (`false` when unknown).
    pub verified: bool,
    /// The failure, as its `Reason` (already scrubbed of tokens and keys), cut to 1 KB.
    pub last_error: Option<String>,
    /// The function's release.
    pub release: String,
    /// RFC 3339.
    pub reported_at: String,
}

impl Report {
    /// The report of `snapshot` after `outcome`; `deleted` for a Delete that succeeded.
    pub fn new(
        trigger: Trigger,
        snapshot: Snapshot,
        outcome: Result<(), &str>,
        overdue: Duration,
        now: SystemTime,
    ) -> Report {
        let status = match (trigger, outcome) {
            (Trigger::Delete, Ok(())) => Status::Deleted,
            _ => status(outcome, &snapshot, overdue, now),
        };
        let mode = match snapshot.registered {
            true => Mode::Callback,
            false => Mode::Portal,
        };
        // A first key waits for its paste from its creation, as `status` counts it.
        let unseen = !snapshot.registered && snapshot.last_seen_used.is_none();
        let waiting = snapshot
            .awaiting_paste_since
            .or(snapshot.key_created_at.filter(|_| unseen));
        let error = outcome.err().map(str::to_owned).or(snapshot.problem);
        Report {
            schema_version: REPORT_SCHEMA,
            status,
            trigger,
            connector_name: snapshot.connector_name,
            stack_id: snapshot.stack_id,
            logical_id: snapshot.logical_id,
            physical_id: snapshot.physical_id,
            secret_arn: snapshot.secret_arn,
            portal_url: Some(crate::cloud_app_security::PORTAL_URL.to_owned()),
            mode,
            access_key_id: snapshot.access_key_id,
            key_created_at: snapshot.key_created_at.map(rfc3339),
            awaiting_paste_since: waiting.map(rfc3339),
            last_seen_used: snapshot.last_seen_used.map(rfc3339),
            verified: snapshot.verified == Some(true),
            last_error: error.as_deref().map(cut),
            release: crate::key_material::RELEASE.to_owned(),
            reported_at: rfc3339(now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        }
    }
}

/// Seconds since the epoch as RFC 3339 (UTC, to the second).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// At most [`MAX_ERROR`] bytes, cut on a character boundary, keeping the end (where a `Reason`
/// says what to do).
fn cut(text: &str) -> String {
    if text.len() <= MAX_ERROR {
        return text.to_owned();
    }
    let mut start = text.len() - MAX_ERROR;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_796_300_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn portal(created: u64) -> Snapshot {
        Snapshot {
            key_created_at: Some(created),
            verified: Some(true),
            ..Snapshot::default()
        }
    }

    #[test]
    fn each_status_from_what_is_known() {
        let overdue = Duration::from_secs(3 * DAY);
        let s = |snapshot: &Snapshot| status(Ok(()), snapshot, overdue, at(NOW));
        assert_eq!(status(Err("x"), &portal(NOW), overdue, at(NOW)), Status::Failing);
        let unverified = Snapshot {
            verified: Some(false),
            ..portal(NOW)
        };
        assert_eq!(s(&unverified), Status::KeyNotVerified);
        let registered = Snapshot {
            registered: true,
            ..portal(NOW)
        };
        assert_eq!(s(&registered), Status::Registered);
        assert_eq!(s(&portal(NOW - DAY)), Status::PendingPortal);
        assert_eq!(s(&portal(NOW - 3 * DAY)), Status::PasteOverdue, "the first key too");
        let seen = Snapshot {
            last_seen_used: Some(NOW - 60),
            ..portal(NOW - 30 * DAY)
        };
        assert_eq!(s(&seen), Status::Connected);
        let rotated = Snapshot {
            awaiting_paste_since: Some(NOW - 4 * DAY),
            ..seen.clone()
        };
        assert_eq!(s(&rotated), Status::PasteOverdue, "a rotated key awaits its paste");
        let quarantined = Snapshot {
            problem: Some("quarantined".into()),
            ..seen
        };
        assert_eq!(s(&quarantined), Status::Failing);
    }

    #[test]
    fn a_first_key_waits_for_its_paste_from_its_creation_and_a_problem_is_the_last_error() {
        let report = Report::new(
            Trigger::Check,
            portal(NOW - DAY),
            Ok(()),
            Duration::from_secs(3 * DAY),
            at(NOW),
        );
        assert_eq!(report.awaiting_paste_since, Some(rfc3339(NOW - DAY)));
        let problem = Snapshot {
            problem: Some("quarantined (AWSDenyAll)".into()),
            ..portal(NOW)
        };
        let report = Report::new(Trigger::Check, problem, Ok(()), Duration::from_secs(DAY), at(NOW));
        assert_eq!(report.status, Status::Failing);
        assert_eq!(report.last_error.as_deref(), Some("quarantined (AWSDenyAll)"));
    }

    #[test]
    fn a_successful_delete_is_deleted_and_a_failure_carries_its_reason_cut_at_the_front() {
        let overdue = Duration::from_secs(DAY);
        let deleted = Report::new(Trigger::Delete, portal(NOW), Ok(()), overdue, at(NOW));
        assert_eq!(deleted.status, Status::Deleted);
        let long = format!("{}é do this", "x".repeat(2000));
        let failed = Report::new(Trigger::Update, portal(NOW), Err(&long), overdue, at(NOW));
        assert_eq!(failed.status, Status::Failing);
        let error = failed.last_error.clone().unwrap();
        assert!(error.ends_with("é do this") && error.len() <= MAX_ERROR + 3, "{error}");
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["schemaVersion"], 1);
        assert_eq!(json["mode"], "portal");
        assert_eq!(json["trigger"], "Update");
        assert_eq!(json["keyCreatedAt"], rfc3339(NOW));
    }

    #[test]
    fn dates_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_342_399), "2026-12-03T23:59:59Z");
    }
}
