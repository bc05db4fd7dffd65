//! [`PluginError`]: every way loading or running a plugin, or configuring a
//! guardrail, can fail. A hostile module's failure is one of these, never a
//! panic, and says which bound it hit.

use convergio_schemas::ErrorKind;

use crate::grants::{Grant, UnknownGrant};

/// A plugin or guardrail failure.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a valid WebAssembly module.
    #[error("plugin {plugin} is not a valid WebAssembly module: {detail}")]
    InvalidModule {
        /// The plugin's name.
        plugin: String,
        /// What the validator said.
        detail: String,
    },
    /// The module imports something the sandbox does not provide (a file,
    /// a socket: only the `convergio` host functions exist), or a
    /// grantable host function (the clock, random bytes, `plugins.env`)
    /// its version was not granted.
    #[error("plugin {plugin} imports {module}::{name}, {}", forbidden_because(*.grant))]
    ForbiddenImport {
        /// The plugin's name.
        plugin: String,
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// The grant that would allow it, when it is a grantable host
        /// function.
        grant: Option<Grant>,
    },
    /// A declared grant is not one of `clock`, `random`, `env` (files and
    /// the network are never granted).
    #[error(transparent)]
    UnknownGrant(#[from] UnknownGrant),
    /// The module lacks an export the ABI requires, or has it with the
    /// wrong type.
    #[error("plugin {plugin} does not export {export} as ABI v1 requires: {detail}")]
    MissingExport {
        /// The plugin's name.
        plugin: String,
        /// The export.
        export: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The call used up its fuel (its CPU bound).
    #[error("plugin {plugin} ran out of fuel ({fuel} units)")]
    OutOfFuel {
        /// The plugin's name.
        plugin: String,
        /// The fuel the call had.
        fuel: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error("plugin {plugin} ran past its deadline of {deadline_ms} ms")]
    DeadlineExceeded {
        /// The plugin's name.
        plugin: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The module asked for more linear memory (or table space) than allowed.
    #[error("plugin {plugin} went over its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The plugin's name.
        plugin: String,
        /// The limit.
        limit_bytes: usize,
    },
    /// The module overflowed its stack.
    #[error("plugin {plugin} overflowed its stack")]
    StackOverflow {
        /// The plugin's name.
        plugin: String,
    },
    /// The module trapped (unreachable, out-of-bounds access, …).
    #[error("plugin {plugin} trapped: {detail}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The trap.
        detail: String,
    },
    /// The module returned something that is not an ABI v1 answer.
    #[error("plugin {plugin} returned a bad answer: {detail}")]
    BadOutput {
        /// The plugin's name.
        plugin: String,
        /// What was wrong.
        detail: String,
    },
    /// Every sandbox slot is busy, or the engine could not start.
    #[error("plugin runtime unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
    },
    /// A guardrail's configuration cannot work (bad regex, unknown name).
    #[error("guardrail configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
}

// === impl PluginError ===

impl PluginError {
    /// The shared classification: a plugin's own failure is a bad
    /// upstream-like answer; bad uploads and configuration are input errors.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidModule { .. }
            | Self::ForbiddenImport { .. }
            | Self::UnknownGrant(_)
            | Self::MissingExport { .. }
            | Self::Config { .. } => ErrorKind::InvalidInput,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::DeadlineExceeded { .. } => ErrorKind::UpstreamTimeout,
            Self::OutOfFuel { .. }
            | Self::MemoryLimit { .. }
            | Self::StackOverflow { .. }
            | Self::Trap { .. }
            | Self::BadOutput { .. } => ErrorKind::BadUpstream,
        }
    }

    /// A short stable code for audit records and deny reasons.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidModule { .. } => "INVALID_MODULE",
            Self::ForbiddenImport { .. } => "FORBIDDEN_IMPORT",
            Self::UnknownGrant(_) => "UNKNOWN_GRANT",
            Self::MissingExport { .. } => "MISSING_EXPORT",
            Self::OutOfFuel { .. } => "OUT_OF_FUEL",
            Self::DeadlineExceeded { .. } => "DEADLINE_EXCEEDED",
            Self::MemoryLimit { .. } => "MEMORY_LIMIT",
            Self::StackOverflow { .. } => "STACK_OVERFLOW",
            Self::Trap { .. } => "TRAP",
            Self::BadOutput { .. } => "BAD_OUTPUT",
            Self::Unavailable { .. } => "UNAVAILABLE",
            Self::Config { .. } => "CONFIG",
        }
    }
}

/// Why an import is refused: not provided at all, or missing its grant.
fn forbidden_because(grant: Option<Grant>) -> String {
    match grant {
        None => "which the sandbox does not provide".to_owned(),
        Some(grant) => format!(
            "which needs the grant {grant}: this version was not declared with it (grants={grant} at upload, allowed by plugins.allow_grants)"
        ),
    }
}
