//! Bearer JWT verification with `ring`.
//!
//! Accepted: compact JWS with `alg` EdDSA (Ed25519), ES256 or RS256, a `kid`
//! naming a key of the installed JWKS whose type matches the algorithm, and
//! claims `iss`, `aud`, `exp` (required), the subject claim (`sub`, or
//! the configured one; required and non-empty) and `nbf` checked with a small
//! leeway. Refused: `alg: none`, every HMAC algorithm (so the classic
//! "HMAC keyed with the public key" forgery cannot even be tried), unknown
//! `kid`s, and a key used with another algorithm than its type allows.
//!
//! Keys live in a moka cache keyed by `kid` with a time-to-live, so a key
//! dropped from the issuer's JWKS stops working at the latest one TTL after
//! the last install; [`JwtVerifier::install`] replaces the set at once
//! (rotation). Fetching a JWKS from a URL is the gateway's job: this crate
//! does no I/O.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_schemas::{AuthMethod, Principal};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::AuthError;

/// What a token must say to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required member of `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// The claim naming the caller's organisation.
    pub org_claim: String,
    /// The claim naming the caller (the principal's subject): `sub` by
    /// default; `client_id` suits client-credential tokens that carry no
    /// `sub`. A token without it is refused, because every such token of
    /// an organisation would otherwise become one principal.
    pub subject_claim: String,
    /// Longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// How long an installed key stays usable without a new install.
    pub key_ttl: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            leeway_seconds: 30,
            org_claim: "org".to_owned(),
            subject_claim: "sub".to_owned(),
            max_token_bytes: 8 * 1024,
            key_ttl: Duration::from_secs(3600),
        }
    }
}

/// The signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Ed25519.
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits.
    Rs256,
}

// === impl Algorithm ===

impl Algorithm {
    pub(crate) fn parse(alg: &str) -> Result<Self, AuthError> {
        match alg {
            "EdDSA" => Ok(Self::EdDsa),
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            other => Err(AuthError::UnsupportedAlgorithm {
                alg: other.to_owned(),
            }),
        }
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// A public key ready to verify, from one JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
    /// P-256 public key as an uncompressed point (65 bytes).
    P256(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
}

// === impl VerifyingKey ===

impl VerifyingKey {
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDsa,
            Self::P256(_) => Algorithm::Es256,
            Self::Rsa { .. } => Algorithm::Rs256,
        }
    }

    pub(crate) fn verify(&self, message: &[u8], signature_bytes: &[u8]) -> bool {
        match self {
            Self::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, signature_bytes)
                .is_ok(),
            Self::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature_bytes)
                .is_ok(),
            Self::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    message,
                    signature_bytes,
                )
                .is_ok(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Jwk {
    kty: String,
    pub(crate) kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Keys by `kid`, parsed from a JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<(String, VerifyingKey)>,
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS (`{"keys":[…]}`). Keys for encryption (`use: enc`) are
    /// skipped; a signing key without `kid` or of an unsupported type is an
    /// error, so a misconfigured JWKS is noticed at load time.
    pub fn from_jwks(text: &str) -> Result<Self, AuthError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<Jwk>,
        }
        let jwks: Jwks = serde_json::from_str(text).map_err(|error| AuthError::BadKeySet {
            reason: error.to_string(),
        })?;
        let mut keys = Vec::with_capacity(jwks.keys.len());
        for jwk in jwks.keys {
            if jwk.usage.as_deref() == Some("enc") {
                continue;
            }
            let kid = jwk.kid.clone().ok_or_else(|| AuthError::BadKeySet {
                reason: "every signing key needs a kid".to_owned(),
            })?;
            let key = parse_jwk(&jwk).map_err(|reason| AuthError::BadKeySet {
                reason: format!("key {kid:?}: {reason}"),
            })?;
            keys.push((kid, key));
        }
        Ok(Self { keys })
    }

    /// A set with the given keys (for tests and configured keys).
    pub fn from_keys(keys: Vec<(String, VerifyingKey)>) -> Self {
        Self { keys }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decode(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing {field}"))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("{field} is not base64url"))
}

pub(crate) fn parse_jwk(jwk: &Jwk) -> Result<VerifyingKey, String> {
    match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => {
            let x = decode("x", jwk.x.as_ref())?;
            if x.len() != 32 {
                return Err("Ed25519 x must be 32 bytes".to_owned());
            }
            Ok(VerifyingKey::Ed25519(x))
        }
        ("EC", Some("P-256")) => {
            let x = decode("x", jwk.x.as_ref())?;
            let y = decode("y", jwk.y.as_ref())?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 x and y must be 32 bytes each".to_owned());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(VerifyingKey::P256(point))
        }
        ("RSA", _) => {
            let n = decode("n", jwk.n.as_ref())?;
            let e = decode("e", jwk.e.as_ref())?;
            if n.len() < 256 {
                return Err("RSA keys must be at least 2048 bits".to_owned());
            }
            Ok(VerifyingKey::Rsa { n, e })
        }
        (kty, crv) => Err(format!("unsupported key type {kty} {crv:?}")),
    }
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// Verifies bearer JWTs against installed keys.
pub struct JwtVerifier {
    config: JwtConfig,
    keys: moka::sync::Cache<String, Arc<VerifyingKey>>,
}

// === impl JwtVerifier ===

impl JwtVerifier {
    /// A verifier with no keys yet; call [`install`](Self::install).
    pub fn new(config: JwtConfig) -> Self {
        let keys = moka::sync::Cache::builder()
            .max_capacity(1024)
            .time_to_live(config.key_ttl)
            .build();
        Self { config, keys }
    }

    /// Replaces the key set (rotation): keys absent from `set` stop working now.
    pub fn install(&self, set: &KeySet) {
        self.keys.invalidate_all();
        for (kid, key) in &set.keys {
            self.keys.insert(kid.clone(), Arc::new(key.clone()));
        }
    }

    /// Whether `kid` is installed (so the gateway knows to refresh the JWKS).
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch) and returns
    /// the caller.
    pub fn verify(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::malformed("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::malformed("expected three dot-separated parts"));
        };
        let header: Header = decode_json(header_b64, "header")?;
        let algorithm = Algorithm::parse(&header.alg)?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::malformed("header has no kid"))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKey { kid: kid.clone() })?;
        if key.algorithm() != algorithm {
            return Err(AuthError::KeyMismatch {
                kid,
                alg: algorithm.name().to_owned(),
            });
        }
        let signature_bytes = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::malformed("signature is not base64url"))?;
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !key.verify(signed.as_bytes(), &signature_bytes) {
            return Err(AuthError::BadSignature);
        }
        let claims: Value = decode_json(payload_b64, "payload")?;
        self.check_claims(&claims, now)?;
        self.principal(&claims)
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<(), AuthError> {
        let leeway = self.config.leeway_seconds;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthError::Expired)?;
        if exp.saturating_add(leeway) <= now {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_u64()
                .ok_or_else(|| AuthError::malformed("nbf is not a number"))?;
            if nbf > now.saturating_add(leeway) {
                return Err(AuthError::NotYetValid);
            }
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(audience)) => *audience == self.config.audience,
            Some(Value::Array(audiences)) => audiences
                .iter()
                .any(|audience| audience.as_str() == Some(self.config.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }
        Ok(())
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        // Regression: issue #15, defect 5. A missing or empty subject made
        // every such token of an organisation one principal, owning (and
        // reading) the others' tasks and runs.
        let subject = claims
            .get(&self.config.subject_claim)
            .and_then(Value::as_str)
            .filter(|subject| !subject.trim().is_empty())
            .ok_or_else(|| AuthError::MissingSubject {
                claim: self.config.subject_claim.clone(),
            })?
            .to_owned();
        let org = claims
            .get(&self.config.org_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut scopes: Vec<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(Value::Array(scp)) = claims.get("scp") {
            scopes.extend(scp.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        Ok(Principal {
            subject,
            org,
            scopes,
            method: AuthMethod::Jwt,
        })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::malformed(format!("{what} is not the expected JSON")))
}

#[cfg(test)]
mod tests;
