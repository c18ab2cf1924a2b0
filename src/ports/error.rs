//! The one error every AWS port speaks: which call failed, what kind of failure it was, and
//! AWS's own code and message, reduced to what a person can act on.

use std::fmt;

/// What a failed call means to the caller. Adapters set it from the SDK's typed error variants;
/// provisioning branches on it and never on error-code strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller may not do this (IAM policy, service control policy or permissions boundary).
    AccessDenied,
    /// The thing named does not exist.
    NotFound,
    /// A create met something of the same name (or a write met a version that already exists).
    AlreadyExists,
    /// The service refused because of the current state: IAM's `DeleteConflict`, or a Secrets
    /// Manager staging label that is no longer where the caller saw it (a lost race).
    Conflict,
    /// A quota is full (IAM allows two access keys per user).
    LimitExceeded,
    /// CloudTrail cannot deliver to the bucket (missing, unnamed or without CloudTrail's policy).
    BucketRejected,
    /// A timeout, a transport failure or a throttle that outlived the SDK's own retries.
    Transient,
    /// Anything else.
    Other,
}

/// A failed call to AWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CallError {
    /// `service:Operation`, as IAM policies name it.
    pub operation: &'static str,
    /// What the failure means.
    pub kind: ErrorKind,
    /// AWS's error code (`AccessDenied`, `LimitExceeded`, …), when the service sent one.
    pub code: Option<String>,
    /// AWS's message, or a one-line description when the answer could not be read.
    pub message: String,
}

impl CallError {
    /// An error of `kind` with AWS's `code` and `message`.
    pub fn new(operation: &'static str, kind: ErrorKind, code: Option<&str>, message: impl Into<String>) -> CallError {
        CallError {
            operation,
            kind,
            code: code.map(str::to_owned),
            message: message.into(),
        }
    }

    /// Whether the call was refused for lack of permission.
    pub fn is_access_denied(&self) -> bool {
        self.kind == ErrorKind::AccessDenied
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed with {code}: {}", self.operation, self.message)?,
            None => write!(f, "{} failed: {}", self.operation, self.message)?,
        }
        if self.is_access_denied() {
            write!(
                f,
                " (the function's role may allow this while a service control policy or a permissions boundary denies it)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_carries_a_hint() {
        let e = CallError::new(
            "iam:CreateUser",
            ErrorKind::AccessDenied,
            Some("AccessDenied"),
            "not authorized",
        );
        let text = e.to_string();
        assert!(
            text.starts_with("iam:CreateUser failed with AccessDenied: not authorized"),
            "{text}"
        );
        assert!(text.contains("service control policy"), "{text}");
        let other = CallError::new(
            "iam:CreateUser",
            ErrorKind::LimitExceeded,
            Some("LimitExceeded"),
            "too many",
        );
        assert!(!other.to_string().contains("service control policy"));
        let transport = CallError::new("iam:GetUser", ErrorKind::Transient, None, "timed out");
        assert_eq!(transport.to_string(), "iam:GetUser failed: timed out");
    }
}
