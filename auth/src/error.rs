//! Why a credential was refused. Every variant is `Unauthenticated` to
//! clients; the variant itself is for logs and tests, never for the caller,
//! so an attacker learns nothing about which check failed.

use convergio_schemas::ErrorKind;

/// A refused credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential was presented.
    #[error("no credentials")]
    Missing,
    /// The token is not a well-formed compact JWS (or is too large).
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// `alg` is none, HMAC, or anything but EdDSA, ES256 and RS256.
    #[error("algorithm {alg:?} is not accepted")]
    UnsupportedAlgorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// No key with that `kid` is known, even after a refresh.
    #[error("unknown key id {kid:?}")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The key's type does not match the token's algorithm.
    #[error("key {kid:?} cannot verify {alg}")]
    KeyMismatch {
        /// The key id.
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The key named by `kid` is past its expiry and may not be used.
    #[error("key {kid:?} has expired")]
    KeyExpired {
        /// The key id.
        kid: String,
    },
    /// The key named by `kid` was revoked and may not be used.
    #[error("key {kid:?} was revoked")]
    KeyRevoked {
        /// The key id.
        kid: String,
    },
    /// `exp` is in the past (beyond the leeway), or missing.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not name this gateway.
    #[error("wrong audience")]
    WrongAudience,
    /// The token names no caller: its subject claim is missing, empty or
    /// not a string.
    #[error("token has no {claim:?} claim naming the caller")]
    MissingSubject {
        /// The claim the config names for the subject.
        claim: String,
    },
    /// The API key is unknown, wrong, expired or revoked.
    #[error("invalid api key")]
    InvalidApiKey,
    /// The certificate carries no usable identity.
    #[error("certificate: {reason}")]
    BadCertificate {
        /// What is missing or wrong.
        reason: String,
    },
    /// A signed call's claims do not match the request received
    /// (method, path or body digest).
    #[error("signed call does not match the request: {what}")]
    CallMismatch {
        /// Which part differs.
        what: &'static str,
    },
    /// A signed call's nonce was already used within the clock window.
    #[error("replayed signed call")]
    Replayed,
    /// A signed call names an organisation that is not a configured peer.
    #[error("unknown peer organisation")]
    UnknownPeer,
    /// A key set could not be parsed.
    #[error("invalid key set: {reason}")]
    BadKeySet {
        /// What is wrong with it.
        reason: String,
    },
}

// === impl AuthError ===

impl AuthError {
    /// Every refusal is an authentication failure to the client; a bad key
    /// set is our own configuration error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BadKeySet { .. } => ErrorKind::Internal,
            _ => ErrorKind::Unauthenticated,
        }
    }

    /// A signed call whose claim `what` is missing or unusable.
    pub fn malformed_claim(what: &str) -> Self {
        Self::Malformed {
            reason: format!("signed call: bad or missing {what}"),
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed {
            reason: reason.into(),
        }
    }
}
