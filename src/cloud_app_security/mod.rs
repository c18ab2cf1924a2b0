//! Cloud App Security: the call back that registers the connector, or portal mode, where a
//! person pastes the key from the secret.

pub mod auth;
pub mod client;
pub mod endpoint;
pub mod retry;

use aws_lc_rs::digest;

/// Where a person connects the account by hand: Settings → Cloud Apps → App Connectors →
/// Connect an app → Amazon Web Services.
pub const PORTAL_URL: &str = "https://security.microsoft.com/cloudapps/app-connectors";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorStatus {
    Registered,
    PendingPortal,
}

impl ConnectorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorStatus::Registered => "Registered",
            ConnectorStatus::PendingPortal => "PendingPortal",
        }
    }
}

/// The connector as Cloud App Security knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connector {
    pub id: Option<String>,
    pub status: ConnectorStatus,
}

impl Connector {
    pub fn pending_portal() -> Connector {
        Connector {
            id: None,
            status: ConnectorStatus::PendingPortal,
        }
    }

    pub fn registered(id: String) -> Connector {
        Connector {
            id: Some(id),
            status: ConnectorStatus::Registered,
        }
    }
}

/// Lowercase hex SHA-256: the connector's key is that of the `PhysicalResourceId`.
pub fn sha256_hex(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_hex_is_the_standard_digest() {
        assert_eq!(
            super::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
