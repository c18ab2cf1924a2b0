//! Sends the answer: `PUT` to the presigned `ResponseURL`, through the crate's one HTTP client
//! and retry policy, each attempt bounded in time, until a deadline.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::time::Instant;

use super::ResponseUrl;
use crate::http::{self, ClientError, RetryPolicy};

/// Five quick attempts: CloudFormation's S3 endpoint either answers or is down.
const POLICY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(200),
    cap: Duration::from_secs(2),
    attempt_timeout: Duration::from_secs(5),
    max_attempts: Some(5),
};

/// Why the answer did not reach CloudFormation.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The URL answered with a status that is not retried (its signature expired, say).
    #[error("CloudFormation's response URL answered {0}")]
    Rejected(u16),
    /// Every attempt failed.
    #[error("the response could not be delivered before the deadline after {attempts} attempt(s): {last}")]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure (never the URL).
        last: String,
    },
}

/// Delivers answers to CloudFormation.
#[derive(Clone)]
pub struct Delivery {
    client: reqwest::Client,
}

impl Delivery {
    /// A delivery over the crate's HTTP client.
    pub fn new() -> Result<Delivery, ClientError> {
        Ok(Delivery {
            client: http::client()?,
        })
    }

    /// Delivers `body`, giving up at `deadline`.
    pub async fn send(&self, url: &ResponseUrl, body: Vec<u8>, deadline: Instant) -> Result<(), DeliveryError> {
        let request = || {
            self.client
                .put(url.expose())
                // The URL is a presigned S3 PUT signed without a content type.
                .header(CONTENT_TYPE, "")
                .body(body.clone())
        };
        match POLICY.send(request, deadline, &[]).await {
            Ok(answer) if (200..300).contains(&answer.status) => Ok(()),
            Ok(answer) => Err(DeliveryError::Rejected(answer.status)),
            Err(gave_up) => Err(DeliveryError::GaveUp {
                attempts: gave_up.attempts,
                last: gave_up.last,
            }),
        }
    }
}
