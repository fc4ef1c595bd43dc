//! Sandboxed agents (root only): an agent started with `sandboxed` runs in its own namespaces and
//! root, as an unprivileged id, and still talks to the runtime over its channel.

mod common;

use std::time::Duration;

use clove_core::runtime::cgroup::CgroupRoot;
use clove_core::runtime::{AgentStdio, Runtime, RuntimeConfig, SpawnSpec};

const PROBE: &str = r#"
import json, os, socket, sys
from clove_sdk import CloveClient
seen = {}
seen["uid"] = os.getuid()
seen["hostname"] = socket.gethostname()
seen["pid"] = os.getpid()
seen["shadow"] = os.path.exists("/etc/shadow")
seen["home_listing"] = os.path.exists("/root") or os.path.exists("/home")
seen["net"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
seen["cwd"] = os.getcwd()
open("note.txt", "w").write("kept in /work")
seen["wrote_work"] = open("/work/note.txt").read()
try:
    open("/usr/clove-probe", "w")
    seen["wrote_usr"] = True
except OSError:
    seen["wrote_usr"] = False
try:
    socket.getaddrinfo("example.com", 80)
    seen["dns"] = True
except OSError:
    seen["dns"] = False
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    seen["egress"] = True
except OSError:
    seen["egress"] = False
with CloveClient() as client:
    seen["noop"] = client.echo("through the channel")
    ran = client.exec(["sh", "-c", "id -u; hostname; cat /work/note.txt; test -e /etc/shadow || echo no-shadow"])
    seen["exec"] = [ran.get("exit_code"), ran.get("stdout", ran.get("error"))]
    slow = client.exec("sleep 5", timeout=1)
    seen["exec_timeout"] = slow.get("code")
    seen["kid"] = client.spawn("kid", None, argv=["sleep", "30"], sandboxed=False, network=True).get("pid")
    # A child started from the parent's own /work: found through the parent's view.
    open("/work/grandkid.py", "w").write("import sys, os; sys.exit(7 if os.getuid() == 1000 else 1)")
    seen["grandkid"] = client.spawn("grandkid", "/work/grandkid.py", interpreter="/usr/bin/python3").get("success")
print(json.dumps(seen))
"#;

/// The tests count this process's leftovers, so they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The start of every test here: one at a time, as root (or a loud SKIPPED: `None`).
fn serial_root(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::root_or_skip(test).then_some(guard)
}

/// A scratch directory for one test.
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clove-it-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The exit code of the agent called `name`, once it has ended.
fn seen_child_exit(rt: &Runtime, name: &str) -> Option<i32> {
    let ended = common::eventually(Duration::from_secs(10), || {
        rt.list().unwrap().iter().any(|a| a.name == name && a.exit.is_some())
    });
    ended.then(|| rt.list().unwrap().into_iter().find(|a| a.name == name)?.exit?.code).flatten()
}

#[test]
fn a_sandboxed_agent_is_confined_and_still_served() {
    let Some(_serial) = serial_root("a_sandboxed_agent_is_confined_and_still_served") else { return };
    let dir = scratch("sandbox");
    let script = dir.join("probe.py");
    std::fs::write(&script, PROBE).unwrap();
    let out = dir.join("out.json");
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../bindings/python");
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let mut spec = SpawnSpec::new("probe", vec!["python3".into(), script.display().to_string()]);
    spec.sandboxed = true;
    spec.level = clove_core::policy::Level::Unrestricted;
    spec.env = vec![("PYTHONPATH".into(), sdk.into())];
    spec.stdio = AgentStdio::File(out.clone());
    let id = rt.spawn(spec).unwrap();
    let exit = rt.wait(id, Some(Duration::from_secs(30))).unwrap();
    // Its child asked for no sandbox, and got one all the same: it runs as nobody on the host.
    let kid = rt.list().unwrap().into_iter().find(|a| a.name == "kid").expect("the child agent");
    let status = std::fs::read_to_string(format!("/proc/{}/status", kid.pid)).unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
    assert_eq!(uid, "65534", "a sandboxed agent's child must be sandboxed too");
    assert_eq!(seen_child_exit(&rt, "grandkid"), Some(7), "a child started from the parent's /work ran, sandboxed");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(exit.code, Some(0), "{text}");
    let seen: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(seen["uid"], 1000, "{seen}");
    assert_eq!(seen["hostname"], "clove-probe");
    assert!(seen["pid"].as_u64().unwrap() < 10, "its own pid namespace: {seen}");
    assert_eq!(seen["shadow"], false);
    assert_eq!(seen["home_listing"], false);
    assert_eq!(seen["net"], serde_json::json!(["lo"]));
    assert_eq!(seen["cwd"], "/work");
    assert_eq!(seen["wrote_work"], "kept in /work");
    assert_eq!(seen["wrote_usr"], false);
    assert_eq!(seen["egress"], false);
    assert_eq!(seen["dns"], false);
    assert_eq!(seen["noop"], "through the channel");
    // EXEC runs inside the agent's sandbox: its ids, hostname, /work, and no host files.
    assert_eq!(seen["exec"], serde_json::json!([0, "1000\nclove-probe\nkept in /workno-shadow\n"]), "{seen}");
    assert_eq!(seen["exec_timeout"], "timeout");
    drop(rt);
    // Its work directory goes with it.
    let leftovers = common::work_leftovers();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prewarmed_sandboxes_are_handed_out() {
    let Some(_serial) = serial_root("prewarmed_sandboxes_are_handed_out") else { return };
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    let shaped = |script: &str| {
        let mut spec = SpawnSpec::new("warm", vec!["/bin/sh".into(), "-c".into(), script.into()]);
        spec.sandboxed = true;
        spec.stdio = AgentStdio::Null;
        spec
    };
    rt.prewarm(shaped("exit 0"), 2).unwrap();
    let mut took = Vec::new();
    for round in 0..4 {
        // The same shape, another program: uid 1000 in its own /work, its id in CLOVE_AGENT_ID.
        let script = format!(
            "test \"$(id -u)\" = 1000 && test -n \"$CLOVE_AGENT_ID\" && test \"$PWD\" = /work && exit {}",
            10 + round
        );
        let started = std::time::Instant::now();
        let id = rt.spawn(shaped(&script)).unwrap();
        took.push(started.elapsed());
        assert_eq!(rt.wait(id, Some(Duration::from_secs(20))).unwrap().code, Some(10 + round), "round {round}");
    }
    eprintln!("warm spawns took {took:?}");
    // A warm sandbox that died while it waited is replaced by a cold start, not a failed spawn.
    std::thread::sleep(Duration::from_millis(300));
    let waiters = common::pids_running(&["/bin/sh", "-c", "IFS= read -r line && eval \"$line\""]);
    assert!(!waiters.is_empty(), "no warm sandbox is waiting");
    for pid in waiters {
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        // kill(1) returns once the signal is sent; the sandbox has died when it is a zombie.
        let dead = || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dead() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(dead(), "warm sandbox {pid} survived SIGKILL");
    }
    let id = rt.spawn(shaped("exit 6")).unwrap();
    assert_eq!(rt.wait(id, Some(Duration::from_secs(20))).unwrap().code, Some(6));
    // Another shape is built from scratch, as before.
    let mut net = shaped("exit 4");
    net.network = true;
    let id = rt.spawn(net).unwrap();
    assert_eq!(rt.wait(id, Some(Duration::from_secs(20))).unwrap().code, Some(4));
    drop(rt);
    let leftovers = common::work_leftovers();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_warm_python_agent_starts_in_an_interpreter_that_has_the_sdk() {
    let Some(_serial) = serial_root("a_warm_python_agent_starts_in_an_interpreter_that_has_the_sdk") else { return };
    let dir = scratch("warm-py");
    let agent = |name: &str, code: i32| {
        let script = dir.join(name);
        let body = format!(
            "import os, sys\nfrom clove_sdk import CloveClient\nwith CloveClient() as c:\n    assert c.echo('warm') == 'warm'\n    assert os.environ['CLOVE_AGENT_ID'] == str(c.hello()['agent_id'])\nassert sys.argv[1:] == ['--flag']\nsys.exit({code})\n"
        );
        std::fs::write(&script, body).unwrap();
        let mut spec =
            SpawnSpec::new(name, vec!["/usr/bin/python3".into(), script.display().to_string(), "--flag".into()]);
        spec.sandboxed = true;
        spec.stdio = AgentStdio::Null;
        spec.env = vec![("PYTHONPATH".into(), concat!(env!("CARGO_MANIFEST_DIR"), "/../bindings/python").into())];
        spec
    };
    let rt = Runtime::start(RuntimeConfig::default()).unwrap();
    rt.prewarm(agent("template.py", 0), 1).unwrap();
    let mut took = Vec::new();
    for (round, name) in ["first.py", "second.py", "third.py"].into_iter().enumerate() {
        let spec = agent(name, 20 + round as i32);
        let started = std::time::Instant::now();
        let id = rt.spawn(spec).unwrap();
        let exit = rt.wait(id, Some(Duration::from_secs(30))).unwrap();
        took.push(started.elapsed());
        assert_eq!(exit.code, Some(20 + round as i32), "{name}");
        // Let the pool refill, as a fleet's spawns would be spread.
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("warm Python agents, spawn to exit: {took:?}");
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// On cgroup2 a sandbox's init is created in its agent's cgroup (`CLONE_INTO_CGROUP`) rather than
/// moving itself there; tried on the cgroup2 mount this machine has (`/sys/fs/cgroup` on unified
/// machines, the controller-less `/sys/fs/cgroup/unified` on hybrid ones).
#[test]
fn on_cgroup2_a_sandbox_starts_in_its_cgroup_which_goes_with_it() {
    let Some(_serial) = serial_root("on_cgroup2_a_sandbox_starts_in_its_cgroup_which_goes_with_it") else { return };
    let is_cgroup2 = |path: &str| {
        clove_sys::statfs::filesystem_magic(std::path::Path::new(path)).ok()
            == Some(clove_sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    let Some(mount) = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().find(|p| is_cgroup2(p)) else {
        eprintln!("SKIPPED: on_cgroup2_a_sandbox_starts_in_its_cgroup_which_goes_with_it: no cgroup2 mount");
        return;
    };
    let config = RuntimeConfig { cgroups: Some(CgroupRoot::v2(mount)), ..RuntimeConfig::default() };
    let rt = Runtime::start(config).unwrap();
    let mut spec = SpawnSpec::new("in-v2", vec!["sleep".into(), "30".into()]);
    spec.sandboxed = true;
    spec.stdio = AgentStdio::Null;
    let id = rt.spawn(spec).unwrap();
    let agent = rt.list().unwrap().into_iter().find(|a| a.id == id.0).expect("the agent");
    let seen = std::fs::read_to_string(format!("/proc/{}/cgroup", agent.pid)).unwrap();
    let line = seen.lines().find(|l| l.starts_with("0::")).unwrap_or_default().to_string();
    assert!(line.starts_with("0::/clove/agent-"), "{seen}");
    let dir = std::path::Path::new(mount).join(line.trim_start_matches("0::/"));
    assert!(dir.is_dir(), "{}", dir.display());
    rt.kill(id).unwrap();
    rt.wait(id, Some(Duration::from_secs(10))).unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
}
