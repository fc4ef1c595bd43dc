//! The escape suite (root only): hostile agents in C and Python (`tests/escape/`) try to leave their
//! sandbox in every way the README lists, each attempt reported as a JSON line. This test runs them
//! sandboxed at level `standard` under cgroup limits, adds what only the host can judge (the memory
//! bomb was OOM-killed, the cpu hog was throttled, host processes and a sibling agent survived,
//! nothing appeared on the host), prints the table `attempt | result | layer | detail` and fails if
//! any attempt escaped, if fewer than 30 were made, or if the runtime is hurt or leaves anything behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clove_core::policy::Level;
use clove_core::protocol::{AgentState, ExitInfo, Limits};
use clove_core::runtime::{AgentId, AgentStdio, ListenConfig, Runtime, RuntimeConfig, SpawnSpec};

const MIN_ATTEMPTS: usize = 30;
/// The canary file's content (`tests/escape/hostile.py` looks for it in what READ returns).
const MARK: &str = "clove-escape-canary";
/// System calls the sandbox's seccomp filter answers with EPERM (`sys/src/sandbox/seccomp.rs`).
const SECCOMP: &str = "mount umount2 pivot_root chroot ptrace process_vm_readv kexec_load init_module bpf \
    perf_event_open userfaultfd keyctl unshare setns clone open_by_handle_at io_uring_setup reboot iopl ioctl";

struct Row {
    attempt: String,
    escaped: bool,
    layer: String,
    detail: String,
}

impl Row {
    fn new(attempt: &str, escaped: bool, layer: &str, detail: String) -> Row {
        Row { attempt: attempt.into(), escaped, layer: layer.into(), detail }
    }

    fn result(&self) -> &'static str {
        if self.escaped {
            "ESCAPED"
        } else {
            "denied"
        }
    }
}

/// The first `ERRNO` in a detail, and the call named right before it (`"open: ENOENT (...)"`).
fn errno_of(detail: &str) -> Option<(&str, &str)> {
    let words: Vec<&str> = detail.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    let at = words
        .iter()
        .position(|w| w.len() > 2 && w.starts_with('E') && w[1..].chars().all(|c| c.is_ascii_uppercase()))?;
    let call = words[..at].iter().rev().find(|w| !w.is_empty()).copied().unwrap_or("");
    Some((call, words[at]))
}

/// Which layer stopped an attempt, from the errno it got and, failing that, what it tried.
fn layer(attempt: &str, detail: &str) -> &'static str {
    if detail.starts_with("policy:") {
        return "policy (runtime denial)";
    }
    match errno_of(detail) {
        Some((call, "EPERM")) if SECCOMP.split_whitespace().any(|c| c == call) => "seccomp",
        Some(("setrlimit", "EPERM")) => "rlimit (hard limit)",
        Some(("setuid", "EINVAL")) => "user namespace (uid 0 unmapped)",
        Some((_, "EPERM")) => "capabilities (none)",
        Some((_, "ENOSYS")) => "seccomp",
        Some((_, "ENOENT" | "ESRCH")) => "namespaces (not visible)",
        Some((_, "ENXIO")) => "namespaces (no terminal)",
        Some((_, "ENETUNREACH" | "ENETDOWN" | "EHOSTUNREACH")) => "network namespace",
        Some((_, "EACCES")) if attempt.contains("/proc/1") => "ptrace access check (init not dumpable)",
        Some((_, "EACCES")) => "landlock / permissions",
        Some((_, "EROFS")) => "read-only bind",
        Some((_, "ENOSPC")) => "tmpfs size cap",
        Some((_, "EMFILE")) => "rlimit (open files)",
        Some(("fork", "EAGAIN")) => "cgroup pids limit",
        Some((_, "ENOTTY")) => "no terminal",
        _ if attempt.contains("DNS") => "network namespace",
        _ if attempt.contains("setuid-root") => "no_new_privs / nosuid",
        _ if attempt.contains("kill(-1") => "pid namespace",
        _ if attempt.contains("descriptor") => "fds closed at exec",
        _ if attempt.contains("environ") => "pid namespace / dumpable",
        _ => "?",
    }
}

fn spec(name: &str, argv: Vec<String>, limits: Limits, out: &Path, env: Vec<(String, String)>) -> SpawnSpec {
    let mut spec = SpawnSpec::new(name, argv);
    spec.sandboxed = true;
    spec.level = Level::Standard;
    spec.limits = limits;
    spec.env = env;
    spec.stdio = AgentStdio::File(out.to_path_buf());
    spec
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            if name != "__pycache__" {
                copy_tree(&entry.path(), &to.join(&name));
            }
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// The host directory of an agent's `/work` (`<tmp>/clove-<pid>-<instance>/<id>`).
fn work_dir_of(id: AgentId) -> Option<PathBuf> {
    let prefix = format!("clove-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join(id.to_string()))
        .find(|p| p.is_dir())
}

/// This process's agent cgroups and work directories that still exist.
fn leftovers() -> Vec<String> {
    let cgroup = format!("agent-{}-", std::process::id());
    let work = format!("clove-{}-", std::process::id());
    let roots = ["/sys/fs/cgroup/clove", "/sys/fs/cgroup/memory/clove", "/sys/fs/cgroup/pids/clove"];
    let roots = roots.iter().chain(&["/sys/fs/cgroup/cpu,cpuacct/clove", "/sys/fs/cgroup/freezer/clove"]);
    let mut left = Vec::new();
    for (dir, prefix) in roots.map(|r| (PathBuf::from(r), &cgroup)).chain([(std::env::temp_dir(), &work)]) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
            left.extend(names.filter(|n| n.starts_with(prefix.as_str())).map(|n| format!("{}/{n}", dir.display())));
        }
    }
    left
}

/// The JSON lines of an agent's output as rows; other lines are returned as noise.
fn parse(out: &Path) -> (Vec<Row>, Vec<String>) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let (mut rows, mut noise) = (Vec::new(), Vec::new());
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v["attempt"].is_string() => {
                let attempt = v["attempt"].as_str().unwrap_or_default();
                let detail = v["detail"].as_str().unwrap_or_default().to_string();
                let escaped = v["escaped"].as_bool().unwrap_or(true);
                rows.push(Row::new(attempt, escaped, layer(attempt, &detail), detail));
            }
            Ok(v) if v["channel"].is_string() => {}
            _ => noise.push(line.to_string()),
        }
    }
    (rows, noise)
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.attempt.len()).max().unwrap_or(10);
    let l = rows.iter().map(|r| r.layer.len()).max().unwrap_or(10);
    eprintln!("\n{:w$} | result  | {:l$} | detail", "attempt", "layer that stopped it");
    eprintln!("{}-+---------+-{}-+-------", "-".repeat(w), "-".repeat(l));
    for r in rows {
        let layer = if r.escaped { "-" } else { r.layer.as_str() };
        eprintln!("{:w$} | {:7} | {layer:l$} | {}", r.attempt, r.result(), r.detail);
    }
    let count = |result: &str| rows.iter().filter(|r| r.result() == result).count();
    let (denied, escaped) = (count("denied"), count("ESCAPED"));
    eprintln!("{} attempts: {denied} denied, {escaped} escaped", denied + escaped);
    eprintln!();
}

/// The agents' files, in temp dirs removed on drop (also when the test fails): `bin/hostile` and
/// `py/` (hostile.py and a copy of clove_sdk) are bound read-only into the sandboxes; `canary` is a
/// stand-in for another user's home (0700, uid 4242) that no sandbox sees.
struct Files {
    dir: PathBuf,
    canary: PathBuf,
    hostile: String,
    py: PathBuf,
}

impl Files {
    fn prepare() -> Files {
        let source = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/escape"));
        let dir = std::env::temp_dir().join(format!("clove-escape-{}", std::process::id()));
        let canary = std::env::temp_dir().join(format!("clove-escape-canary-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (bin, py) = (dir.join("bin"), dir.join("py"));
        std::fs::create_dir_all(&bin).unwrap();
        // Copied, not used in place: the repository may live under /work, which the sandbox's own /work hides.
        copy_tree(&source.join("../../bindings/python/clove_sdk"), &py.join("clove_sdk"));
        std::fs::copy(source.join("hostile.py"), py.join("hostile.py")).unwrap();
        let hostile = bin.join("hostile");
        let mut gcc = Command::new("gcc");
        let built = gcc.args(["-O1", "-Wall", "-Werror", "-o"]).arg(&hostile).arg(source.join("hostile.c")).output();
        let built = built.expect("running gcc");
        assert!(built.status.success(), "gcc: {}", String::from_utf8_lossy(&built.stderr));
        std::fs::create_dir_all(&canary).unwrap();
        std::fs::write(canary.join("host-only.txt"), MARK).unwrap();
        for (path, mode) in [(canary.join("host-only.txt"), 0o600), (canary.clone(), 0o700)] {
            std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        }
        Files { dir, canary, hostile: hostile.display().to_string(), py }
    }

    fn out(&self, agent: &str) -> PathBuf {
        self.dir.join(format!("{agent}.out"))
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.canary);
    }
}

/// A host process that must outlive the attempts (killed on drop).
struct HostWitness(std::process::Child);

impl Drop for HostWitness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The cpu hog's share of a CPU, measured from its cgroup over 2 s.
fn cpu_hog_row(rt: &Runtime, hog: AgentId) -> Row {
    std::thread::sleep(Duration::from_millis(500));
    let usage = || rt.agent_metrics(hog).unwrap().cgroup.map_or(0, |c| c.cpu_usage_us);
    let (t0, u0) = (Instant::now(), usage());
    std::thread::sleep(Duration::from_secs(2));
    let share = (usage() - u0) as f64 / t0.elapsed().as_micros() as f64;
    let detail = format!("used {:.1} % of a CPU over 2 s (quota 10 %, allowed up to 12 %)", share * 100.0);
    Row::new("cpu hog (cpu quota 10 %)", share > 0.12, "cgroup cpu quota", detail)
}

fn memory_bomb_row(exit: &ExitInfo, out: &Path) -> Row {
    let said = parse(out).0.first().map(|r| format!("; it said: {}", r.detail)).unwrap_or_default();
    let detail = format!("{exit:?}{said}");
    Row::new("memory bomb (memory limit 64 MiB)", !exit.oom_killed, "cgroup memory limit (OOM kill)", detail)
}

#[test]
fn hostile_agents_do_not_escape() {
    if !common::root_or_skip("hostile_agents_do_not_escape") {
        return;
    }
    let started = Instant::now();
    let files = Files::prepare();
    let config = RuntimeConfig::default();
    let home = config.home.clone();
    let rt = Runtime::start(config).unwrap();
    let socket = files.dir.join("clove.sock");
    rt.listen(ListenConfig::new(&socket)).unwrap();
    let mut host_witness = HostWitness(Command::new("sleep").arg("60").spawn().unwrap());
    let witness =
        rt.spawn(spec("witness", argv(&["sleep", "60"]), Limits::default(), &files.out("w"), vec![])).unwrap();

    let roomy = Limits { memory: Some(256 << 20), max_pids: Some(32), ..Default::default() };
    let c_env = env(&[
        ("CLOVE_ESCAPE_HOST_PID", std::process::id().to_string()),
        ("CLOVE_ESCAPE_SOCKET", socket.display().to_string()),
    ]);
    let c_agent = rt.spawn(spec("hostile-c", argv(&[&files.hostile]), roomy.clone(), &files.out("c"), c_env)).unwrap();
    let py_env = env(&[
        ("PYTHONPATH", files.py.display().to_string()),
        ("CLOVE_ESCAPE_CANARY", files.canary.display().to_string()),
        ("CLOVE_ESCAPE_HOME", home),
    ]);
    let py_argv = argv(&["python3", &files.py.join("hostile.py").display().to_string()]);
    let py_agent = rt.spawn(spec("hostile-py", py_argv, roomy, &files.out("py"), py_env)).unwrap();
    // Where its /work is on the host, for its symlink attempts through READ and WRITE.
    let py_work = work_dir_of(py_agent).expect("the Python agent's work directory");
    std::fs::write(py_work.join(".host_work"), py_work.display().to_string()).unwrap();
    let bomb_limits = Limits { memory: Some(64 << 20), max_pids: Some(8), ..Default::default() };
    let bomb_argv = argv(&[&files.hostile, "membomb"]);
    let bomb = rt.spawn(spec("membomb", bomb_argv, bomb_limits, &files.out("bomb"), vec![])).unwrap();
    let hog_limits = Limits { cpu_quota: Some(10_000), cpu_period: Some(100_000), ..Default::default() };
    let hog =
        rt.spawn(spec("cpuhog", argv(&[&files.hostile, "cpuhog"]), hog_limits, &files.out("hog"), vec![])).unwrap();

    let mut host_rows = vec![cpu_hog_row(&rt, hog)];
    rt.kill(hog).unwrap();
    let wait = |id| rt.wait(id, Some(Duration::from_secs(20)));
    host_rows.push(memory_bomb_row(&wait(bomb).unwrap(), &files.out("bomb")));
    let exits: Vec<(&str, ExitInfo)> = [("hostile-c", c_agent), ("hostile-py", py_agent)]
        .into_iter()
        .map(|(name, id)| (name, wait(id).unwrap_or_else(|e| panic!("{name}: {e}"))))
        .collect();
    let hog_exit = wait(hog);

    // What only the host can see.
    let witness_alive = rt.list().unwrap().iter().any(|a| a.id == witness.0 && a.state == AgentState::Running);
    let host_alive = host_witness.0.try_wait().unwrap().is_none();
    let detail = format!("sibling agent running: {witness_alive}; host process alive: {host_alive}");
    let reached = !(witness_alive && host_alive);
    host_rows.push(Row::new("kill(-1) / signals reach outside the sandbox", reached, "pid namespace", detail));
    let written = files.canary.join("written-by-agent");
    let detail = format!("{} {}", written.display(), if written.exists() { "exists" } else { "absent" });
    host_rows.push(Row::new(
        "a file written outside /work appears on the host",
        written.exists(),
        "sandbox view",
        detail,
    ));
    let planted = ["/usr/clove-escape", "/clove-escape", "/etc/clove-escape"].iter().filter(|p| Path::new(p).exists());
    let planted: Vec<&&str> = planted.collect();
    let detail = format!("{planted:?} exist on the host");
    host_rows.push(Row::new("files created in host system trees", !planted.is_empty(), "read-only bind", detail));

    // The runtime still serves: a fresh sandboxed agent starts and ends cleanly.
    let probe = rt.spawn(spec("after", argv(&["true"]), Limits::default(), &files.out("after"), vec![])).unwrap();
    let after = wait(probe).unwrap();
    rt.kill(witness).unwrap();
    drop(rt);
    drop(host_witness);
    let left = leftovers();

    let (mut rows, mut noise) = (Vec::new(), Vec::new());
    for name in ["c", "py"] {
        let (r, n) = parse(&files.out(name));
        rows.extend(r);
        noise.extend(n.into_iter().map(|line| format!("{name}: {line}")));
    }
    let channel_ok =
        std::fs::read_to_string(files.out("py")).unwrap_or_default().contains(r#""channel": "still here""#);
    rows.extend(host_rows);
    print_table(&rows);
    if !noise.is_empty() {
        eprintln!("agent output besides the report:\n{}", noise.join("\n"));
    }
    eprintln!("escape suite took {:.1} s", started.elapsed().as_secs_f64());

    let escapes: Vec<String> =
        rows.iter().filter(|r| r.escaped).map(|r| format!("  {}: {}", r.attempt, r.detail)).collect();
    assert!(escapes.is_empty(), "{} attempt(s) ESCAPED:\n{}", escapes.len(), escapes.join("\n"));
    let attempts = rows.len();
    assert!(attempts >= MIN_ATTEMPTS, "only {attempts} attempts were made (at least {MIN_ATTEMPTS})");
    for (name, exit) in &exits {
        assert_eq!(exit.code, Some(0), "{name} did not finish its attempts: {exit:?}");
    }
    assert!(channel_ok, "the Python agent's channel was not served after its attempts");
    assert_eq!(hog_exit.map(|e| e.signal).ok(), Some(Some(9)), "KILL of the cpu hog");
    assert_eq!(after.code, Some(0), "a sandboxed agent started after the attempts: {after:?}");
    assert!(left.is_empty(), "left behind: {left:?}");
}
