//! EXEC inside the guest, with the process tier's semantics: argv, or a command line split into words
//! (a shell only for shell syntax, which an unrestricted agent may use, and inside the VM every agent
//! is unrestricted), a minimal environment, stdin of at most 64 KiB, output capped per stream, and a
//! timeout that kills the whole process group.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clove_core::policy::{AgentPolicy, Denial, Level};
use clove_core::protocol::{ErrorCode, ExecReply, ExecRequest};
use std::os::unix::process::CommandExt;

use crate::reaper::{Exit, Reaper};

/// The most stdin an EXEC may carry, as in the process tier.
pub const MAX_STDIN: usize = 64 << 10;
/// Default cap on each of stdout and stderr, as in the process tier.
pub const DEFAULT_MAX_OUTPUT: usize = 256 << 10;
/// How long output still in the pipes is awaited after the program ended: a background grandchild
/// may hold them open for ever.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Invalid(#[from] Denial),
    #[error("stdin of {0} bytes exceeds {MAX_STDIN}")]
    StdinTooBig(usize),
    #[error("starting {program}: {source}")]
    Start { program: String, source: io::Error },
    #[error("exec timed out after {ms} ms: {display}")]
    Timeout { ms: u64, display: String },
    #[error("the reaper is gone")]
    ReaperGone,
}

impl ExecError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ExecError::Invalid(_) => ErrorCode::InvalidArgument,
            ExecError::StdinTooBig(_) => ErrorCode::LimitExceeded,
            ExecError::Start { source, .. } if source.kind() == io::ErrorKind::NotFound => ErrorCode::NotFound,
            ExecError::Start { .. } => ErrorCode::Io,
            ExecError::Timeout { .. } => ErrorCode::Timeout,
            ExecError::ReaperGone => ErrorCode::Internal,
        }
    }
}

/// Output kept up to a cap; the rest is read and dropped so the program never blocks on a full pipe.
#[derive(Default)]
struct Capture {
    kept: Vec<u8>,
    truncated: bool,
}

fn drain(mut pipe: impl Read, cap: usize, into: Arc<Mutex<Capture>>, done: mpsc::Sender<()>) {
    let mut chunk = [0u8; 16 << 10];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let mut capture = into.lock().unwrap_or_else(PoisonError::into_inner);
                let room = cap - capture.kept.len();
                capture.kept.extend_from_slice(&chunk[..n.min(room)]);
                capture.truncated |= n > room;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

/// The environment every program the guest starts gets, before its own variables.
pub fn base_env(home: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into())),
        ("HOME".into(), home.into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// Runs one EXEC to completion. `cwd` is the caller's working directory.
pub fn run(req: &ExecRequest, cwd: &Path, reaper: &Reaper) -> Result<ExecReply, ExecError> {
    let policy = AgentPolicy::at_level(Level::Unrestricted, "/root");
    let plan = policy.plan_exec(&req.argv, req.command.as_deref())?;
    if req.stdin.len() > MAX_STDIN {
        return Err(ExecError::StdinTooBig(req.stdin.len()));
    }
    let max_ms = policy.current.max_exec_time_ms;
    let timeout_ms = req.timeout_ms.map_or(max_ms, |t| u64::from(t).min(max_ms));
    let max_output = req.max_output.map_or(DEFAULT_MAX_OUTPUT, |m| m as usize);
    let (program, args) = plan.argv.split_first().ok_or(Denial::Invalid("empty argv".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(base_env("/root"))
        .envs(req.env.iter().map(|kv| (&kv.key, &kv.value)))
        .current_dir(req.cwd.as_ref().map_or_else(|| cwd.to_path_buf(), |c| cwd.join(c)))
        // Its own group, so a timeout kills everything it started too.
        .process_group(0)
        .stdin(if req.stdin.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let (mut child, exited) =
        reaper.spawn(&mut cmd).map_err(|source| ExecError::Start { program: program.clone(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = req.stdin.clone();
        // A thread, so a program that never reads its stdin cannot stall this one.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut captures = Vec::new();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let capture = Arc::new(Mutex::new(Capture::default()));
        captures.push(capture.clone());
        let done = done_tx.clone();
        std::thread::spawn(move || drain(pipe, max_output, capture, done));
    }
    let status = match exited.recv_timeout(Duration::from_millis(timeout_ms)) {
        Ok(exit) => exit,
        Err(RecvTimeoutError::Timeout) => {
            // SAFETY: kill takes no pointers; the group is the child's own, which still exists
            // because its leader has not been reaped.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = exited.recv();
            return Err(ExecError::Timeout { ms: timeout_ms, display: plan.display });
        }
        Err(RecvTimeoutError::Disconnected) => return Err(ExecError::ReaperGone),
    };
    let grace_end = Instant::now() + DRAIN_GRACE;
    for _ in 0..captures.len() {
        let _ = done_rx.recv_timeout(grace_end.saturating_duration_since(Instant::now()));
    }
    let mut taken = captures.iter().map(|c| {
        let mut c = c.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut c.kept), c.truncated)
    });
    let (stdout, out_cut) = taken.next().unwrap_or_default();
    let (stderr, err_cut) = taken.next().unwrap_or_default();
    Ok(ExecReply {
        exit_code: match status {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        },
        signal: match status {
            Exit::Signal(s) => Some(s),
            Exit::Code(_) => None,
        },
        stdout,
        stderr,
        truncated: out_cut || err_cut,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
