//! Bearer JWT verification: an arbitrary token string gets a typed error
//! (never a panic), and so does a token whose header and claims are
//! arbitrary bytes but whose EdDSA signature is genuine, which takes the
//! input past the signature check into header and claims parsing.
//!
//! Input: the first byte picks the mode; in the signed mode the rest is
//! split at the first 0xFF byte into header and claims.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_auth::{JwtConfig, JwtVerifier, KeySet, OrgSigningKey};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    key: OrgSigningKey,
    verifier: JwtVerifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = OrgSigningKey::generate().expect("the system RNG works");
        let set = KeySet::from_jwks(&key.jwks().to_string()).expect("our own JWKS parses");
        let verifier = JwtVerifier::new(JwtConfig {
            issuer: "https://issuer.example".to_owned(),
            audience: "convergio".to_owned(),
            ..JwtConfig::default()
        });
        verifier.install(&set);
        Fixture { key, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    if mode % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        let _ = fixture.verifier.verify(&token, NOW);
        return;
    }
    let (header, claims) = match rest.iter().position(|byte| *byte == 0xFF) {
        Some(index) => (&rest[..index], &rest[index + 1..]),
        None => (rest, &b""[..]),
    };
    // An arbitrary header with a known kid would be refused before the
    // signature; splice the kid in when the header is a JSON object.
    let header = match serde_json::from_slice::<serde_json::Value>(header) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("kid".into(), fixture.key.kid().into());
            serde_json::Value::Object(map).to_string().into_bytes()
        }
        _ => header.to_vec(),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = fixture.key.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    let _ = fixture.verifier.verify(&token, NOW);
});
