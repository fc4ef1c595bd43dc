//! What to start as an agent: the spawn spec, where its output goes, the host paths a sandbox
//! shows, and agentkernel's profiles as defaults.

use std::path::PathBuf;

use super::{Result, RuntimeError};
use crate::policy::{Level, Permissions};
use crate::protocol::{Limits, RestartSpec, VmSpec};

/// Where an agent's stdout and stderr go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AgentStdio {
    /// The host's own stdout and stderr.
    #[default]
    Inherit,
    Null,
    /// Appended to this file, both streams.
    File(PathBuf),
}

/// What to start as an agent, and with which rights.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub name: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Added to the agent's minimal environment (PATH, HOME, LANG, CLOVE_FD, CLOVE_AGENT_ID).
    pub env: Vec<(String, String)>,
    /// Default: the host's working directory.
    pub cwd: Option<PathBuf>,
    pub level: Level,
    /// Custom permissions instead of the level's; they become the agent's ceiling.
    pub permissions: Option<Permissions>,
    pub stdio: AgentStdio,
    /// Enforced by the agent's own cgroup; a machine that cannot enforce them refuses the spawn.
    pub limits: Limits,
    pub restart: RestartSpec,
    /// Run it in the process sandbox (namespaces, minimal root, landlock, seccomp, its cgroup).
    pub sandboxed: bool,
    /// Give a sandboxed agent the host's network; otherwise it has loopback only.
    pub network: bool,
    /// Host paths to show a sandboxed agent, in addition to its own files.
    pub mounts: Vec<Mount>,
    /// Run it in its own microVM instead: the guest kernel is the boundary, and `limits.memory` is
    /// the VM's RAM.
    pub vm: Option<VmSpec>,
}

/// A host path shown inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    /// Where it appears inside (an absolute path).
    pub guest: PathBuf,
    pub read_only: bool,
}

impl Mount {
    /// Parses `HOST:GUEST[:ro|:rw]` (read-write by default, as docker's `-v`).
    pub fn parse(text: &str) -> Result<Mount> {
        let bad =
            || RuntimeError::InvalidArgument(format!("mount '{text}': use HOST:GUEST[:ro|:rw] with absolute paths"));
        let mut parts = text.split(':');
        let (host, guest) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() || !host.starts_with('/') || !guest.starts_with('/') {
            return Err(bad());
        }
        Ok(Mount { host: host.into(), guest: guest.into(), read_only })
    }
}

/// agentkernel's security profiles, as defaults for a sandboxed agent. Anything the spec sets
/// itself (a limit, network) wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Network, the host's working directory mounted read-write at the same path, no default limits.
    Permissive,
    /// No network unless asked; 512 MiB, one CPU, 256 processes.
    Moderate,
    /// No network, ever; 256 MiB, half a CPU, 64 processes.
    Restrictive,
}

impl Profile {
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "permissive" => Some(Profile::Permissive),
            "moderate" => Some(Profile::Moderate),
            "restrictive" => Some(Profile::Restrictive),
            _ => None,
        }
    }

    /// Makes `spec` a sandboxed spawn under this profile.
    pub fn apply(self, spec: &mut SpawnSpec) -> Result<()> {
        spec.sandboxed = true;
        let (memory, cpu_quota, pids) = match self {
            Profile::Permissive => {
                spec.network = true;
                let cwd = match &spec.cwd {
                    Some(dir) => dir.clone(),
                    None => {
                        std::env::current_dir().map_err(|e| RuntimeError::io("reading the working directory", e))?
                    }
                };
                spec.mounts.push(Mount { host: cwd.clone(), guest: cwd, read_only: false });
                return Ok(());
            }
            Profile::Moderate => (512 << 20, 100_000, 256),
            Profile::Restrictive => {
                if spec.network {
                    return Err(RuntimeError::InvalidArgument("the restrictive profile has no network".into()));
                }
                (256 << 20, 50_000, 64)
            }
        };
        let limits = &mut spec.limits;
        limits.memory.get_or_insert(memory);
        limits.max_pids.get_or_insert(pids);
        if limits.cpu_quota.is_none() {
            limits.cpu_quota = Some(cpu_quota);
            limits.cpu_period = Some(100_000);
        }
        Ok(())
    }
}

impl SpawnSpec {
    pub fn new(name: impl Into<String>, argv: Vec<String>) -> Self {
        SpawnSpec {
            name: name.into(),
            argv,
            env: Vec::new(),
            cwd: None,
            level: Level::Standard,
            permissions: None,
            stdio: AgentStdio::Inherit,
            limits: Limits::default(),
            restart: RestartSpec::default(),
            sandboxed: false,
            network: false,
            mounts: Vec::new(),
            vm: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_like_docker_volumes() {
        let m = Mount::parse("/srv/data:/data:ro").unwrap();
        assert_eq!((m.host, m.guest, m.read_only), ("/srv/data".into(), "/data".into(), true));
        assert!(!Mount::parse("/a:/b").unwrap().read_only);
        for bad in ["/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x"] {
            assert!(Mount::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profiles_fill_what_the_spec_leaves_open() {
        let mut spec = SpawnSpec::new("a", vec!["true".into()]);
        spec.limits.memory = Some(64 << 20);
        Profile::Restrictive.apply(&mut spec).unwrap();
        assert!(spec.sandboxed && !spec.network);
        assert_eq!(
            (spec.limits.memory, spec.limits.max_pids, spec.limits.cpu_quota),
            (Some(64 << 20), Some(64), Some(50_000))
        );
        let mut spec = SpawnSpec::new("a", vec!["true".into()]);
        spec.network = true;
        assert!(Profile::Restrictive.apply(&mut spec).is_err());
        let mut spec = SpawnSpec::new("a", vec!["true".into()]);
        spec.cwd = Some("/srv/project".into());
        Profile::Permissive.apply(&mut spec).unwrap();
        assert!(spec.network && spec.mounts[0].guest == std::path::Path::new("/srv/project"));
        assert_eq!(spec.limits, Limits::default());
    }
}
