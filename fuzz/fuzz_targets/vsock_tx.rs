//! Bytes laid out as a guest's tx virtqueue (descriptor table, avail ring, packet buffers) and
//! processed by the vsock device behind its MMIO transport: nothing may panic, and a device
//! that has not failed must have consumed every chain the guest published. The body is in
//! clove-vmm so a stable test runs it too (vmm/tests/devices/fuzz_runs.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clove_vmm::devices::vsock::fuzz::process_tx_bytes(data);
});
