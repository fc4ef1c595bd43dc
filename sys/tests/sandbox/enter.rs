//! Programs entered into a running sandbox see and can do what its own program does.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clove_sys::process::pidfd_signal;
use clove_sys::sandbox::{
    enter, spawn, wait, wait_nohang, Bind, EnterSpec, Entered, Exit, LandlockRules, NetNamespace, Resource, Rlimit,
    SandboxSpec, Sandboxed,
};

use super::{c, cgroup2_mount, shell, skip, HostDir, RemoveDir, UID};

/// The system trees the test sandboxes bind, as landlock read-exec rules.
fn system_rules(read_write: &[&str]) -> LandlockRules {
    let system = ["/bin", "/lib", "/lib64", "/usr"].into_iter().filter(|p| Path::new(p).exists());
    LandlockRules {
        read_exec: system.map(PathBuf::from).collect(),
        read_write: read_write.iter().map(PathBuf::from).collect(),
    }
}

/// A running sandbox (`script` then `sleep 30`) with a writable `/work`, killed on drop.
struct Running {
    sandbox: Sandboxed,
    work: HostDir,
    landlock: Option<LandlockRules>,
}

impl Running {
    /// Starts `script; exec sleep 30` and waits for the script to print "ready". `setup` adjusts
    /// the spec.
    fn start(tag: &str, script: &str, setup: impl FnOnce(&mut SandboxSpec)) -> Running {
        let work = HostDir::new(tag);
        let mut spec = shell(&format!("{script}; echo ready; exec sleep 30"));
        spec.root.binds.push(Bind::writable(&work.0, "/work"));
        spec.cwd = c("/work");
        if clove_sys::sandbox::landlock_abi().is_some() {
            spec.landlock = Some(system_rules(&["/work"]));
        }
        setup(&mut spec);
        let null = File::open("/dev/null").unwrap();
        let (mut reader, writer) = UnixStream::pair().unwrap();
        spec.stdin = null.as_raw_fd();
        spec.stdout = writer.as_raw_fd();
        let sandbox = spawn(&spec, || Ok(())).unwrap_or_else(|e| panic!("spawn: {e}"));
        drop(writer);
        let mut line = [0u8; 6];
        reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        reader.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"ready\n");
        Running { sandbox, work, landlock: spec.landlock }
    }

    /// What `enter` gets for `/bin/sh -c script`, as the sandbox's own program has it.
    fn enter_spec(&self, script: &str) -> EnterSpec {
        EnterSpec {
            argv: vec![c("/bin/sh"), c("-c"), c(script)],
            env: vec![c("PATH=/usr/bin:/bin:/usr/sbin"), c("LANG=C")],
            uid: UID,
            gid: UID,
            cwd: c("/work"),
            rlimits: vec![Rlimit { resource: Resource::Core, soft: 0, hard: 0 }],
            seccomp: true,
            landlock: self.landlock.clone(),
            stdin: 0,
            stdout: 1,
            stderr: 2,
            join_cgroups: Vec::new(),
            start_in_cgroup: None,
        }
    }

    /// Enters with stdout captured; returns the exit and the output.
    fn run(&self, mut spec: EnterSpec) -> (Exit, String) {
        let null = File::open("/dev/null").unwrap();
        let (mut reader, writer) = UnixStream::pair().unwrap();
        spec.stdin = null.as_raw_fd();
        spec.stdout = writer.as_raw_fd();
        let entered = enter(&self.sandbox.pidfd, &spec).unwrap_or_else(|e| panic!("enter: {e}"));
        drop(writer);
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        (wait(&entered.pidfd).unwrap(), out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = pidfd_signal(&self.sandbox.pidfd, clove_sys::process::SIGKILL);
        let _ = wait(&self.sandbox.pidfd);
    }
}

/// `key=value` lines of an output.
fn fields(out: &str) -> std::collections::HashMap<&str, &str> {
    out.lines().filter_map(|l| l.split_once('=')).collect()
}

#[test]
fn enter_runs_inside_the_sandbox() {
    if skip("enter_runs_inside_the_sandbox") {
        return;
    }
    let secret = HostDir::new("enter-secret");
    std::fs::write(secret.0.join("f"), "secret").unwrap();
    let running = Running::start("enter", "echo made > /work/made-by-sandbox", |spec| {
        spec.root.binds.push(Bind { target: PathBuf::from("/other"), ..Bind::read_only(&secret.0) })
    });
    let host_path = running.work.0.display().to_string();
    let script = format!(
        "echo host=$(cat /proc/sys/kernel/hostname); \
         echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
         echo cwd=$(pwd); \
         echo made=$(cat /work/made-by-sandbox); \
         echo shadow=$(test -e /etc/shadow && echo yes || echo no); \
         echo host_path=$(test -e {host_path} && echo yes || echo no); \
         echo pid=$$; \
         echo sleeps=$(cat /proc/[0-9]*/comm | grep -c '^sleep$'); \
         echo net=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '); \
         grep -E '^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd|CapAmb):' /proc/self/status | tr -d ' \\t' | tr : =; \
         echo nofile=$(ulimit -n); \
         echo from-enter > /work/from-enter && echo wrote=yes; \
         echo other=$(cat /other/f 2>/dev/null || echo denied)"
    );
    let mut spec = running.enter_spec(&script);
    spec.rlimits.push(Rlimit { resource: Resource::OpenFiles, soft: 64, hard: 64 });
    let (exit, out) = running.run(spec);
    assert_eq!(exit, Exit::Code(0), "{out}");
    let f = fields(&out);
    let field = |key: &str| *f.get(key).unwrap_or_else(|| panic!("no {key} in: {out}"));
    assert_eq!(field("host"), "clove-box", "the sandbox's uts namespace");
    assert_eq!(field("uid"), "1000 gid=1000 groups=1000", "{out}");
    assert_eq!(field("cwd"), "/work");
    assert_eq!(field("made"), "made", "the sandbox's /work: {out}");
    assert_eq!(field("shadow"), "no", "the sandbox's root, not the host's: {out}");
    assert_eq!(field("host_path"), "no", "the sandbox's private /tmp: {out}");
    let pid: u32 = field("pid").parse().unwrap();
    assert!((2..=10).contains(&pid), "a low pid in the sandbox's pid namespace: {pid}");
    assert_eq!(field("sleeps"), "1", "it sees the sandbox's sleep in its /proc: {out}");
    assert_eq!(field("net").trim(), "lo", "only loopback: {out}");
    assert_eq!(field("Seccomp"), "2");
    assert_eq!(field("NoNewPrivs"), "1");
    for caps in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(field(caps), "0000000000000000", "{caps}");
    }
    assert_eq!(field("nofile"), "64", "its rlimits");
    assert_eq!(field("wrote"), "yes");
    assert_eq!(std::fs::read_to_string(running.work.0.join("from-enter")).unwrap(), "from-enter\n");
    if running.landlock.is_some() {
        assert_eq!(field("other"), "denied", "the landlock rules apply: {out}");
    } else {
        eprintln!("SKIPPED part of enter_runs_inside_the_sandbox: no landlock in this kernel");
    }
    // The sandbox itself is untouched.
    assert_eq!(wait_nohang(&running.sandbox.pidfd).unwrap(), None);
}

#[test]
fn enter_shares_what_the_sandbox_shares() {
    if skip("enter_shares_what_the_sandbox_shares") {
        return;
    }
    // An agent allowed the network keeps the host's network namespace.
    let running = Running::start("enter-net", "true", |spec| spec.namespaces.net = false);
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let (exit, out) = running.run(running.enter_spec("readlink /proc/self/ns/net; cat /proc/sys/kernel/hostname"));
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(out, format!("{}\nclove-box\n", host.display()));
}

#[test]
fn enter_joins_a_network_namespace_made_ahead() {
    if skip("enter_joins_a_network_namespace_made_ahead") {
        return;
    }
    let ns = NetNamespace::new().unwrap();
    let running =
        Running::start("enter-made-net", "true", |spec| spec.network_namespace = Some(ns.as_fd().as_raw_fd()));
    let inode = File::from(ns.as_fd().try_clone_to_owned().unwrap()).metadata().unwrap().ino();
    let inside = running.run(running.enter_spec("readlink /proc/self/ns/net")).1;
    assert_eq!(inside, format!("net:[{inode}]\n"));
}

#[test]
fn enter_reports_exits_and_forwards_signals() {
    if skip("enter_reports_exits_and_forwards_signals") {
        return;
    }
    let running = Running::start("enter-exit", "true", |_| {});
    assert_eq!(running.run(running.enter_spec("exit 7")).0, Exit::Code(7));
    assert_eq!(running.run(running.enter_spec("kill -9 $$")).0, Exit::Code(128 + 9));

    let null = File::open("/dev/null").unwrap();
    let mut spec = running.enter_spec("sleep 30; true");
    spec.stdin = null.as_raw_fd();
    spec.stdout = null.as_raw_fd();
    let entered = enter(&running.sandbox.pidfd, &spec).unwrap();
    assert_eq!(wait_nohang(&entered.pidfd).unwrap(), None);
    pidfd_signal(&entered.pidfd, clove_sys::process::SIGTERM).unwrap();
    assert_eq!(wait(&entered.pidfd).unwrap(), Exit::Code(128 + clove_sys::process::SIGTERM));
}

/// Waits up to 10 s for EOF on `reader` (everything holding the other end has exited).
fn assert_eof(mut reader: UnixStream, what: &str) {
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
fn killing_the_helper_kills_the_program() {
    if skip("killing_the_helper_kills_the_program") {
        return;
    }
    let running = Running::start("enter-kill", "true", |_| {});
    let (mut reader, writer) = UnixStream::pair().unwrap();
    let mut spec = running.enter_spec("echo ready; exec sleep 30");
    spec.stdout = writer.as_raw_fd();
    let entered = enter(&running.sandbox.pidfd, &spec).unwrap();
    drop(writer);
    let mut line = [0u8; 6];
    reader.read_exact(&mut line).unwrap();
    pidfd_signal(&entered.pidfd, clove_sys::process::SIGKILL).unwrap();
    assert_eq!(wait(&entered.pidfd).unwrap(), Exit::Signal(clove_sys::process::SIGKILL));
    // The sleep held the other end of the socket.
    assert_eof(reader, "the program outlived its helper");
    // Dead, and reaped by the sandbox's init (its new parent) a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out) = running.run(running.enter_spec("cat /proc/[0-9]*/comm | grep -c '^sleep$'"));
        if out == "1\n" {
            break;
        }
        assert!(Instant::now() < deadline, "only the sandbox's own sleep should be left: {out}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn enter_dies_with_the_thread_that_entered() {
    if skip("enter_dies_with_the_thread_that_entered") {
        return;
    }
    let running = Running::start("enter-thread", "true", |_| {});
    let (reader, writer) = UnixStream::pair().unwrap();
    let mut spec = running.enter_spec("exec sleep 30");
    spec.stdout = writer.as_raw_fd();
    let entered: Entered =
        std::thread::scope(|s| s.spawn(|| enter(&running.sandbox.pidfd, &spec).unwrap()).join()).unwrap();
    drop(writer);
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = wait_nohang(&entered.pidfd).unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the helper outlived its thread");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(exit, Exit::Signal(clove_sys::process::SIGKILL));
    assert_eof(reader, "the program outlived its thread");
}

#[test]
fn entering_an_ended_sandbox_fails_naming_the_stage() {
    if skip("entering_an_ended_sandbox_fails_naming_the_stage") {
        return;
    }
    let null = File::open("/dev/null").unwrap();
    let mut spec = shell("true");
    spec.stdin = null.as_raw_fd();
    spec.stdout = null.as_raw_fd();
    let sandbox = spawn(&spec, || Ok(())).unwrap();
    // Exited, not yet reaped: a zombie has no namespaces left to enter.
    let stat = format!("/proc/{}/stat", sandbox.pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stat).unwrap().contains(") Z ") {
        assert!(Instant::now() < deadline, "the sandbox did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let running = Running { sandbox, work: HostDir::new("enter-ended"), landlock: None };
    let mut spec = running.enter_spec("true");
    spec.stdin = null.as_raw_fd();
    let err = enter(&running.sandbox.pidfd, &spec).unwrap_err();
    assert!(err.to_string().starts_with("setns into the sandbox: "), "{err}");
    // Reaped: the pidfd refers to no process at all.
    assert_eq!(wait(&running.sandbox.pidfd).unwrap(), Exit::Code(0));
    let err = enter(&running.sandbox.pidfd, &spec).unwrap_err();
    assert!(err.to_string().starts_with("setns into the sandbox: "), "{err}");

    // Other stages are named too.
    let running = Running::start("enter-stages", "true", |_| {});
    let mut spec = running.enter_spec("true");
    spec.cwd = c("/nowhere");
    let err = enter(&running.sandbox.pidfd, &spec).unwrap_err();
    assert!(err.to_string().starts_with("chdir: "), "{err}");
    let mut spec = running.enter_spec("true");
    spec.argv[0] = c("/etc/shadow");
    let err = enter(&running.sandbox.pidfd, &spec).unwrap_err();
    assert!(err.to_string().starts_with("execve: "), "{err}");
    let mut spec = running.enter_spec("true");
    spec.join_cgroups = vec![c("/no/such/cgroup/tasks")];
    let err = enter(&running.sandbox.pidfd, &spec).unwrap_err();
    assert!(err.to_string().starts_with("join cgroup /no/such/cgroup/tasks: "), "{err}");
    let mut spec = running.enter_spec("true");
    spec.argv[0] = c("sh");
    assert_eq!(enter(&running.sandbox.pidfd, &spec).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn enter_joins_the_sandboxs_cgroup() {
    if skip("enter_joins_the_sandboxs_cgroup") {
        return;
    }
    let hierarchy = Path::new("/sys/fs/cgroup/pids");
    if !hierarchy.join("tasks").exists() {
        eprintln!("SKIPPED: enter_joins_the_sandboxs_cgroup: no cgroup v1 pids hierarchy");
        return;
    }
    let cgroup = hierarchy.join(format!("clove-enter-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    let _remove = RemoveDir(cgroup.clone());
    let procs = cgroup.join("cgroup.procs");
    let tasks = c(cgroup.join("tasks").to_str().unwrap());
    let running = Running::start("enter-cgroup", "true", |spec| spec.join_cgroups = vec![tasks.clone()]);
    let script = "grep ':pids:' /proc/self/cgroup";
    let mut spec = running.enter_spec(script);
    spec.join_cgroups = vec![tasks];
    let (exit, out) = running.run(spec);
    assert_eq!(exit, Exit::Code(0));
    // At the root of the sandbox's cgroup namespace, that is in its cgroup.
    assert!(out.ends_with(":pids:/\n"), "{out}");
    // Without joining, the program would sit outside the namespace's root.
    let (_, out) = running.run(running.enter_spec(script));
    assert!(out.contains(":pids:/.."), "{out}");
    drop(running);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&procs).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the cgroup did not empty");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn on_cgroup2_the_program_is_created_in_the_sandboxs_cgroup() {
    if skip("on_cgroup2_the_program_is_created_in_the_sandboxs_cgroup") {
        return;
    }
    let Some(mount) = cgroup2_mount("on_cgroup2_the_program_is_created_in_the_sandboxs_cgroup") else { return };
    let cgroup = Path::new(mount).join(format!("clove-enter-v2-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    let _remove = RemoveDir(cgroup.clone());
    let dir = File::open(&cgroup).unwrap();
    let running = Running::start("enter-v2", "true", |spec| spec.start_in_cgroup = Some(dir.as_raw_fd()));
    let script = "grep '^0::' /proc/self/cgroup";
    let mut spec = running.enter_spec(script);
    spec.start_in_cgroup = Some(dir.as_raw_fd());
    let (exit, out) = running.run(spec);
    assert_eq!(exit, Exit::Code(0));
    // At the root of the sandbox's cgroup namespace, that is in its cgroup.
    assert_eq!(out, "0::/\n");
    // Created elsewhere, the program would sit outside the namespace's root.
    let (_, out) = running.run(running.enter_spec(script));
    assert!(out.starts_with("0::/.."), "{out}");
    drop(running);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the cgroup did not empty");
        std::thread::sleep(Duration::from_millis(10));
    }
}
