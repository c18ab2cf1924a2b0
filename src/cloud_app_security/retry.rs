//! When to try again: exponential backoff with full jitter, never sooner than the server's
//! `Retry-After`.

use std::time::{Duration, SystemTime};

use rand::Rng;

pub const BASE: Duration = Duration::from_millis(500);
pub const CAP: Duration = Duration::from_secs(20);

/// `Retry-After` as delay-seconds or an HTTP-date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Full jitter: uniformly in `[0, min(CAP, BASE·2^attempt)]`.
pub fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = BASE.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(CAP);
    ceiling.mul_f64(rng.random_range(0.0..=1.0))
}

/// The delay before the next attempt: the jittered backoff, but at least what the server asked.
pub fn delay(attempt: u32, server_asked: Option<Duration>, rng: &mut impl Rng) -> Duration {
    backoff(attempt, rng).max(server_asked.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let ceiling = BASE.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(CAP);
            for _ in 0..50 {
                assert!(backoff(attempt, &mut rng) <= ceiling);
                assert!(delay(attempt, Some(Duration::from_secs(3)), &mut rng) >= Duration::from_secs(3));
            }
        }
        // Full jitter spreads attempts: not all the same.
        let samples: Vec<Duration> = (0..20).map(|_| backoff(5, &mut rng)).collect();
        assert!(samples.iter().any(|s| *s != samples[0]));
    }
}
