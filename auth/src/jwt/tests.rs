//! JWT verification: every accepted algorithm, and every forgery the issue
//! names (expired, not yet valid, wrong audience, `alg: none`, HMAC keyed
//! with the public key, unknown `kid`, tampered payload).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use convergio_schemas::ErrorKind;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use super::*;

const NOW: u64 = 1_800_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn config() -> JwtConfig {
    JwtConfig {
        issuer: "https://idp.acme.example".to_owned(),
        audience: "convergio".to_owned(),
        ..JwtConfig::default()
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://idp.acme.example",
        "aud": "convergio",
        "sub": "alice",
        "org": "acme.example",
        "scope": "agents:read agents:call",
        "exp": NOW + 300,
        "nbf": NOW - 10,
    })
}

/// Keys for the three algorithms, with their JWKS.
struct Keys {
    ed25519: Ed25519KeyPair,
    p256: EcdsaKeyPair,
    rsa: RsaKeyPair,
    set: KeySet,
    rsa_public: Vec<u8>,
}

fn keys() -> Keys {
    let rng = SystemRandom::new();
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
    let ed25519 = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).expect("ed25519 key");
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("p256 key");
    let p256 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec_pkcs8.as_ref(),
        &rng,
    )
    .expect("p256 key");
    let rsa = RsaKeyPair::from_pkcs8(include_bytes!("../../tests/fixtures/rsa-pkcs8.der"))
        .expect("rsa fixture");
    let rsa_jwk: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/rsa-public.jwk.json"))
            .expect("rsa jwk fixture");
    let point = p256.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(ed25519.public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        rsa_jwk,
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"},
    ]});
    let set = KeySet::from_jwks(&jwks.to_string()).expect("valid jwks");
    Keys {
        ed25519,
        p256,
        rsa,
        set,
        rsa_public: point,
    }
}

fn encode(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn sign(keys: &Keys, alg: &str, kid: &str, claims: &Value) -> String {
    let signing_input = encode(&json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims);
    let rng = SystemRandom::new();
    let signature_bytes = match alg {
        "EdDSA" => keys
            .ed25519
            .sign(signing_input.as_bytes())
            .as_ref()
            .to_vec(),
        "ES256" => keys
            .p256
            .sign(&rng, signing_input.as_bytes())
            .expect("sign")
            .as_ref()
            .to_vec(),
        "RS256" => {
            let mut out = vec![0; keys.rsa.public().modulus_len()];
            keys.rsa
                .sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input.as_bytes(),
                    &mut out,
                )
                .expect("sign");
            out
        }
        other => panic!("test helper cannot sign {other}"),
    };
    format!("{signing_input}.{}", b64(&signature_bytes))
}

fn verifier(keys: &Keys) -> JwtVerifier {
    let verifier = JwtVerifier::new(config());
    verifier.install(&keys.set);
    verifier
}

#[test]
fn accepts_each_algorithm_and_builds_the_principal() {
    let keys = keys();
    let verifier = verifier(&keys);
    assert_eq!(keys.set.len(), 3, "the encryption key is skipped");
    for (alg, kid) in [("EdDSA", "ed-1"), ("ES256", "ec-1"), ("RS256", "rsa-1")] {
        let token = sign(&keys, alg, kid, &claims());
        let principal = verifier.verify(&token, NOW).expect(alg);
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.org.as_deref(), Some("acme.example"));
        assert_eq!(principal.scopes, ["agents:read", "agents:call"]);
        assert_eq!(principal.method, AuthMethod::Jwt);
    }
    assert_eq!(keys.rsa_public.len(), 65);
}

#[test]
fn rejects_expired_not_yet_valid_and_wrong_audience_or_issuer() {
    let keys = keys();
    let verifier = verifier(&keys);
    let cases = [
        ("exp", json!(NOW - 31), AuthError::Expired),
        ("nbf", json!(NOW + 31), AuthError::NotYetValid),
        ("aud", json!("someone-else"), AuthError::WrongAudience),
        ("aud", json!(["a", "b"]), AuthError::WrongAudience),
        ("iss", json!("https://evil.example"), AuthError::WrongIssuer),
    ];
    for (claim, value, expected) in cases {
        let mut bad = claims();
        bad[claim] = value;
        let token = sign(&keys, "EdDSA", "ed-1", &bad);
        assert_eq!(verifier.verify(&token, NOW), Err(expected), "{claim}");
    }
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    let token = sign(&keys, "EdDSA", "ed-1", &no_exp);
    assert_eq!(verifier.verify(&token, NOW), Err(AuthError::Expired));
}

#[test]
fn tolerates_clock_skew_within_the_leeway() {
    let keys = keys();
    let verifier = verifier(&keys);
    let mut skewed = claims();
    skewed["exp"] = json!(NOW - 20);
    skewed["nbf"] = json!(NOW + 20);
    let token = sign(&keys, "ES256", "ec-1", &skewed);
    assert!(verifier.verify(&token, NOW).is_ok());
}

#[test]
fn rejects_alg_none_and_hmac_with_the_public_key() {
    let keys = keys();
    let verifier = verifier(&keys);
    let unsigned = format!(
        "{}.",
        encode(&json!({"alg": "none", "kid": "ed-1"}), &claims())
    );
    assert!(matches!(
        verifier.verify(&unsigned, NOW),
        Err(AuthError::UnsupportedAlgorithm { .. })
    ));
    // The classic confusion attack: HS256 keyed with the RSA public key bytes.
    let input = encode(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &keys.rsa_public);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    let forged = format!("{input}.{}", b64(tag.as_ref()));
    assert_eq!(
        verifier.verify(&forged, NOW),
        Err(AuthError::UnsupportedAlgorithm {
            alg: "HS256".to_owned()
        })
    );
}

#[test]
fn rejects_unknown_kid_key_mismatch_and_tampering() {
    let keys = keys();
    let verifier = verifier(&keys);
    let token = sign(&keys, "EdDSA", "ed-9", &claims());
    assert_eq!(
        verifier.verify(&token, NOW),
        Err(AuthError::UnknownKey {
            kid: "ed-9".to_owned()
        })
    );
    // An Ed25519 signature presented as RS256 under the RSA kid.
    let token = sign(&keys, "EdDSA", "ed-1", &claims());
    let swapped_header = b64(json!({"alg": "RS256", "kid": "ed-1"})
        .to_string()
        .as_bytes());
    let rest = token.split_once('.').map(|(_, rest)| rest).unwrap_or("");
    assert!(matches!(
        verifier.verify(&format!("{swapped_header}.{rest}"), NOW),
        Err(AuthError::KeyMismatch { .. })
    ));
    // Payload changed after signing.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut escalated = claims();
    escalated["sub"] = json!("root");
    parts[1] = b64(escalated.to_string().as_bytes());
    assert_eq!(
        verifier.verify(&parts.join("."), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn rejects_malformed_tokens_without_panicking() {
    let keys = keys();
    let verifier = verifier(&keys);
    let huge = "a".repeat(10_000);
    for token in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        huge.as_str(),
        "e30.e30.e30",
    ] {
        assert!(verifier.verify(token, NOW).is_err(), "{token:.20}");
    }
}

#[test]
fn rotation_removes_keys_that_left_the_set() {
    let keys = keys();
    let verifier = verifier(&keys);
    let token = sign(&keys, "EdDSA", "ed-1", &claims());
    assert!(verifier.verify(&token, NOW).is_ok());
    verifier.install(&KeySet::default());
    assert!(!verifier.knows("ed-1"));
    assert!(matches!(
        verifier.verify(&token, NOW),
        Err(AuthError::UnknownKey { .. })
    ));
}

#[test]
fn rejects_bad_key_sets_at_load_time() {
    for jwks in [
        "not json",
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}"#,
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]}"#,
        r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#,
        r#"{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]}"#,
    ] {
        assert!(KeySet::from_jwks(jwks).is_err(), "{jwks}");
    }
}

// Regression: issue #15, defect 5.
#[test]
fn rejects_tokens_without_a_subject() {
    let keys = keys();
    let verifier = verifier(&keys);
    let missing = AuthError::MissingSubject {
        claim: "sub".to_owned(),
    };
    for sub in [None, Some(json!("")), Some(json!("  ")), Some(json!(42))] {
        let mut claims = claims();
        match &sub {
            Some(value) => claims["sub"] = value.clone(),
            None => {
                claims.as_object_mut().expect("object").remove("sub");
            }
        }
        let token = sign(&keys, "EdDSA", "ed-1", &claims);
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(missing.clone()),
            "sub {sub:?}"
        );
    }
    assert_eq!(missing.kind(), ErrorKind::Unauthenticated);
}

// Regression: issue #15, defect 5.
#[test]
fn takes_the_subject_from_the_configured_claim() {
    let keys = keys();
    let verifier = JwtVerifier::new(JwtConfig {
        subject_claim: "client_id".to_owned(),
        ..config()
    });
    verifier.install(&keys.set);
    let mut client_claims = claims();
    client_claims.as_object_mut().expect("object").remove("sub");
    client_claims["client_id"] = json!("billing-service");
    let token = sign(&keys, "EdDSA", "ed-1", &client_claims);
    let principal = verifier
        .verify(&token, NOW)
        .expect("client_id names the caller");
    assert_eq!(principal.subject, "billing-service");
    // With client_id configured, a token carrying only `sub` names no caller.
    let only_sub = sign(&keys, "EdDSA", "ed-1", &claims());
    assert_eq!(
        verifier.verify(&only_sub, NOW),
        Err(AuthError::MissingSubject {
            claim: "client_id".to_owned()
        })
    );
}
