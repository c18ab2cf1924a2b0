//! AWS adapters: one module per service, each the only place that imports its SDK, and the shared
//! client configuration (every call bounded in time).

pub mod cloudtrail;
mod error;
pub mod iam;
pub mod secrets_manager;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub use error::AwsError;

/// Shared SDK configuration. The SDK sets no operation timeout of its own: without these a
/// hung endpoint would hold a call until the Lambda deadline.
pub async fn load_config() -> aws_config::SdkConfig {
    config_loader().load().await
}

/// The loader behind [`load_config`], for callers that add their own endpoint or credentials.
pub fn config_loader() -> aws_config::ConfigLoader {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
}

/// Reduces an SDK error to its operation, code and message. `Display` of an SDK error says only
/// "service error", so the code and message are read through `ProvideErrorMetadata`.
fn call_error<E>(operation: &'static str, err: &E) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err.code() {
        Some(code) => AwsError::new(operation, Some(code), err.message().unwrap_or_default()),
        None => AwsError::new(operation, None, DisplayErrorContext(err).to_string()),
    }
}

/// `Ok(None)` when the call failed with the service error `expected` recognises (a "no such
/// entity" on a read or delete, an "already exists" on a create): an answer, not a failure.
fn none_if<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
    expected: impl Fn(&E) -> bool,
) -> Result<Option<T>, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.as_service_error().is_some_and(expected) => Ok(None),
        Err(e) => Err(call_error(operation, &e)),
    }
}
