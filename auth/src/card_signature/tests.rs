//! Card signature tests: the a2a-sdk fixture, JCS vectors from RFC 8785,
//! each algorithm, tampering, key rotation, expiry and revocation.

use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Value};

use super::*;

const NOW: u64 = 1_800_000_000;

fn fixture() -> Value {
    serde_json::from_str(include_str!(
        "../../tests/fixtures/signed-card.example.json"
    ))
    .expect("fixture is JSON")
}

fn fixture_key() -> CardKey {
    CardKey::from_jwk(&fixture()["public_jwk"]).expect("fixture key")
}

fn ed25519_signer(kid: &str) -> Ed25519CardSigner {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed25519 key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519 key");
    Ed25519CardSigner::new(Arc::new(pair), kid)
}

fn ed25519_key(signer: &Ed25519CardSigner) -> CardKey {
    CardKey::from_jwk(&signer.public_jwk()).expect("own jwk parses")
}

/// ES256 and RS256 signers, to prove the trait is not Ed25519-only.
struct EcdsaSigner(EcdsaKeyPair);
struct RsaSigner(RsaKeyPair);

impl CardSigner for EcdsaSigner {
    fn kid(&self) -> &str {
        "ec-1"
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Es256
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0
            .sign(&SystemRandom::new(), message)
            .expect("sign")
            .as_ref()
            .to_vec()
    }
}

impl CardSigner for RsaSigner {
    fn kid(&self) -> &str {
        "rsa-1"
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Rs256
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut out,
            )
            .expect("sign");
        out
    }
}

fn card() -> Value {
    json!({
        "name": "db", "description": "answers questions about the database", "version": "1.0.0",
        "supportedInterfaces": [{"url": "https://db.acme.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": true, "extensions": []},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "sql", "name": "SQL", "description": "", "tags": ["db"], "examples": []}],
        "iconUrl": "",
    })
}

#[test]
fn canonical_form_of_the_sdk_fixture_matches_the_sdk() {
    let fixture = fixture();
    let canonical = signing_payload(&fixture["card"]).expect("object");
    assert_eq!(canonical, fixture["canonical"].as_str().expect("string"));
}

#[test]
fn verifies_the_sdk_signed_es256_fixture() {
    let fixture = fixture();
    assert_eq!(
        verify_card(&fixture["card"], &[fixture_key()], NOW),
        CardCheck::Verified {
            kid: "echo-key-1".to_owned(),
            alg: Algorithm::Es256
        }
    );
}

#[test]
fn refuses_a_tampered_fixture() {
    let mut card = fixture()["card"].clone();
    card["supportedInterfaces"][0]["url"] = json!("http://evil.example/");
    assert_eq!(
        verify_card(&card, &[fixture_key()], NOW),
        CardCheck::Invalid {
            reason: AuthError::BadSignature
        }
    );
    // Adding a field is tampering too; dropping an empty one is not.
    let mut added = fixture()["card"].clone();
    added["iconUrl"] = json!("http://evil.example/icon.png");
    assert!(matches!(
        verify_card(&added, &[fixture_key()], NOW),
        CardCheck::Invalid { .. }
    ));
    let mut empty = fixture()["card"].clone();
    empty["documentationUrl"] = json!("");
    empty["securitySchemes"] = json!({});
    assert!(matches!(
        verify_card(&empty, &[fixture_key()], NOW),
        CardCheck::Verified { .. }
    ));
}

#[test]
fn signs_and_verifies_with_each_algorithm() {
    let rng = SystemRandom::new();
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("p256 key");
    let ec = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec_pkcs8.as_ref(),
        &rng,
    )
    .expect("p256 key");
    let point = ec.public_key().as_ref().to_vec();
    let ec_key = CardKey::new("ec-1", VerifyingKey::P256(point));
    let rsa = RsaKeyPair::from_pkcs8(include_bytes!("../../tests/fixtures/rsa-pkcs8.der"))
        .expect("rsa fixture");
    let rsa_jwk: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/rsa-public.jwk.json"))
            .expect("rsa jwk");
    let rsa_key = CardKey::from_jwk(&rsa_jwk).expect("rsa key");
    let ed = ed25519_signer("ed-1");
    let keys = vec![ec_key, rsa_key, ed25519_key(&ed)];
    let signers: Vec<(Box<dyn CardSigner>, Algorithm)> = vec![
        (Box::new(EcdsaSigner(ec)), Algorithm::Es256),
        (Box::new(RsaSigner(rsa)), Algorithm::Rs256),
        (Box::new(ed), Algorithm::EdDsa),
    ];
    for (signer, alg) in signers {
        let signed = sign_card(&card(), signer.as_ref()).expect("object");
        assert_eq!(
            verify_card(&signed, &keys, NOW),
            CardCheck::Verified {
                kid: signer.kid().to_owned(),
                alg
            }
        );
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(signed["signatures"][0]["protected"].as_str().expect("str"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["typ"], json!("JOSE"));
        let mut tampered = signed.clone();
        tampered["description"] = json!("something else");
        assert_eq!(
            verify_card(&tampered, &keys, NOW),
            CardCheck::Invalid {
                reason: AuthError::BadSignature
            }
        );
    }
}

#[test]
fn signing_replaces_earlier_signatures() {
    let signer = ed25519_signer("gw-1");
    let mut card = card();
    card["signatures"] = json!([{"protected": "eA", "signature": "eA"}]);
    let signed = sign_card(&card, &signer).expect("object");
    assert_eq!(signed["signatures"].as_array().map(Vec::len), Some(1));
    assert!(matches!(
        verify_card(&signed, &[ed25519_key(&signer)], NOW),
        CardCheck::Verified { .. }
    ));
    assert!(sign_card(&json!([1]), &signer).is_err());
}

#[test]
fn any_valid_signature_from_a_known_key_suffices() {
    let old = ed25519_signer("old");
    let new = ed25519_signer("new");
    let stranger = ed25519_signer("stranger");
    let by_new = sign_card(&card(), &new).expect("object");
    let by_stranger = sign_card(&card(), &stranger).expect("object");
    let by_old = sign_card(&card(), &old).expect("object");
    let mut card = card();
    card["signatures"] = json!([
        by_stranger["signatures"][0],
        {"protected": by_old["signatures"][0]["protected"], "signature": by_new["signatures"][0]["signature"]},
        by_new["signatures"][0],
    ]);
    let keys = [ed25519_key(&old), ed25519_key(&new)];
    assert_eq!(
        verify_card(&card, &keys, NOW),
        CardCheck::Verified {
            kid: "new".to_owned(),
            alg: Algorithm::EdDsa
        }
    );
    // Without the new key, the one signature we can check fails.
    assert_eq!(
        verify_card(&card, &keys[..1], NOW),
        CardCheck::Invalid {
            reason: AuthError::BadSignature
        }
    );
}

#[test]
fn expired_revoked_and_unknown_keys_cannot_verify() {
    let signer = ed25519_signer("k1");
    let signed = sign_card(&card(), &signer).expect("object");
    let mut expired = ed25519_key(&signer);
    expired.not_after = Some(NOW - 1);
    let mut revoked = ed25519_key(&signer);
    revoked.revoked = true;
    let mut current = ed25519_key(&signer);
    current.not_after = Some(NOW);
    let cases = [
        (
            vec![expired],
            CardCheck::Unverifiable {
                reason: AuthError::KeyExpired { kid: "k1".into() },
            },
        ),
        (
            vec![revoked],
            CardCheck::Unverifiable {
                reason: AuthError::KeyRevoked { kid: "k1".into() },
            },
        ),
        (
            vec![],
            CardCheck::Unverifiable {
                reason: AuthError::UnknownKey { kid: "k1".into() },
            },
        ),
        (
            vec![current],
            CardCheck::Verified {
                kid: "k1".into(),
                alg: Algorithm::EdDsa,
            },
        ),
    ];
    for (keys, expected) in cases {
        assert_eq!(verify_card(&signed, &keys, NOW), expected);
    }
}

#[test]
fn unsigned_malformed_and_mismatched_signatures_are_told_apart() {
    let signer = ed25519_signer("k1");
    let keys = [ed25519_key(&signer)];
    assert_eq!(verify_card(&card(), &keys, NOW), CardCheck::Unsigned);
    let mut empty = card();
    empty["signatures"] = json!([]);
    assert_eq!(verify_card(&empty, &keys, NOW), CardCheck::Unsigned);
    let header = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let check = |signatures: Value| {
        let mut card = card();
        card["signatures"] = signatures;
        verify_card(&card, &keys, NOW)
    };
    let invalid = [
        json!("not a list"),
        json!([{"signature": "eA"}]),
        json!([{"protected": "%%%", "signature": "eA"}]),
        json!([{"protected": header(json!({"alg": "EdDSA", "kid": "k1"})), "signature": "not base64!"}]),
        json!([{"protected": header(json!({"alg": "ES256", "kid": "k1"})), "signature": "eA"}]),
    ];
    for signatures in invalid {
        assert!(
            matches!(check(signatures.clone()), CardCheck::Invalid { .. }),
            "{signatures}"
        );
    }
    let unverifiable = [
        json!([{"protected": header(json!({"alg": "HS256", "kid": "k1"})), "signature": "eA"}]),
        json!([{"protected": header(json!({"alg": "none", "kid": "k1"})), "signature": ""}]),
        json!([{"protected": header(json!({"alg": "EdDSA"})), "signature": "eA"}]),
        json!([{"protected": header(json!({"alg": "EdDSA", "kid": "k1", "crit": ["x"]})), "signature": "eA"}]),
    ];
    for signatures in unverifiable {
        assert!(
            matches!(check(signatures.clone()), CardCheck::Unverifiable { .. }),
            "{signatures}"
        );
    }
}

#[test]
fn drops_empty_values_recursively() {
    let value = json!({"a": "", "b": [], "c": {}, "d": {"e": [""], "f": [{}]}, "g": [0, false, null, "", "x"], "h": 0});
    assert_eq!(
        drop_empty(&value),
        Some(json!({"g": [0, false, null, "x"], "h": 0}))
    );
    assert_eq!(drop_empty(&json!({"a": {"b": ""}})), None);
}

#[test]
fn canonicalises_the_rfc_8785_example() {
    let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]}"#;
    let value: Value = serde_json::from_str(input).expect("json");
    assert_eq!(
        canonical_json(&value),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

#[test]
fn sorts_keys_by_utf16_code_units() {
    let input = r#"{"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\ud83d\ude00": 5, "\u0080": 6, "\u00f6": 7}"#;
    let value: Value = serde_json::from_str(input).expect("json");
    assert_eq!(
        canonical_json(&value),
        "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"\u{f6}\":7,\"\u{20ac}\":1,\"\u{1f600}\":5,\"\u{fb33}\":3}"
    );
}

#[test]
fn formats_numbers_as_ecmascript_does() {
    let cases = [
        ("0", "0"),
        ("-0.0", "0"),
        ("1", "1"),
        ("-17", "-17"),
        ("1.5", "1.5"),
        ("-0.25", "-0.25"),
        ("100", "100"),
        ("1e2", "100"),
        ("1e20", "100000000000000000000"),
        ("1e21", "1e+21"),
        ("1.5e21", "1.5e+21"),
        ("0.000001", "0.000001"),
        ("1e-7", "1e-7"),
        ("-1.25e-7", "-1.25e-7"),
        ("123.456", "123.456"),
        ("9007199254740992", "9007199254740992"),
        ("9007199254740993", "9007199254740992"),
        ("295147905179352830000", "295147905179352830000"),
        ("18446744073709551615", "18446744073709552000"),
        ("-9223372036854775808", "-9223372036854776000"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ];
    for (input, expected) in cases {
        let value: Value = serde_json::from_str(input).expect("number");
        assert_eq!(canonical_json(&value), expected, "{input}");
    }
}

#[test]
fn key_parsing_refuses_bad_jwks() {
    for jwk in [
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "AAAA"}),
        json!({"kty": "oct", "kid": "a", "k": "AAAA"}),
        json!("not an object"),
    ] {
        assert!(CardKey::from_jwk(&jwk).is_err(), "{jwk}");
    }
}
