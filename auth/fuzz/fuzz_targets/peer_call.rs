//! Signed cross-organisation calls (`Convergio-Signature`): an arbitrary
//! header value parses to a typed error or an unverified call, and a call
//! whose claims are arbitrary bytes under a genuine signature is checked
//! against the received request without panicking.
//!
//! Input: the first byte picks the mode; the signed mode signs the rest as
//! the claims.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_auth::{OrgSigningKey, PeerPublicKey, ReceivedCall, UnverifiedCall};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    key: OrgSigningKey,
    keys: Vec<PeerPublicKey>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = OrgSigningKey::generate().expect("the system RNG works");
        let keys = vec![PeerPublicKey::from_jwk(&key.public_jwk()).expect("our own JWK parses")];
        Fixture { key, keys }
    })
}

fn received() -> ReceivedCall<'static> {
    ReceivedCall {
        method: "POST",
        path_and_query: "/agents/db",
        body: b"{}",
        audience: "b.example",
        now: 1_800_000_000,
        window_seconds: 60,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let header = serde_json::json!({
            "alg": "EdDSA",
            "kid": fixture.key.kid(),
            "typ": "convergio-call+jws",
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(rest)
        );
        let signature = fixture.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    if let Ok(call) = UnverifiedCall::parse(&token) {
        let _ = call.issuer();
        let _ = call.verify(&fixture.keys, &received());
    }
});
