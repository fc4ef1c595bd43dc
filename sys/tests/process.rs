//! Programs started directly (`clove_sys::process::start`): what they get, and failures named.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use clove_sys::process::{pidfd_wait, start, DirectSpec};

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn spec(script: &str, stdout: &UnixStream, channel: Option<&UnixStream>) -> DirectSpec {
    DirectSpec {
        program: c("/bin/sh"),
        argv: vec![c("sh"), c("-c"), c(script)],
        env: vec![c("GREETING=hello"), c("PATH=/usr/bin:/bin")],
        cwd: c("/tmp"),
        stdin: 0,
        stdout: stdout.as_raw_fd(),
        stderr: stdout.as_raw_fd(),
        channel: channel.map(|s| s.as_raw_fd()),
        join_cgroups: Vec::new(),
    }
}

#[test]
fn a_program_gets_its_environment_directory_group_and_channel_and_nothing_else() {
    // An fd of this process without close-on-exec, above those the program gets, which it must not
    // inherit.
    // SAFETY: F_DUPFD of stdin returns a new fd (at least 10) or -1.
    let leaked = unsafe { libc::fcntl(0, libc::F_DUPFD, 10) };
    assert!(leaked >= 10);
    // SAFETY: dup just returned it; nothing else owns it.
    let _leaked = unsafe { OwnedFd::from_raw_fd(leaked) };
    let (mut reader, writer) = UnixStream::pair().unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let script = format!(
        "echo \"$GREETING from $(pwd)\"; echo $$ $(cut -d' ' -f5 /proc/$$/stat); \
         test -e /proc/$$/fd/{leaked} && echo leaked; echo over the channel >&3"
    );
    let started = start(&spec(&script, &writer, Some(&theirs))).unwrap();
    drop((writer, theirs));
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    let exit = pidfd_wait(&started.pidfd, true).unwrap().unwrap();
    assert_eq!(exit.code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hello from /tmp");
    assert_eq!(lines[1], format!("{0} {0}", started.pid), "its own process group");
    assert_eq!(lines.len(), 2, "no descriptor leaked: {out}");
    let mut said = String::new();
    ours.read_to_string(&mut said).unwrap();
    assert_eq!(said, "over the channel\n");
}

#[test]
fn failures_name_their_stage_and_keep_their_kind() {
    let (_reader, writer) = UnixStream::pair().unwrap();
    let mut missing = spec("true", &writer, None);
    missing.program = c("/nonexistent/program");
    let err = start(&missing).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().starts_with("execve: "), "{err}");

    let mut nowhere = spec("true", &writer, None);
    nowhere.cwd = c("/nonexistent");
    assert!(start(&nowhere).unwrap_err().to_string().starts_with("chdir: "));

    let mut cgroup = spec("true", &writer, None);
    cgroup.join_cgroups = vec![c("/nonexistent/cgroup/tasks")];
    let err = start(&cgroup).unwrap_err().to_string();
    assert!(err.starts_with("join cgroup /nonexistent/cgroup/tasks: "), "{err}");
    cgroup.join_cgroups = vec![c("tasks")];
    assert_eq!(start(&cgroup).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn a_child_that_outlives_the_start_is_reaped_through_its_pidfd() {
    let (mut reader, writer) = UnixStream::pair().unwrap();
    let started = start(&spec("exec sleep 30", &writer, None)).unwrap();
    drop(writer);
    assert_eq!(pidfd_wait(&started.pidfd, false).unwrap(), None, "still running");
    // SAFETY: kill with a pid we started and a signal number.
    assert_eq!(unsafe { libc::kill(started.pid as i32, libc::SIGKILL) }, 0);
    let exit = pidfd_wait(&started.pidfd, true).unwrap().unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    assert_eq!(out, "");
}
