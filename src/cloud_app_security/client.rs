//! The Cloud App Security adapter: the only code that speaks HTTP to Cloud App Security (and to
//! Entra ID for its token). It implements [`Registry`]; the HTTP client and the retry policy are
//! the crate's one set (`crate::http`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{RequestBuilder, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::credentials::{Credentials, EntraApp, SCOPE};
use super::endpoint::join;
use crate::http::{self, Answer, ClientError, RetryPolicy};
use crate::key_material::SecretText;
use crate::ports::{Registration, Registry, RegistryError, Tenant};

/// 429, 5xx and transport errors are retried until the deadline: an organization-wide rollout
/// meets the tenant's rate limit, and every account must still get through.
const POLICY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(20),
    attempt_timeout: Duration::from_secs(10),
    max_attempts: None,
};
/// A cached token is renewed this long before it expires.
const TOKEN_SLACK: Duration = Duration::from_secs(60);

/// The HTTP client of Cloud App Security, with Entra tokens cached per function instance.
pub struct Client {
    http: reqwest::Client,
    /// Entra tokens by authority, tenant and client, until shortly before they expire.
    tokens: Mutex<HashMap<String, (SecretText, Instant)>>,
}

impl Client {
    /// A client with no token cached yet.
    pub fn new() -> Result<Client, ClientError> {
        Ok(Client {
            http: http::client()?,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The `Authorization` header value.
    async fn authorization(&self, credentials: &Credentials, deadline: Instant) -> Result<SecretText, RegistryError> {
        let app = match credentials {
            Credentials::Token(token) => return Ok(SecretText::new(format!("Token {}", token.expose()))),
            Credentials::Entra(app) => app,
        };
        let cache_key = format!("{}|{}|{}", app.authority, app.tenant_id, app.client_id);
        if let Some((token, until)) = self.lock_tokens().get(&cache_key) {
            if Instant::now() < *until {
                return Ok(SecretText::new(format!("Bearer {}", token.expose())));
            }
        }
        let (token, lifetime) = self.fetch_token(app, deadline).await?;
        let header = SecretText::new(format!("Bearer {}", token.expose()));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_SLACK);
        self.lock_tokens().insert(cache_key, (token, until));
        Ok(header)
    }

    fn lock_tokens(&self) -> MutexGuard<'_, HashMap<String, (SecretText, Instant)>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client-credentials grant.
    async fn fetch_token(&self, app: &EntraApp, deadline: Instant) -> Result<(SecretText, Duration), RegistryError> {
        const WHAT: &str = "the Entra token endpoint";
        let url = join(&app.authority, &format!("{}/oauth2/v2.0/token", app.tenant_id));
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &app.client_id)
            .append_pair("client_secret", app.client_secret.expose())
            .append_pair("scope", SCOPE)
            .finish();
        let scrub = [app.client_secret.expose()];
        let request = || {
            self.http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone())
        };
        let answer = send(WHAT, request, deadline, &scrub).await?;
        if answer.status != 200 {
            return Err(RegistryError::Token {
                status: answer.status,
                message: service_message(&answer.body, &scrub),
            });
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
        }
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| RegistryError::BadAnswer {
            what: WHAT,
            detail: "no access_token in the answer".to_owned(),
        })?;
        // `expires_in` is a number, or a string holding one (older endpoints).
        let seconds = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let lifetime = Duration::from_secs(seconds.unwrap_or(300));
        Ok((SecretText::new(parsed.access_token), lifetime))
    }
}

impl Registry for Client {
    async fn upsert(
        &self,
        tenant: &Tenant<'_>,
        key: &str,
        registration: &Registration,
        deadline: Instant,
    ) -> Result<String, RegistryError> {
        const WHAT: &str = "Cloud App Security";
        let url = connector_url(tenant.url, key);
        let auth = self.authorization(tenant.credentials, deadline).await?;
        let json = serde_json::to_vec(registration).map_err(|e| RegistryError::BadAnswer {
            what: "the request",
            detail: e.to_string(),
        })?;
        let scrub = [
            auth.expose(),
            bare(auth.expose()),
            registration.secret_access_key.expose(),
        ];
        let request = || {
            self.http
                .put(url.clone())
                .header(AUTHORIZATION, auth.expose())
                .header(CONTENT_TYPE, "application/json")
                .body(json.clone())
        };
        let answer = send(WHAT, request, deadline, &scrub).await?;
        #[derive(Deserialize)]
        struct Registered {
            id: String,
        }
        match answer.status {
            200 | 201 => serde_json::from_slice::<Registered>(&answer.body)
                .map_err(|e| e.to_string())
                .and_then(|r| connector_id(r.id))
                .map_err(|detail| RegistryError::BadAnswer { what: WHAT, detail }),
            status => Err(RegistryError::Rejected {
                status,
                message: service_message(&answer.body, &scrub),
            }),
        }
    }

    async fn remove(&self, tenant: &Tenant<'_>, key: &str, deadline: Instant) -> Result<(), RegistryError> {
        let url = connector_url(tenant.url, key);
        let auth = self.authorization(tenant.credentials, deadline).await?;
        let scrub = [auth.expose(), bare(auth.expose())];
        let request = || self.http.delete(url.clone()).header(AUTHORIZATION, auth.expose());
        let answer = send("Cloud App Security", request, deadline, &scrub).await?;
        match answer.status {
            200 | 204 | 404 => Ok(()),
            status => Err(RegistryError::Rejected {
                status,
                message: service_message(&answer.body, &scrub),
            }),
        }
    }
}

async fn send(
    what: &'static str,
    request: impl Fn() -> RequestBuilder,
    deadline: Instant,
    scrub: &[&str],
) -> Result<Answer, RegistryError> {
    POLICY
        .send(request, deadline, scrub)
        .await
        .map_err(|gave_up| RegistryError::GaveUp {
            what,
            attempts: gave_up.attempts,
            last: gave_up.last,
        })
}

fn connector_url(base: &Url, key: &str) -> Url {
    join(base, &format!("api/v1/app_connectors/aws/{key}/"))
}

/// The service's own message, short and scrubbed: it may echo what was sent.
/// The longest connector id accepted: it goes into `Data` (`ConnectorId`), and CloudFormation's
/// answer must stay within 4096 bytes whatever the tenant sends.
const MAX_CONNECTOR_ID: usize = 128;

/// A tenant's connector id, if it is one: 1–128 printable ASCII characters without spaces.
fn connector_id(id: String) -> Result<String, String> {
    let ok = (1..=MAX_CONNECTOR_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
    match ok {
        true => Ok(id),
        false => Err(format!(
            "the connector id it answered is not 1-{MAX_CONNECTOR_ID} printable characters ({} bytes)",
            id.len()
        )),
    }
}

/// The credential in an `Authorization` value (`Token <t>`, `Bearer <t>`): a tenant may echo it
/// bare in an error message, and it must not reach a `Reason` either way.
fn bare(header: &str) -> &str {
    header
        .split_once(' ')
        .map_or(header, |(_, credential)| credential.trim())
}

fn service_message(body: &[u8], scrub: &[&str]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => ["message", "error_description", "detail", "error"]
            .iter()
            .find_map(|k| json.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .unwrap_or_else(|| json.to_string()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        text = "(no message)".to_owned();
    }
    let clean = http::scrubbed(&text, scrub);
    let mut short: String = clean.chars().take(300).collect();
    if clean.chars().count() > 300 {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages_are_short_and_scrubbed() {
        assert_eq!(
            service_message(br#"{"message": "bad  key Token abc123"}"#, &["Token abc123"]),
            "bad key ***"
        );
        assert_eq!(
            service_message(br#"{"error_description": "AADSTS7000215"}"#, &[]),
            "AADSTS7000215"
        );
        assert_eq!(service_message(b"", &[]), "(no message)");
        let header = "Token abc123";
        assert_eq!(
            service_message(br#"{"detail": "token abc123 is not valid"}"#, &[header, bare(header)]),
            "token *** is not valid",
            "the bare token too"
        );
        let long = "x".repeat(1000);
        assert_eq!(service_message(long.as_bytes(), &[]).chars().count(), 301);
    }

    #[test]
    fn a_connector_id_is_bounded() {
        assert_eq!(connector_id("conn-1".into()), Ok("conn-1".into()));
        assert!(connector_id("x".repeat(129)).is_err());
        assert!(connector_id(String::new()).is_err());
        assert!(connector_id("a b".into()).is_err());
    }

    #[test]
    fn the_connector_path_is_the_documented_one() {
        let base = Url::parse("https://contoso.portal.cloudappsecurity.com").unwrap();
        assert_eq!(
            connector_url(&base, "abc").as_str(),
            "https://contoso.portal.cloudappsecurity.com/api/v1/app_connectors/aws/abc/"
        );
    }
}
