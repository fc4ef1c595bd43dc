//! Starting processes for agents and for EXEC: argv only (never a string handed to a shell unless
//! the policy chose `/bin/sh -c`), a minimal environment, their own process group.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use clove_sys::process::DirectSpec;

use super::agents::{AgentProcess, Leader};
use super::{AgentId, AgentStdio, Result, RuntimeError};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A command for `argv` with only the variables an agent needs (see [`environment`]).
pub(super) fn base_command(argv: &[String], cwd: &Path, home: &str, extra_env: &[(String, String)]) -> Result<Command> {
    let (program, args) = argv.split_first().ok_or_else(|| RuntimeError::InvalidArgument("empty argv".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(environment(home, extra_env)).current_dir(cwd).stdin(Stdio::null());
    Ok(cmd)
}

/// The whole environment of an agent or an EXEC: PATH, HOME, LANG and the variables asked for (a
/// later one replaces an earlier one of the same name). The host's secrets stay with the host.
fn environment(home: &str, extra_env: &[(String, String)]) -> Vec<(String, String)> {
    let base = [
        ("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into())),
        ("HOME".to_string(), home.to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ];
    let mut vars: Vec<(String, String)> = Vec::new();
    for (key, value) in base.into_iter().chain(extra_env.iter().cloned()) {
        vars.retain(|(k, _)| *k != key);
        vars.push((key, value));
    }
    vars
}

/// An agent's stdin (`/dev/null`), stdout and stderr: copies of the host's for `Inherit`, a
/// writable `/dev/null` for `Null`, the log file's for `File`.
pub(super) fn open_stdio(stdio: &AgentStdio) -> Result<(File, File, File)> {
    let null = |write: bool| {
        OpenOptions::new()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .map_err(|e| RuntimeError::io("opening /dev/null", e))
    };
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned().map(File::from).map_err(|e| RuntimeError::io("duplicating stdio", e))
    };
    Ok(match stdio {
        AgentStdio::Inherit => (null(false)?, dup(std::io::stdout().as_fd())?, dup(std::io::stderr().as_fd())?),
        AgentStdio::Null => (null(false)?, null(true)?, null(true)?),
        AgentStdio::File(path) => {
            let (out, err) = open_log(path)?;
            (null(false)?, out, err)
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
/// end is returned, non-blocking. Started without `fork` (see `clove_sys::process::start`): the
/// host's address space is never copied for it.
pub(super) fn start_agent(
    id: AgentId,
    argv: &[String],
    cwd: &Path,
    home: &str,
    env: &[(String, String)],
    stdio: &AgentStdio,
    join_cgroups: Vec<CString>,
) -> Result<(AgentProcess, UnixStream)> {
    let program = argv.first().ok_or_else(|| RuntimeError::InvalidArgument("empty argv".into()))?;
    let starting = |e: std::io::Error| RuntimeError::io(format!("starting {program}"), e);
    let (ours, theirs) = UnixStream::pair().map_err(|e| RuntimeError::io("creating the agent channel", e))?;
    ours.set_nonblocking(true).map_err(|e| RuntimeError::io("configuring the agent channel", e))?;
    let mut vars = environment(home, env);
    vars.retain(|(k, _)| k != "CLOVE_FD" && k != "CLOVE_AGENT_ID");
    vars.push(("CLOVE_FD".into(), clove_sys::process::CHANNEL_FD.to_string()));
    vars.push(("CLOVE_AGENT_ID".into(), id.to_string()));
    let path = vars.iter().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let found = find_program(program, path).ok_or_else(|| starting(std::io::ErrorKind::NotFound.into()))?;
    let (stdin, out, err) = open_stdio(stdio)?;
    let spec = DirectSpec {
        program: cstring(found.as_os_str().as_bytes())?,
        argv: argv.iter().map(|a| cstring(a.as_bytes())).collect::<Result<_>>()?,
        env: vars.iter().map(|(k, v)| cstring(format!("{k}={v}").as_bytes())).collect::<Result<_>>()?,
        cwd: cstring(cwd.as_os_str().as_bytes())?,
        stdin: stdin.as_raw_fd(),
        stdout: out.as_raw_fd(),
        stderr: err.as_raw_fd(),
        channel: Some(theirs.as_raw_fd()),
        join_cgroups,
    };
    let started = clove_sys::process::start(&spec).map_err(starting)?;
    Ok((AgentProcess { pid: started.pid, pidfd: started.pidfd, leader: Leader::ProcessGroup }, ours))
}

/// `program` as `execvp` would find it: a path with a slash as it is (relative to the working
/// directory), a bare name in the first directory of `path` that holds an executable file of it.
fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let executable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    path.split(':').filter(|dir| !dir.is_empty()).map(|dir| Path::new(dir).join(program)).find(|p| executable(p))
}

pub(super) fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| RuntimeError::InvalidArgument("an argument or variable contains a NUL byte".into()))
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
