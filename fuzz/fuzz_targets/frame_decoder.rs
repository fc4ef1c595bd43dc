//! Arbitrary bytes, fed to the frame decoder in arbitrary chunks, then every payload decoded as
//! every request type: nothing may panic, and the decoder's answers must stay consistent.
#![no_main]

use clove_core::protocol::frame::HEADER_LEN;
use clove_core::protocol::*;
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 4096;

fn decode_all(payload: &[u8]) {
    let _ = decode::<Hello>(payload);
    let _ = decode::<Echo>(payload);
    let _ = decode::<ExecRequest>(payload);
    let _ = decode::<ReadRequest>(payload);
    let _ = decode::<WriteRequest>(payload);
    let _ = decode::<SpawnRequest>(payload);
    let _ = decode::<ControlRequest>(payload);
    let _ = decode::<SetPermsRequest>(payload);
    let _ = decode::<AuditQuery>(payload);
    let _ = decode::<AsyncPollRequest>(payload);
    let _ = decode::<ErrorReply>(payload);
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so splits land everywhere.
    let Some((&chunk, bytes)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new(MAX);
    let mut fed = 0;
    let mut taken = 0;
    for piece in bytes.chunks(chunk) {
        decoder.extend(piece);
        fed += piece.len();
        loop {
            match decoder.decode() {
                Ok(Decoded::Frame(header, payload)) => {
                    assert!(header.payload_len <= MAX);
                    assert_eq!(payload.len(), header.payload_len as usize);
                    taken += HEADER_LEN + payload.len();
                    decode_all(payload);
                }
                Ok(Decoded::NeedMore(n)) => {
                    assert!(n > 0);
                    assert_eq!(decoder.buffered(), fed - taken);
                    break;
                }
                // A framing error ends the connection; nothing after it is read.
                Err(_) => return,
            }
        }
    }
    decode_all(bytes);
});
