//! The trust ladder and the agent roles of the design document.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How far Convergio trusts an agent, lowest first. The order is meaningful:
/// policies compare levels (`min_trust`), and raising a level has rules that
/// the registry enforces (see ARCHITECTURE.md, "Trust ladder").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    /// Known to exist; nothing is vouched for. Quarantined by default policy.
    Untrusted,
    /// Registered by an authenticated caller; the default for new agents.
    Registered,
    /// The card carries a valid signature by the owning organisation's key.
    Verified,
    /// An administrator vouches for the agent.
    Trusted,
    /// Operated by this deployment itself (e.g. the example agents).
    Internal,
}

/// A trust level name that is not on the ladder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown trust level {0:?}: expected one of untrusted, registered, verified, trusted, internal"
)]
pub struct UnknownTrustLevel(pub String);

// === impl TrustLevel ===

impl TrustLevel {
    /// Every level, lowest first.
    pub const ALL: [TrustLevel; 5] = [
        Self::Untrusted,
        Self::Registered,
        Self::Verified,
        Self::Trusted,
        Self::Internal,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Untrusted => "untrusted",
            Self::Registered => "registered",
            Self::Verified => "verified",
            Self::Trusted => "trusted",
            Self::Internal => "internal",
        }
    }

    /// The level's rank (0 = untrusted), as stored for range queries.
    pub fn rank(self) -> i16 {
        self as i16
    }

    /// The level with the given rank, if any.
    pub fn from_rank(rank: i64) -> Option<Self> {
        usize::try_from(rank)
            .ok()
            .and_then(|index| Self::ALL.get(index).copied())
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrustLevel {
    type Err = UnknownTrustLevel;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == text)
            .ok_or_else(|| UnknownTrustLevel(text.to_owned()))
    }
}

/// The agent types of the design document, section 2.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    /// Executes a specific task.
    #[default]
    Worker,
    /// Coordinates other agents.
    Supervisor,
    /// Routes tasks to appropriate agents.
    Router,
    /// Decomposes goals into steps.
    Planner,
    /// Evaluates outputs.
    Critic,
}

/// A role name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of worker, supervisor, router, planner, critic")]
pub struct UnknownRole(pub String);

// === impl AgentRole ===

impl AgentRole {
    /// Every role.
    pub const ALL: [AgentRole; 5] = [
        Self::Worker,
        Self::Supervisor,
        Self::Router,
        Self::Planner,
        Self::Critic,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Supervisor => "supervisor",
            Self::Router => "router",
            Self::Planner => "planner",
            Self::Critic => "critic",
        }
    }
}

impl fmt::Display for AgentRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentRole {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_levels_are_ordered_and_round_trip() {
        assert!(TrustLevel::Untrusted < TrustLevel::Registered);
        assert!(TrustLevel::Trusted < TrustLevel::Internal);
        for level in TrustLevel::ALL {
            assert_eq!(level.as_str().parse::<TrustLevel>(), Ok(level));
            assert_eq!(TrustLevel::from_rank(level.rank().into()), Some(level));
        }
        assert!("superuser".parse::<TrustLevel>().is_err());
    }
}
