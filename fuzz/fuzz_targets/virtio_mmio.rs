//! Arbitrary sequences of virtio-mmio register reads and writes against a vsock device's
//! transport, then queue notifications: the transport must never panic, whatever the order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clove_vmm::devices::vsock::fuzz::mmio_bytes(data);
});
