//! Cloud App Security: where keys may be sent ([`endpoint`]), how the call back authenticates
//! ([`credentials`]) — both pure rules — and the HTTP adapter ([`client`]). Portal mode, where a
//! person pastes the key from the secret, needs none of them.

pub mod client;
pub mod credentials;
pub mod endpoint;

use aws_lc_rs::digest;

/// Where a person connects the account by hand: Settings → Cloud Apps → App Connectors →
/// Connect an app → Amazon Web Services.
pub const PORTAL_URL: &str = "https://security.microsoft.com/cloudapps/app-connectors";

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
