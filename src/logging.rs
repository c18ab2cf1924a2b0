//! JSON logs. Level from `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`), `INFO` by default; every line
//! of a request carries the request span's `RequestType`, `StackId` and `LogicalResourceId`.

use lambda_runtime::tracing::subscriber::filter::{LevelFilter, Targets};
use lambda_runtime::tracing::subscriber::fmt::{self, MakeWriter};
use lambda_runtime::tracing::subscriber::layer::SubscriberExt;
use lambda_runtime::tracing::subscriber::util::SubscriberInitExt;
use lambda_runtime::tracing::subscriber::Registry;

/// Logs to stdout at the level the environment asks for.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    init_with(level, std::io::stdout);
}

/// Logs to `writer` at `level` (tests capture what the function logs this way). Does nothing if
/// logging was already set up.
pub fn init_with<W>(level: LevelFilter, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let json = fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(writer);
    let _ = Registry::default().with(filter(level)).with(json).try_init();
}

/// `level` for this crate; at most DEBUG for every dependency. At TRACE, the runtime logs the
/// raw event (the presigned `ResponseURL` with it) and the HTTP stack logs bodies (access keys
/// with them): those levels are never enabled, whatever the setting says.
///
/// A `Targets` filter, not an `EnvFilter`: the two fixed directives need no parsing, and without
/// `EnvFilter` in the call graph its regex engine is not linked into the binary.
fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::DEBUG))
        .with_target("cloud_app_security_connector", level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_never_log_at_trace() {
        let f = filter(LevelFilter::TRACE).to_string();
        assert!(f.contains("cloud_app_security_connector=trace"), "{f}");
        assert!(
            f.contains("debug") && !f.replace("cloud_app_security_connector=trace", "").contains("trace"),
            "{f}"
        );
        assert!(filter(LevelFilter::INFO).to_string().contains("info"));
    }
}
