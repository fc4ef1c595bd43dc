//! SET_AUDIT_CONFIG and GET_AUDIT_LOG through the protocol: categories switch on and off, the
//! change is itself audited, only unrestricted agents may make it, and queries filter.

mod common;

use clove_core::policy::Level;
use clove_core::protocol::*;
use common::{Client, Fixture};

fn audit(client: &mut Client, query: AuditQuery) -> Vec<clove_core::audit::AuditEntry> {
    let reply: AuditLogReply = client.call(Opcode::GET_AUDIT_LOG, &query).unwrap();
    reply.entries
}

fn configure(client: &mut Client, req: &SetAuditConfigRequest) -> Result<AuditConfigReply, ErrorReply> {
    client.call(Opcode::SET_AUDIT_CONFIG, req)
}

#[test]
fn categories_switch_and_queries_filter() {
    let fx = Fixture::new("audit-config", Level::Unrestricted);
    let mut admin = fx.connect();
    let hello: HelloReply = admin.call(Opcode::HELLO, &Hello::default()).unwrap();
    let syscalls =
        |c: &mut Client| audit(c, AuditQuery { category: Some("syscall".into()), ..Default::default() }).len();
    admin.noop(b"before");
    assert_eq!(syscalls(&mut admin), 0, "every request is not logged by default");

    let on = SetAuditConfigRequest { log_syscalls: Some(true), log_ipc: Some(false), ..Default::default() };
    let reply = configure(&mut admin, &on).unwrap();
    assert!(reply.config.log_syscalls && !reply.config.log_ipc && reply.config.log_security);
    admin.noop(b"after");
    let logged = audit(&mut admin, AuditQuery { category: Some("syscall".into()), ..Default::default() });
    // Each request is logged once served: the change itself, then the NOOP (this query comes next).
    assert_eq!(logged.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["SET_AUDIT_CONFIG", "NOOP"]);
    let _: RegisterReply = admin.call(Opcode::REGISTER, &RegisterRequest { name: "quiet".into() }).unwrap();
    assert!(audit(&mut admin, AuditQuery { category: Some("ipc".into()), ..Default::default() }).is_empty());

    // The change is on record, in the security category, even though nothing asked for it.
    let changes = audit(&mut admin, AuditQuery { category: Some("security".into()), ..Default::default() });
    let change = changes.iter().find(|e| e.event == "SET_AUDIT_CONFIG").expect("the change is audited");
    assert_eq!(change.agent_id, hello.agent_id);

    // Filters: by agent, after an id, the newest `limit`.
    let all = audit(&mut admin, AuditQuery { limit: 1000, ..Default::default() });
    let since = all[all.len() - 3].id;
    let after = audit(&mut admin, AuditQuery { since_id: Some(since), limit: 1000, ..Default::default() });
    assert!(after.iter().all(|e| e.id > since) && after.len() >= 2);
    assert_eq!(audit(&mut admin, AuditQuery { limit: 2, ..Default::default() }).len(), 2);
    assert!(audit(&mut admin, AuditQuery { agent_id: Some(hello.agent_id + 1), ..Default::default() }).is_empty());

    // A smaller log keeps the newest entries.
    let reply = configure(&mut admin, &SetAuditConfigRequest { max_entries: Some(3), ..Default::default() }).unwrap();
    assert_eq!(reply.max_entries, 3);
    assert_eq!(audit(&mut admin, AuditQuery { limit: 1000, ..Default::default() }).len(), 3);
}

#[test]
fn only_unrestricted_agents_change_what_is_audited() {
    let fx = Fixture::new("audit-denied", Level::Standard);
    let mut agent = fx.connect();
    let off = SetAuditConfigRequest { log_security: Some(false), ..Default::default() };
    let refused = configure(&mut agent, &off).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied as u16);
    let denials = audit(&mut agent, AuditQuery { category: Some("security".into()), ..Default::default() });
    assert!(denials.iter().any(|e| e.event == "SET_AUDIT_CONFIG" && !e.success), "the attempt is a recorded denial");
}
