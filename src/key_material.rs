//! Access-key material. None of these types implements `Debug` or `Display`: the secret half can
//! only be read through [`SecretAccessKey::expose`], which the code calls in exactly two places
//! (serialising the secret's value, and the adapter that receives it from IAM).

use serde::{Deserialize, Serialize};

/// The secret half of an access key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretAccessKey(String);

impl SecretAccessKey {
    pub fn new(value: String) -> SecretAccessKey {
        SecretAccessKey(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A key IAM has just issued.
#[derive(Clone)]
pub struct NewAccessKey {
    pub access_key_id: String,
    pub secret_access_key: SecretAccessKey,
}

/// The JSON value of the Secrets Manager secret: `{"AccessKeyId", "SecretAccessKey", "UserName"}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredKey {
    pub access_key_id: String,
    pub secret_access_key: SecretAccessKey,
    pub user_name: String,
}

/// The secret's text as Secrets Manager holds it; opaque until parsed.
pub struct SecretText(String);

impl SecretText {
    pub fn new(value: String) -> SecretText {
        SecretText(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl StoredKey {
    pub fn new(key: NewAccessKey, user_name: &str) -> StoredKey {
        StoredKey {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            user_name: user_name.to_owned(),
        }
    }

    pub fn to_secret_text(&self) -> SecretText {
        // Serialising a struct of strings cannot fail.
        SecretText(serde_json::to_string(self).unwrap_or_default())
    }

    /// `None` when the secret holds something else (edited by hand): the caller then issues a new key.
    pub fn from_secret_text(text: &SecretText) -> Option<StoredKey> {
        serde_json::from_str(text.expose()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_key_round_trips_through_the_secret_json() {
        let key = NewAccessKey {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SecretAccessKey::new("s3cr3t/+=".into()),
        };
        let stored = StoredKey::new(key, "CloudAppSecurity-x");
        let text = stored.to_secret_text();
        let value: serde_json::Value = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "s3cr3t/+=", "UserName": "CloudAppSecurity-x"})
        );
        assert!(StoredKey::from_secret_text(&text) == Some(stored));
        assert!(StoredKey::from_secret_text(&SecretText::new("not json".into())).is_none());
    }
}
