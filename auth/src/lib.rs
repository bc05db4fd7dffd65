//! Credential verification for the gateway's `Authenticate` layer: bearer
//! JWTs checked with `ring` against a JWKS, API keys stored hashed, and TLS
//! client certificates. Each yields one typed
//! [`Principal`](convergio_schemas::Principal). Federation adds the
//! organisation's signing key ([`org_key`]) and signed cross-organisation
//! calls ([`peer_call`]). Also A2A agent card signatures (JCS + detached
//! JWS), signed and verified. And [`secret_box`]: organisations' secrets
//! sealed at rest (issue 17). And [`plugin_signature`]: WebAssembly plugins
//! signed like cards, over their SHA-256 (issue 21).
//!
//! Pure and synchronous: no sockets, no HTTP. Key sets are handed in (from a
//! file, or fetched by the gateway), so the crate tests quickly and the
//! gateway decides about I/O.

pub mod api_key;
pub mod card_signature;
pub mod error;
pub mod jwt;
pub mod mtls;
pub mod org_key;
pub mod peer_call;
pub mod plugin_signature;
pub mod secret_box;

pub use api_key::{constant_time_eq, ApiKeyRecord, ApiKeys, IssuedApiKey};
pub use api_key::{
    generate as generate_api_key, key_id as api_key_id, verify_record as verify_api_key_record,
};
pub use card_signature::{
    sign_card, verify_card, CardCheck, CardKey, CardSigner, Ed25519CardSigner,
};
pub use error::AuthError;
pub use jwt::{Algorithm, JwtConfig, JwtVerifier, KeySet, VerifyingKey};
pub use mtls::{principal_from_certificate, MtlsConfig};
pub use org_key::{OrgSigningKey, PeerPublicKey};
pub use peer_call::{sign_call, PeerCallClaims, ReceivedCall, UnverifiedCall};
pub use secret_box::{SecretBoxError, SecretValue, SecretsKey};
