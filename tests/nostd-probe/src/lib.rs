//! If clove-core without `std` linked std, this crate's panic handler would collide with std's and
//! the build would fail: that is the probe. It also touches the sans-IO API so it is compiled.
#![no_std]

extern crate alloc;

use clove_core::policy::{AgentPolicy, Level};
use clove_core::protocol::{decode, encode, Echo, FrameDecoder};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Round-trips a NOOP payload and asks the policy one question, without std.
pub fn probe() -> bool {
    let payload = encode(&Echo { data: alloc::vec![1, 2, 3] });
    let mut decoder = FrameDecoder::new(1024);
    decoder.extend(&payload);
    let echoed: Result<Echo, _> = decode(&payload);
    let policy = AgentPolicy::at_level(Level::Standard, "/home/probe");
    echoed.is_ok() && policy.check_read("/etc/shadow").is_err()
}
