//! API credentials, read from the secret named by `CloudAppSecurityCredentials`: a legacy API
//! token, or a Microsoft Entra application. Pure rules: what a valid secret looks like and where
//! its token may be fetched. No type here implements `Debug`.

use serde::Deserialize;

use super::endpoint::{self, AllowedHosts, DEFAULT_AUTHORITY};
use crate::key_material::SecretText;

/// The Cloud App Security API's application id: the token's audience.
pub const SCOPE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default";

/// The credentials the call back authenticates with.
pub enum Credentials {
    /// `Authorization: Token <token>`.
    Token(SecretText),
    /// `Authorization: Bearer <access_token>` from `<authority>/<tenant>/oauth2/v2.0/token`.
    Entra(EntraApp),
}

/// A Microsoft Entra application (client-credentials grant).
pub struct EntraApp {
    /// The tenant: a GUID or a domain name.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretText,
    /// Where tokens come from, already held to the allow-list.
    pub authority: reqwest::Url,
}

/// Why the credentials secret cannot be used. Never echoes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Neither a token nor a complete Entra application.
    #[error(
        "the secret must hold {{\"token\": \"…\"}} or {{\"tenantId\": \"…\", \"clientId\": \"…\", \"clientSecret\": \"…\"}} \
         (optionally \"authority\")"
    )]
    Shape,
    /// A tenant or client id that is neither a GUID nor a domain name.
    #[error("{0} must be a GUID or a domain name")]
    BadId(&'static str),
    /// A token that cannot travel in an HTTP header (a control character, a line break).
    #[error(
        "the token holds a character that cannot be sent in an HTTP header (a control character or a non-ASCII one)"
    )]
    Unsendable,
    /// An authority outside the allow-list.
    #[error("authority: {0}")]
    Authority(#[from] endpoint::EndpointError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    token: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    authority: Option<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A header value HTTP can carry: visible ASCII and spaces, nothing else.
fn sendable(token: &str) -> bool {
    token.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

impl Credentials {
    /// Reads the secret's JSON, checking ids, the authority (against `extra` and the defaults)
    /// and that a token can be sent at all.
    pub fn parse(text: &SecretText, extra: &AllowedHosts) -> Result<Credentials, CredentialsError> {
        let raw: Raw = serde_json::from_str(text.expose()).map_err(|_| CredentialsError::Shape)?;
        match raw {
            Raw {
                token: Some(token),
                tenant_id: None,
                client_id: None,
                client_secret: None,
                authority: None,
            } if !token.is_empty() => match sendable(&token) {
                true => Ok(Credentials::Token(SecretText::new(token))),
                false => Err(CredentialsError::Unsendable),
            },
            Raw {
                token: None,
                tenant_id: Some(tenant),
                client_id: Some(client),
                client_secret: Some(secret),
                authority,
            } if !secret.is_empty() => {
                if !valid_id(&tenant) {
                    return Err(CredentialsError::BadId("tenantId"));
                }
                if !valid_id(&client) {
                    return Err(CredentialsError::BadId("clientId"));
                }
                let authority = endpoint::authority(authority.as_deref().unwrap_or(DEFAULT_AUTHORITY), extra)?;
                Ok(Credentials::Entra(EntraApp {
                    tenant_id: tenant,
                    client_id: client,
                    client_secret: SecretText::new(secret),
                    authority,
                }))
            }
            _ => Err(CredentialsError::Shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Credentials, CredentialsError> {
        Credentials::parse(&SecretText::new(json.to_owned()), &AllowedHosts::default())
    }

    #[test]
    fn a_token_or_an_entra_app() {
        assert!(matches!(parse(r#"{"token": "abc"}"#), Ok(Credentials::Token(_))));
        let Ok(Credentials::Entra(app)) =
            parse(r#"{"tenantId": "contoso.onmicrosoft.com", "clientId": "0000-1111", "clientSecret": "s"}"#)
        else {
            panic!("an Entra app")
        };
        assert_eq!(app.authority.as_str(), "https://login.microsoftonline.com/");
        let Ok(Credentials::Entra(gov)) = parse(
            r#"{"tenantId": "t", "clientId": "c", "clientSecret": "s", "authority": "https://login.microsoftonline.us"}"#,
        ) else {
            panic!("an Entra app")
        };
        assert_eq!(gov.authority.host_str(), Some("login.microsoftonline.us"));
    }

    #[test]
    fn anything_else_is_refused_without_echoing_it() {
        for bad in [
            r#"{}"#,
            r#"{"token": ""}"#,
            r#"{"token": "a", "tenantId": "t"}"#,
            r#"{"tenantId": "t", "clientId": "c"}"#,
            r#"{"Token": "a"}"#,
            "not json",
        ] {
            let err = parse(bad).err().expect(bad).to_string();
            assert!(err.starts_with("the secret must hold"), "{bad}: {err}");
        }
        for unsendable in [
            r#"{"token": "abc\u0007def"}"#,
            r#"{"token": "abc\ndef"}"#,
            r#"{"token": "tökén"}"#,
        ] {
            assert_eq!(
                parse(unsendable).err(),
                Some(CredentialsError::Unsendable),
                "{unsendable}"
            );
        }
        let err = parse(r#"{"tenantId": "../x", "clientId": "c", "clientSecret": "s"}"#)
            .err()
            .unwrap();
        assert_eq!(err, CredentialsError::BadId("tenantId"));
        let err =
            parse(r#"{"tenantId": "t", "clientId": "c", "clientSecret": "s", "authority": "https://evil.example"}"#);
        assert!(matches!(err, Err(CredentialsError::Authority(_))));
    }
}
