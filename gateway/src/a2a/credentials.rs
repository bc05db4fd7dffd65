//! The credentials the gateway presents to upstreams, by agent name, as one
//! live set: clones share it, and a configuration reload (issue 22)
//! replaces it whole. The upstream client ([`super::client`]) holds the same
//! set and rebuilds the connection pools of agents with TLS settings of
//! their own when the set it built them from has been replaced.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::UpstreamCredential;

/// Every agent's upstream credential; see the module doc.
///
/// Building a set ([`UpstreamCredentials::insert`]) gives the built value a
/// set of its own, so a set built from a clone never changes the original;
/// [`UpstreamCredentials::replace`] changes the set every clone reads.
#[derive(Clone, Default)]
pub struct UpstreamCredentials {
    set: Arc<ArcSwap<HashMap<String, UpstreamCredential>>>,
}

// === impl UpstreamCredentials ===

impl UpstreamCredentials {
    /// A set of its own holding `credentials`.
    pub fn new(credentials: HashMap<String, UpstreamCredential>) -> Self {
        Self {
            set: Arc::new(ArcSwap::from_pointee(credentials)),
        }
    }

    /// Adds (or replaces) `agent`'s credential in this value's set (see the
    /// type's doc); returns the one it had.
    pub fn insert(
        &mut self,
        agent: String,
        credential: UpstreamCredential,
    ) -> Option<UpstreamCredential> {
        let mut credentials = HashMap::clone(&self.set.load());
        let previous = credentials.insert(agent, credential);
        *self = Self::new(credentials);
        previous
    }

    /// Makes this set, and every clone of it, hold exactly what `other`
    /// holds now.
    pub fn replace(&self, other: &UpstreamCredentials) {
        self.set.store(other.set.load_full());
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<HashMap<String, UpstreamCredential>> {
        self.set.load_full()
    }
}

impl From<HashMap<String, UpstreamCredential>> for UpstreamCredentials {
    fn from(credentials: HashMap<String, UpstreamCredential>) -> Self {
        Self::new(credentials)
    }
}

impl PartialEq for UpstreamCredentials {
    fn eq(&self, other: &Self) -> bool {
        *self.set.load() == *other.set.load()
    }
}

impl std::fmt::Debug for UpstreamCredentials {
    // `UpstreamCredential`'s own Debug never prints a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.set.load().iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> UpstreamCredential {
        UpstreamCredential {
            bearer_token: Some(token.to_owned()),
            ..UpstreamCredential::default()
        }
    }

    #[test]
    fn a_replaced_set_reaches_every_clone_but_not_sets_built_from_it() {
        let shared = UpstreamCredentials::default();
        let clone = shared.clone();
        let mut built = shared.clone();
        built.insert("a".to_owned(), bearer("one"));
        assert!(clone.current().is_empty());
        shared.replace(&UpstreamCredentials::new(HashMap::from([(
            "b".to_owned(),
            bearer("two"),
        )])));
        assert!(clone.current().contains_key("b"), "the clone follows");
        assert!(!built.current().contains_key("b"), "a built set is its own");
        assert!(format!("{shared:?}").contains("<redacted>"));
    }
}
