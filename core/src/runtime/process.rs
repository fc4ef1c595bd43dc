//! Starting processes for agents and for EXEC: argv only (never a string handed to a shell unless
//! the policy chose `/bin/sh -c`), a minimal environment, their own process group.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::agents::{AgentProcess, Leader};
use super::{AgentId, AgentStdio, Result, RuntimeError};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A command for `argv` with only the variables an agent needs: the host's secrets stay with the host.
pub(super) fn base_command(argv: &[String], cwd: &Path, home: &str, extra_env: &[(String, String)]) -> Result<Command> {
    let (program, args) = argv.split_first().ok_or_else(|| RuntimeError::InvalidArgument("empty argv".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()))
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null());
    Ok(cmd)
}

fn stdio_pair(stdio: &AgentStdio) -> Result<(Stdio, Stdio)> {
    Ok(match stdio {
        AgentStdio::Inherit => (Stdio::inherit(), Stdio::inherit()),
        AgentStdio::Null => (Stdio::null(), Stdio::null()),
        AgentStdio::File(path) => {
            let (out, err) = open_log(path)?;
            (out.into(), err.into())
        }
    })
}

/// An agent's log file, opened for appending, once for stdout and once for stderr.
pub(super) fn open_log(path: &Path) -> Result<(std::fs::File, std::fs::File)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| RuntimeError::io(format!("opening agent log {}", path.display()), e))?;
    let second = file.try_clone().map_err(|e| RuntimeError::io("duplicating the agent log", e))?;
    Ok((file, second))
}

/// Starts an agent's process. It finds its end of a fresh socketpair at `CLOVE_FD`; the runtime's
/// end is returned, non-blocking.
pub(super) fn start_agent(
    id: AgentId,
    argv: &[String],
    cwd: &Path,
    home: &str,
    env: &[(String, String)],
    stdio: &AgentStdio,
    join_cgroups: Vec<std::ffi::CString>,
) -> Result<(AgentProcess, UnixStream)> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| RuntimeError::io("creating the agent channel", e))?;
    ours.set_nonblocking(true).map_err(|e| RuntimeError::io("configuring the agent channel", e))?;
    let mut cmd = base_command(argv, cwd, home, env)?;
    let (out, err) = stdio_pair(stdio)?;
    cmd.env("CLOVE_FD", clove_sys::process::CHANNEL_FD.to_string())
        .env("CLOVE_AGENT_ID", id.to_string())
        .stdout(out)
        .stderr(err);
    clove_sys::process::prepare_child(&mut cmd, Some(theirs.as_raw_fd()), join_cgroups);
    let child = spawn(&mut cmd, &argv[0])?;
    drop(theirs);
    let process = watch(child)?;
    Ok((process, ours))
}

/// Spawns and maps the error to one that names the program.
pub(super) fn spawn(cmd: &mut Command, program: &str) -> Result<Child> {
    cmd.spawn().map_err(|e| RuntimeError::io(format!("starting {program}"), e))
}

/// Pairs a child with a pidfd that becomes readable when it exits; from here on the pidfd reaps it.
pub(super) fn watch(mut child: Child) -> Result<AgentProcess> {
    match clove_sys::process::pidfd_open(child.id()) {
        Ok(pidfd) => Ok(AgentProcess { pid: child.id(), pidfd, leader: Leader::ProcessGroup }),
        Err(e) => {
            // Without a pidfd nobody would notice its exit: do not leave it running unseen.
            let _ = child.kill();
            let _ = child.wait();
            Err(RuntimeError::io("opening a pidfd", e))
        }
    }
}
