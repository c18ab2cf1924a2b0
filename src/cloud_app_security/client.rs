//! The only code that speaks HTTP to Cloud App Security (and to Entra ID for its token).
//! Every request has its own timeout; 429, 5xx and transport errors are retried until a
//! deadline; other answers are final.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Url};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::auth::{Credentials, EntraApp, SCOPE};
use super::endpoint::join;
use super::retry;
use crate::key_material::{SecretAccessKey, SecretText};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A cached token is renewed this long before it expires.
const TOKEN_SLACK: Duration = Duration::from_secs(60);

/// The upsert's body. It carries the secret access key: no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationBody {
    pub name: String,
    pub external_id: String,
    pub aws_account_id: String,
    pub connections: Vec<String>,
    pub access_key_id: String,
    pub secret_access_key: SecretAccessKey,
    pub trail_arn: String,
    pub region: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Registered {
    pub id: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("Cloud App Security answered HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("the Entra token endpoint answered HTTP {status}: {message}")]
    Token { status: u16, message: String },
    #[error("{what} did not succeed before the deadline after {attempts} attempt(s); the last answer was {last}")]
    GaveUp {
        what: &'static str,
        attempts: u32,
        last: String,
    },
    #[error("{what}'s answer could not be read: {detail}")]
    BadAnswer { what: &'static str, detail: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

pub struct Client {
    http: reqwest::Client,
    /// Entra tokens by authority, tenant and client, until shortly before they expire.
    tokens: Mutex<HashMap<String, (SecretText, Instant)>>,
}

/// The answer to one request that was not retried.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Client {
    pub fn new() -> Result<Client, CallbackError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CallbackError::Client(e.without_url().to_string()))?;
        Ok(Client {
            http,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `PUT <url>/api/v1/app_connectors/aws/<key>/`.
    pub async fn upsert(
        &self,
        base: &Url,
        credentials: &Credentials,
        key: &str,
        body: &RegistrationBody,
        deadline: Instant,
    ) -> Result<Registered, CallbackError> {
        let url = connector_url(base, key);
        let auth = self.authorization(credentials, deadline).await?;
        let json = serde_json::to_vec(body).map_err(|e| CallbackError::BadAnswer {
            what: "the request",
            detail: e.to_string(),
        })?;
        let scrub = [auth.expose(), body.secret_access_key.expose()];
        let request = || {
            self.http
                .put(url.clone())
                .header(AUTHORIZATION, auth.expose())
                .header(CONTENT_TYPE, "application/json")
                .body(json.clone())
        };
        let answer = self.send("Cloud App Security", request, deadline, &scrub).await?;
        match answer.status {
            200 | 201 => serde_json::from_slice(&answer.body).map_err(|e| CallbackError::BadAnswer {
                what: "Cloud App Security",
                detail: e.to_string(),
            }),
            status => Err(CallbackError::Rejected {
                status,
                message: service_message(&answer.body, &scrub),
            }),
        }
    }

    /// `DELETE <url>/api/v1/app_connectors/aws/<key>/`; a connector already gone is success.
    pub async fn remove(
        &self,
        base: &Url,
        credentials: &Credentials,
        key: &str,
        deadline: Instant,
    ) -> Result<(), CallbackError> {
        let url = connector_url(base, key);
        let auth = self.authorization(credentials, deadline).await?;
        let scrub = [auth.expose()];
        let request = || self.http.delete(url.clone()).header(AUTHORIZATION, auth.expose());
        let answer = self.send("Cloud App Security", request, deadline, &scrub).await?;
        match answer.status {
            200 | 204 | 404 => Ok(()),
            status => Err(CallbackError::Rejected {
                status,
                message: service_message(&answer.body, &scrub),
            }),
        }
    }

    /// The `Authorization` header value.
    async fn authorization(&self, credentials: &Credentials, deadline: Instant) -> Result<SecretText, CallbackError> {
        match credentials {
            Credentials::Token(token) => Ok(SecretText::new(format!("Token {}", token.expose()))),
            Credentials::Entra(app) => {
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
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SecretText, Instant)>> {
        self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client-credentials grant.
    async fn fetch_token(&self, app: &EntraApp, deadline: Instant) -> Result<(SecretText, Duration), CallbackError> {
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
        let answer = self.send("the Entra token endpoint", request, deadline, &scrub).await?;
        if answer.status != 200 {
            return Err(CallbackError::Token {
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
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| CallbackError::BadAnswer {
            what: "the Entra token endpoint",
            detail: "no access_token in the answer".to_owned(),
        })?;
        // `expires_in` is a number, or a string holding one (older endpoints).
        let seconds = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok((
            SecretText::new(parsed.access_token),
            Duration::from_secs(seconds.unwrap_or(300)),
        ))
    }

    /// Sends until an answer that is not retried, or gives up at `deadline`.
    async fn send(
        &self,
        what: &'static str,
        request: impl Fn() -> RequestBuilder,
        deadline: Instant,
        scrub: &[&str],
    ) -> Result<Answer, CallbackError> {
        let mut attempts = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let last = "none: no time was left".to_owned();
                return Err(CallbackError::GaveUp { what, attempts, last });
            }
            attempts += 1;
            let (last, server_asked) = match request().timeout(REQUEST_TIMEOUT.min(left)).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status != 429 && !response.status().is_server_error() {
                        let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                        return Ok(Answer { status, body });
                    }
                    let asked = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::retry_after(v, SystemTime::now()));
                    (format!("HTTP {status}"), asked)
                }
                Err(e) => (scrubbed(&e.without_url().to_string(), scrub), None),
            };
            let wait = retry::delay(attempts - 1, server_asked, &mut rand::rng());
            if Instant::now() + wait >= deadline {
                return Err(CallbackError::GaveUp { what, attempts, last });
            }
            tracing::info!(what, attempts, last = %last, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

fn connector_url(base: &Url, key: &str) -> Url {
    join(base, &format!("api/v1/app_connectors/aws/{key}/"))
}

/// The service's own words for an error, short, with anything secret removed.
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
    let clean = scrubbed(&text, scrub);
    let mut short: String = clean.chars().take(300).collect();
    if clean.chars().count() > 300 {
        short.push('…');
    }
    short
}

fn scrubbed(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |t, s| t.replace(s, "***"))
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
        let long = "x".repeat(1000);
        assert_eq!(service_message(long.as_bytes(), &[]).chars().count(), 301);
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
