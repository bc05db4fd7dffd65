//! Capability grants (issue 21): the host functions beyond `log` and
//! `call_agent` that a plugin may import only when the version it runs was
//! uploaded declaring the grant, and the gateway's config allows it
//! (`plugins.allow_grants`, default none).
//!
//! | grant | host functions (module `convergio`) |
//! |---|---|
//! | `clock` | `clock_ms() -> i64`, `monotonic_ns() -> i64` |
//! | `random` | `random(ptr: i32, len: i32) -> i32` |
//! | `env` | `env(name_ptr: i32, name_len: i32) -> i64` |
//!
//! The filesystem and the network are not grantable, by design: a plugin
//! reaches other agents only through `call_agent`, which goes through the
//! gateway's own pipeline (authentication, policy, quotas, the SSRF guard,
//! audit), and files never. A socket or a file handle would be a way around
//! every one of those.
//!
//! The engine's one linker defines every host function, but a module
//! importing a grantable one without its grant is refused when it is loaded
//! ([`crate::runtime::PluginRuntime::load_granted`],
//! [`PluginError::ForbiddenImport`] naming the grant), so only a module
//! holding the grant is ever linked to it. A grant a module does not use
//! is harmless.
//!
//! The host functions themselves are defined in `runtime.rs`, beside `log`
//! and `call_agent`, since they read the call's state; this module holds the
//! grants and the parts that need none (so it imports nothing of the
//! runtime). Everything a module passes is checked: a negative pointer or length, a
//! range outside its memory or a length over the bound is answered with a
//! negative code (below), never a trap or a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// `clock_ms() -> i64`: wall-clock milliseconds since the Unix epoch.
pub const CLOCK_MS_IMPORT: &str = "clock_ms";
/// `monotonic_ns() -> i64`: nanoseconds since the call started (a
/// monotonic clock, for measuring; it includes time spent waiting in
/// `call_agent`).
pub const MONOTONIC_NS_IMPORT: &str = "monotonic_ns";
/// `random(ptr, len) -> i32`: fills `len` bytes at `ptr` from the
/// operating system's random source.
pub const RANDOM_IMPORT: &str = "random";
/// `env(name_ptr, name_len) -> i64`: a value of `plugins.env`.
pub const ENV_IMPORT: &str = "env";

/// Answer of `random` and `env`: a negative pointer or length, a range
/// outside the module's memory, or no `memory` export.
pub const HOST_BAD_RANGE: i32 = -1;
/// Answer of `random` and `env`: a length over the bound
/// ([`RANDOM_MAX_BYTES`], [`ENV_NAME_MAX_BYTES`]).
pub const HOST_TOO_LONG: i32 = -2;
/// Answer of `random`: the operating system's random source failed.
pub const HOST_UNAVAILABLE: i32 = -3;
/// Answer of `env`: `plugins.env` holds no such name.
pub const HOST_NOT_SET: i32 = -4;

/// The most bytes one `random` call fills (the host's work is not charged
/// to the module's fuel, so it is bounded here).
pub const RANDOM_MAX_BYTES: usize = 64 * 1024;
/// The longest name `env` looks up.
pub const ENV_NAME_MAX_BYTES: usize = 256;

/// A declared grant that is not one of [`Grant::ALL`]
/// ([`crate::PluginError::UnknownGrant`] wraps it: `UNKNOWN_GRANT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a grant: the grants are clock, random and env (files and the network are never granted)")]
pub struct UnknownGrant {
    /// The name declared (echoed safely).
    pub name: String,
}

/// One capability a plugin version may be granted.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// `clock_ms` and `monotonic_ns`.
    Clock,
    /// `random`.
    Random,
    /// `env`, reading `plugins.env` (never the process environment).
    Env,
}

// === impl Grant ===

impl Grant {
    /// Every grant, in the order they are shown.
    pub const ALL: [Self; 3] = [Self::Clock, Self::Random, Self::Env];

    /// `clock`, `random` or `env`, as declared, stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clock => "clock",
            Self::Random => "random",
            Self::Env => "env",
        }
    }

    /// The grant `text` names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|grant| grant.as_str() == text)
    }

    /// The host functions of [`crate::runtime::HOST_MODULE`] it opens.
    pub fn host_functions(self) -> &'static [&'static str] {
        match self {
            Self::Clock => &[CLOCK_MS_IMPORT, MONOTONIC_NS_IMPORT],
            Self::Random => &[RANDOM_IMPORT],
            Self::Env => &[ENV_IMPORT],
        }
    }

    /// The grant the host function `name` needs, if it is grantable.
    pub fn of_import(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|grant| grant.host_functions().contains(&name))
    }

    fn bit(self) -> u8 {
        match self {
            Self::Clock => 1,
            Self::Random => 2,
            Self::Env => 4,
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of grants (what a version declares, what a config allows).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Grants(u8);

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

// === impl Grants ===

impl Grants {
    /// No grant: `log` (and `call_agent` for agents) only.
    pub const NONE: Self = Self(0);

    /// Whether `grant` is in the set.
    pub fn contains(self, grant: Grant) -> bool {
        self.0 & grant.bit() != 0
    }

    /// The set with `grant` added.
    pub fn with(self, grant: Grant) -> Self {
        Self(self.0 | grant.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The grants in the set, in [`Grant::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Grant> {
        Grant::ALL
            .into_iter()
            .filter(move |grant| self.contains(*grant))
    }

    /// The grants of the set that `allowed` lacks (empty: every one is
    /// allowed).
    pub fn not_in(self, allowed: Self) -> Vec<Grant> {
        self.iter()
            .filter(|grant| !allowed.contains(*grant))
            .collect()
    }

    /// The names, as stored and shown.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|grant| grant.as_str().to_owned()).collect()
    }

    /// The set `names` declare (duplicates are one; blank names are
    /// skipped); an unknown name is [`UnknownGrant`].
    pub fn parse_names<I, S>(names: I) -> Result<Self, UnknownGrant>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut grants = Self::NONE;
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            let grant = Grant::parse(name).ok_or_else(|| UnknownGrant {
                name: convergio_schemas::echo(name).into_owned(),
            })?;
            grants = grants.with(grant);
        }
        Ok(grants)
    }
}

impl FromIterator<Grant> for Grants {
    fn from_iter<T: IntoIterator<Item = Grant>>(iter: T) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl std::fmt::Display for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Grant::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// `clock_ms()`: wall-clock milliseconds since the Unix epoch (0 for a
/// clock set before it).
pub(crate) fn clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Fills `target` from the operating system's random source: 0, or
/// [`HOST_TOO_LONG`] past [`RANDOM_MAX_BYTES`], or [`HOST_UNAVAILABLE`].
pub(crate) fn fill_random(target: &mut [u8]) -> i32 {
    if target.len() > RANDOM_MAX_BYTES {
        return HOST_TOO_LONG;
    }
    match rand::rngs::OsRng.try_fill_bytes(target) {
        Ok(()) => 0,
        Err(error) => {
            tracing::warn!(%error, "the random source failed for a plugin");
            HOST_UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_show_and_compare() {
        let declared = Grants::parse_names(["random", " clock", "clock", ""]).expect("known");
        assert_eq!(declared.names(), ["clock", "random"]);
        assert_eq!(declared.to_string(), "clock,random");
        assert_eq!(Grants::NONE.to_string(), "none");
        let allowed: Grants = [Grant::Clock].into_iter().collect();
        assert_eq!(declared.not_in(allowed), [Grant::Random]);
        assert!(allowed.not_in(declared).is_empty());
        let error = Grants::parse_names(["clock", "network"]).expect_err("not a grant");
        assert_eq!(error.name, "network");
        assert!(error.to_string().contains("network"), "{error}");
        assert_eq!(Grant::of_import("monotonic_ns"), Some(Grant::Clock));
        assert_eq!(Grant::of_import("env"), Some(Grant::Env));
        assert_eq!(Grant::of_import("log"), None);
        assert_eq!(Grant::of_import("path_open"), None);
    }
}
