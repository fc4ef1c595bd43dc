//! clove-guest: the PID 1 of a Clove microVM.
//!
//! Boot, in order:
//! 1. As PID 1: mount /dev, /dev/pts, /proc, /sys, /tmp and /run; make sure fds 0–2 are open.
//! 2. Start the reaper (PID 1 inherits every orphan).
//! 3. Connect host port 1024 and say HELLO: the host now knows the guest agent is ready.
//! 4. With a spawn spec (`/clove/spawn.json`): run the main program with stdout and stderr on host
//!    ports 1025 and 1026 and its protocol channel at `CLOVE_FD`; when it ends, send its status to
//!    host port 1027 and power off. Without one: serve the control port (guest port 1024) until EXIT.
//!
//! Not PID 1 (tests on a host): no mounts, and "power off" is exiting. The environment variables
//! `CLOVE_GUEST_TRANSPORT` (`vsock` or `unix:/dir`) and `CLOVE_GUEST_SPAWN` (the spec's path) let a
//! test stand in for the VMM.

mod agents;
mod async_results;
mod exec;
mod files;
mod host;
mod init;
mod reaper;
mod serve;
mod transport;
mod wire;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use host::{HostChannel, HostError};
use serve::{Guest, Role};
use transport::{Transport, TransportError};

const SPAWN_FILE: &str = "/clove/spawn.json";
const CONTROL_PORT: u32 = 1024;
const STDOUT_PORT: u32 = 1025;
const STDERR_PORT: u32 = 1026;
const STATUS_PORT: u32 = 1027;
/// How long the host has to acknowledge the exit status before the guest powers off anyway.
const STATUS_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The status reported when the main program could not be started, as a shell reports it.
const NOT_STARTED: i32 = 127;

#[derive(Debug, thiserror::Error)]
enum GuestError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("starting the reaper: {0}")]
    Reaper(std::io::Error),
    #[error("the reaper stopped before the main program ended")]
    ReaperGone,
}

/// One line on the console (PID 1's stderr is /dev/console, or /dev/kmsg without one).
pub fn log(message: &str) {
    let _ = writeln!(std::io::stderr(), "clove-guest: {message}");
}

/// Ends the guest: powers off as PID 1, exits otherwise.
fn finish(code: i32) -> ! {
    if std::process::id() == 1 {
        init::power_off()
    }
    std::process::exit(code)
}

fn main() {
    if std::process::id() == 1 {
        init::setup();
    }
    let code = match std::panic::catch_unwind(run) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            log(&format!("fatal: {e}"));
            1
        }
        Err(_) => {
            log("fatal: panicked");
            1
        }
    };
    finish(code)
}

fn run() -> Result<(), GuestError> {
    let transport = Transport::from_spec(std::env::var("CLOVE_GUEST_TRANSPORT").ok().as_deref())?;
    let reaper = reaper::Reaper::start().map_err(GuestError::Reaper)?;
    let host = HostChannel::connect(&transport)?;
    let guest = Arc::new(Guest::new(reaper, host));
    let spawn_file = std::env::var_os("CLOVE_GUEST_SPAWN").map_or_else(|| PathBuf::from(SPAWN_FILE), PathBuf::from);
    match agents::load_spawn_file(&spawn_file) {
        Ok(Some(spec)) => run_main(&guest, &transport, spec),
        Ok(None) => serve_control(&guest, &transport),
        Err(e) => {
            log(&e.to_string());
            report_status(&transport, NOT_STARTED);
            Ok(())
        }
    }
}

/// A stream for the main program's output, or /dev/null when the host did not take it.
fn output(transport: &Transport, port: u32) -> Stdio {
    match transport.connect(port) {
        Ok(stream) => Stdio::from(std::os::fd::OwnedFd::from(stream)),
        Err(e) => {
            log(&format!("{e}; that output goes to /dev/null"));
            Stdio::null()
        }
    }
}

fn run_main(guest: &Arc<Guest>, transport: &Transport, spec: agents::AgentSpec) -> Result<(), GuestError> {
    let (stdout, stderr) = (output(transport, STDOUT_PORT), output(transport, STDERR_PORT));
    let status = match agents::launch(&spec, stdout, stderr, &guest.reaper) {
        Ok(launched) => {
            let served = guest.clone();
            std::thread::spawn(move || serve::serve(&served, launched.channel, Role::Agent(spec)));
            launched.exited.recv().map_err(|_| GuestError::ReaperGone)?.status()
        }
        Err(e) => {
            log(&e.to_string());
            NOT_STARTED
        }
    };
    report_status(transport, status);
    Ok(())
}

/// Sends the main program's status to the host: 4 bytes, little-endian; the host answers one byte
/// once it has them. Only then is powering off safe: a vsock write only queues a packet, and the
/// reset would drop it.
fn report_status(transport: &Transport, status: i32) {
    let sent = transport.connect(STATUS_PORT).map_err(|e| e.to_string()).and_then(|mut stream| {
        stream.write_all(&status.to_le_bytes()).map_err(|e| format!("sending the exit status: {e}"))?;
        let _ = stream.set_read_timeout(Some(STATUS_ACK_WAIT));
        let mut ack = [0u8; 1];
        stream.read_exact(&mut ack).map_err(|e| format!("no acknowledgment of the exit status: {e}"))
    });
    if let Err(e) = sent {
        log(&e);
    }
}

fn serve_control(guest: &Arc<Guest>, transport: &Transport) -> Result<(), GuestError> {
    let listener = transport.listen(CONTROL_PORT)?;
    loop {
        match listener.accept() {
            Ok(stream) => {
                let guest = guest.clone();
                std::thread::spawn(move || {
                    if serve::serve(&guest, stream, Role::Control) == serve::Ended::Exit {
                        finish(0);
                    }
                });
            }
            Err(e) => {
                // Out of descriptors or memory, probably: let the connections in flight finish.
                log(&format!("accepting on the control port: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}
