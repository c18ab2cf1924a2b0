//! Sends the answer: `PUT` to the presigned `ResponseURL`, each attempt bounded in time,
//! transport errors and 5xx retried with backoff until a deadline.

use std::time::Duration;

use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use tokio::time::Instant;

use super::ResponseUrl;

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("CloudFormation's response URL answered {0}")]
    Rejected(u16),
    #[error("the response could not be delivered before the deadline after {attempts} attempt(s): {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

#[derive(Clone)]
pub struct Responder {
    client: reqwest::Client,
}

impl Responder {
    pub fn new() -> Result<Responder, ResponseError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Without the URL: for this client it could only be the presigned one.
            .map_err(|e| ResponseError::Client(e.without_url().to_string()))?;
        Ok(Responder { client })
    }

    /// Delivers `body`, giving up at `deadline`.
    pub async fn send(&self, url: &ResponseUrl, body: Vec<u8>, deadline: Instant) -> Result<(), ResponseError> {
        let mut last = String::from("no attempt was made");
        for attempt in 1..=MAX_ATTEMPTS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ResponseError::GaveUp {
                    attempts: attempt - 1,
                    last,
                });
            }
            let request = self
                .client
                .put(url.expose())
                // The URL is a presigned S3 PUT signed without a content type.
                .header(CONTENT_TYPE, "")
                .timeout(ATTEMPT_TIMEOUT.min(left))
                .body(body.clone());
            match request.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                    last = format!("HTTP {}", resp.status().as_u16());
                }
                Ok(resp) => return Err(ResponseError::Rejected(resp.status().as_u16())),
                Err(e) => last = e.without_url().to_string(),
            }
            tracing::warn!(attempt, error = %last, "sending the response to CloudFormation failed; retrying");
            let backoff = Duration::from_millis(200 * 2u64.pow(attempt - 1));
            let jittered = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(jittered.min(left)).await;
        }
        Err(ResponseError::GaveUp {
            attempts: MAX_ATTEMPTS,
            last,
        })
    }
}
