//! [`FederationCardKeys`]: the registry's [`OrgKeys`] when federation is on.
//! This organisation's own key verifies the cards it signed; each approved
//! peer's keys verify the cards of that peer's organisation (synced ones),
//! so a card is `verified` exactly when its owning organisation signed it.
//!
//! The registry asks synchronously, so peers' keys are a snapshot: set for a
//! peer whenever its catalogue is synced (the only way cards of a peer's
//! organisation enter this registry), and replaced, not merged, so a key the
//! administrator removed stops verifying at the next sync.

use std::collections::HashMap;
use std::sync::RwLock;

use convergio_auth::card_signature::CardKey;
use convergio_auth::{OrgSigningKey, PeerPublicKey, VerifyingKey};
use convergio_registry::OrgKeys;

/// Card-verification keys by organisation domain.
#[derive(Debug, Default)]
pub struct FederationCardKeys {
    /// This organisation's domains (org domain and federation domain).
    local: HashMap<String, Vec<CardKey>>,
    /// Approved keys of each peer, as of its last sync.
    peers: RwLock<HashMap<String, Vec<CardKey>>>,
}

// === impl FederationCardKeys ===

impl FederationCardKeys {
    /// Keys where `key` verifies the cards of every domain in `local`.
    pub fn new<'a>(key: &OrgSigningKey, local: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            local: local
                .into_iter()
                .map(|domain| (domain.trim().to_ascii_lowercase(), vec![key.card_key()]))
                .collect(),
            peers: RwLock::default(),
        }
    }

    /// Replaces the keys that verify the cards of peer `domain`.
    pub fn set_peer(&self, domain: &str, approved: &[PeerPublicKey]) {
        let keys = approved
            .iter()
            .map(|key| CardKey::new(key.kid.clone(), VerifyingKey::Ed25519(key.key.clone())))
            .collect();
        if let Ok(mut peers) = self.peers.write() {
            peers.insert(domain.to_ascii_lowercase(), keys);
        }
    }
}

impl OrgKeys for FederationCardKeys {
    fn keys_for(&self, org: &str) -> Vec<CardKey> {
        if let Some(keys) = self.local.get(org) {
            return keys.clone();
        }
        self.peers
            .read()
            .ok()
            .and_then(|peers| peers.get(org).cloned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_domains_use_the_own_key_and_peers_their_last_synced_keys() {
        let own = OrgSigningKey::generate().expect("key");
        let keys = FederationCardKeys::new(&own, ["a.example", "A.Example"]);
        assert_eq!(keys.keys_for("a.example"), vec![own.card_key()]);
        assert!(keys.keys_for("b.example").is_empty());
        let peer = OrgSigningKey::generate().expect("key");
        let public = PeerPublicKey::from_jwk(&peer.public_jwk()).expect("jwk");
        keys.set_peer("B.example", std::slice::from_ref(&public));
        assert_eq!(keys.keys_for("b.example"), vec![peer.card_key()]);
        keys.set_peer("b.example", &[]);
        assert!(
            keys.keys_for("b.example").is_empty(),
            "replaced, not merged"
        );
    }
}
