//! The guest binary against a stand-in host, over the Unix transport: the boot HELLO, the main
//! program's streams and status, the control port, bad input, and forwarding with remapped ids.

mod common;

use std::io::{Read, Write};

use clove_core::protocol::{self, frame, ErrorCode, Opcode};
use common::*;

#[test]
fn main_program_streams_and_status_reach_the_host() {
    let mut host = Host::new("main", &[1024, 1025, 1026, 1027]);
    host.start(Some(
        r#"{"argv":["/bin/sh","-c","echo out; echo \"$GREETING\" >&2; exit 3"],"env":[["GREETING","err"]],"cwd":"/"}"#,
    ));
    let _channel = host.accept_hello();
    let (stdout, stderr) = (host.accept(1025), host.accept(1026));
    assert_eq!(read_all(stdout), b"out\n");
    assert_eq!(read_all(stderr), b"err\n");
    assert_eq!(read_status(host.accept(1027)), 3);
    assert!(host.wait_exit().success(), "not PID 1: the guest exits 0 where it would power off");
}

#[test]
fn a_killed_main_program_reports_128_plus_its_signal() {
    let mut host = Host::new("signal", &[1024, 1025, 1026, 1027]);
    host.start(Some(r#"{"argv":["/bin/sh","-c","kill -9 $$"]}"#));
    let _channel = host.accept_hello();
    assert_eq!(read_status(host.accept(1027)), 137);
    host.wait_exit();
}

#[test]
fn a_main_program_that_cannot_start_reports_127() {
    let mut host = Host::new("nostart", &[1024, 1025, 1026, 1027]);
    host.start(Some(r#"{"argv":["/nonexistent/program"]}"#));
    let _channel = host.accept_hello();
    assert_eq!(read_status(host.accept(1027)), 127);
    host.wait_exit();
}

#[test]
fn the_control_port_serves_exec_read_write_spawn_and_exit() {
    let mut host = Host::new("control", &[1024]);
    host.start(None);
    let _channel = host.accept_hello();
    let mut control = host.control();

    let exec = |argv: &[&str], command: Option<&str>| protocol::ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        command: command.map(String::from),
        ..Default::default()
    };
    send(&mut control, Opcode::EXEC, 1, &exec(&[], Some("echo hi")));
    let done: protocol::ExecReply = reply(&mut control, 1);
    assert_eq!((done.exit_code, done.signal, done.stdout.as_slice()), (Some(0), None, &b"hi\n"[..]));

    // A shell for shell syntax, stdin delivered, output capped with the flag set.
    let mut piped = exec(&[], Some("cat; echo 12345678 >&2; exit 4"));
    piped.stdin = b"in".to_vec();
    piped.max_output = Some(4);
    send(&mut control, Opcode::EXEC, 2, &piped);
    let done: protocol::ExecReply = reply(&mut control, 2);
    assert_eq!((done.exit_code, done.stdout.as_slice(), done.stderr.as_slice()), (Some(4), &b"in"[..], &b"1234"[..]));
    assert!(done.truncated);

    let mut slow = exec(&["sleep", "10"], None);
    slow.timeout_ms = Some(200);
    send(&mut control, Opcode::EXEC, 3, &slow);
    let err = error_reply(&mut control, 3);
    assert_eq!(err.code, ErrorCode::Timeout as u16, "{}", err.message);

    // Async: accepted at once, the result collected with ASYNC_POLL under the request's id.
    let mut later = exec(&["sh", "-c", "exit 6"], None);
    later.run_async = true;
    send(&mut control, Opcode::EXEC, 30, &later);
    assert_eq!(reply::<protocol::Accepted>(&mut control, 30).request_id, 30);
    let end = std::time::Instant::now() + DEADLINE;
    let result = loop {
        send(&mut control, Opcode::ASYNC_POLL, 31, &protocol::AsyncPollRequest { max: 0 });
        let polled: protocol::AsyncPollReply = reply(&mut control, 31);
        if let Some(result) = polled.results.into_iter().next() {
            break result;
        }
        assert!(std::time::Instant::now() < end, "the async result never came");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!((result.request_id, result.opcode, result.error), (30, Opcode::EXEC as u8, None));
    assert_eq!(protocol::decode::<protocol::ExecReply>(&result.payload).unwrap().exit_code, Some(6));

    let file = host.path("written").display().to_string();
    let write =
        |content: &[u8], append| protocol::WriteRequest { path: file.clone(), content: content.to_vec(), append };
    send(&mut control, Opcode::WRITE, 4, &write(b"abc", false));
    assert_eq!(reply::<protocol::WriteReply>(&mut control, 4).bytes_written, 3);
    send(&mut control, Opcode::WRITE, 5, &write(b"de", true));
    reply::<protocol::WriteReply>(&mut control, 5);
    send(&mut control, Opcode::READ, 6, &protocol::ReadRequest { path: file.clone(), offset: 1, max_bytes: None });
    let read: protocol::ReadReply = reply(&mut control, 6);
    assert_eq!((read.content.as_slice(), read.size), (&b"bcde"[..], 5));
    send(
        &mut control,
        Opcode::READ,
        7,
        &protocol::ReadRequest { path: format!("{file}.missing"), ..Default::default() },
    );
    assert_eq!(error_reply(&mut control, 7).code, ErrorCode::NotFound as u16);

    // SPAWN: the child finds its guest-local id and its channel.
    let marker = host.path("spawned");
    let script = format!("echo \"$CLOVE_AGENT_ID $CLOVE_FD\" > {}", marker.display());
    let spawn = protocol::SpawnRequest {
        name: "kid".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script],
        ..Default::default()
    };
    send(&mut control, Opcode::SPAWN, 8, &spawn);
    let spawned: protocol::SpawnReply = reply(&mut control, 8);
    assert_eq!((spawned.id, spawned.name.as_str()), (2, "kid"));
    assert_eq!(wait_file(&marker, 4), b"2 3\n");

    send(&mut control, Opcode::EXIT, 9, &());
    let (header, payload) = read_frame(&mut control);
    assert!(header.is_reply() && !header.is_error() && payload.is_empty(), "{header:?}");
    assert_eq!(host.wait_exit().code(), Some(0));
}

#[test]
fn bad_input_costs_only_its_sender() {
    let mut host = Host::new("bad", &[1024]);
    host.start(None);
    let _channel = host.accept_hello();
    let mut first = host.control();

    let mut unknown = Vec::new();
    frame::write_frame(&mut unknown, 0x99, 0, 5, &[]);
    first.write_all(&unknown).unwrap();
    assert_eq!(error_reply(&mut first, 5).code, ErrorCode::UnknownOpcode as u16);
    let mut garbage = Vec::new();
    frame::write_frame(&mut garbage, Opcode::EXEC as u8, 0, 6, &[0xff, 0xff, 0xff]);
    first.write_all(&garbage).unwrap();
    assert_eq!(error_reply(&mut first, 6).code, ErrorCode::BadPayload as u16);
    send(&mut first, Opcode::LIST, 7, &());
    assert_eq!(error_reply(&mut first, 7).code, ErrorCode::Unsupported as u16, "LIST is the host's to serve");

    // Bad magic and an oversized length each get one error frame and lose only their connection.
    let oversized = frame::FrameHeader::request(Opcode::WRITE, 1, u32::MAX).to_bytes();
    for bytes in [&b"NOPE and some more bytes"[..], &oversized[..]] {
        let mut second = host.control();
        second.write_all(bytes).unwrap();
        let (header, payload) = read_frame(&mut second);
        assert!(header.is_error());
        let err: protocol::ErrorReply = protocol::decode(&payload).unwrap();
        assert_eq!(err.code, ErrorCode::BadFrame as u16, "{}", err.message);
        assert_eq!(second.read(&mut [0u8; 1]).unwrap(), 0, "that connection is closed");
    }

    send(&mut first, Opcode::NOOP, 8, &protocol::Echo { data: b"still here".to_vec() });
    let echo: protocol::Echo = reply(&mut first, 8);
    assert_eq!(echo.data, b"still here");
}

#[test]
fn an_agents_forwarded_request_comes_back_under_its_own_id() {
    let mut host = Host::new("forward", &[1024, 1025, 1026, 1027]);
    // The agent: a WRITE the guest serves, then a LIST it forwards, each with the agent's own id;
    // the replies are saved for the test to read.
    let written = host.path("by-agent");
    let write = protocol::WriteRequest { path: written.display().to_string(), content: b"abc".to_vec(), append: false };
    let mut requests = request_bytes(Opcode::WRITE, 9, &write);
    requests.extend(request_bytes(Opcode::LIST, 77, &()));
    std::fs::write(host.path("requests"), requests).unwrap();
    let list = protocol::ListReply {
        agents: vec![protocol::AgentInfo {
            id: 42,
            name: "on-the-host".into(),
            pid: 1,
            state: protocol::AgentState::Running,
            uptime_ms: 5,
            level: None,
            parent: None,
            exit: None,
        }],
    };
    let list_payload = protocol::encode(&list);
    let write_reply_len = frame::HEADER_LEN + protocol::encode(&protocol::WriteReply { bytes_written: 3 }).len();
    let script = format!(
        "cat {req} >&$CLOVE_FD && head -c {n} <&$CLOVE_FD > {out}",
        req = host.path("requests").display(),
        n = write_reply_len + frame::HEADER_LEN + list_payload.len(),
        out = host.path("replies").display(),
    );
    let spec = serde_json::json!({ "argv": ["/bin/sh", "-c", script] });
    host.start(Some(&spec.to_string()));
    let mut channel = host.accept_hello();

    let (header, payload) = read_frame(&mut channel);
    assert_eq!(header.opcode, Opcode::LIST as u8, "only LIST is forwarded; WRITE was served in the guest");
    assert!(payload.is_empty() && !header.is_reply());
    let mut answer = Vec::new();
    frame::write_frame(&mut answer, Opcode::LIST as u8, frame::flags::REPLY, header.request_id, &list_payload);
    channel.write_all(&answer).unwrap();

    assert_eq!(read_status(host.accept(1027)), 0, "the agent read both replies");
    let replies = std::fs::read(host.path("replies")).unwrap();
    let (write_reply, list_reply) = replies.split_at(write_reply_len);
    let parse = |bytes: &[u8]| frame::parse_header(bytes[..16].try_into().unwrap(), u32::MAX).unwrap();
    assert_eq!((parse(write_reply).opcode, parse(write_reply).request_id), (Opcode::WRITE as u8, 9));
    assert_eq!(std::fs::read(&written).unwrap(), b"abc");
    let list_header = parse(list_reply);
    assert_eq!((list_header.opcode, list_header.request_id), (Opcode::LIST as u8, 77), "the agent's own id");
    assert!(list_header.is_reply());
    assert_eq!(protocol::decode::<protocol::ListReply>(&list_reply[16..]).unwrap(), list);
    host.wait_exit();
}
