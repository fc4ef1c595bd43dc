//! What an agent may do: five permission levels, custom permissions in the seed's JSON shape, and
//! the checks every syscall passes.
//!
//! Each agent holds two [`Permissions`]: its *ceiling*, set by whoever started it, and its *current*
//! permissions, which it may lower and raise again up to the ceiling. Every check requires both to
//! allow the action, so even a current set that somehow exceeded the ceiling would gain nothing.

mod command;
mod glob;
mod permissions;

pub use command::{command_allowed, command_blocked, join_words, split_words, SplitError};
pub use glob::{glob_matches, glob_within};
pub use permissions::{FsRules, Level, LlmQuota, Permissions};

use alloc::string::String;
use alloc::vec::Vec;

/// Why a syscall was refused. The message names the offending path, command or level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("permission denied: {0} is not allowed at this level")]
    Capability(&'static str),
    #[error("permission denied: path {0} is blocked")]
    PathBlocked(String),
    #[error("permission denied: path {0} is outside the allowed {1} paths")]
    PathNotAllowed(String, &'static str),
    #[error("permission denied: path {0} must be absolute and contain no '..'")]
    PathNotNormal(String),
    #[error("permission denied: command not allowed: {0}")]
    CommandNotAllowed(String),
    #[error("permission denied: command matches blocked pattern '{0}'")]
    CommandBlocked(String),
    #[error(transparent)]
    CommandSyntax(#[from] SplitError),
    #[error("permission denied: these permissions exceed the ceiling ({0})")]
    AboveCeiling(&'static str),
    #[error("permission denied: {0} is outside what the agent's sandbox shows it")]
    NotVisible(String),
    #[error("permission denied: {0} is read-only in the agent's sandbox")]
    ReadOnlyInSandbox(String),
    #[error("permission denied: http method {0} is not allowed")]
    MethodNotAllowed(String),
    #[error("permission denied: {0} is not in the network allowlist")]
    EndpointNotAllowed(String),
    #[error("permission denied: agent {0} is not a descendant of the caller")]
    NotDescendant(u64),
    #[error("permission denied: {0} is the runtime's own event type; emit a custom type of your own")]
    ReservedEvent(String),
    #[error("permission denied: {0} from a VM agent is served inside its VM, never on the host")]
    GuestOnly(&'static str),
    #[error("invalid permissions: {0}")]
    Invalid(String),
}

/// An agent's permissions: its ceiling and its current set, with the level each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPolicy {
    /// `None` when the current set is custom rather than a level's.
    pub level: Option<Level>,
    pub current: Permissions,
    pub ceiling_level: Option<Level>,
    pub ceiling: Permissions,
}

/// An EXEC request after the policy has decided how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    pub argv: Vec<String>,
    /// How the command reads in the audit log.
    pub display: String,
}

impl AgentPolicy {
    /// A policy whose ceiling and current set are both `level`'s.
    pub fn at_level(level: Level, home: &str) -> Self {
        let permissions = level.permissions(home);
        AgentPolicy {
            level: Some(level),
            current: permissions.clone(),
            ceiling_level: Some(level),
            ceiling: permissions,
        }
    }

    /// Whether both its level and its ceiling are `unrestricted`: such an agent may observe every
    /// agent and change what the runtime audits.
    pub fn is_unrestricted(&self) -> bool {
        self.level == Some(Level::Unrestricted) && self.ceiling_level == Some(Level::Unrestricted)
    }

    /// The level name shown to users: the level, or `custom`.
    pub fn level_name(&self) -> &'static str {
        self.level.map_or("custom", Level::name)
    }

    fn both(&self, check: impl Fn(&Permissions) -> Result<(), Denial>) -> Result<(), Denial> {
        check(&self.current)?;
        check(&self.ceiling)
    }

    pub fn check_read(&self, path: &str) -> Result<(), Denial> {
        self.both(|p| p.check_path(path, Access::Read))
    }

    pub fn check_write(&self, path: &str) -> Result<(), Denial> {
        self.both(|p| p.check_path(path, Access::Write))
    }

    pub fn check_spawn(&self) -> Result<(), Denial> {
        self.both(|p| p.require(p.can_spawn, "spawn"))
    }

    pub fn check_think(&self) -> Result<(), Denial> {
        self.both(|p| p.require(p.can_think, "think"))
    }

    /// The state store: reading (FETCH, KEYS) needs `can_read`, writing (STORE, DELETE) `can_write`.
    pub fn check_state(&self, access: Access) -> Result<(), Denial> {
        self.both(|p| match access {
            Access::Read => p.require(p.can_read, "reading state"),
            Access::Write => p.require(p.can_write, "writing state"),
        })
    }

    /// Whether an http request may go to `host:port` with `method`; `default_port` is its scheme's.
    pub fn check_http(&self, method: &str, host: &str, port: u16, default_port: u16) -> Result<(), Denial> {
        self.both(|p| {
            p.require(p.can_http, "http")?;
            if !p.method_allowed(method) {
                return Err(Denial::MethodNotAllowed(String::from(method)));
            }
            if p.endpoint_allowed(host, port, default_port) {
                Ok(())
            } else {
                let shown = if host.contains(':') {
                    alloc::format!("[{host}]:{port}")
                } else {
                    alloc::format!("{host}:{port}")
                };
                Err(Denial::EndpointNotAllowed(shown))
            }
        })
    }

    /// The most tokens and calls both quotas allow (`None`: unlimited).
    pub fn llm_quota(&self) -> LlmQuota {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        LlmQuota {
            max_tokens: min(self.current.llm.max_tokens, self.ceiling.llm.max_tokens),
            max_calls: min(self.current.llm.max_calls, self.ceiling.llm.max_calls),
        }
    }

    /// Decides whether and how an EXEC runs: as argv, as a command line split into words, or through
    /// `/bin/sh -c` when both sets allow a shell. Never by concatenating strings into a shell.
    pub fn plan_exec(&self, argv: &[String], command: Option<&str>) -> Result<ExecPlan, Denial> {
        self.both(|p| p.require(p.can_exec, "exec"))?;
        let shell = self.current.allow_shell && self.ceiling.allow_shell;
        let (argv, display, checked_argv) = match (command, argv.is_empty()) {
            (Some(line), true) => {
                let words = split_words(line);
                match (words, shell) {
                    (Ok(words), _) => (words.clone(), String::from(line), words),
                    (Err(SplitError::ShellSyntax(_)), true) => {
                        let sh = ["/bin/sh", "-c", line].map(String::from).to_vec();
                        (sh, String::from(line), Vec::from([String::from("sh")]))
                    }
                    (Err(e), _) => return Err(e.into()),
                }
            }
            (None, false) => (argv.to_vec(), join_words(argv), argv.to_vec()),
            _ => return Err(Denial::Invalid(String::from("exec takes either argv or a command line"))),
        };
        self.check_command(&display, &checked_argv)?;
        Ok(ExecPlan { argv, display })
    }

    /// Whether a program may be started as a child agent: the spawn right plus the same command
    /// filters as EXEC.
    pub fn check_program(&self, argv: &[String]) -> Result<(), Denial> {
        self.check_spawn()?;
        self.check_command(&join_words(argv), argv)
    }

    fn check_command(&self, display: &str, argv: &[String]) -> Result<(), Denial> {
        self.both(|p| {
            if let Some(entry) = command_blocked(&p.blocked_commands, display) {
                return Err(Denial::CommandBlocked(String::from(entry)));
            }
            if command_allowed(&p.exec, argv) {
                Ok(())
            } else {
                Err(Denial::CommandNotAllowed(String::from(display)))
            }
        })
    }

    /// The caller sets its own current permissions: allowed anywhere up to its ceiling.
    pub fn set_own(&mut self, level: Option<Level>, permissions: Permissions) -> Result<(), Denial> {
        permissions.within(&self.ceiling)?;
        self.level = level;
        self.current = permissions;
        Ok(())
    }

    /// A parent grants a child `permissions`, which must lie within what the parent holds now. The
    /// grant becomes the child's ceiling and current set.
    pub fn grant(&self, level: Option<Level>, permissions: Permissions) -> Result<AgentPolicy, Denial> {
        permissions.within(&self.current)?;
        permissions.within(&self.ceiling)?;
        Ok(AgentPolicy { level, current: permissions.clone(), ceiling_level: level, ceiling: permissions })
    }
}

/// Which list of path globs a check uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether `path` is absolute and free of `.` and `..` components.
pub fn is_normal_path(path: &str) -> bool {
    path.starts_with('/') && path.split('/').all(|c| c != ".." && c != ".")
}

#[cfg(test)]
mod tests;
