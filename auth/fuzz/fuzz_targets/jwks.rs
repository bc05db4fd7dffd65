//! Key material from outside: a JWKS document (the JWT issuer's), one JWK
//! as a card key or a peer's key, a peer's JWKS, and a DER client
//! certificate. Each parses to a key or a typed error, never a panic.

#![no_main]

use convergio_auth::card_signature::CardKey;
use convergio_auth::{principal_from_certificate, KeySet, MtlsConfig, PeerPublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Certificates are binary; every input is also tried as one.
    let _ = principal_from_certificate(data, &MtlsConfig::default());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = KeySet::from_jwks(text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = CardKey::from_jwk(&value);
        let _ = PeerPublicKey::from_jwk(&value);
        let _ = PeerPublicKey::from_jwks(&value);
    }
});
