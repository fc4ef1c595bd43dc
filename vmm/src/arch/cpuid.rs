//! The CPUID a vCPU sees: what KVM supports on this host, with the entries that depend on the VM
//! fixed (leaf 1: APIC id, logical count, HTT, the hypervisor bit; the topology leaves 0xB, 0x1F
//! and 0x8000_0008 for `count` single-thread cores in one package), plus the TSC-deadline timer
//! when KVM emulates it. Set before the MSRs, whose validity KVM checks against it.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VcpuFd};

use super::ArchError;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZE: u32 = 0x8000_0008;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
/// Topology level types (leaf 0xB/0x1F ECX[15:8]).
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// What KVM supports here, asked once per VM (a few hundred microseconds).
///
/// KVM leaves one bit it can offer out of its list: the TSC-deadline timer, which its in-kernel
/// local APIC emulates on any host CPU (`KVM_CAP_TSC_DEADLINE_TIMER`). A guest that sees it uses it
/// and skips calibrating the APIC timer against the PIT, a loop of about 100 ms of guest time
/// (`calibrate_APIC_clock`), slower still under nested virtualization.
pub fn supported(kvm: &Kvm) -> Result<CpuId, ArchError> {
    let mut cpuid =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(ArchError::ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    if kvm.check_extension(Cap::TscDeadlineTimer) {
        for entry in cpuid.as_mut_slice().iter_mut().filter(|e| e.function == LEAF_FEATURES) {
            entry.ecx |= ECX_TSC_DEADLINE;
        }
    }
    Ok(cpuid)
}

/// Sets `supported`, fixed for vCPU `id` of `count`, on `vcpu`.
pub fn set(vcpu: &VcpuFd, supported: &CpuId, id: u8, count: u8) -> Result<(), ArchError> {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        fix_entry(entry, id, count);
    }
    vcpu.set_cpuid2(&cpuid).map_err(ArchError::ioctl("KVM_SET_CPUID2"))
}

fn fix_entry(entry: &mut kvm_cpuid_entry2, id: u8, count: u8) {
    let (id, count) = (u32::from(id), u32::from(count));
    // Bits of the APIC id that number the cores: ceil(log2(count)).
    let core_bits = u32::BITS - (count.max(1) - 1).leading_zeros();
    match entry.function {
        LEAF_FEATURES => {
            // EBX: [31:24] initial APIC id, [23:16] logical processors in the package.
            entry.ebx = (entry.ebx & 0xffff) | (id << 24) | (count << 16);
            entry.ecx |= ECX_HYPERVISOR;
            if count > 1 {
                entry.edx |= EDX_HTT;
            } else {
                entry.edx &= !EDX_HTT;
            }
        }
        LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
            // EAX: APIC-id shift to the next level; EBX: processors at this level; ECX: level
            // number and type; EDX: x2APIC id.
            entry.edx = id;
            (entry.eax, entry.ebx, entry.ecx) = match entry.index {
                0 => (0, 1, LEVEL_SMT << 8),
                1 => (core_bits, count, 1 | (LEVEL_CORE << 8)),
                level => (0, 0, level & 0xff),
            };
        }
        LEAF_AMD_SIZE => {
            // ECX: [15:12] APIC-id bits for cores, [7:0] cores in the package less one.
            entry.ecx = (entry.ecx & !0xf0ff) | (core_bits << 12) | count.saturating_sub(1);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, index, ebx: 0xdead_0000, edx: 0, ecx: 0, ..Default::default() }
    }

    #[test]
    fn leaf_1_says_which_cpu_of_how_many_under_a_hypervisor() {
        let mut leaf = entry(LEAF_FEATURES, 0);
        fix_entry(&mut leaf, 2, 4);
        assert_eq!(leaf.ebx >> 24, 2);
        assert_eq!((leaf.ebx >> 16) & 0xff, 4);
        assert_ne!(leaf.edx & EDX_HTT, 0);
        assert_ne!(leaf.ecx & ECX_HYPERVISOR, 0);
    }

    #[test]
    fn topology_leaf_counts_cores_and_ends() {
        let mut levels: Vec<kvm_cpuid_entry2> = (0..3).map(|i| entry(LEAF_TOPOLOGY, i)).collect();
        for level in &mut levels {
            fix_entry(level, 5, 6);
        }
        assert_eq!((levels[0].eax, levels[0].ebx, levels[0].ecx >> 8), (0, 1, LEVEL_SMT));
        // Six cores need three APIC-id bits.
        assert_eq!((levels[1].eax, levels[1].ebx, levels[1].ecx >> 8), (3, 6, LEVEL_CORE));
        assert_eq!(levels[2].ecx >> 8, 0, "level type 0 ends the enumeration");
        assert!(levels.iter().all(|l| l.edx == 5));
    }
}
