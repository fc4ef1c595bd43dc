use super::*;
use alloc::string::ToString;
use alloc::vec;

const HOME: &str = "/home/u";

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

#[test]
fn standard_reads_and_writes_but_not_secrets() {
    let p = AgentPolicy::at_level(Level::Standard, HOME);
    assert!(p.check_read("/tmp/x").is_ok());
    assert!(p.check_write("/tmp/x").is_ok());
    assert_eq!(p.check_read("/etc/shadow"), Err(Denial::PathBlocked("/etc/shadow".to_string())));
    assert!(matches!(p.check_read("/home/u/.ssh/id_ed25519"), Err(Denial::PathBlocked(_))));
    assert!(matches!(p.check_read("/srv/app/.env"), Err(Denial::PathBlocked(_))));
    assert!(matches!(p.check_read("/proc/self/environ"), Err(Denial::PathBlocked(_))));
    assert!(matches!(p.check_write("/sys/kernel/uevent_helper"), Err(Denial::PathBlocked(_))));
    assert!(matches!(p.check_read("/tmp/../etc/shadow"), Err(Denial::PathNotNormal(_))));
    assert!(matches!(p.check_read("relative/path"), Err(Denial::PathNotNormal(_))));
    assert_eq!(p.plan_exec(&[], Some("echo hi")), Err(Denial::Capability("exec")));
    assert_eq!(p.check_spawn(), Err(Denial::Capability("spawn")));
}

#[test]
fn sandboxed_and_readonly_and_minimal() {
    let s = AgentPolicy::at_level(Level::Sandboxed, HOME);
    assert!(s.check_read("/home/u/notes").is_ok());
    assert!(s.check_write("/tmp/out").is_ok());
    assert!(matches!(s.check_write("/home/u/notes"), Err(Denial::PathNotAllowed(_, "write"))));
    let r = AgentPolicy::at_level(Level::Readonly, HOME);
    assert!(r.check_read("/usr/share/doc").is_ok());
    assert_eq!(r.check_write("/tmp/x"), Err(Denial::Capability("write")));
    let m = AgentPolicy::at_level(Level::Minimal, HOME);
    assert_eq!(m.check_read("/tmp/x"), Err(Denial::Capability("read")));
    assert!(m.check_think().is_ok());
}

#[test]
fn unrestricted_exec_uses_a_shell_only_for_shell_syntax() {
    let p = AgentPolicy::at_level(Level::Unrestricted, HOME);
    assert_eq!(p.plan_exec(&[], Some("echo 'a b'")).unwrap().argv, argv(&["echo", "a b"]));
    assert_eq!(p.plan_exec(&[], Some("echo a | wc -c")).unwrap().argv, argv(&["/bin/sh", "-c", "echo a | wc -c"]));
    assert_eq!(p.plan_exec(&argv(&["ls", "-l"]), None).unwrap().argv, argv(&["ls", "-l"]));
    assert!(matches!(p.plan_exec(&argv(&["ls"]), Some("ls")), Err(Denial::Invalid(_))));
}

#[test]
fn no_self_escalation_but_lower_and_raise_again() {
    let mut p = AgentPolicy::at_level(Level::Standard, HOME);
    let unrestricted = Level::Unrestricted.permissions(HOME);
    assert!(matches!(p.set_own(Some(Level::Unrestricted), unrestricted), Err(Denial::AboveCeiling(_))));
    assert_eq!(p.level, Some(Level::Standard));
    p.set_own(Some(Level::Minimal), Level::Minimal.permissions(HOME)).unwrap();
    assert!(p.check_read("/tmp/x").is_err());
    p.set_own(Some(Level::Standard), Level::Standard.permissions(HOME)).unwrap();
    assert!(p.check_read("/tmp/x").is_ok());
    // A custom patch that adds exec is above a standard ceiling.
    let patched = p.current.patched(r#"{"exec":["ls"]}"#).unwrap();
    assert!(patched.can_exec);
    assert_eq!(p.set_own(None, patched), Err(Denial::AboveCeiling("exec")));
}

#[test]
fn a_current_set_above_the_ceiling_gains_nothing() {
    let mut p = AgentPolicy::at_level(Level::Sandboxed, HOME);
    // Forced past set_own, the ceiling still decides.
    p.current = Level::Unrestricted.permissions(HOME);
    assert!(p.check_write("/etc/hosts").is_err());
    assert!(p.plan_exec(&[], Some("ls")).is_err());
}

#[test]
fn parent_grants_at_most_what_it_holds() {
    let parent = AgentPolicy::at_level(Level::Unrestricted, HOME);
    let custom =
        Level::Standard.permissions(HOME).patched(r#"{"exec":["python3"],"filesystem":{"write":["/tmp/*"]}}"#).unwrap();
    let child = parent.grant(None, custom).unwrap();
    assert!(child.plan_exec(&[], Some("python3 -c 'print(1)'")).is_ok());
    assert!(matches!(child.plan_exec(&[], Some("sudo ls")), Err(Denial::CommandBlocked(_))));
    assert!(matches!(child.plan_exec(&[], Some("ls")), Err(Denial::CommandNotAllowed(_))));
    assert!(child.check_write("/tmp/a").is_ok());
    assert!(child.check_write("/tmp/a/b").is_err());
    assert_eq!(child.level_name(), "custom");

    let standard = AgentPolicy::at_level(Level::Standard, HOME);
    assert!(standard.grant(Some(Level::Sandboxed), Level::Sandboxed.permissions(HOME)).is_ok());
    assert!(standard.grant(Some(Level::Unrestricted), Level::Unrestricted.permissions(HOME)).is_err());
    let sandboxed = AgentPolicy::at_level(Level::Sandboxed, HOME);
    assert!(sandboxed.grant(Some(Level::Readonly), Level::Readonly.permissions(HOME)).is_err());
}

#[test]
fn levels_form_the_documented_partial_order() {
    use Level::*;
    let within = |a: Level, b: Level| a.permissions(HOME).within(&b.permissions(HOME)).is_ok();
    for l in Level::ALL {
        assert!(within(l, l), "{l:?}");
        assert!(within(l, Unrestricted), "{l:?}");
        assert!(within(Minimal, l), "{l:?}");
    }
    assert!(within(Sandboxed, Standard));
    assert!(within(Readonly, Standard));
    assert!(!within(Readonly, Sandboxed));
    assert!(!within(Sandboxed, Readonly));
    assert!(!within(Standard, Sandboxed));
    assert!(!within(Unrestricted, Standard));
}

#[test]
fn patch_rejects_unknown_keys_and_bad_json() {
    let base = Level::Standard.permissions(HOME);
    assert!(matches!(base.patched("[1]"), Err(Denial::Invalid(_))));
    assert!(matches!(base.patched("{\"can_fly\":true}"), Err(Denial::Invalid(_))));
    assert!(matches!(base.patched("{"), Err(Denial::Invalid(_))));
    let json = base.to_json();
    let back: Permissions = serde_json::from_str(&json).unwrap();
    assert_eq!(back, base);
}

#[test]
fn endpoints_exact_wildcard_and_ports() {
    let network = ["api.example.com", "*.corp.net", "127.0.0.1:8080", "[::1]:9000", "::1", "bad:port"];
    let p = Permissions { network: network.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    assert!(p.endpoint_allowed("api.example.com", 443, 443));
    assert!(p.endpoint_allowed("API.example.com.", 80, 80));
    // A host alone allows the scheme's default port only.
    assert!(!p.endpoint_allowed("api.example.com", 8443, 443));
    assert!(!p.endpoint_allowed("example.com", 443, 443));
    assert!(p.endpoint_allowed("a.b.corp.net", 443, 443));
    assert!(!p.endpoint_allowed("corp.net", 443, 443));
    assert!(!p.endpoint_allowed("evilcorp.net", 443, 443));
    assert!(!p.endpoint_allowed("ünïcode.net", 443, 443));
    assert!(p.endpoint_allowed("127.0.0.1", 8080, 80));
    assert!(!p.endpoint_allowed("127.0.0.1", 80, 80));
    assert!(p.endpoint_allowed("::1", 9000, 80));
    assert!(p.endpoint_allowed("::1", 443, 443));
    assert!(!p.endpoint_allowed("bad", 80, 80));
    let any = Permissions { network: vec!["*".to_string()], ..Default::default() };
    assert!(any.endpoint_allowed("anything.example", 1234, 443));
}

#[test]
fn methods_listed_or_any() {
    let p = Permissions { http_methods: vec!["get".to_string(), "POST".to_string()], ..Default::default() };
    assert!(p.method_allowed("GET") && p.method_allowed("post"));
    assert!(!p.method_allowed("DELETE"));
    assert!(Permissions { http_methods: vec!["*".to_string()], ..Default::default() }.method_allowed("PATCH"));
    assert!(!Permissions::default().method_allowed("GET"));
}
