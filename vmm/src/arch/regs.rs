//! A vCPU's registers at the kernel's entry: general registers, segments and control registers
//! (with the boot GDT and, for the 64-bit entry, identity page tables), the FPU, and the local
//! APIC's LINT0/LINT1 wiring.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    BOOT_STACK_POINTER, GDT_START, IDT_START, PDE_START, PDPTE_START, PML4_START, PVH_INFO_START, ZERO_PAGE_START,
};
use super::{ArchError, BootEntry, BootProtocol};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Bit 1 of RFLAGS is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;
/// Page-table entry bits: present, writable; and page size (a 2 MiB page) in a directory entry.
const PTE_PRESENT_WRITABLE: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x83;

/// Access bytes and flags of the boot GDT's entries (see the Intel SDM, vol. 3, 3.4.5).
const CODE_64: u16 = 0xa09b;
const DATA_64: u16 = 0xc093;
const CODE_32: u16 = 0xc09b;
const DATA_32: u16 = 0xc093;
const TSS_64: u16 = 0x808b;
const TSS_32: u16 = 0x008b;
const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// Local APIC register offsets and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Writes the boot GDT and IDT, and for the 64-bit entry the page tables identity-mapping the
/// first GiB with 2 MiB pages. Once per VM, before any vCPU's [`setup_vcpu`].
pub fn write_boot_tables(memory: &GuestMemoryMmap, protocol: BootProtocol) -> Result<(), ArchError> {
    let gdt: Vec<u8> = gdt(protocol).iter().flat_map(|e| e.to_le_bytes()).collect();
    memory.write_slice(&gdt, GuestAddress(GDT_START)).map_err(ArchError::memory("the GDT"))?;
    memory.write_obj(0u64, GuestAddress(IDT_START)).map_err(ArchError::memory("the IDT"))?;
    if protocol == BootProtocol::Linux64 {
        let tables = ArchError::memory("the page tables");
        memory.write_obj(PDPTE_START | PTE_PRESENT_WRITABLE, GuestAddress(PML4_START)).map_err(tables)?;
        let tables = ArchError::memory("the page tables");
        memory.write_obj(PDE_START | PTE_PRESENT_WRITABLE, GuestAddress(PDPTE_START)).map_err(tables)?;
        let directory: Vec<u8> = (0..512u64).flat_map(|i| ((i << 21) | PDE_2M_PAGE).to_le_bytes()).collect();
        memory.write_slice(&directory, GuestAddress(PDE_START)).map_err(ArchError::memory("the page tables"))?;
    }
    Ok(())
}

/// Sets a vCPU's registers, segments, FPU and LAPIC LINT pins for `boot`.
pub fn setup_vcpu(vcpu: &VcpuFd, boot: BootEntry) -> Result<(), ArchError> {
    let mut regs = kvm_regs { rflags: RFLAGS_RESERVED, rip: boot.entry.0, ..Default::default() };
    match boot.protocol {
        BootProtocol::Linux64 => {
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_START;
        }
        BootProtocol::Pvh => regs.rbx = PVH_INFO_START,
    }
    vcpu.set_regs(&regs).map_err(ArchError::ioctl("KVM_SET_REGS"))?;
    let mut sregs = vcpu.get_sregs().map_err(ArchError::ioctl("KVM_GET_SREGS"))?;
    set_segments(&mut sregs, boot.protocol);
    vcpu.set_sregs(&sregs).map_err(ArchError::ioctl("KVM_SET_SREGS"))?;
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(ArchError::ioctl("KVM_SET_FPU"))?;
    set_lint(vcpu)
}

fn gdt(protocol: BootProtocol) -> [u64; 4] {
    match protocol {
        BootProtocol::Linux64 => [0, gdt_entry(CODE_64), gdt_entry(DATA_64), gdt_entry(TSS_64)],
        BootProtocol::Pvh => [0, gdt_entry(CODE_32), gdt_entry(DATA_32), gdt_entry(TSS_32)],
    }
}

/// A flat descriptor: base 0, limit 0xfffff (4 GiB with the granularity bit), these flags.
fn gdt_entry(flags: u16) -> u64 {
    let (flags, limit) = (u64::from(flags), 0xf_ffffu64);
    ((flags & 0xf0ff) << 40) | ((limit & 0xf_0000) << 32) | (limit & 0xffff)
}

/// The segment register KVM wants for GDT entry `selector`, the inverse of [`gdt_entry`].
fn segment(selector: u16, flags: u16) -> kvm_segment {
    let bit = |n: u16| ((flags >> n) & 1) as u8;
    let granular = bit(15) == 1;
    kvm_segment {
        base: 0,
        limit: if granular { 0xffff_ffff } else { 0xf_ffff },
        selector,
        type_: (flags & 0xf) as u8,
        s: bit(4),
        dpl: ((flags >> 5) & 0x3) as u8,
        present: bit(7),
        avl: bit(12),
        l: bit(13),
        db: bit(14),
        g: bit(15),
        unusable: 0,
        padding: 0,
    }
}

fn set_segments(sregs: &mut kvm_sregs, protocol: BootProtocol) {
    let [_, code, data, tss] = gdt(protocol).map(|e| ((e >> 40) & 0xf0ff) as u16);
    sregs.cs = segment(CODE_SELECTOR, code);
    let data = segment(DATA_SELECTOR, data);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(TSS_SELECTOR, tss);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (4 * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    match protocol {
        BootProtocol::Linux64 => {
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
        }
    }
}

/// LINT0 delivers the 8259's interrupts (ExtINT), LINT1 NMIs: what the MP table promises.
fn set_lint(vcpu: &VcpuFd) -> Result<(), ArchError> {
    let mut lapic = vcpu.get_lapic().map_err(ArchError::ioctl("KVM_GET_LAPIC"))?;
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[offset + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (reg, byte) in lapic.regs[offset..offset + 4].iter_mut().zip(value.to_le_bytes()) {
            *reg = byte as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(ArchError::ioctl("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_encode_flat_4g_segments() {
        // The values every x86 boot loader writes for a flat 64-bit code and data segment.
        assert_eq!(gdt_entry(CODE_64), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_64), 0x00cf_9300_0000_ffff);
        let code = segment(CODE_SELECTOR, CODE_64);
        assert_eq!((code.l, code.db, code.g, code.present, code.type_, code.s), (1, 0, 1, 1, 0xb, 1));
        assert_eq!(code.limit, 0xffff_ffff);
        let tss = segment(TSS_SELECTOR, TSS_64);
        assert_eq!((tss.s, tss.type_, tss.g), (0, 0xb, 1));
    }
}
