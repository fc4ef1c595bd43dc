//! Bad input over a real socket: every case gets a clear error, and other agents keep being served.

mod common;

use std::time::Duration;

use clove_core::policy::Level;
use clove_core::protocol::frame::write_frame;
use clove_core::protocol::{self, Echo, ErrorCode, FrameHeader, HelloReply, Opcode, ReadRequest};
use common::{Client, Fixture};

fn noop_frame(request_id: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, Opcode::NOOP as u8, 0, request_id, &protocol::encode(&Echo { data: data.to_vec() }));
    out
}

#[test]
fn hello_names_the_caller_and_the_protocol() {
    let fx = Fixture::new("hello", Level::Standard);
    let mut c = fx.connect();
    let hello: HelloReply = c.call(Opcode::HELLO, &protocol::Hello::default()).unwrap();
    assert_eq!(hello.protocol_version, 1);
    assert_eq!(hello.level, Level::Standard);
    assert!(hello.features.iter().any(|f| f == "exec"));
    assert_ne!(hello.agent_id, 0);
    let list: protocol::ListReply = c.call(Opcode::LIST, &()).unwrap();
    assert!(list.agents.iter().any(|a| a.id == hello.agent_id));
}

#[test]
fn unknown_opcode_and_bad_payload_answer_errors_and_keep_the_connection() {
    let fx = Fixture::new("unknown", Level::Standard);
    let mut c = fx.connect();
    let mut frame = Vec::new();
    write_frame(&mut frame, 0x99, 0, 41, b"whatever");
    c.send_raw(&frame);
    let (h, payload) = c.read_frame().unwrap();
    assert_eq!((h.opcode, h.request_id, h.is_error()), (0x99, 41, true));
    let err: protocol::ErrorReply = protocol::decode(&payload).unwrap();
    assert_eq!(err.code, ErrorCode::UnknownOpcode as u16);
    assert!(err.message.contains("0x99"), "{}", err.message);

    // A READ whose payload is not a ReadRequest.
    let mut frame = Vec::new();
    write_frame(&mut frame, Opcode::READ as u8, 0, 42, &[0xff, 0xff, 0xff]);
    c.send_raw(&frame);
    let (h, payload) = c.read_frame().unwrap();
    assert_eq!((h.request_id, h.is_error()), (42, true));
    let err: protocol::ErrorReply = protocol::decode(&payload).unwrap();
    assert_eq!(err.code, ErrorCode::BadPayload as u16, "{}", err.message);

    // A known opcode this runtime does not serve yet.
    let err = c.call::<_, Echo>(Opcode::TUNNEL_STATUS, &()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unsupported as u16);

    assert_eq!(c.noop(b"still here"), b"still here");
}

fn assert_framing_error_closes_only_this_connection(fx: &Fixture, bytes: &[u8]) {
    let mut bystander = fx.connect();
    assert_eq!(bystander.noop(b"before"), b"before");
    let mut bad = fx.connect();
    bad.send_raw(bytes);
    let (h, payload) = bad.read_frame().expect("an error frame before the close");
    assert!(h.is_error());
    let err: protocol::ErrorReply = protocol::decode(&payload).unwrap();
    assert_eq!(err.code, ErrorCode::BadFrame as u16, "{}", err.message);
    assert!(bad.is_closed());
    assert_eq!(bystander.noop(b"after"), b"after");
}

#[test]
fn bad_magic_gets_an_error_frame_and_a_close() {
    let fx = Fixture::new("magic", Level::Standard);
    let mut frame = noop_frame(1, b"x");
    frame[..4].copy_from_slice(&0xDEADBEEFu32.to_le_bytes());
    assert_framing_error_closes_only_this_connection(&fx, &frame);
}

#[test]
fn oversized_payload_is_refused_from_its_header() {
    let fx = Fixture::new("oversize", Level::Standard);
    let header = FrameHeader::request(Opcode::WRITE, 1, (1 << 20) + 1).to_bytes();
    assert_framing_error_closes_only_this_connection(&fx, &header);
}

#[test]
fn split_and_pipelined_frames() {
    let fx = Fixture::new("split", Level::Standard);
    let mut c = fx.connect();
    let frame = noop_frame(5, b"split");
    c.send_raw(&frame[..7]);
    std::thread::sleep(Duration::from_millis(50));
    c.send_raw(&frame[7..]);
    let (h, payload) = c.read_frame().unwrap();
    assert_eq!(h.request_id, 5);
    assert_eq!(protocol::decode::<Echo>(&payload).unwrap().data, b"split");

    let mut burst = Vec::new();
    for id in 10..13 {
        burst.extend(noop_frame(id, &[id as u8]));
    }
    c.send_raw(&burst);
    for id in 10..13 {
        let (h, payload) = c.read_frame().unwrap();
        assert_eq!(h.request_id, id);
        assert_eq!(protocol::decode::<Echo>(&payload).unwrap().data, [id as u8]);
    }
}

#[test]
fn clients_vanishing_mid_frame_or_mid_reply_hurt_nobody() {
    let fx = Fixture::new("vanish", Level::Standard);
    let mut bystander = fx.connect();
    {
        let mut c = fx.connect();
        c.send_raw(&noop_frame(1, b"abc")[..9]);
    }
    {
        // Many replies queued, never read.
        let mut c = fx.connect();
        let mut burst = Vec::new();
        for id in 0..2000 {
            burst.extend(noop_frame(id, &[7u8; 512]));
        }
        c.send_raw(&burst);
    }
    assert_eq!(bystander.noop(b"alive"), b"alive");
}

#[test]
fn a_stalled_reader_does_not_stall_the_runtime() {
    let fx = Fixture::new("stall", Level::Standard);
    let mut hog = fx.connect();
    let big = vec![1u8; 60_000];
    let mut burst = Vec::new();
    for id in 0..400 {
        burst.extend(noop_frame(id, &big));
    }
    // Write from another thread: the runtime stops reading from the hog once its replies back up.
    let mut writer = hog.stream.try_clone().unwrap();
    let handle = std::thread::spawn(move || {
        use std::io::Write;
        let _ = writer.write_all(&burst);
    });
    let mut other = fx.connect();
    for i in 0..20u8 {
        assert_eq!(other.noop(&[i]), [i]);
    }
    // Now drain the hog: every reply arrives, in order.
    for id in 0..400 {
        let (h, _) = hog.read_frame().unwrap();
        assert_eq!(h.request_id, id);
    }
    handle.join().unwrap();
}

#[test]
fn uid_not_allowed_needs_the_token() {
    let dir = std::env::temp_dir().join(format!("clove-it-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("s.sock");
    let runtime = clove_core::runtime::Runtime::start(Default::default()).unwrap();
    let mut listen = clove_core::runtime::ListenConfig::new(&socket);
    listen.allowed_uids = vec![];
    listen.token = Some("letmein".into());
    runtime.listen(listen).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    let mut stranger = Client::connect(&socket);
    let err = stranger.call::<_, Echo>(Opcode::NOOP, &Echo::default()).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied as u16, "{}", err.message);
    assert!(stranger.is_closed());

    let mut wrong = Client::connect(&socket);
    let hello = protocol::Hello { client: "t".into(), token: Some("nope".into()) };
    assert!(wrong.call::<_, HelloReply>(Opcode::HELLO, &hello).is_err());
    assert!(wrong.is_closed());

    let mut friend = Client::connect(&socket);
    let hello = protocol::Hello { client: "t".into(), token: Some("letmein".into()) };
    friend.call::<_, HelloReply>(Opcode::HELLO, &hello).unwrap();
    assert_eq!(friend.noop(b"in"), b"in");
    let read: Result<protocol::ReadReply, _> =
        friend.call(Opcode::READ, &ReadRequest { path: "/etc/shadow".into(), ..Default::default() });
    assert_eq!(read.unwrap_err().code, ErrorCode::PermissionDenied as u16);
    drop(runtime);
    assert!(!socket.exists(), "the socket file is removed at shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
