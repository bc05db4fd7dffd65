//! Secrets sealed at rest (issue 17): an organisation's provider keys are
//! stored as ChaCha20-Poly1305 ciphertext under the deployment's
//! [`SecretsKey`], with `ring`'s AEAD (already this crate's cryptography, so
//! no second implementation of the primitive enters the build).
//!
//! Each seal draws a fresh random 96-bit nonce and binds the ciphertext to
//! its row with the associated data `org \0 name`: a sealed value copied to
//! another organisation's or name's row does not open. A value in clear is
//! only ever a [`SecretValue`], whose `Debug` prints a placeholder and which
//! has no `Display`, so it cannot reach a log line or an error message by
//! formatting.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use convergio_schemas::ErrorKind;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;

/// Why sealing or opening failed. Never carries key or value material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretBoxError {
    /// The configured key is not base64 of exactly 32 bytes.
    #[error("the secrets key must be base64 of exactly 32 bytes")]
    BadKey,
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// The ciphertext does not open with this key for this row: another
    /// key sealed it, or it was changed.
    #[error("a stored secret does not open with this deployment's secrets key")]
    DoesNotOpen,
    /// The opened value is not UTF-8 text.
    #[error("a stored secret is not text")]
    NotText,
}

// === impl SecretBoxError ===

impl SecretBoxError {
    /// How a client sees it: always an internal failure (the detail is for
    /// the server's log).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

/// A secret value in clear: printed as `SecretValue(***)`, never itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

// === impl SecretValue ===

impl SecretValue {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it (a provider request header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// A value sealed for one row.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext followed by its tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The deployment's key for secrets at rest.
pub struct SecretsKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(***)")
    }
}

// === impl SecretsKey ===

impl SecretsKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretBoxError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretBoxError::BadKey);
        }
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SecretBoxError::BadKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        })
    }

    /// The key from base64 text (surrounding whitespace ignored), as
    /// `CONVERGIO_SECRETS_KEY` and the `secrets.key` file hold it.
    pub fn from_base64(text: &str) -> Result<Self, SecretBoxError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretBoxError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// A new random key and its base64 text (to store, owner-only).
    pub fn generate() -> Result<(Self, String), SecretBoxError> {
        let mut bytes = [0_u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretBoxError::Random)?;
        let text = STANDARD.encode(bytes);
        Ok((Self::from_bytes(&bytes)?, text))
    }

    /// Seals `value` for the row `(org, name)`.
    pub fn seal(
        &self,
        org: &str,
        name: &str,
        value: &SecretValue,
    ) -> Result<Sealed, SecretBoxError> {
        let mut nonce = [0_u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SecretBoxError::Random)?;
        let mut in_out = value.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row_binding(org, name)),
                &mut in_out,
            )
            .map_err(|_| SecretBoxError::Random)?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext: in_out,
        })
    }

    /// Opens what [`SecretsKey::seal`] sealed for the row `(org, name)`.
    pub fn open(
        &self,
        org: &str,
        name: &str,
        sealed: &Sealed,
    ) -> Result<SecretValue, SecretBoxError> {
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| SecretBoxError::DoesNotOpen)?;
        let mut in_out = sealed.ciphertext.clone();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row_binding(org, name)),
                &mut in_out,
            )
            .map_err(|_| SecretBoxError::DoesNotOpen)?;
        let text = std::str::from_utf8(plain).map_err(|_| SecretBoxError::NotText)?;
        Ok(SecretValue::new(text))
    }
}

/// The associated data binding a ciphertext to its row.
fn row_binding(org: &str, name: &str) -> Vec<u8> {
    let mut binding = Vec::with_capacity(org.len() + name.len() + 1);
    binding.extend_from_slice(org.as_bytes());
    binding.push(0);
    binding.extend_from_slice(name.as_bytes());
    binding
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_for_the_same_row_only() {
        let (key, text) = SecretsKey::generate().expect("random works");
        let value = SecretValue::new("sk-test-0123456789");
        let sealed = key.seal("acme.example", "openai", &value).expect("seals");
        assert!(!sealed
            .ciphertext
            .windows(value.expose().len())
            .any(|window| window == value.expose().as_bytes()));
        assert_eq!(
            key.open("acme.example", "openai", &sealed).expect("opens"),
            value
        );
        for (org, name) in [("other.example", "openai"), ("acme.example", "anthropic")] {
            assert_eq!(
                key.open(org, name, &sealed),
                Err(SecretBoxError::DoesNotOpen)
            );
        }
        let again = SecretsKey::from_base64(&format!(" {text}\n")).expect("the key reads back");
        assert_eq!(
            again
                .open("acme.example", "openai", &sealed)
                .expect("opens"),
            value
        );
        let (other, _) = SecretsKey::generate().expect("random works");
        assert_eq!(
            other.open("acme.example", "openai", &sealed),
            Err(SecretBoxError::DoesNotOpen)
        );
        let mut changed = sealed.clone();
        changed.ciphertext[0] ^= 1;
        assert_eq!(
            key.open("acme.example", "openai", &changed),
            Err(SecretBoxError::DoesNotOpen)
        );
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let (key, _) = SecretsKey::generate().expect("random works");
        let value = SecretValue::new("same");
        let first = key.seal("a.example", "n", &value).expect("seals");
        let second = key.seal("a.example", "n", &value).expect("seals");
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn nothing_prints_the_value_or_the_key() {
        let (key, text) = SecretsKey::generate().expect("random works");
        let value = SecretValue::new("sk-live-very-secret");
        let sealed = key.seal("a.example", "n", &value).expect("seals");
        let printed = format!("{value:?} {key:?} {sealed:?}");
        assert!(!printed.contains("sk-live-very-secret"), "{printed}");
        assert!(!printed.contains(&text), "{printed}");
    }

    #[test]
    fn refuses_keys_of_the_wrong_size() {
        for text in ["", "not base64!", "AAAA", &STANDARD.encode([0_u8; 31])] {
            assert!(SecretsKey::from_base64(text).is_err(), "{text:?}");
        }
        assert!(SecretsKey::from_base64(&STANDARD.encode([7_u8; 32])).is_ok());
    }
}
