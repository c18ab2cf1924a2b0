//! The deadline guard and the panic catcher: whatever happens inside, an answer comes out in time.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::time::Instant;

use crate::cfn::response::Answer;
use crate::progress::Progress;

/// Runs `work` until `guard_at`. A panic, or the guard firing, becomes `FAILED` naming the step
/// `progress` was in, with `fallback` as the physical id. (The release profile keeps panic
/// unwinding for this: `src/main.rs` refuses to build without it.)
pub async fn guard<F: Future<Output = Answer>>(
    work: F,
    progress: &Progress,
    fallback: String,
    guard_at: Instant,
) -> Answer {
    match tokio::time::timeout_at(guard_at, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_panic)) => {
            tracing::error!(step = progress.current(), "the request panicked");
            Answer::failed(
                fallback,
                format!("internal error during {}; see the function's logs", progress.current()),
            )
        }
        Err(_elapsed) => {
            tracing::error!(step = progress.current(), "deadline guard fired");
            Answer::failed(
                fallback,
                format!(
                    "timed out during {} (the function's time was nearly up)",
                    progress.current()
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::response::Status;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_finished_request_passes_through() {
        let progress = Progress::new("start");
        let done = Answer::success("arn:x".into(), "created", BTreeMap::new());
        let answer = guard(
            std::future::ready(done.clone()),
            &progress,
            "fallback".into(),
            soon(1000),
        )
        .await;
        assert_eq!(answer, done);
    }

    #[tokio::test]
    async fn a_panic_becomes_failed_naming_the_step() {
        let progress = Progress::new("start");
        let work = async {
            progress.set("issuing the access key");
            panic!("boom");
        };
        let answer = guard(work, &progress, "arn:fallback".into(), soon(1000)).await;
        assert_eq!(answer.status, Status::Failed);
        assert_eq!(answer.physical_id, "arn:fallback");
        assert_eq!(
            answer.reason,
            "internal error during issuing the access key; see the function's logs"
        );
    }

    #[tokio::test]
    async fn the_deadline_guard_answers_failed_naming_the_step() {
        let progress = Progress::new("start");
        let work = async {
            progress.set("storing the key in Secrets Manager");
            std::future::pending::<Answer>().await
        };
        let answer = guard(work, &progress, "arn:fallback".into(), soon(50)).await;
        assert_eq!(answer.status, Status::Failed);
        assert!(
            answer
                .reason
                .starts_with("timed out during storing the key in Secrets Manager"),
            "{}",
            answer.reason
        );
    }
}
