//! A2A 1.0 agent card signatures (specification §8.4): a detached JWS over
//! the RFC 8785 (JCS) canonical form of the card without its `signatures`.
//!
//! Canonical form. The a2a-sdk (1.3.0, `a2a/utils/signing.py`) recursively
//! drops every empty string, list and object before canonicalising, while the
//! specification keeps REQUIRED empties; the two agree whenever the card's
//! required strings and lists are non-empty, and cards signed by the SDK are
//! what peers send, so [`signing_payload`] follows the SDK. Known gap: the
//! SDK canonicalises its protobuf view of the card (`MessageToDict`), which
//! also drops fields the proto does not know and non-`optional` scalars at
//! their default (an extension's `"required": false`); a card carrying such
//! fields canonicalises differently here and there. Cards made by the SDK
//! never carry them; a card the gateway re-signs keeps whatever its
//! upstream's card carried, so the SDK may reject those few.
//!
//! JCS is implemented here (about fifty lines, [`canonical_json`]) rather
//! than taken from `serde_json_canonicalizer` or `serde_jcs`: both switch on
//! serde_json's `float_roundtrip` feature for the whole workspace, changing
//! how every crate parses numbers. Key order is by UTF-16 code units, strings
//! use serde_json's escaping (which is exactly JSON.stringify's: `"`, `\`
//! and control characters, lowercase `\u00xx`), numbers use ECMAScript's
//! `Number.prototype.toString` built on Rust's shortest round-trip digits.
//!
//! Verification ([`verify_card`]): each entry's protected header must carry
//! an accepted `alg` (EdDSA, ES256, RS256) and a `kid` naming one of the
//! keys handed in; expired and revoked keys are never used; one valid
//! signature suffices (several are allowed for key rotation). `jku` is
//! ignored on purpose: keys come from the owning organisation's configured
//! key set, never from a URL the card names. The outcome separates a card
//! that *cannot* be verified with the keys at hand (unknown key, expired key,
//! unsupported algorithm) from one whose signature *fails* with a key we
//! hold (tampered) — the registry refuses only the latter.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{json, Map, Value};

use crate::jwt::{parse_jwk, Algorithm, Jwk, VerifyingKey};
use crate::AuthError;

/// A public key allowed to sign cards, with its validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardKey {
    /// The JWK `kid` signatures name.
    pub kid: String,
    /// The public key.
    pub key: VerifyingKey,
    /// Unix seconds after which the key may no longer be used, if any.
    pub not_after: Option<u64>,
    /// A revoked key is never used.
    pub revoked: bool,
}

// === impl CardKey ===

impl CardKey {
    /// A key without expiry that is not revoked.
    pub fn new(kid: impl Into<String>, key: VerifyingKey) -> Self {
        Self {
            kid: kid.into(),
            key,
            not_after: None,
            revoked: false,
        }
    }

    /// A key from one public JWK (`kty` OKP/Ed25519, EC/P-256 or RSA, with
    /// a `kid`).
    pub fn from_jwk(jwk: &Value) -> Result<Self, AuthError> {
        let parsed: Jwk =
            serde_json::from_value(jwk.clone()).map_err(|error| AuthError::BadKeySet {
                reason: error.to_string(),
            })?;
        let kid = parsed.kid.clone().ok_or_else(|| AuthError::BadKeySet {
            reason: "a card key needs a kid".to_owned(),
        })?;
        let key = parse_jwk(&parsed).map_err(|reason| AuthError::BadKeySet {
            reason: format!("key {kid:?}: {reason}"),
        })?;
        Ok(Self::new(kid, key))
    }

    fn usable(&self, now: u64) -> Result<(), AuthError> {
        if self.revoked {
            return Err(AuthError::KeyRevoked {
                kid: self.kid.clone(),
            });
        }
        if self.not_after.is_some_and(|not_after| now > not_after) {
            return Err(AuthError::KeyExpired {
                kid: self.kid.clone(),
            });
        }
        Ok(())
    }
}

/// What checking a card's signatures against a key set found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardCheck {
    /// The card carries no signature.
    Unsigned,
    /// At least one signature verifies with a usable key.
    Verified {
        /// The key that verified it.
        kid: String,
        /// Its algorithm.
        alg: Algorithm,
    },
    /// No signature verifies, but none was proven wrong either: the keys are
    /// unknown, expired or revoked, or the algorithm is not accepted.
    Unverifiable {
        /// Why the first signature could not be checked.
        reason: AuthError,
    },
    /// A signature is malformed, or fails with a key we hold: the card was
    /// altered after signing, or the signature is forged.
    Invalid {
        /// Why the first such signature failed.
        reason: AuthError,
    },
}

/// Signs cards. The gateway's organisation key implements it (Ed25519 with
/// `ring`), see [`Ed25519CardSigner`].
pub trait CardSigner: Send + Sync {
    /// The `kid` the signatures name (the key's entry in the published JWKS).
    fn kid(&self) -> &str;
    /// The algorithm [`sign`](Self::sign) uses.
    fn algorithm(&self) -> Algorithm;
    /// The raw JWS signature over `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

/// A [`CardSigner`] over a `ring` Ed25519 key pair.
#[derive(Clone)]
pub struct Ed25519CardSigner {
    key_pair: Arc<Ed25519KeyPair>,
    kid: String,
}

impl std::fmt::Debug for Ed25519CardSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519CardSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

// === impl Ed25519CardSigner ===

impl Ed25519CardSigner {
    /// A signer naming `kid`.
    pub fn new(key_pair: Arc<Ed25519KeyPair>, kid: impl Into<String>) -> Self {
        Self {
            key_pair,
            kid: kid.into(),
        }
    }

    /// The public key as a JWK (`OKP`, `Ed25519`, `use: sig`, `alg: EdDSA`).
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.key_pair.public_key().as_ref()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }
}

impl CardSigner for Ed25519CardSigner {
    fn kid(&self) -> &str {
        &self.kid
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDsa
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key_pair.sign(message).as_ref().to_vec()
    }
}

/// The card with its `signatures` replaced by one signature of `signer`.
/// Fails only when `card` is not a JSON object.
pub fn sign_card(card: &Value, signer: &dyn CardSigner) -> Result<Value, AuthError> {
    let payload = signing_payload(card)?;
    let header = json!({"alg": signer.algorithm().name(), "kid": signer.kid(), "typ": "JOSE"});
    let protected = URL_SAFE_NO_PAD.encode(canonical_json(&header));
    let message = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = URL_SAFE_NO_PAD.encode(signer.sign(message.as_bytes()));
    let mut signed = card.clone();
    if let Value::Object(map) = &mut signed {
        map.insert(
            "signatures".to_owned(),
            json!([{"protected": protected, "signature": signature}]),
        );
    }
    Ok(signed)
}

/// Checks `card`'s signatures against `keys` at `now` (Unix seconds).
pub fn verify_card(card: &Value, keys: &[CardKey], now: u64) -> CardCheck {
    let entries = match card.get("signatures") {
        None | Some(Value::Null) => return CardCheck::Unsigned,
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return CardCheck::Invalid {
                reason: AuthError::malformed("signatures is not a list"),
            }
        }
    };
    if entries.is_empty() {
        return CardCheck::Unsigned;
    }
    let payload = match signing_payload(card) {
        Ok(payload) => URL_SAFE_NO_PAD.encode(payload),
        Err(reason) => return CardCheck::Invalid { reason },
    };
    let mut invalid = None;
    let mut unverifiable = None;
    for entry in entries {
        match verify_entry(entry, &payload, keys, now) {
            Ok((kid, alg)) => return CardCheck::Verified { kid, alg },
            Err(Failure::Invalid(reason)) => {
                invalid.get_or_insert(reason);
            }
            Err(Failure::Unverifiable(reason)) => {
                unverifiable.get_or_insert(reason);
            }
        }
    }
    match (invalid, unverifiable) {
        (Some(reason), _) => CardCheck::Invalid { reason },
        (None, Some(reason)) => CardCheck::Unverifiable { reason },
        (None, None) => CardCheck::Unsigned,
    }
}

enum Failure {
    Invalid(AuthError),
    Unverifiable(AuthError),
}

fn verify_entry(
    entry: &Value,
    payload: &str,
    keys: &[CardKey],
    now: u64,
) -> Result<(String, Algorithm), Failure> {
    let malformed = |reason: &str| Failure::Invalid(AuthError::malformed(reason));
    let protected = entry
        .get("protected")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a signature has no protected header"))?;
    let signature = entry
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
        .ok_or_else(|| malformed("a signature is not base64url"))?;
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(protected)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| malformed("a protected header is not base64url JSON"))?;
    if header.contains_key("crit") {
        // No extension is understood, so a critical one cannot be honoured.
        return Err(Failure::Unverifiable(AuthError::malformed(
            "critical header parameters are not supported",
        )));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let alg = Algorithm::parse(alg).map_err(Failure::Unverifiable)?;
    let kid = header
        .get("kid")
        .or_else(|| {
            entry
                .get("header")
                .and_then(|unprotected| unprotected.get("kid"))
        })
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::Unverifiable(AuthError::malformed("a signature names no kid")))?;
    let key = keys.iter().find(|key| key.kid == kid).ok_or_else(|| {
        Failure::Unverifiable(AuthError::UnknownKey {
            kid: kid.to_owned(),
        })
    })?;
    key.usable(now).map_err(Failure::Unverifiable)?;
    if key.key.algorithm() != alg {
        return Err(Failure::Invalid(AuthError::KeyMismatch {
            kid: kid.to_owned(),
            alg: alg.name().to_owned(),
        }));
    }
    let message = format!("{protected}.{payload}");
    if key.key.verify(message.as_bytes(), &signature) {
        Ok((kid.to_owned(), alg))
    } else {
        Err(Failure::Invalid(AuthError::BadSignature))
    }
}

/// The bytes a card signature covers: the card without `signatures`, every
/// empty string, list and object dropped recursively (the a2a-sdk rule),
/// in JCS form. Fails when `card` is not a JSON object.
pub fn signing_payload(card: &Value) -> Result<String, AuthError> {
    let Value::Object(map) = card else {
        return Err(AuthError::malformed("an agent card must be a JSON object"));
    };
    let mut map = map.clone();
    map.remove("signatures");
    let cleaned = drop_empty(&Value::Object(map)).unwrap_or_else(|| Value::Object(Map::new()));
    Ok(canonical_json(&cleaned))
}

/// `value` with every empty string, list and object removed, recursively;
/// `None` when `value` itself ends up empty (the a2a-sdk's `_clean_empty`).
pub fn drop_empty(value: &Value) -> Option<Value> {
    match value {
        Value::String(text) if text.is_empty() => None,
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(drop_empty).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), drop_empty(value)?)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

/// `value` in RFC 8785 (JCS) canonical form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&canonical_number(number)),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(left, _), (right, _)| left.encode_utf16().cmp(right.encode_utf16()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    // serde_json escapes exactly what JSON.stringify escapes; serialising a
    // `str` cannot fail.
    out.push_str(&Value::String(text.to_owned()).to_string());
}

/// The largest integer an IEEE double holds exactly (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

fn canonical_number(number: &serde_json::Number) -> String {
    if let Some(unsigned) = number.as_u64() {
        if unsigned <= MAX_EXACT_INTEGER {
            return unsigned.to_string();
        }
    } else if let Some(signed) = number.as_i64() {
        if signed.unsigned_abs() <= MAX_EXACT_INTEGER {
            return signed.to_string();
        }
    }
    // JSON numbers are IEEE doubles in JCS; serde_json's are always finite.
    number
        .as_f64()
        .map(es_number)
        .unwrap_or_else(|| "0".to_owned())
}

/// ECMAScript `Number.prototype.toString` for a finite double (ECMA-262
/// Number::toString), from Rust's shortest round-trip digits.
fn es_number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    // value = 0.digits × 10^n
    let n = exponent + 1;
    let k = digits.len() as i64;
    let mut out = String::new();
    if value < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (whole, fraction) = digits.split_at(n as usize);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if n - 1 < 0 { '-' } else { '+' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
}

#[cfg(test)]
mod tests;
