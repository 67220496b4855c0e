//! The credentials the emulator accepts: its configured pair, plus temporary credentials
//! registered at run time, the way STS or the EKS Pod Identity agent would have issued them.
//!
//! A request signed with a registered access key must carry that key's session token, and is
//! refused with `ExpiredTokenException` from the key's expiration on.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::EmulatorConfig;
use crate::clock;
use crate::error::Error;

/// A temporary credential set, as STS issues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Unix time from which the credentials are refused as expired.
    pub expires_at: i64,
}

/// `POST /_emulator/credentials` body: `expiration` is an RFC 3339 timestamp (as STS writes
/// it) or Unix seconds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registration {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: Expiration,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expiration {
    UnixSeconds(i64),
    Timestamp(String),
}

/// The answer to a registration; it never repeats the secret or the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub access_key_id: String,
    pub expiration: String,
}

/// Parses and checks a registration body.
pub fn parse_registration(body: &[u8]) -> Result<TemporaryCredentials, Error> {
    let registration: Registration = serde_json::from_slice(body).map_err(|error| {
        Error::validation(format!(
            "Expected {{accessKeyId, secretAccessKey, sessionToken, expiration}}: {error}"
        ))
    })?;
    for (name, value) in [
        ("accessKeyId", &registration.access_key_id),
        ("secretAccessKey", &registration.secret_access_key),
        ("sessionToken", &registration.session_token),
    ] {
        if value.trim().is_empty() {
            return Err(Error::validation(format!("{name} must not be empty.")));
        }
    }
    let expires_at = match registration.expiration {
        Expiration::UnixSeconds(seconds) => seconds,
        Expiration::Timestamp(text) => clock::parse_rfc3339(&text).ok_or_else(|| {
            Error::validation(format!(
                "expiration must be an RFC 3339 UTC timestamp or Unix seconds, got '{text}'."
            ))
        })?,
    };
    Ok(TemporaryCredentials {
        access_key_id: registration.access_key_id,
        secret_access_key: registration.secret_access_key,
        session_token: registration.session_token,
        expires_at,
    })
}

/// What a request signed with a given access key must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expires_at: Option<i64>,
}

/// The registered temporary credentials, by access key id.
#[derive(Debug, Default)]
pub struct CredentialStore {
    registered: RwLock<HashMap<String, TemporaryCredentials>>,
}

impl CredentialStore {
    /// Adds (or replaces) a credential set and says what was registered.
    pub fn register(&self, credentials: TemporaryCredentials) -> Registered {
        let registered = Registered {
            access_key_id: credentials.access_key_id.clone(),
            expiration: clock::format_rfc3339(credentials.expires_at),
        };
        // A poisoned lock only means another thread panicked mid-insert; the map stays usable.
        self.registered
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(credentials.access_key_id.clone(), credentials);
        registered
    }

    fn get(&self, access_key_id: &str) -> Option<TemporaryCredentials> {
        self.registered
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(access_key_id)
            .cloned()
    }

    /// The credentials a request presenting `access_key_id` is checked against: a registered
    /// set when the key is one, the configured pair otherwise (which refuses unknown keys).
    pub fn acceptance_for(
        &self,
        config: &EmulatorConfig,
        access_key_id: Option<&str>,
    ) -> Acceptance {
        match access_key_id
            .filter(|key| *key != config.access_key_id)
            .and_then(|key| self.get(key))
        {
            Some(temporary) => Acceptance {
                access_key_id: temporary.access_key_id,
                secret_access_key: temporary.secret_access_key,
                session_token: Some(temporary.session_token),
                expires_at: Some(temporary.expires_at),
            },
            None => Acceptance {
                access_key_id: config.access_key_id.clone(),
                secret_access_key: config.secret_access_key.clone(),
                session_token: config.session_token.clone(),
                expires_at: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn temporary(key: &str, expires_at: i64) -> TemporaryCredentials {
        TemporaryCredentials {
            access_key_id: key.into(),
            secret_access_key: format!("{key}-secret"),
            session_token: format!("{key}-token"),
            expires_at,
        }
    }

    #[test]
    fn registrations_parse_sts_timestamps_and_unix_seconds() {
        let parsed = parse_registration(
            br#"{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":"2015-08-30T12:36:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            TemporaryCredentials {
                access_key_id: "ASIA1".into(),
                secret_access_key: "s".into(),
                session_token: "t".into(),
                expires_at: 1_440_938_160,
            }
        );
        let parsed = parse_registration(
            br#"{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":1440938160}"#,
        )
        .unwrap();
        assert_eq!(parsed.expires_at, 1_440_938_160);
    }

    #[test]
    fn bad_registrations_are_validation_errors() {
        for body in [
            &b"not json"[..],
            br#"{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t"}"#,
            br#"{"accessKeyId":"","secretAccessKey":"s","sessionToken":"t","expiration":1}"#,
            br#"{"accessKeyId":"A","secretAccessKey":"s","sessionToken":" ","expiration":1}"#,
            br#"{"accessKeyId":"A","secretAccessKey":"s","sessionToken":"t","expiration":"soon"}"#,
        ] {
            let error = parse_registration(body).unwrap_err();
            assert_eq!(error.as_service().0, ErrorKind::Validation);
        }
    }

    #[test]
    fn registered_keys_need_their_token_and_expire() {
        let config = EmulatorConfig::default();
        let store = CredentialStore::default();
        let answer = store.register(temporary("ASIA1", 1_440_938_160));
        assert_eq!(answer.access_key_id, "ASIA1");
        assert_eq!(answer.expiration, "2015-08-30T12:36:00Z");
        assert_eq!(
            store.acceptance_for(&config, Some("ASIA1")),
            Acceptance {
                access_key_id: "ASIA1".into(),
                secret_access_key: "ASIA1-secret".into(),
                session_token: Some("ASIA1-token".into()),
                expires_at: Some(1_440_938_160),
            }
        );
    }

    #[test]
    fn unknown_and_configured_keys_fall_back_to_the_configured_pair() {
        let config = EmulatorConfig::default();
        let store = CredentialStore::default();
        store.register(temporary(&config.access_key_id, 0));
        for presented in [None, Some("ASIANOPE"), Some(config.access_key_id.as_str())] {
            let acceptance = store.acceptance_for(&config, presented);
            assert_eq!(acceptance.access_key_id, config.access_key_id);
            assert_eq!(acceptance.secret_access_key, config.secret_access_key);
            assert_eq!(acceptance.expires_at, None);
        }
    }
}
