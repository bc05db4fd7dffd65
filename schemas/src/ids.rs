//! Agent identifiers: `convergio://agents/<name>` for agents of this
//! organisation and `external://<org-domain>/agents/<name>` for another's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentIdError {
    /// The scheme is neither `convergio://` nor `external://`.
    #[error("agent id must start with convergio://agents/ or external://<org>/agents/: {:?}", crate::problem::echo(.input))]
    BadScheme {
        /// The rejected input.
        input: String,
    },
    /// The agent name part is empty, too long, has characters outside
    /// `[A-Za-z0-9_.-]` or starts with a dot.
    #[error(
        "agent name must be 1 to 100 characters of A-Z a-z 0-9 _ . - not starting with a dot: {:?}",
        crate::problem::echo(.name)
    )]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// The organisation is not a DNS-style domain.
    #[error("organisation must be a DNS domain such as acme.example: {:?}", crate::problem::echo(.org))]
    BadOrg {
        /// The rejected organisation.
        org: String,
    },
}

/// A parsed agent id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentId {
    /// An agent of this deployment's organisation.
    Internal {
        /// The agent's short name.
        name: String,
    },
    /// An agent owned by another organisation, reached through its gateway.
    External {
        /// The owning organisation's domain.
        org: String,
        /// The agent's short name within that organisation.
        name: String,
    },
}

// === impl AgentId ===

impl AgentId {
    /// An internal id for `name`, checked.
    pub fn internal(name: &str) -> Result<Self, AgentIdError> {
        check_name(name)?;
        Ok(Self::Internal {
            name: name.to_owned(),
        })
    }

    /// An external id, checked.
    pub fn external(org: &str, name: &str) -> Result<Self, AgentIdError> {
        check_org(org)?;
        check_name(name)?;
        Ok(Self::External {
            org: org.to_ascii_lowercase(),
            name: name.to_owned(),
        })
    }

    /// The agent's short name.
    pub fn name(&self) -> &str {
        match self {
            Self::Internal { name } | Self::External { name, .. } => name,
        }
    }

    /// The organisation for external ids; `None` for internal ones.
    pub fn external_org(&self) -> Option<&str> {
        match self {
            Self::Internal { .. } => None,
            Self::External { org, .. } => Some(org),
        }
    }
}

/// Checks an agent short name: 1 to 100 of `[A-Za-z0-9_.-]`, not starting
/// with a dot.
///
/// The name becomes a path segment of the gateway (`/agents/{name}`) and of
/// the served card's interface URLs, so it must stay one plain segment: no
/// separators (`/`, `\`), no percent-encoding (`%`), nothing a URL parser
/// decodes or normalises. A leading dot is refused because `.` and `..` are
/// dot-segments that a normalising client resolves away (issue #15, defect
/// 6: `/agents/..` became the gateway's own card), and `.hidden` names are
/// refused with them rather than special-cased.
pub fn check_name(name: &str) -> Result<(), AgentIdError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AgentIdError::BadName {
            name: name.to_owned(),
        })
    }
}

/// Checks an organisation domain: DNS labels of `[a-z0-9-]`, at least two labels.
pub fn check_org(org: &str) -> Result<(), AgentIdError> {
    let labels: Vec<&str> = org.split('.').collect();
    let ok = org.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(AgentIdError::BadOrg {
            org: org.to_owned(),
        })
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal { name } => write!(f, "convergio://agents/{name}"),
            Self::External { org, name } => write!(f, "external://{org}/agents/{name}"),
        }
    }
}

impl FromStr for AgentId {
    type Err = AgentIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if let Some(name) = input.strip_prefix("convergio://agents/") {
            return Self::internal(name);
        }
        if let Some(rest) = input.strip_prefix("external://") {
            if let Some((org, name)) = rest.split_once("/agents/") {
                return Self::external(org, name);
            }
        }
        Err(AgentIdError::BadScheme {
            input: input.to_owned(),
        })
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_forms() {
        for text in [
            "convergio://agents/echo",
            "external://acme.example/agents/db",
        ] {
            let id: AgentId = text.parse().expect("valid id");
            assert_eq!(id.to_string(), text);
        }
    }

    // Regression: issue #15, defect 6.
    #[test]
    fn name_rule_keeps_names_one_plain_path_segment() {
        let check = |name: &str, ok: bool| {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        };
        for (name, ok) in [
            ("echo", true),
            ("sql-analyst.v1", true),
            ("a..b", true),
            ("Weather_Bot-2", true),
            (&"a".repeat(100), true),
            ("", false),
            (".", false),
            ("..", false),
            ("...", false),
            (".hidden", false),
            ("../echo", false),
            ("a/b", false),
            ("a\\b", false),
            ("%2e%2e", false),
            ("a%2fb", false),
            ("a b", false),
            ("a?b", false),
            ("a#b", false),
            ("ech\u{f6}", false),
            ("echo\0", false),
            (&"a".repeat(101), false),
        ] {
            check(name, ok);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for text in [
            "",
            "http://x/agents/a",
            "convergio://agents/",
            "convergio://agents/a b",
            "external://localhost/agents/a",
            "external://acme.example/agents/",
            "external://-bad.example/agents/a",
            "convergio://agents/..",
            "external://acme.example/agents/.",
        ] {
            assert!(text.parse::<AgentId>().is_err(), "{text:?} should fail");
        }
    }
}
