//! API credentials, read from the secret named by `CloudAppSecurityCredentials`: a legacy API
//! token, or a Microsoft Entra application whose client-credentials token is cached for its
//! lifetime. No type here implements `Debug`.

use serde::Deserialize;

use super::endpoint::{self, AllowedHosts, DEFAULT_AUTHORITY};
use crate::key_material::SecretText;

/// The Cloud App Security API's application id: the token's audience.
pub const SCOPE: &str = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default";

pub enum Credentials {
    /// `Authorization: Token <token>`.
    Token(SecretText),
    /// `Authorization: Bearer <access_token>` from `<authority>/<tenant>/oauth2/v2.0/token`.
    Entra(EntraApp),
}

pub struct EntraApp {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretText,
    pub authority: reqwest::Url,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "the secret must hold {{\"token\": \"…\"}} or {{\"tenantId\": \"…\", \"clientId\": \"…\", \"clientSecret\": \"…\"}} \
         (optionally \"authority\")"
    )]
    Shape,
    #[error("{0} must be a GUID or a domain name")]
    BadId(&'static str),
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

impl Credentials {
    pub fn parse(text: &SecretText, extra: &AllowedHosts) -> Result<Credentials, CredentialsError> {
        let raw: Raw = serde_json::from_str(text.expose()).map_err(|_| CredentialsError::Shape)?;
        match raw {
            Raw {
                token: Some(token),
                tenant_id: None,
                client_id: None,
                client_secret: None,
                authority: None,
            } if !token.is_empty() => Ok(Credentials::Token(SecretText::new(token))),
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
        let err = parse(r#"{"tenantId": "../x", "clientId": "c", "clientSecret": "s"}"#)
            .err()
            .unwrap();
        assert_eq!(err, CredentialsError::BadId("tenantId"));
        let err =
            parse(r#"{"tenantId": "t", "clientId": "c", "clientSecret": "s", "authority": "https://evil.example"}"#);
        assert!(matches!(err, Err(CredentialsError::Authority(_))));
    }
}
