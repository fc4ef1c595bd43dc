//! Starting in-guest agents: the main program from `spawn.json` and the children agents SPAWN. Each
//! finds its end of a fresh socketpair at `CLOVE_FD`, as in the process tier; the guest serves the
//! other end.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;

use clove_core::protocol::{ErrorCode, KeyValue, SpawnRequest};

use crate::exec::base_env;
use crate::reaper::{Exit, Reaper};

/// Where an agent finds its channel, the process tier's number.
const CHANNEL_FD: RawFd = 3;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("reading {path}: {source}")]
    ReadSpec { path: PathBuf, source: io::Error },
    #[error("{path} is not a spawn spec: {source}")]
    BadSpec { path: PathBuf, source: serde_json::Error },
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("creating the agent channel: {0}")]
    Channel(io::Error),
    #[error("starting {program}: {source}")]
    Start { program: String, source: io::Error },
}

impl AgentError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AgentError::Invalid(_) => ErrorCode::InvalidArgument,
            AgentError::Start { source, .. } if source.kind() == io::ErrorKind::NotFound => ErrorCode::NotFound,
            _ => ErrorCode::Io,
        }
    }
}

/// What an agent runs as, and what a child it spawns inherits.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub id: u64,
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// `/clove/spawn.json`, as the host writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnFile {
    /// The agent's id and name on the host, which the program reports as its own.
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    argv: Vec<String>,
    #[serde(default)]
    env: Vec<(String, String)>,
    #[serde(default)]
    cwd: Option<String>,
}

/// Reads the main program's spec; `None` when there is no such file.
pub fn load_spawn_file(path: &Path) -> Result<Option<AgentSpec>, AgentError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AgentError::ReadSpec { path: path.into(), source }),
    };
    let file: SpawnFile =
        serde_json::from_slice(&text).map_err(|source| AgentError::BadSpec { path: path.into(), source })?;
    if file.argv.is_empty() {
        return Err(AgentError::Invalid("spawn.json has an empty argv"));
    }
    let cwd = PathBuf::from(file.cwd.unwrap_or_else(|| "/".into()));
    let (id, name) = (file.id.unwrap_or(1), file.name.unwrap_or_else(|| "main".into()));
    Ok(Some(AgentSpec { id, name, argv: file.argv, env: file.env, cwd }))
}

impl AgentSpec {
    /// The spec of a child `parent` asks for: its argv (or script and interpreter), the parent's
    /// variables with its own on top, and a working directory relative to the parent's.
    pub fn child(parent: &AgentSpec, id: u64, req: SpawnRequest) -> Result<AgentSpec, AgentError> {
        let argv = match (req.script, req.argv.is_empty()) {
            (Some(script), true) => vec![req.interpreter.unwrap_or_else(|| "python3".into()), script],
            (None, false) => req.argv,
            _ => return Err(AgentError::Invalid("spawn takes either a script or argv")),
        };
        let mut env = parent.env.clone();
        for KeyValue { key, value } in req.env {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
        let cwd = req.cwd.map_or_else(|| parent.cwd.clone(), |c| parent.cwd.join(c));
        Ok(AgentSpec { id, name: req.name, argv, env, cwd })
    }
}

/// A running agent: its pid, its end, and the guest's end of its channel.
pub struct Launched {
    pub pid: u32,
    pub exited: Receiver<Exit>,
    pub channel: UnixStream,
}

/// Starts an agent with the given stdout and stderr; stdin is /dev/null.
pub fn launch(spec: &AgentSpec, stdout: Stdio, stderr: Stdio, reaper: &Reaper) -> Result<Launched, AgentError> {
    let (ours, theirs) = UnixStream::pair().map_err(AgentError::Channel)?;
    let theirs_fd = theirs.as_raw_fd();
    let (program, args) = spec.argv.split_first().ok_or(AgentError::Invalid("empty argv"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(base_env("/root"))
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("CLOVE_FD", CHANNEL_FD.to_string())
        .env("CLOVE_AGENT_ID", spec.id.to_string())
        .current_dir(&spec.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: the closure runs in the forked child before exec and calls only dup2 and fcntl, which
    // are async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if theirs_fd == CHANNEL_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(CHANNEL_FD, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(theirs_fd, CHANNEL_FD) != CHANNEL_FD {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (child, exited) =
        reaper.spawn(&mut cmd).map_err(|source| AgentError::Start { program: program.clone(), source })?;
    // Only the agent may hold its end, so the guest sees end of file when the agent is gone.
    drop(theirs);
    Ok(Launched { pid: child.id(), exited, channel: ours })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_files_parse_and_children_inherit() {
        let dir = std::env::temp_dir().join(format!("clove-guest-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spawn.json");
        assert!(load_spawn_file(&path).unwrap().is_none(), "no file: no main program");
        std::fs::write(&path, r#"{"argv":["prog","a"],"env":[["K","V"],["L","1"]],"cwd":"/w"}"#).unwrap();
        let main = load_spawn_file(&path).unwrap().unwrap();
        assert_eq!((main.argv.len(), main.cwd.as_path()), (2, Path::new("/w")));
        let req = SpawnRequest {
            name: "kid".into(),
            script: Some("a.py".into()),
            env: vec![KeyValue { key: "L".into(), value: "2".into() }],
            cwd: Some("sub".into()),
            ..Default::default()
        };
        let kid = AgentSpec::child(&main, 2, req).unwrap();
        assert_eq!(kid.argv, ["python3", "a.py"]);
        assert_eq!(kid.env, [("K".to_string(), "V".to_string()), ("L".to_string(), "2".to_string())]);
        assert_eq!(kid.cwd, Path::new("/w/sub"));
        std::fs::write(&path, r#"{"argv":[]}"#).unwrap();
        assert!(matches!(load_spawn_file(&path), Err(AgentError::Invalid(_))));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load_spawn_file(&path), Err(AgentError::BadSpec { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
