//! AWS adapters: one module per service, each the only place that imports its SDK and each
//! implementing a port of `crate::ports`; plus the shared client configuration (every call
//! bounded in time) and the reduction of SDK errors to [`CallError`]s.

pub mod cloudtrail;
pub mod eventbridge;
pub mod iam;
pub mod kms;
pub mod probe;
pub mod secrets_manager;

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_iam::operation::RequestId;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::{CallError, ErrorKind};

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
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    match credentials_in_environment(|name| std::env::var(name).ok()) {
        // What the default chain would pick first anyway; naming it skips building the rest of
        // the chain, whose web-identity link constructs an STS client (and loads the root
        // certificates for it) at start-up.
        true => loader.credentials_provider(EnvironmentVariableCredentialsProvider::new()),
        // Local runs with a profile, SSO or an instance role: the default chain.
        false => loader,
    }
}

/// Whether the environment holds a key, as Lambda's always does (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` of the execution role). The default chain's
/// first link reads exactly these, and uses them whenever both are non-blank.
fn credentials_in_environment(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    set("AWS_ACCESS_KEY_ID") && (set("AWS_SECRET_ACCESS_KEY") || set("SECRET_ACCESS_KEY"))
}

/// Reduces an SDK error to one line. `kind` reads the operation's typed error variants; an
/// `AccessDenied` (which no SDK models) is recognised by its code. An error body the SDK could
/// not parse becomes "HTTP <status>, request id <id>", never a debug dump.
fn call_error<E>(
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
    kind: impl Fn(&E) -> Option<ErrorKind>,
) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let request_id = err.request_id().map(str::to_owned);
    let unread = || match (status, &request_id) {
        (Some(s), Some(id)) => format!("HTTP {s}, request id {id} (the error response could not be read)"),
        (Some(s), None) => format!("HTTP {s} (the error response could not be read)"),
        _ => "no response".to_owned(),
    };
    match err {
        SdkError::ServiceError(e) => {
            let e = e.into_err();
            let code = e.code().map(str::to_owned);
            let kind = kind(&e).unwrap_or_else(|| kind_of_code(code.as_deref(), status));
            match code {
                Some(code) => CallError::new(operation, kind, Some(&code), e.message().unwrap_or_default()),
                None => CallError::new(operation, kind, None, unread()),
            }
        }
        SdkError::TimeoutError(_) => CallError::new(operation, ErrorKind::Transient, None, "timed out"),
        SdkError::ResponseError(_) => CallError::new(operation, kind_of_code(None, status), None, unread()),
        other => {
            let text = DisplayErrorContext(&other).to_string();
            let line: String = text.lines().next().unwrap_or_default().chars().take(200).collect();
            CallError::new(operation, ErrorKind::Transient, None, line)
        }
    }
}

/// The kinds every service shares, by code or status.
fn kind_of_code(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match (code, status) {
        (Some(c), _) if c.starts_with("AccessDenied") || c == "UnauthorizedOperation" => ErrorKind::AccessDenied,
        (Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded"), _) => ErrorKind::Transient,
        (None, Some(403)) => ErrorKind::AccessDenied,
        (None, Some(s)) if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// `Ok(None)` when the call failed in the way `expected` recognises (a "no such entity" on a
/// read or delete, an "already exists" on a create): an answer, not a failure.
fn none_if<T, E>(
    operation: &'static str,
    result: Result<T, SdkError<E, HttpResponse>>,
    expected: impl Fn(&E) -> bool,
) -> Result<Option<T>, CallError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.as_service_error().is_some_and(&expected) => Ok(None),
        Err(e) => Err(call_error(operation, e, |_| None)),
    }
}

/// A call whose output is not needed.
fn done<T, E>(operation: &'static str, result: Result<T, SdkError<E, HttpResponse>>) -> Result<(), CallError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    result.map(drop).map_err(|e| call_error(operation, e, |_| None))
}

#[cfg(test)]
mod config_tests {
    use super::credentials_in_environment;

    #[test]
    fn environment_credentials_need_a_key_id_and_a_secret() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert!(credentials_in_environment(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ])));
        assert!(credentials_in_environment(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("SECRET_ACCESS_KEY", "s"),
        ])));
        assert!(!credentials_in_environment(env(&[("AWS_ACCESS_KEY_ID", "AKIA")])));
        assert!(!credentials_in_environment(env(&[
            ("AWS_ACCESS_KEY_ID", " "),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ])));
        assert!(!credentials_in_environment(env(&[])));
    }
}
