//! API keys: issued once, stored only as a SHA-256 hash, scoped, expirable
//! and revocable.
//!
//! A key reads `cvg_<id>_<secret>`: the id finds the record without a scan,
//! the 256-bit random secret is what proves possession. Because the secret is
//! uniformly random and long, a plain SHA-256 is the right hash (a slow
//! password hash buys nothing and would cost every request); the comparison
//! is constant-time.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_schemas::{AuthMethod, Principal};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::AuthError;

const PREFIX: &str = "cvg_";

/// A stored API key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public key id (the middle of the key).
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The principal's subject.
    pub subject: String,
    /// The principal's organisation.
    pub org: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Revoked keys are refused.
    pub revoked: bool,
}

/// A freshly issued key: the token is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    /// The full key to hand to the caller.
    pub token: String,
    /// What to store.
    pub record: ApiKeyRecord,
}

/// The keys this deployment accepts.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_id: RwLock<HashMap<String, ApiKeyRecord>>,
}

// === impl ApiKeys ===

impl ApiKeys {
    /// An empty key store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a new key and remembers its record.
    pub fn issue(
        &self,
        subject: &str,
        org: Option<&str>,
        scopes: &[&str],
        expires_at: Option<u64>,
    ) -> Result<IssuedApiKey, AuthError> {
        let issued = generate(subject, org, scopes, expires_at)?;
        self.insert(issued.record.clone());
        Ok(issued)
    }

    /// Adds or replaces a stored record (e.g. loaded from the database).
    pub fn insert(&self, record: ApiKeyRecord) {
        if let Ok(mut by_id) = self.by_id.write() {
            by_id.insert(record.id.clone(), record);
        }
    }

    /// Revokes a key; returns whether it existed.
    pub fn revoke(&self, id: &str) -> bool {
        match self.by_id.write() {
            Ok(mut by_id) => by_id
                .get_mut(id)
                .map(|record| record.revoked = true)
                .is_some(),
            Err(_) => false,
        }
    }

    /// Verifies a presented key at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let id = key_id(token).ok_or(AuthError::InvalidApiKey)?;
        let by_id = self.by_id.read().map_err(|_| AuthError::InvalidApiKey)?;
        let record = by_id.get(id).ok_or(AuthError::InvalidApiKey)?;
        verify_record(record, token, now)
    }
}

/// Generates a fresh key (random 72-bit id, 256-bit secret) without storing
/// it anywhere: the caller persists `record` and shows `token` once.
pub fn generate(
    subject: &str,
    org: Option<&str>,
    scopes: &[&str],
    expires_at: Option<u64>,
) -> Result<IssuedApiKey, AuthError> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 9];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| AuthError::BadKeySet {
            reason: "no system randomness".to_owned(),
        })?;
    // base64url has `_` in its alphabet; ids use hex so the separator is unambiguous.
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let record = ApiKeyRecord {
        id: id.clone(),
        secret_sha256: sha256_hex(secret.as_bytes()),
        subject: subject.to_owned(),
        org: org.map(str::to_owned),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        expires_at,
        revoked: false,
    };
    Ok(IssuedApiKey {
        token: format!("{PREFIX}{id}_{secret}"),
        record,
    })
}

/// The id part of a presented `cvg_<id>_<secret>` key, to look its record up.
pub fn key_id(token: &str) -> Option<&str> {
    token
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .filter(|id| !id.is_empty())
}

/// Verifies a presented key against its stored record at `now` (seconds
/// since the Unix epoch): the secret's hash (constant-time), expiry and
/// revocation.
pub fn verify_record(record: &ApiKeyRecord, token: &str, now: u64) -> Result<Principal, AuthError> {
    let (id, secret) = token
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .ok_or(AuthError::InvalidApiKey)?;
    let presented = sha256_hex(secret.as_bytes());
    let matches =
        constant_time_eq(presented.as_bytes(), record.secret_sha256.as_bytes()) && id == record.id;
    let expired = record.expires_at.is_some_and(|expiry| expiry <= now);
    if !matches || record.revoked || expired {
        return Err(AuthError::InvalidApiKey);
    }
    Ok(Principal {
        subject: record.subject.clone(),
        org: record.org.clone(),
        scopes: record.scopes.clone(),
        method: AuthMethod::ApiKey,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Compares two secrets in time that depends only on their lengths, so a
/// caller cannot learn a token byte by byte from response times.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_key_verifies_and_is_stored_only_hashed() {
        let keys = ApiKeys::new();
        let issued = keys
            .issue("ci-bot", Some("acme.example"), &["agents:call"], None)
            .expect("issue");
        // The secret is URL-safe base64, which may hold `_` itself: split
        // after the id, not at the last `_` (a one-character tail such as
        // `c` or `4` is in the hash's hex: about one run in 250 failed).
        let secret = issued
            .token
            .strip_prefix(&format!("{PREFIX}{}_", issued.record.id))
            .expect("cvg_<id>_<secret>");
        assert_eq!(secret.len(), 43, "{secret}");
        assert!(!issued.record.secret_sha256.contains(secret));
        let principal = keys.verify(&issued.token, 0).expect("valid key");
        assert_eq!(principal.subject, "ci-bot");
        assert_eq!(principal.method, AuthMethod::ApiKey);
        assert_eq!(principal.scopes, ["agents:call"]);
    }

    #[test]
    fn rejects_revoked_expired_wrong_and_malformed_keys() {
        let keys = ApiKeys::new();
        let revoked = keys.issue("a", None, &[], None).expect("issue");
        assert!(keys.revoke(&revoked.record.id));
        assert_eq!(
            keys.verify(&revoked.token, 0),
            Err(AuthError::InvalidApiKey)
        );

        let expiring = keys.issue("b", None, &[], Some(100)).expect("issue");
        assert!(keys.verify(&expiring.token, 99).is_ok());
        assert_eq!(
            keys.verify(&expiring.token, 100),
            Err(AuthError::InvalidApiKey)
        );

        let good = keys.issue("c", None, &[], None).expect("issue");
        let wrong_secret = format!("{PREFIX}{}_{}", good.record.id, "A".repeat(43));
        for token in [
            wrong_secret.as_str(),
            "",
            "cvg_",
            "cvg_x",
            "bearer",
            "cvg_nope_secret",
        ] {
            assert_eq!(
                keys.verify(token, 0),
                Err(AuthError::InvalidApiKey),
                "{token}"
            );
        }
        assert!(!keys.revoke("unknown"));
    }
}
