//! Plugin signatures (issue 21): a detached JWS over a module's SHA-256,
//! made and checked exactly like an agent card's signature
//! ([`crate::card_signature`]), so an organisation signs plugins with the
//! key that signs its cards and the gateway verifies them against the same
//! keys of the owning organisation.
//!
//! The signed statement is the JSON object `{"sha256": "<lowercase hex>"}`
//! (JCS-canonical, as a card is); the signature travels in the JWS compact
//! serialisation with a detached payload (RFC 7515 appendix F):
//! `<protected>..<signature>`. The verifier rebuilds the statement from the
//! hash of the bytes it received, so a module changed after signing (a
//! tampered one) fails the signature, whatever it claims.

use ring::digest::{digest, SHA256};
use serde_json::json;

use crate::card_signature::{sign_card, verify_card, CardCheck, CardKey, CardSigner};
use crate::AuthError;

/// The SHA-256 of `module`, lowercase hex.
pub fn module_sha256(module: &[u8]) -> String {
    hex::encode(digest(&SHA256, module))
}

/// The detached compact JWS of `signer` over the module whose SHA-256 is
/// `sha256`.
pub fn sign_module(sha256: &str, signer: &dyn CardSigner) -> Result<String, AuthError> {
    let signed = sign_card(&json!({ "sha256": sha256 }), signer)?;
    let entry = signed
        .pointer("/signatures/0")
        .ok_or_else(|| AuthError::malformed("signing produced no signature"))?;
    let part = |field: &str| {
        entry
            .get(field)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AuthError::malformed("signing produced a partial signature"))
    };
    Ok(format!("{}..{}", part("protected")?, part("signature")?))
}

/// Checks the detached compact JWS `signature` over the module whose
/// SHA-256 is `sha256` against `keys` at `now` (Unix seconds), as
/// [`verify_card`] checks a card: `Verified` with the key's id, `Invalid`
/// for a signature that fails with a key at hand (a tampered module),
/// `Unverifiable` when no usable key is known.
pub fn verify_module(sha256: &str, signature: &str, keys: &[CardKey], now: u64) -> CardCheck {
    let mut parts = signature.trim().split('.');
    let (Some(protected), Some(""), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return CardCheck::Invalid {
            reason: AuthError::malformed(
                "a plugin signature is a detached compact JWS: <protected>..<signature>",
            ),
        };
    };
    let statement = json!({
        "sha256": sha256,
        "signatures": [{"protected": protected, "signature": signature}],
    });
    verify_card(&statement, keys, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OrgSigningKey;

    #[test]
    fn a_signature_verifies_for_its_module_only() {
        let key = OrgSigningKey::generate().expect("a key");
        let keys = [key.card_key()];
        let module = b"\0asm\x01\0\0\0";
        let sha256 = module_sha256(module);
        assert_eq!(sha256.len(), 64);
        let signature = sign_module(&sha256, &key).expect("signs");
        assert!(signature.contains(".."), "{signature}");
        assert!(matches!(
            verify_module(&sha256, &signature, &keys, 0),
            CardCheck::Verified { .. }
        ));
        let tampered = module_sha256(b"\0asm\x01\0\0\0\x01");
        assert!(matches!(
            verify_module(&tampered, &signature, &keys, 0),
            CardCheck::Invalid { .. }
        ));
        let other = OrgSigningKey::generate().expect("a key");
        assert!(matches!(
            verify_module(&sha256, &signature, &[other.card_key()], 0),
            CardCheck::Unverifiable { .. } | CardCheck::Invalid { .. }
        ));
        assert!(matches!(
            verify_module(&sha256, "not a jws", &keys, 0),
            CardCheck::Invalid { .. }
        ));
    }
}
