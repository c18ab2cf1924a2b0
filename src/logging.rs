//! JSON logs. Level from `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`), `INFO` by default; every line
//! of a request carries the request span's `RequestType`, `StackId` and `LogicalResourceId`.

use lambda_runtime::tracing::subscriber::filter::{EnvFilter, LevelFilter};

pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    lambda_runtime::tracing::subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(level.into())
                .from_env_lossy(),
        )
        .init();
}
