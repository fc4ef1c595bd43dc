//! EXEC jobs: a child process whose stdout and stderr pipes and pidfd are watched by the reactor, so
//! a long command blocks nothing; a deadline timer kills its whole process group.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mio::unix::pipe;

use super::agents::AgentProcess;
use super::sandbox::{self, Confinement};
use super::{process, AgentId, Result, RuntimeError};
use crate::protocol::{ExecReply, ExitInfo};

/// The most stdin an EXEC may carry: what a fresh pipe takes without the runtime waiting on it.
pub(super) const MAX_STDIN: usize = 64 << 10;
/// Default cap on each of stdout and stderr.
pub(super) const DEFAULT_MAX_OUTPUT: usize = 256 << 10;

/// Output kept up to a cap; the rest is read and dropped so the child never blocks on a full pipe.
struct Capture {
    pipe: Option<pipe::Receiver>,
    kept: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn new(pipe: Option<pipe::Receiver>, cap: usize) -> Self {
        Capture { pipe, kept: Vec::new(), cap, truncated: false }
    }

    /// Reads until the pipe would block; drops the pipe at end of file.
    fn drain(&mut self, registry: &mio::Registry) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 16 << 10];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let room = self.cap - self.kept.len();
                    self.kept.extend_from_slice(&chunk[..n.min(room)]);
                    self.truncated |= n > room;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if let Some(mut pipe) = self.pipe.take() {
            let _ = registry.deregister(&mut pipe);
        }
    }
}

/// Who asked for an EXEC, and how the answer goes back.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExecCaller {
    pub agent: AgentId,
    pub request_id: u32,
    pub run_async: bool,
}

pub(super) struct ExecJob {
    pub caller: ExecCaller,
    pub process: AgentProcess,
    stdout: Capture,
    stderr: Capture,
    started: Instant,
    pub deadline: Instant,
    timeout: Duration,
    timed_out: bool,
    status: Option<ExitInfo>,
    display: String,
}

/// What an EXEC needs once the policy has approved it.
pub(super) struct ExecSpec<'a> {
    pub argv: &'a [String],
    pub display: String,
    pub cwd: &'a Path,
    /// For a sandboxed caller: the directory the request named, relative to its working directory.
    pub cwd_inside: Option<String>,
    pub home: &'a str,
    pub env: &'a [(String, String)],
    pub stdin: &'a [u8],
    pub timeout: Duration,
    pub max_output: usize,
    /// The caller's cgroup, which the program is in before it runs.
    pub cgroup: Option<&'a super::cgroup::AgentCgroup>,
    /// A sandboxed caller's sandbox (its init and what it is confined by): the program runs inside.
    pub inside: Option<(&'a std::os::fd::OwnedFd, &'a Confinement)>,
}

/// A started program and the runtime's ends of its stdio.
type Launched = (AgentProcess, Option<pipe::Sender>, Option<pipe::Receiver>, Option<pipe::Receiver>);

/// Starts the program on the host, in its own process group.
fn launch_on_host(spec: &ExecSpec<'_>) -> Result<Launched> {
    let mut cmd = process::base_command(spec.argv, spec.cwd, spec.home, spec.env)?;
    let stdin = if spec.stdin.is_empty() { Stdio::null() } else { Stdio::piped() };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    clove_sys::process::prepare_child(&mut cmd, super::agents::join_files(spec.cgroup));
    let mut child = process::spawn(&mut cmd, &spec.argv[0])?;
    let stdin = child.stdin.take().map(pipe::Sender::from);
    let stdout = child.stdout.take().map(pipe::Receiver::from);
    let stderr = child.stderr.take().map(pipe::Receiver::from);
    Ok((process::watch(child)?, stdin, stdout, stderr))
}

/// Starts the program inside a sandboxed caller's sandbox.
fn launch_inside(spec: &ExecSpec<'_>, init: &std::os::fd::OwnedFd, confinement: &Confinement) -> Result<Launched> {
    let pipe_pair = |what: &str| pipe::new().map_err(|e| RuntimeError::io(format!("creating the exec {what} pipe"), e));
    let (out_tx, out_rx) = pipe_pair("stdout")?;
    let (err_tx, err_rx) = pipe_pair("stderr")?;
    let (in_tx, in_rx) = pipe_pair("stdin")?;
    // The program's ends block, as a program expects of its stdio.
    let blocking = out_tx.set_nonblocking(false).and_then(|()| err_tx.set_nonblocking(false));
    blocking.and_then(|()| in_rx.set_nonblocking(false)).map_err(|e| RuntimeError::io("configuring exec stdio", e))?;
    let cwd = spec.cwd_inside.as_deref();
    let stdio = [in_rx.as_raw_fd(), out_tx.as_raw_fd(), err_tx.as_raw_fd()];
    let process = sandbox::enter(init, confinement, spec.argv, cwd, spec.env, stdio, spec.cgroup)?;
    // Without stdin the program reads end of file at once.
    let stdin = (!spec.stdin.is_empty()).then_some(in_tx);
    Ok((process, stdin, Some(out_rx), Some(err_rx)))
}

impl ExecJob {
    pub fn start(caller: ExecCaller, spec: ExecSpec<'_>) -> Result<ExecJob> {
        if spec.stdin.len() > MAX_STDIN {
            return Err(RuntimeError::LimitExceeded(format!(
                "stdin of {} bytes exceeds {MAX_STDIN}",
                spec.stdin.len()
            )));
        }
        let (process, stdin, stdout, stderr) = match spec.inside {
            Some((init, confinement)) => launch_inside(&spec, init, confinement)?,
            None => launch_on_host(&spec)?,
        };
        let job = ExecJob {
            caller,
            process,
            stdout: Capture::new(stdout, spec.max_output),
            stderr: Capture::new(stderr, spec.max_output),
            started: Instant::now(),
            deadline: Instant::now() + spec.timeout,
            timeout: spec.timeout,
            timed_out: false,
            status: None,
            display: spec.display,
        };
        if let Some(mut stdin) = stdin {
            // A fresh pipe holds MAX_STDIN bytes, so this write completes without waiting.
            stdin
                .set_nonblocking(true)
                .and_then(|()| stdin.write_all(spec.stdin))
                .map_err(|e| RuntimeError::io("writing exec stdin", e))?;
        }
        for pipe in [&job.stdout.pipe, &job.stderr.pipe].into_iter().flatten() {
            pipe.set_nonblocking(true).map_err(|e| RuntimeError::io("configuring exec output", e))?;
        }
        Ok(job)
    }

    /// Registers the pidfd and output pipes under the given tokens.
    pub fn register(
        &mut self,
        registry: &mio::Registry,
        exit: mio::Token,
        out: mio::Token,
        err: mio::Token,
    ) -> io::Result<()> {
        let pidfd = self.process.pidfd.as_raw_fd();
        registry.register(&mut mio::unix::SourceFd(&pidfd), exit, mio::Interest::READABLE)?;
        for (capture, token) in [(&mut self.stdout, out), (&mut self.stderr, err)] {
            if let Some(pipe) = capture.pipe.as_mut() {
                registry.register(pipe, token, mio::Interest::READABLE)?;
            }
        }
        Ok(())
    }

    pub fn on_output(&mut self, registry: &mio::Registry, stderr: bool) {
        if stderr {
            self.stderr.drain(registry)
        } else {
            self.stdout.drain(registry)
        }
    }

    /// Whether the child has ended (reaping it if so).
    pub fn poll_exit(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.process.try_exit();
        }
        self.status.is_some()
    }

    /// Kills the whole process group at the deadline.
    pub fn time_out(&mut self) {
        self.timed_out = true;
        let _ = self.process.signal_group(clove_sys::process::SIGKILL);
    }

    /// Kills the process group, e.g. because the caller is gone.
    pub fn abandon(&mut self) {
        let _ = self.process.signal_group(clove_sys::process::SIGKILL);
    }

    /// The result, once [`poll_exit`](Self::poll_exit) said the child ended. Output still in the
    /// pipes is read first; the pidfd and pipes are deregistered.
    pub fn finish(mut self, registry: &mio::Registry) -> Result<ExecReply> {
        self.stdout.drain(registry);
        self.stderr.drain(registry);
        for capture in [&mut self.stdout, &mut self.stderr] {
            if let Some(mut pipe) = capture.pipe.take() {
                let _ = registry.deregister(&mut pipe);
            }
        }
        let _ = registry.deregister(&mut mio::unix::SourceFd(&self.process.pidfd.as_raw_fd()));
        if self.timed_out {
            return Err(RuntimeError::Timeout(format!(
                "exec timed out after {} ms: {}",
                self.timeout.as_millis(),
                self.display
            )));
        }
        let status = self.status;
        Ok(ExecReply {
            exit_code: status.and_then(|s| s.code),
            signal: status.and_then(|s| s.signal),
            stdout: self.stdout.kept,
            stderr: self.stderr.kept,
            truncated: self.stdout.truncated || self.stderr.truncated,
            duration_ms: self.started.elapsed().as_millis() as u64,
        })
    }
}
