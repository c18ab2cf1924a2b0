//! Everything this function sends over HTTP outside the AWS SDK — the answer to CloudFormation
//! and the call back to Cloud App Security — goes through one client builder and one retry
//! policy: every attempt bounded in time, 429, 5xx and transport errors retried with exponential
//! backoff and full jitter (never sooner than the server's `Retry-After`), until a deadline.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::RETRY_AFTER;
use reqwest::RequestBuilder;
use tokio::time::Instant;

/// The connection phase of every request is bounded by this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why no HTTP client could be built (a broken TLS configuration: the environment, not a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct ClientError(String);

/// The one HTTP client: a bounded connect, no redirects (a redirect could carry a key or a
/// presigned URL elsewhere). Built once per process and shared — the answer to CloudFormation
/// and the call back use the same pool: building a client loads and parses the system's root
/// certificates every time (3–4 ms, and heap), and a portal-mode function never calls back.
pub fn client() -> Result<reqwest::Client, ClientError> {
    static CLIENT: OnceLock<Result<reqwest::Client, ClientError>> = OnceLock::new();
    // A `reqwest::Client` is a handle: clones share one pool and one TLS configuration.
    CLIENT.get_or_init(build).clone()
}

fn build() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // Without the URL: there is none yet, and there must never be one in an error.
        .map_err(|e| ClientError(e.without_url().to_string()))
}

/// How one kind of request is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// The first backoff's ceiling; it doubles with each attempt.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
    /// The time one attempt may take.
    pub attempt_timeout: Duration,
    /// The most attempts; `None` to retry until the deadline.
    pub max_attempts: Option<u32>,
}

/// A final answer: a status that is not retried, and its body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (empty if it could not be read).
    pub body: Vec<u8>,
}

/// Retries did not produce a final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// How many attempts were made.
    pub attempts: u32,
    /// The last failure, scrubbed of the secrets the caller named and of the URL.
    pub last: String,
}

impl RetryPolicy {
    /// Sends `request()` until an answer that is not retried, giving up at `deadline` or after
    /// the policy's attempts. `scrub` lists secrets that must not appear in an error (tokens).
    pub async fn send(
        &self,
        request: impl Fn() -> RequestBuilder,
        deadline: Instant,
        scrub: &[&str],
    ) -> Result<Answer, GaveUp> {
        let mut attempts = 0;
        let mut last = "none: no time was left".to_owned();
        while self.max_attempts.is_none_or(|max| attempts < max) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            attempts += 1;
            let server_asked;
            (last, server_asked) = match request().timeout(self.attempt_timeout.min(left)).send().await {
                Ok(response) if !retried(response.status()) => {
                    let status = response.status().as_u16();
                    let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    return Ok(Answer { status, body });
                }
                Ok(response) => {
                    let asked = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, SystemTime::now()));
                    (format!("HTTP {}", response.status().as_u16()), asked)
                }
                Err(e) => (scrubbed(&e.without_url().to_string(), scrub), None),
            };
            let wait = self.delay(attempts - 1, server_asked, &mut rand::rng());
            if Instant::now() + wait >= deadline {
                break;
            }
            tracing::info!(attempts, last = %last, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
        Err(GaveUp { attempts, last })
    }

    /// Full jitter: uniformly in `[0, min(cap, base·2^attempt)]`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.cap);
        ceiling.mul_f64(rng.random_range(0.0..=1.0))
    }

    /// The delay before the next attempt: the jittered backoff, but at least what the server asked.
    pub fn delay(&self, attempt: u32, server_asked: Option<Duration>, rng: &mut impl Rng) -> Duration {
        self.backoff(attempt, rng).max(server_asked.unwrap_or_default())
    }
}

fn retried(status: reqwest::StatusCode) -> bool {
    status.as_u16() == 429 || status.is_server_error()
}

/// `Retry-After` as delay-seconds or an HTTP-date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// `text` with every secret of four characters or more replaced by `***`.
pub fn scrubbed(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |t, s| t.replace(s, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(20),
        attempt_timeout: Duration::from_secs(1),
        max_attempts: None,
    };

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_to_its_cap_and_never_undercuts_the_server() {
        let mut rng = rand::rng();
        for attempt in 0..30 {
            let ceiling = POLICY
                .base
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(POLICY.cap);
            for _ in 0..50 {
                assert!(POLICY.backoff(attempt, &mut rng) <= ceiling);
                assert!(POLICY.delay(attempt, Some(Duration::from_secs(3)), &mut rng) >= Duration::from_secs(3));
            }
        }
        // Full jitter spreads attempts: not all the same.
        let samples: Vec<Duration> = (0..20).map(|_| POLICY.backoff(5, &mut rng)).collect();
        assert!(samples.iter().any(|s| *s != samples[0]));
    }

    #[test]
    fn secrets_are_scrubbed_but_short_strings_are_not() {
        assert_eq!(scrubbed("Token abc123 failed", &["abc123", "x"]), "Token *** failed");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_gives_up_at_the_attempt_limit() {
        let client = client().unwrap();
        let policy = RetryPolicy {
            max_attempts: Some(2),
            base: Duration::from_millis(1),
            ..POLICY
        };
        // Port 9 on loopback: nothing listens; connections are refused at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = policy
            .send(|| client.get("http://127.0.0.1:9/x"), deadline, &[])
            .await
            .unwrap_err();
        assert_eq!(err.attempts, 2);
        assert!(!err.last.contains("127.0.0.1:9/x"), "{}", err.last);
    }
}
