//! Permission levels and the permissions they stand for, in the seed Clove's JSON shape.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{glob_matches, glob_within, is_normal_path, Access, Denial};

/// The seed's five permission levels, from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Everything: any command (through a shell too), any path, any domain.
    Unrestricted,
    /// Read and write anywhere but the blocked paths; no exec, spawn or http.
    Standard,
    /// Read under `/tmp` and `/home`, write under `/tmp`.
    Sandboxed,
    /// Read anywhere but the blocked paths; nothing else but think.
    Readonly,
    /// Think only.
    Minimal,
}

/// The seed's default blocked paths, with `**` where the seed meant "at any depth", and the kernel's
/// views: READ and WRITE run in the runtime, where `/proc/self` is the runtime (its environment holds
/// the host's secrets).
const DEFAULT_BLOCKED_PATHS: &[&str] = &[
    "/proc/**",
    "/sys/**",
    "/dev/**",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/passwd",
    "/etc/sudoers",
    "~/.ssh/**",
    "~/.gnupg/**",
    "~/.aws/**",
    "~/.config/gcloud/**",
    "**/.env",
    "**/.git/config",
    "**/credentials*",
    "**/secrets*",
    "**/*token*",
    "**/*password*",
];

/// The seed's default blocked commands (substring match).
const DEFAULT_BLOCKED_COMMANDS: &[&str] = &[
    "rm -rf /",
    "rm -rf ~",
    "rm -rf /*",
    "sudo",
    "su ",
    "chmod 777",
    "curl | bash",
    "wget | bash",
    "> /dev/sd",
    "dd if=",
    "mkfs",
    ":(){:|:&};:",
    "shutdown",
    "reboot",
    "init 0",
    "poweroff",
];

/// The default cap on an EXEC's run time.
const DEFAULT_MAX_EXEC_MS: u64 = 30_000;

impl Level {
    pub const ALL: [Level; 5] =
        [Level::Unrestricted, Level::Standard, Level::Sandboxed, Level::Readonly, Level::Minimal];

    pub fn name(self) -> &'static str {
        match self {
            Level::Unrestricted => "unrestricted",
            Level::Standard => "standard",
            Level::Sandboxed => "sandboxed",
            Level::Readonly => "readonly",
            Level::Minimal => "minimal",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(name))
    }

    /// The permissions this level stands for. `home` replaces a leading `~` in path globs.
    pub fn permissions(self, home: &str) -> Permissions {
        let blocked: Vec<String> = DEFAULT_BLOCKED_PATHS.iter().map(|p| expand_home(p, home)).collect();
        let blocked_commands = strings(DEFAULT_BLOCKED_COMMANDS);
        let everywhere = strings(&["/**"]);
        let base = Permissions {
            can_think: true,
            blocked_commands,
            max_exec_time_ms: DEFAULT_MAX_EXEC_MS,
            ..Permissions::default()
        };
        match self {
            Level::Unrestricted => Permissions {
                can_exec: true,
                can_read: true,
                can_write: true,
                can_spawn: true,
                can_http: true,
                allow_shell: true,
                filesystem: FsRules { read: everywhere.clone(), write: everywhere, blocked: Vec::new() },
                exec: strings(&["*"]),
                blocked_commands: Vec::new(),
                network: strings(&["*"]),
                http_methods: strings(&["*"]),
                ..base
            },
            Level::Standard => Permissions {
                can_read: true,
                can_write: true,
                filesystem: FsRules { read: everywhere.clone(), write: everywhere, blocked },
                ..base
            },
            Level::Sandboxed => Permissions {
                can_read: true,
                can_write: true,
                filesystem: FsRules { read: strings(&["/tmp/**", "/home/**"]), write: strings(&["/tmp/**"]), blocked },
                ..base
            },
            Level::Readonly => Permissions {
                can_read: true,
                filesystem: FsRules { read: everywhere, write: Vec::new(), blocked },
                ..base
            },
            Level::Minimal => Permissions { filesystem: FsRules { blocked, ..FsRules::default() }, ..base },
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn expand_home(pattern: &str, home: &str) -> String {
    match pattern.strip_prefix('~') {
        Some(rest) => alloc::format!("{}{rest}", home.trim_end_matches('/')),
        None => pattern.to_string(),
    }
}

/// Path globs: what may be read, what may be written, and what may never be touched.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FsRules {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub blocked: Vec<String>,
}

/// Per-agent LLM quotas; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmQuota {
    pub max_tokens: Option<u64>,
    pub max_calls: Option<u64>,
}

/// What an agent may do, in the seed Clove's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Permissions {
    pub can_exec: bool,
    pub can_read: bool,
    pub can_write: bool,
    pub can_think: bool,
    pub can_spawn: bool,
    pub can_http: bool,
    pub filesystem: FsRules,
    /// Allowed commands: program names or paths, word prefixes such as `"git status"`, or `"*"`.
    pub exec: Vec<String>,
    pub blocked_commands: Vec<String>,
    /// Whether a command line with shell syntax may run through `/bin/sh -c`.
    pub allow_shell: bool,
    /// Allowed domains for http: exact, `*.example.com`, or `"*"`.
    pub network: Vec<String>,
    pub http_methods: Vec<String>,
    pub llm: LlmQuota,
    pub max_exec_time_ms: u64,
}

impl Permissions {
    pub(super) fn require(&self, allowed: bool, what: &'static str) -> Result<(), Denial> {
        if allowed {
            Ok(())
        } else {
            Err(Denial::Capability(what))
        }
    }

    pub(super) fn check_path(&self, path: &str, access: Access) -> Result<(), Denial> {
        let (allowed, globs, what) = match access {
            Access::Read => (self.can_read, &self.filesystem.read, "read"),
            Access::Write => (self.can_write, &self.filesystem.write, "write"),
        };
        self.require(allowed, what)?;
        if !is_normal_path(path) {
            return Err(Denial::PathNotNormal(path.to_string()));
        }
        if self.filesystem.blocked.iter().any(|g| glob_matches(g, path)) {
            return Err(Denial::PathBlocked(path.to_string()));
        }
        if globs.iter().any(|g| glob_matches(g, path)) {
            Ok(())
        } else {
            Err(Denial::PathNotAllowed(path.to_string(), what))
        }
    }

    /// Applies the seed's custom-permissions JSON on top of these permissions: keys present replace
    /// their value (objects merge), `exec` implies `can_exec` and `network` implies `can_http`.
    pub fn patched(&self, patch_json: &str) -> Result<Permissions, Denial> {
        let patch: serde_json::Value = serde_json::from_str(patch_json).map_err(|e| Denial::Invalid(e.to_string()))?;
        let serde_json::Value::Object(patch) = patch else {
            return Err(Denial::Invalid("permissions must be a JSON object".to_string()));
        };
        let mut merged = serde_json::to_value(self).map_err(|e| Denial::Invalid(e.to_string()))?;
        for (key, value) in &patch {
            match (merged.get_mut(key.as_str()), value) {
                (Some(serde_json::Value::Object(into)), serde_json::Value::Object(from)) => {
                    for (k, v) in from {
                        into.insert(k.clone(), v.clone());
                    }
                }
                (Some(slot), v) => *slot = v.clone(),
                (None, _) => return Err(Denial::Invalid(alloc::format!("unknown permission '{key}'"))),
            }
        }
        let mut out: Permissions = serde_json::from_value(merged).map_err(|e| Denial::Invalid(e.to_string()))?;
        out.can_exec |= patch.get("exec").is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()));
        out.can_http |= patch.get("network").is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()));
        Ok(out)
    }

    /// These permissions as the seed's JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether these permissions lie within `outer`, checked field by field; where containment cannot
    /// be shown (globs of different shapes) the answer is no.
    pub fn within(&self, outer: &Permissions) -> Result<(), Denial> {
        let flags = [
            (self.can_exec, outer.can_exec, "exec"),
            (self.can_read, outer.can_read, "read"),
            (self.can_write, outer.can_write, "write"),
            (self.can_think, outer.can_think, "think"),
            (self.can_spawn, outer.can_spawn, "spawn"),
            (self.can_http, outer.can_http, "http"),
            (self.allow_shell, outer.allow_shell, "shell"),
        ];
        if let Some((_, _, what)) = flags.iter().find(|(inner, outer, _)| *inner && !*outer) {
            return Err(Denial::AboveCeiling(what));
        }
        let globs_within =
            |inner: &[String], outer: &[String]| inner.iter().all(|g| outer.iter().any(|o| glob_within(g, o)));
        if self.can_read && !globs_within(&self.filesystem.read, &outer.filesystem.read) {
            return Err(Denial::AboveCeiling("read paths"));
        }
        if self.can_write && !globs_within(&self.filesystem.write, &outer.filesystem.write) {
            return Err(Denial::AboveCeiling("write paths"));
        }
        let keeps_all = |inner: &[String], outer: &[String]| outer.iter().all(|o| inner.contains(o));
        if !keeps_all(&self.filesystem.blocked, &outer.filesystem.blocked) {
            return Err(Denial::AboveCeiling("blocked paths"));
        }
        if !keeps_all(&self.blocked_commands, &outer.blocked_commands) {
            return Err(Denial::AboveCeiling("blocked commands"));
        }
        let listed_within = |inner: &[String], outer: &[String]| {
            outer.iter().any(|o| o == "*") || inner.iter().all(|i| outer.contains(i))
        };
        if self.can_exec && !listed_within(&self.exec, &outer.exec) {
            return Err(Denial::AboveCeiling("commands"));
        }
        if self.can_http
            && !(listed_within(&self.network, &outer.network) && listed_within(&self.http_methods, &outer.http_methods))
        {
            return Err(Denial::AboveCeiling("network"));
        }
        let quota_within = |inner: Option<u64>, outer: Option<u64>| match (inner, outer) {
            (_, None) => true,
            (Some(i), Some(o)) => i <= o,
            (None, Some(_)) => false,
        };
        if !quota_within(self.llm.max_tokens, outer.llm.max_tokens)
            || !quota_within(self.llm.max_calls, outer.llm.max_calls)
        {
            return Err(Denial::AboveCeiling("llm quota"));
        }
        if self.max_exec_time_ms > outer.max_exec_time_ms {
            return Err(Denial::AboveCeiling("exec time"));
        }
        Ok(())
    }

    /// Whether http to `host` on `port` is allowed. An entry is a host (`api.example.com`), a
    /// wildcard for its subdomains (`*.example.com`), or `"*"` for every host on every port. An
    /// entry without a port allows the URL scheme's `default_port` only; `host:port` (IPv6 in
    /// brackets: `[::1]:8080`) allows that port only. Hosts compare without case and trailing dot.
    pub fn endpoint_allowed(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host = host.trim_end_matches('.');
        self.network.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (pattern, entry_port) = split_host_port(entry);
            entry_port.unwrap_or(Some(default_port)) == Some(port) && host_matches(pattern, host)
        })
    }

    /// Whether the http method is allowed: listed (any case), or `"*"`.
    pub fn method_allowed(&self, method: &str) -> bool {
        self.http_methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }
}

/// An allowlist entry's host pattern and port: `None` when it names no port, `Some(None)` when the
/// port does not parse (such an entry matches nothing).
fn split_host_port(entry: &str) -> (&str, Option<Option<u16>>) {
    if let Some(bracketed) = entry.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, rest)) => (host, Some(rest.strip_prefix(':').and_then(|p| p.parse().ok()))),
            None => (entry, Some(None)),
        };
    }
    match entry.split_once(':') {
        // More than one colon: a bare IPv6 address, without a port.
        Some((_, rest)) if rest.contains(':') => (entry, None),
        Some((host, port)) => (host, Some(port.parse().ok())),
        None => (entry, None),
    }
}

/// An exact host, or `*.domain` for any name below `domain` (not `domain` itself).
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            let (h, d) = (host.as_bytes(), domain.as_bytes());
            h.len() > d.len() + 1 && h[h.len() - d.len()..].eq_ignore_ascii_case(d) && h[h.len() - d.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}
