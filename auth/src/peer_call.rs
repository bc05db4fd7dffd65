//! Signed calls between organisations (federation): the wire format both
//! sides of a cross-organisation request agree on, signing with the
//! caller's [`OrgSigningKey`] and verifying against the keys an
//! administrator approved for that peer. Pure: replay memory (nonces) and
//! key lookup are the gateway's.
//!
//! The signature is a compact JWS (RFC 7515) carried in the
//! [`SIGNATURE_HEADER`] request header: protected header
//! `{"alg":"EdDSA","kid":<RFC 7638 thumbprint>,"typ":"convergio-call+jws"}`,
//! payload the [`PeerCallClaims`]: issuer and audience organisation domains,
//! issued-at, a random nonce, the HTTP method, the path with its query, the
//! body's RFC 9530 `Content-Digest` (`sha-256=:<base64>:`) and the calling
//! subject at the issuer. A JWS rather than RFC 9421 message signatures:
//! the covered values are explicit claims rather than a signature base
//! rebuilt from headers that proxies may rewrite, so both sides compute the
//! same bytes by construction; the body is covered through its digest.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::org_key::{OrgSigningKey, PeerPublicKey};
use crate::AuthError;

/// The request header carrying the signed call.
pub const SIGNATURE_HEADER: &str = "convergio-signature";
/// The RFC 9530 header carrying the body digest (informative: the verifier
/// recomputes the digest from the body it received).
pub const CONTENT_DIGEST_HEADER: &str = "content-digest";
/// The JWS `typ` of a signed call.
pub const CALL_TYPE: &str = "convergio-call+jws";
/// Longest signature header accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a signed call asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerCallClaims {
    /// The calling organisation's domain.
    pub iss: String,
    /// The called organisation's domain.
    pub aud: String,
    /// The caller at the issuer (its principal's subject).
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// 128 random bits, base64url: the replay key.
    pub nonce: String,
    /// HTTP method, upper case.
    pub htm: String,
    /// Path and query of the request as sent.
    pub htp: String,
    /// RFC 9530 `Content-Digest` of the body (`sha-256=:<base64>:`).
    pub cd: String,
}

// === impl PeerCallClaims ===

impl PeerCallClaims {
    /// Claims for one request, with a fresh nonce.
    pub fn new(
        issuer: &str,
        audience: &str,
        subject: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> Self {
        let mut nonce = [0u8; 16];
        if SystemRandom::new().fill(&mut nonce).is_err() {
            // ring's SystemRandom only fails when the OS has no entropy. A
            // nonce must be unique, not secret: the time plus a counter of
            // this process keeps two calls in the same instant apart.
            nonce.copy_from_slice(unique_fallback().as_slice());
        }
        Self {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: subject.to_owned(),
            iat: now,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            htm: method.to_ascii_uppercase(),
            htp: path_and_query.to_owned(),
            cd: content_digest(body),
        }
    }
}

fn unique_fallback() -> [u8; 16] {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!(
            "{:?}/{}/{count}",
            std::time::SystemTime::now(),
            std::process::id()
        )
        .as_bytes(),
    );
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes
}

/// The RFC 9530 `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("sha-256=:{}:", STANDARD.encode(digest.as_ref()))
}

/// Signs `claims` with the organisation key: the header value.
pub fn sign_call(key: &OrgSigningKey, claims: &PeerCallClaims) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "kid": key.kid(), "typ": CALL_TYPE});
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The request as the receiving gateway saw it.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedCall<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path and query.
    pub path_and_query: &'a str,
    /// The whole body.
    pub body: &'a [u8],
    /// This organisation's domain (the expected `aud`).
    pub audience: &'a str,
    /// Now, Unix seconds.
    pub now: u64,
    /// Accepted distance between `iat` and `now`, either way.
    pub window_seconds: u64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

/// A parsed, not yet verified, signed call: read its issuer to find the
/// peer's keys, then [`UnverifiedCall::verify`].
#[derive(Debug, Clone)]
pub struct UnverifiedCall {
    kid: String,
    signing_input: String,
    signature: Vec<u8>,
    claims: PeerCallClaims,
}

// === impl UnverifiedCall ===

impl UnverifiedCall {
    /// Parses the header value. Nothing in it is trusted yet.
    pub fn parse(token: &str) -> Result<Self, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::malformed("signed call too large"));
        }
        let mut parts = token.trim().split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::malformed("a signed call is a compact JWS"));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part.as_bytes())
                .map_err(|_| AuthError::malformed(format!("{what} is not base64url")))
        };
        let parsed: Header = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|_| AuthError::malformed("header is not a JWS header"))?;
        if parsed.alg != "EdDSA" {
            return Err(AuthError::UnsupportedAlgorithm { alg: parsed.alg });
        }
        if parsed.typ.as_deref() != Some(CALL_TYPE) {
            return Err(AuthError::malformed("typ is not convergio-call+jws"));
        }
        let kid = parsed
            .kid
            .ok_or_else(|| AuthError::malformed("header has no kid"))?;
        let claims: PeerCallClaims = serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|_| AuthError::malformed("payload is not signed-call claims"))?;
        Ok(Self {
            kid,
            signing_input: format!("{header}.{payload}"),
            signature: decode(signature, "signature")?,
            claims,
        })
    }

    /// The claimed issuer (unverified): which peer's keys to use.
    pub fn issuer(&self) -> &str {
        &self.claims.iss
    }

    /// The header's `kid` (unverified).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks the signature against `keys` (the peer's approved keys), then
    /// that the call was made to this audience, now, for this request.
    /// The nonce is not checked here: remembering it is the caller's job.
    pub fn verify(
        self,
        keys: &[PeerPublicKey],
        received: &ReceivedCall<'_>,
    ) -> Result<PeerCallClaims, AuthError> {
        let key =
            keys.iter()
                .find(|key| key.kid == self.kid)
                .ok_or_else(|| AuthError::UnknownKey {
                    kid: self.kid.clone(),
                })?;
        UnparsedPublicKey::new(&ED25519, &key.key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| AuthError::BadSignature)?;
        let claims = self.claims;
        if claims.aud != received.audience {
            return Err(AuthError::WrongAudience);
        }
        if claims.iat > received.now.saturating_add(received.window_seconds) {
            return Err(AuthError::NotYetValid);
        }
        if claims.iat.saturating_add(received.window_seconds) < received.now {
            return Err(AuthError::Expired);
        }
        if !claims.htm.eq_ignore_ascii_case(received.method) {
            return Err(AuthError::CallMismatch { what: "method" });
        }
        if claims.htp != received.path_and_query {
            return Err(AuthError::CallMismatch { what: "path" });
        }
        if claims.cd != content_digest(received.body) {
            return Err(AuthError::CallMismatch {
                what: "body digest",
            });
        }
        if claims.nonce.len() < 16 || claims.nonce.len() > 64 {
            return Err(AuthError::malformed("nonce must be 16 to 64 characters"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn received<'a>(body: &'a [u8]) -> ReceivedCall<'a> {
        ReceivedCall {
            method: "POST",
            path_and_query: "/agents/db",
            body,
            audience: "b.example",
            now: NOW,
            window_seconds: 60,
        }
    }

    fn signed(key: &OrgSigningKey, edit: impl FnOnce(&mut PeerCallClaims)) -> String {
        let mut claims = PeerCallClaims::new(
            "a.example",
            "b.example",
            "alice",
            "post",
            "/agents/db",
            b"{}",
            NOW,
        );
        edit(&mut claims);
        sign_call(key, &claims)
    }

    fn keys(key: &OrgSigningKey) -> Vec<PeerPublicKey> {
        vec![PeerPublicKey::from_jwk(&key.public_jwk()).expect("jwk")]
    }

    fn check(token: &str, key: &OrgSigningKey, body: &[u8]) -> Result<PeerCallClaims, AuthError> {
        UnverifiedCall::parse(token)?.verify(&keys(key), &received(body))
    }

    #[test]
    fn accepts_a_call_signed_for_this_request() {
        let key = OrgSigningKey::generate().expect("key");
        let token = signed(&key, |_| {});
        let parsed = UnverifiedCall::parse(&token).expect("parses");
        assert_eq!(parsed.issuer(), "a.example");
        assert_eq!(parsed.kid(), key.kid());
        let claims = check(&token, &key, b"{}").expect("verifies");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.htm, "POST");
    }

    #[test]
    fn rejects_every_altered_or_misdirected_call() {
        let key = OrgSigningKey::generate().expect("key");
        let other = OrgSigningKey::generate().expect("other key");
        // (token, body, expected error)
        let forged = {
            // Signed by another key but claiming this key's kid.
            let claims = PeerCallClaims::new(
                "a.example",
                "b.example",
                "x",
                "POST",
                "/agents/db",
                b"{}",
                NOW,
            );
            let token = sign_call(&other, &claims);
            let (_, rest) = token.split_once('.').expect("jws");
            let header = serde_json::json!({"alg": "EdDSA", "kid": key.kid(), "typ": CALL_TYPE});
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
        };
        let cases: Vec<(String, &[u8], AuthError)> = vec![
            (forged, b"{}", AuthError::BadSignature),
            (
                signed(&other, |_| {}),
                b"{}",
                AuthError::UnknownKey {
                    kid: other.kid().to_owned(),
                },
            ),
            (
                signed(&key, |c| c.aud = "c.example".into()),
                b"{}",
                AuthError::WrongAudience,
            ),
            (
                signed(&key, |c| c.iat = NOW - 61),
                b"{}",
                AuthError::Expired,
            ),
            (
                signed(&key, |c| c.iat = NOW + 61),
                b"{}",
                AuthError::NotYetValid,
            ),
            (
                signed(&key, |c| c.htm = "GET".into()),
                b"{}",
                AuthError::CallMismatch { what: "method" },
            ),
            (
                signed(&key, |c| c.htp = "/agents/other".into()),
                b"{}",
                AuthError::CallMismatch { what: "path" },
            ),
            (
                signed(&key, |_| {}),
                b"{\"x\":1}",
                AuthError::CallMismatch {
                    what: "body digest",
                },
            ),
        ];
        for (token, body, expected) in cases {
            assert_eq!(check(&token, &key, body).expect_err("refused"), expected);
        }
        // Edges of the window are inside it.
        assert!(check(&signed(&key, |c| c.iat = NOW - 60), &key, b"{}").is_ok());
        assert!(check(&signed(&key, |c| c.iat = NOW + 60), &key, b"{}").is_ok());
    }

    #[test]
    fn rejects_malformed_tokens_and_other_algorithms() {
        for token in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(matches!(
                UnverifiedCall::parse(token),
                Err(AuthError::Malformed { .. })
            ));
        }
        let header =
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k","typ":"convergio-call+jws"}"#);
        assert!(matches!(
            UnverifiedCall::parse(&format!("{header}.e30.AA")),
            Err(AuthError::UnsupportedAlgorithm { .. })
        ));
        assert_eq!(
            content_digest(b""),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }
}
