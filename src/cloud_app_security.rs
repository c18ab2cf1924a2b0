//! Cloud App Security: how the connector reaches the tenant. The call back arrives with its own
//! release; until then every connector is in portal mode: a person pastes the key from the secret.

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
}
