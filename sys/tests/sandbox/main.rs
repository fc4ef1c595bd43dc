//! The process sandbox, end to end: programs run inside it (and, in [`enter`], inside a running
//! one) and report what they can see and do. Needs root and user namespaces; without them every
//! test says SKIPPED and passes nothing.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clove_sys::process::pidfd_signal;
use clove_sys::sandbox::{
    spawn, wait, wait_nohang, Bind, Exit, LandlockRules, Namespaces, NetNamespace, Resource, Rlimit, RootFs,
    SandboxSpec,
};

/// `enter`: programs started inside a running sandbox.
mod enter;

const UID: u32 = 1000;
const HOST_ID: u32 = 65534;

fn skip(test: &str) -> bool {
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|s| s.trim().parse::<u64>().unwrap_or(0) > 0)
        .unwrap_or(false);
    if clove_sys::current_uid() != 0 || !userns {
        eprintln!("SKIPPED: {test}: the sandbox tests need root and user namespaces");
        return true;
    }
    false
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A spec running `/bin/sh -c script` with the system's programs bound read-only.
fn shell(script: &str) -> SandboxSpec {
    let binds =
        ["/bin", "/lib", "/lib64", "/usr"].into_iter().filter(|p| Path::new(p).exists()).map(Bind::read_only).collect();
    SandboxSpec {
        argv: vec![c("/bin/sh"), c("-c"), c(script)],
        env: vec![c("PATH=/usr/bin:/bin:/usr/sbin"), c("LANG=C")],
        namespaces: Namespaces::ALL,
        uid: UID,
        gid: UID,
        host_uid: HOST_ID,
        host_gid: HOST_ID,
        hostname: c("clove-box"),
        root: RootFs { binds, tmp_size: 16 << 20, shm_size: 1 << 20, dev_pts: false },
        cwd: c("/"),
        rlimits: vec![Rlimit { resource: Resource::Core, soft: 0, hard: 0 }],
        seccomp: true,
        landlock: None,
        stdin: 0,
        stdout: 1,
        stderr: 2,
        channel: None,
        join_cgroups: Vec::new(),
        network_namespace: None,
        start_in_cgroup: None,
    }
}

/// Runs `spec` with stdout captured; returns its exit and its output.
fn run(mut spec: SandboxSpec) -> (Exit, String) {
    let null = File::open("/dev/null").unwrap();
    let (mut reader, writer) = UnixStream::pair().unwrap();
    spec.stdin = null.as_raw_fd();
    spec.stdout = writer.as_raw_fd();
    let sandbox = spawn(&spec, || Ok(())).unwrap_or_else(|e| panic!("spawn: {e}"));
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    (wait(&sandbox.pidfd).unwrap(), out)
}

fn run_ok(spec: SandboxSpec) -> String {
    let (exit, out) = run(spec);
    assert_eq!(exit, Exit::Code(0), "output: {out}");
    out
}

/// A host directory the sandbox's host id may write, removed on drop.
struct HostDir(PathBuf);

impl HostDir {
    fn new(tag: &str) -> HostDir {
        let path = std::env::temp_dir().join(format!("clove-sandbox-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(HOST_ID), Some(HOST_ID)).unwrap();
        HostDir(path)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sees_only_its_own_pid_namespace() {
    if skip("sees_only_its_own_pid_namespace") {
        return;
    }
    let out = run_ok(shell("echo $$; ls /proc | grep -c '^[0-9][0-9]*$'"));
    let mut lines = out.lines().map(|l| l.trim().parse::<u32>().unwrap());
    let pid = lines.next().unwrap();
    let processes = lines.next().unwrap();
    assert!(pid <= 3, "the program should be a low pid, not PID 1 and not a host pid: {pid}");
    assert_ne!(pid, 1, "init is the reaper, not the program");
    // init, the shell, ls and grep.
    assert!(processes <= 4, "/proc shows {processes} processes");
}

#[test]
fn runs_as_the_unprivileged_ids_with_no_capability() {
    if skip("runs_as_the_unprivileged_ids_with_no_capability") {
        return;
    }
    let out = run_ok(shell(
        "id -u; id -g; id -G; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["1000", "1000", "1000"], "{out}");
    for line in &lines[3..] {
        let (key, value) = line.split_once(':').unwrap();
        let value = value.trim();
        match key {
            "NoNewPrivs" => assert_eq!(value, "1"),
            "Seccomp" => assert_eq!(value, "2"),
            _ => assert_eq!(value, "0000000000000000", "{key}"),
        }
    }
}

#[test]
fn has_its_hostname_and_only_loopback() {
    if skip("has_its_hostname_and_only_loopback") {
        return;
    }
    let out = run_ok(shell("cat /proc/sys/kernel/hostname; tail -n +3 /proc/net/dev | cut -d: -f1; ip -o link"));
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "clove-box");
    assert_eq!(lines[1], "lo", "{out}");
    assert_eq!(lines.len(), 3, "only lo: {out}");
    assert!(lines[2].contains("lo:") && lines[2].contains(",UP"), "lo is up: {out}");
}

#[test]
fn runs_in_a_network_namespace_made_ahead_which_it_cannot_change() {
    if skip("runs_in_a_network_namespace_made_ahead_which_it_cannot_change") {
        return;
    }
    let own = || std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let home = own();
    let ns = NetNamespace::new().unwrap();
    assert_eq!(own(), home, "the making thread is back in its own namespace");
    let inode = File::from(ns.as_fd().try_clone_to_owned().unwrap()).metadata().unwrap().ino();

    let mut spec = shell(
        "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1; ip -o link; \
         ip link set lo down 2>/dev/null && echo changed; true",
    );
    spec.network_namespace = Some(ns.as_fd().as_raw_fd());
    let out = run_ok(spec);
    assert_eq!(own(), home, "the spawning thread is back in its own namespace");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], format!("net:[{inode}]"), "{out}");
    assert_eq!(lines[1], "lo", "{out}");
    assert!(lines[2].contains("lo:") && lines[2].contains(",UP"), "lo is up: {out}");
    assert_eq!(lines.len(), 3, "only lo, and it could not be taken down: {out}");
}

#[test]
fn the_file_system_is_minimal_and_read_only() {
    if skip("the_file_system_is_minimal_and_read_only") {
        return;
    }
    let marker = format!("clove-private-{}", std::process::id());
    let script = format!(
        "test ! -e /etc/shadow || exit 10; \
         (echo x > /usr/x) 2>/dev/null && exit 11; \
         mkdir /new 2>/dev/null && exit 12; \
         test -z \"$(ls -A /tmp)\" || exit 13; \
         echo x > /tmp/{marker} || exit 14; \
         echo x > /dev/null || exit 15; \
         head -c 4 /dev/urandom | wc -c; \
         touch /dev/x 2>/dev/null && exit 16; \
         mount -t tmpfs x /tmp 2>/dev/null && exit 17; \
         ls /"
    );
    let out = run_ok(shell(&script));
    assert!(!Path::new("/tmp").join(&marker).exists(), "the sandbox's /tmp is private");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("4"));
    let mut top: Vec<&str> = lines.collect();
    top.sort_unstable();
    let mut expected = vec!["bin", "dev", "lib", "proc", "tmp", "usr"];
    if Path::new("/lib64").exists() {
        expected.push("lib64");
    }
    expected.sort_unstable();
    assert_eq!(top, expected);
}

#[test]
fn writable_binds_and_working_directory() {
    if skip("writable_binds_and_working_directory") {
        return;
    }
    let work = HostDir::new("work");
    let mut spec = shell("pwd; echo hello > out && cat out");
    spec.root.binds.push(Bind::writable(&work.0, "/work"));
    spec.cwd = c("/work");
    assert_eq!(run_ok(spec), "/work\nhello\n");
    assert_eq!(std::fs::read_to_string(work.0.join("out")).unwrap(), "hello\n");
}

const PYTHON_PROBE: &str = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
def err(ret):
    return "ok" if ret == 0 else errno.errorcode[ctypes.get_errno()]
print("ptrace", err(libc.ptrace(0, 0, None, None)))
print("bpf", err(libc.syscall(321, 0, None, 0)))
print("unshare", err(libc.unshare(0x10000000)))
print("mount", err(libc.mount(b"x", b"/tmp", b"tmpfs", 0, None)))
print("clone3", err(libc.syscall(435, None, 0)))
print("io_uring_setup", err(libc.syscall(425, 1, None)))
"#;

#[test]
fn seccomp_denies_the_escape_calls() {
    if skip("seccomp_denies_the_escape_calls") {
        return;
    }
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: seccomp_denies_the_escape_calls: no /usr/bin/python3");
        return;
    }
    let mut spec = shell("");
    spec.argv = vec![c("/usr/bin/python3"), c("-c"), c(PYTHON_PROBE)];
    let out = run_ok(spec.clone());
    for call in ["ptrace", "bpf", "unshare", "mount", "io_uring_setup"] {
        assert!(out.contains(&format!("{call} EPERM\n")), "{call}: {out}");
    }
    assert!(out.contains("clone3 ENOSYS\n"), "{out}");
    // Without the filter the same calls behave as the kernel says: ptrace(TRACEME) succeeds.
    spec.seccomp = false;
    let out = run_ok(spec);
    assert!(out.contains("ptrace ok\n"), "the probe tells the filter apart: {out}");
}

#[test]
fn only_the_channel_is_inherited() {
    if skip("only_the_channel_is_inherited") {
        return;
    }
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    // A descriptor of this process that must not leak into the sandbox.
    let _leak = File::open("/dev/null").unwrap();
    let mut spec = shell("ls /proc/$$/fd; echo from-agent >&3");
    spec.channel = Some(theirs.as_raw_fd());
    let out = run_ok(spec);
    drop(theirs);
    // The shell's own table (a pipeline would add the shell's pipe ends for a moment).
    assert_eq!(out, "0\n1\n2\n3\n");
    let mut got = String::new();
    ours.read_to_string(&mut got).unwrap();
    assert_eq!(got, "from-agent\n");
}

#[test]
fn rlimits_apply() {
    if skip("rlimits_apply") {
        return;
    }
    let mut spec = shell("ulimit -n; ulimit -c");
    spec.rlimits.push(Rlimit { resource: Resource::OpenFiles, soft: 64, hard: 64 });
    assert_eq!(run_ok(spec), "64\n0\n");
}

#[test]
fn landlock_limits_the_file_system() {
    if skip("landlock_limits_the_file_system") {
        return;
    }
    if clove_sys::sandbox::landlock_abi().is_none() {
        eprintln!("SKIPPED: landlock_limits_the_file_system: no landlock in this kernel");
        return;
    }
    let work = HostDir::new("landlock");
    let secret = HostDir::new("landlock-ro");
    std::fs::write(secret.0.join("f"), "secret").unwrap();
    let system = ["/bin", "/lib", "/lib64", "/usr"].into_iter().filter(|p| Path::new(p).exists()).map(PathBuf::from);
    let mut spec =
        shell("echo x > /tmp/t || exit 10; echo x > /work/t || exit 11; cat /other/f 2>/dev/null && exit 12; true");
    spec.root.binds.push(Bind::writable(&work.0, "/work"));
    spec.root.binds.push(Bind::read_only(&secret.0));
    spec.root.binds.last_mut().unwrap().target = PathBuf::from("/other");
    spec.landlock = Some(LandlockRules { read_exec: system.collect(), read_write: vec![PathBuf::from("/work")] });
    let null = File::open("/dev/null").unwrap();
    spec.stdin = null.as_raw_fd();
    spec.stdout = null.as_raw_fd();
    let sandbox = spawn(&spec, || Ok(())).unwrap();
    assert_eq!(sandbox.layers.landlock_abi, clove_sys::sandbox::landlock_abi());
    assert_eq!(wait(&sandbox.pidfd).unwrap(), Exit::Code(0));
    // The same read without landlock works, so the rule is what stopped it.
    spec.landlock = None;
    spec.argv[2] = c("cat /other/f");
    assert_eq!(run_ok(spec), "secret");
}

#[test]
fn exits_and_signals_are_reported() {
    if skip("exits_and_signals_are_reported") {
        return;
    }
    assert_eq!(run(shell("exit 7")).0, Exit::Code(7));
    assert_eq!(run(shell("kill -9 $$")).0, Exit::Code(128 + 9));

    let null = File::open("/dev/null").unwrap();
    let mut spec = shell("sleep 100; true");
    spec.stdin = null.as_raw_fd();
    spec.stdout = null.as_raw_fd();
    let sandbox = spawn(&spec, || Ok(())).unwrap();
    assert_eq!(wait_nohang(&sandbox.pidfd).unwrap(), None);
    // SIGTERM to init reaches the program.
    pidfd_signal(&sandbox.pidfd, libc_sigterm()).unwrap();
    assert_eq!(wait(&sandbox.pidfd).unwrap(), Exit::Code(128 + libc_sigterm()));

    let sandbox = spawn(&spec, || Ok(())).unwrap();
    pidfd_signal(&sandbox.pidfd, clove_sys::process::SIGKILL).unwrap();
    assert_eq!(wait(&sandbox.pidfd).unwrap(), Exit::Signal(clove_sys::process::SIGKILL));
}

fn libc_sigterm() -> i32 {
    clove_sys::process::SIGTERM
}

#[test]
fn dies_with_the_thread_that_spawned_it() {
    if skip("dies_with_the_thread_that_spawned_it") {
        return;
    }
    let sandbox = std::thread::spawn(|| {
        let null = File::open("/dev/null").unwrap();
        let mut spec = shell("sleep 100");
        spec.stdin = null.as_raw_fd();
        spec.stdout = null.as_raw_fd();
        spawn(&spec, || Ok(())).unwrap()
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = wait_nohang(&sandbox.pidfd).unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the sandbox outlived its spawning thread");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(exit, Exit::Signal(clove_sys::process::SIGKILL));
}

#[test]
fn failures_name_their_stage() {
    if skip("failures_name_their_stage") {
        return;
    }
    let mut spec = shell("true");
    spec.argv[0] = c("/bin/no-such-program");
    let err = spawn(&spec, || Ok(())).unwrap_err();
    assert!(err.to_string().starts_with("execve: "), "{err}");
    assert_eq!(err.raw_os_error(), None);

    let mut spec = shell("true");
    spec.cwd = c("/nowhere");
    let err = spawn(&spec, || Ok(())).unwrap_err();
    assert!(err.to_string().starts_with("chdir: "), "{err}");

    let mut spec = shell("true");
    spec.root.binds.push(Bind::read_only("/no/such/dir"));
    let err = spawn(&spec, || Ok(())).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");

    let mut spec = shell("true");
    spec.join_cgroups = vec![c("/no/such/cgroup/tasks")];
    let err = spawn(&spec, || Ok(())).unwrap_err();
    assert!(err.to_string().starts_with("join cgroup /no/such/cgroup/tasks: "), "{err}");
    spec.join_cgroups = vec![c("tasks")];
    assert_eq!(spawn(&spec, || Ok(())).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);

    // The hook's error fails the spawn, and the waiting init is gone with it.
    let spec = shell("true");
    let err = spawn(&spec, || Err(std::io::Error::other("no cgroup"))).unwrap_err();
    assert_eq!(err.to_string(), "before_release: no cgroup");
    // A failure of init before the release is the one reported, not the release that then fails.
    let mut spec = shell("true");
    spec.hostname = c("a-name-longer-than-the-kernel-allows-for-a-host-which-is-sixty-four-bytes");
    let err = spawn(&spec, || Ok(())).unwrap_err();
    assert!(err.to_string().starts_with("sethostname: "), "{err}");
}

#[test]
fn init_joins_its_cgroup_before_the_program_runs() {
    if skip("init_joins_its_cgroup_before_the_program_runs") {
        return;
    }
    let hierarchy = Path::new("/sys/fs/cgroup/pids");
    if !hierarchy.join("tasks").exists() {
        eprintln!("SKIPPED: init_joins_its_cgroup_before_the_program_runs: no cgroup v1 pids hierarchy");
        return;
    }
    let cgroup = hierarchy.join(format!("clove-sandbox-test-{}", std::process::id()));
    let _remove = RemoveDir(cgroup.clone());
    let (mut reader, writer) = UnixStream::pair().unwrap();
    let mut spec = shell("grep ':pids:' /proc/self/cgroup; exec sleep 100");
    spec.stdout = writer.as_raw_fd();
    spec.join_cgroups = vec![c(cgroup.join("tasks").to_str().unwrap())];
    // Made by the hook, while init sets up what needs no cgroup.
    let sandbox = spawn(&spec, || std::fs::create_dir(&cgroup)).unwrap();
    drop(writer);
    let mut line = [0u8; 64];
    let n = reader.read(&mut line).unwrap();
    // The cgroup namespace is rooted at the sandbox's own cgroup.
    assert!(String::from_utf8_lossy(&line[..n]).ends_with(":pids:/\n"), "{}", String::from_utf8_lossy(&line[..n]));
    // grep may still be exiting: wait for init and the program (now sleep) alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let procs = loop {
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
        if procs.lines().count() == 2 {
            break procs;
        }
        assert!(Instant::now() < deadline, "init and the program: {procs}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(procs.lines().any(|p| p == sandbox.pid.to_string()));
    pidfd_signal(&sandbox.pidfd, clove_sys::process::SIGKILL).unwrap();
    wait(&sandbox.pidfd).unwrap();
}

#[test]
fn init_is_created_in_a_cgroup2_directory() {
    if skip("init_is_created_in_a_cgroup2_directory") {
        return;
    }
    let Some(mount) = cgroup2_mount("init_is_created_in_a_cgroup2_directory") else { return };
    let name = format!("clove-sandbox-v2-test-{}", std::process::id());
    let cgroup = Path::new(mount).join(&name);
    std::fs::create_dir(&cgroup).unwrap();
    let _remove = RemoveDir(cgroup.clone());
    let dir = File::open(&cgroup).unwrap();
    let mut spec = shell("exec sleep 100");
    spec.start_in_cgroup = Some(dir.as_raw_fd());
    let sandbox = spawn(&spec, || Ok(())).unwrap();
    // Seen from the host: init's cgroup2 line names the directory it was created in.
    let seen = std::fs::read_to_string(format!("/proc/{}/cgroup", sandbox.pid)).unwrap();
    assert!(seen.lines().any(|l| l == format!("0::/{name}")), "{seen}");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p == sandbox.pid.to_string()), "{procs}");
    pidfd_signal(&sandbox.pidfd, clove_sys::process::SIGKILL).unwrap();
    wait(&sandbox.pidfd).unwrap();
}

/// This machine's cgroup2 mount: `/sys/fs/cgroup` on unified machines, the controller-less
/// `/sys/fs/cgroup/unified` on hybrid ones; `None` after a SKIPPED line when there is none.
fn cgroup2_mount(test: &str) -> Option<&'static str> {
    let is_cgroup2 = |path: &str| {
        clove_sys::statfs::filesystem_magic(Path::new(path)).ok() == Some(clove_sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    let mount = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().find(|p| is_cgroup2(p));
    if mount.is_none() {
        eprintln!("SKIPPED: {test}: no cgroup2 mount");
    }
    mount
}

/// Removes an (empty) directory on drop, also when the test fails.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Not an assertion: prints the spawn latency next to plain fork+exec.
#[test]
fn latency_sanity() {
    if skip("latency_sanity") {
        return;
    }
    let null: OwnedFd = File::open("/dev/null").unwrap().into();
    let mut spec = shell("");
    spec.argv = vec![c("/bin/true")];
    spec.stdin = null.as_raw_fd();
    spec.stdout = null.as_raw_fd();
    spec.stderr = null.as_raw_fd();
    let sandboxed = (0..100)
        .map(|_| {
            let start = Instant::now();
            let sandbox = spawn(&spec, || Ok(())).unwrap();
            assert_eq!(wait(&sandbox.pidfd).unwrap(), Exit::Code(0));
            start.elapsed()
        })
        .collect();
    let plain = (0..100)
        .map(|_| {
            let start = Instant::now();
            assert!(std::process::Command::new("/bin/true").status().unwrap().success());
            start.elapsed()
        })
        .collect();
    eprintln!("sandbox spawn+exit of /bin/true p50 {:?}; fork+exec p50 {:?}", p50(sandboxed), p50(plain));
}
