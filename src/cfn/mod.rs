//! The CloudFormation custom-resource protocol: the request as it arrives, the answer we send.
//!
//! An event is read once, in two steps over the same value: first the [`Envelope`] — just
//! enough to answer — so that everything wrong after that point (an unknown `RequestType`,
//! properties of the wrong shape) can still be answered `FAILED`; then the typed request, with
//! `aws_lambda_events`' types over our own property parser.

pub mod delivery;
pub mod response;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::Deserialize;
use serde_json::Value;

use crate::cloud_app_security::endpoint::is_loopback;
use crate::properties::{Parsed, Properties};

/// The presigned S3 URL CloudFormation waits on. It is a credential: no `Debug`, never logged.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ResponseUrl(String);

/// A `ResponseURL` the function refuses to contact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ResponseURL is not https on a host ending in .{suffix} (nor loopback): nothing was sent to {host:?}")]
pub struct UnsafeResponseUrl {
    /// The host it named (never the path or query: those carry the signature).
    pub host: String,
    /// The partition's URL suffix.
    pub suffix: String,
}

impl ResponseUrl {
    /// Wraps a URL.
    pub fn new(url: String) -> ResponseUrl {
        ResponseUrl(url)
    }

    /// The URL itself: for sending the answer, nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// When CloudFormation signed the URL (`X-Amz-Date`, seconds since the epoch), where it
    /// parses. Undocumented, one-second resolution, and chosen by whoever invokes the function:
    /// used only to order requests of one resource, and a date more than five minutes ahead of
    /// `now` is ignored, so that a forged future date cannot freeze the resource.
    pub fn signed_at(&self, now: u64) -> Option<u64> {
        let url = reqwest::Url::parse(&self.0).ok()?;
        let (_, value) = url.query_pairs().find(|(k, _)| k == "X-Amz-Date")?;
        let at = amz_date(&value)?;
        (at <= now + 300).then_some(at)
    }

    /// Only `https` on a host of the partition's URL suffix (`amazonaws.com`,
    /// `amazonaws.com.cn`), or loopback for local runs. This limits where the function sends
    /// requests; it does not authenticate the one who sent the event.
    pub fn check(&self, suffix: &str) -> Result<(), UnsafeResponseUrl> {
        let url = reqwest::Url::parse(&self.0).ok();
        let host = url.as_ref().and_then(|u| u.host_str()).unwrap_or_default().to_owned();
        let scheme = url.as_ref().map(|u| u.scheme()).unwrap_or_default();
        let ours = scheme == "https" && host.ends_with(&format!(".{suffix}"));
        let local = matches!(scheme, "http" | "https") && is_loopback(&host);
        match ours || local {
            true => Ok(()),
            false => Err(UnsafeResponseUrl {
                host,
                suffix: suffix.to_owned(),
            }),
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || y < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3_600 + mm * 60 + ss)
}

/// The fields needed to answer, read before anything else.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    /// Where the answer goes.
    #[serde(rename = "ResponseURL")]
    pub response_url: ResponseUrl,
    /// `Create`, `Update` or `Delete` (or anything, until checked).
    pub request_type: String,
    /// The stack's ARN.
    pub stack_id: String,
    /// The request's id, echoed in the answer.
    pub request_id: String,
    /// The resource's logical id.
    pub logical_resource_id: String,
    /// The physical id (Update and Delete).
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

/// The typed request: `aws_lambda_events`' over our property parser.
pub type Request = CloudFormationCustomResourceRequest<Parsed, Parsed>;

/// The request types this resource answers.
pub const REQUEST_TYPES: [&str; 3] = ["Create", "Update", "Delete"];

/// An event, read once.
pub struct Incoming {
    /// Enough to answer.
    pub envelope: Envelope,
    /// The typed request, or why it could not be read (answered `FAILED`).
    pub request: Result<Request, String>,
}

/// The event is not a custom-resource request at all: there is no one to answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the event is not a CloudFormation custom-resource request: {0}")]
pub struct NotCustomResource(pub String);

impl Incoming {
    /// Reads an event.
    pub fn read(event: Value) -> Result<Incoming, NotCustomResource> {
        let envelope = Envelope::deserialize(&event).map_err(|e| NotCustomResource(e.to_string()))?;
        let request = match REQUEST_TYPES.contains(&envelope.request_type.as_str()) {
            true => Request::deserialize(event).map_err(|e| format!("malformed request: {e}")),
            false => Err(format!(
                "unknown RequestType {:?} (expected Create, Update or Delete)",
                envelope.request_type
            )),
        };
        Ok(Incoming { envelope, request })
    }
}

/// The request's (new) properties, when they validate.
pub fn properties_of(request: &Request) -> Option<&Properties> {
    let parsed = match request {
        Request::Create(r) => &r.resource_properties,
        Request::Update(r) => &r.resource_properties,
        Request::Delete(r) => &r.resource_properties,
        _ => return None,
    };
    parsed.strict().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_https_on_the_partition_suffix_or_loopback_is_contacted() {
        let ok = [
            (
                "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=1",
                "amazonaws.com",
            ),
            (
                "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/x",
                "amazonaws.com.cn",
            ),
            ("http://127.0.0.1:8999/cloudformation-response", "amazonaws.com"),
            ("http://localhost:1/x", "amazonaws.com"),
        ];
        for (url, suffix) in ok {
            assert_eq!(ResponseUrl::new(url.into()).check(suffix), Ok(()), "{url}");
        }
        let bad = [
            "http://bucket.s3.amazonaws.com/x",
            "https://evil.example/x?amazonaws.com",
            "https://amazonaws.com.evil.example/x",
            "https://s3.amazonaws.com.cn/x",
            "http://169.254.169.254/latest/meta-data",
            "file:///etc/passwd",
            "not a url",
        ];
        for url in bad {
            let err = ResponseUrl::new(url.into()).check("amazonaws.com").unwrap_err();
            assert!(!err.to_string().contains("X-Amz"), "{err}");
        }
    }

    #[test]
    fn the_signing_date_orders_requests_and_a_future_one_is_ignored() {
        let url = |date: &str| {
            ResponseUrl::new(format!(
                "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Signature=1"
            ))
        };
        let now = 1_796_291_310; // 2026-12-03T09:48:30Z
        assert_eq!(url("20261203T094830Z").signed_at(now), Some(now));
        assert_eq!(url("19700101T000000Z").signed_at(now), Some(0));
        assert_eq!(url("20000229T120000Z").signed_at(now), Some(951_825_600));
        assert_eq!(
            url("20261203T095330Z").signed_at(now),
            Some(now + 300),
            "five minutes ahead is kept"
        );
        assert_eq!(url("20261203T095331Z").signed_at(now), None, "further ahead is ignored");
        for bad in ["2026-12-03", "20261303T000000Z", "20261203T246000Z", ""] {
            assert_eq!(url(bad).signed_at(now), None, "{bad}");
        }
        assert_eq!(ResponseUrl::new("http://127.0.0.1:1/x".into()).signed_at(now), None);
    }

    #[test]
    fn an_event_is_read_into_an_envelope_and_a_typed_request() {
        let event = json!({
            "RequestType": "Create", "ResponseURL": "http://127.0.0.1/x", "StackId": "s", "RequestId": "r",
            "LogicalResourceId": "L", "ResourceType": "Custom::X", "ServiceToken": "t",
            "ResourceProperties": {"ServiceToken": "t", "KeyVersion": "2"}
        });
        let incoming = Incoming::read(event.clone()).unwrap();
        assert_eq!(incoming.envelope.request_id, "r");
        let request = incoming.request.unwrap();
        assert_eq!(properties_of(&request).unwrap().key_version, "2");
        let mut unknown = event.clone();
        unknown["RequestType"] = json!("Rename");
        let err = Incoming::read(unknown).unwrap().request.err().unwrap();
        assert_eq!(
            err,
            "unknown RequestType \"Rename\" (expected Create, Update or Delete)"
        );
        assert!(Incoming::read(json!({"hello": "world"})).is_err());
    }
}
