//! Agent card signatures and their JCS canonical form (RFC 8785), from
//! arbitrary JSON: canonicalisation never panics, is a fixed point (the
//! canonical text re-parsed canonicalises to itself), and a card signed with
//! our Ed25519 signer always verifies, while any JSON under `signatures`
//! gives a verdict, never a panic.

#![no_main]

use std::sync::{Arc, OnceLock};

use convergio_auth::card_signature::{canonical_json, signing_payload};
use convergio_auth::{sign_card, verify_card, CardCheck, CardKey, Ed25519CardSigner};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Keys {
    signer: Ed25519CardSigner,
    keys: Vec<CardKey>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key_pair =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .expect("the system RNG works");
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(key_pair.as_ref())
            .expect("a fresh key parses");
        let signer = Ed25519CardSigner::new(Arc::new(pair), "fuzz-card-key");
        let keys = vec![CardKey::from_jwk(&signer.public_jwk()).expect("our own JWK parses")];
        Keys { signer, keys }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let canonical = canonical_json(&value);
    let reparsed: Value = serde_json::from_str(&canonical).expect("canonical JSON is JSON");
    assert_eq!(canonical_json(&reparsed), canonical, "JCS is a fixed point");

    let keys = keys();
    // Whatever `signatures` holds, checking gives a verdict.
    let _ = verify_card(&value, &keys.keys, 1_800_000_000);
    if value.is_object() {
        let payload = signing_payload(&value).expect("an object has a payload");
        let _: Value = serde_json::from_str(&payload).expect("the payload is JSON");
        let signed = sign_card(&value, &keys.signer).expect("an object can be signed");
        match verify_card(&signed, &keys.keys, 1_800_000_000) {
            CardCheck::Verified { .. } => {}
            other => panic!("a card we signed does not verify: {other:?}"),
        }
    }
});
