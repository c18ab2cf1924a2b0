//! The one error type every AWS adapter returns: which call failed, AWS's error code and message.

use std::fmt;

/// A failed AWS call, reduced to what a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AwsError {
    /// `service:Operation`, as IAM policies name it.
    pub operation: &'static str,
    /// AWS's error code (`AccessDenied`, `LimitExceeded`, …); `None` for transport failures and timeouts.
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn new(operation: &'static str, code: Option<&str>, message: impl Into<String>) -> AwsError {
        AwsError {
            operation,
            code: code.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn is_access_denied(&self) -> bool {
        matches!(self.code.as_deref(), Some(c) if c.starts_with("AccessDenied") || c == "UnauthorizedOperation")
    }
}

impl fmt::Display for AwsError {
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
        let e = AwsError::new("iam:CreateUser", Some("AccessDenied"), "not authorized");
        let text = e.to_string();
        assert!(
            text.starts_with("iam:CreateUser failed with AccessDenied: not authorized"),
            "{text}"
        );
        assert!(text.contains("service control policy"), "{text}");
        let other = AwsError::new("iam:CreateUser", Some("LimitExceeded"), "too many").to_string();
        assert!(!other.contains("service control policy"), "{other}");
        let transport = AwsError::new("iam:GetUser", None, "timed out").to_string();
        assert_eq!(transport, "iam:GetUser failed: timed out");
    }
}
