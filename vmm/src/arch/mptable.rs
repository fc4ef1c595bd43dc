//! The Intel MultiProcessor table (spec 1.4): how a kernel without ACPI learns the processors,
//! the I/O APIC and how ISA interrupts 0..=23 reach it. In the last KiB of conventional memory,
//! which the e820 map reserves.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{APIC_START, IOAPIC_START, MAX_GSI, MAX_VCPUS, MPTABLE_START};
use super::ArchError;

const SPEC_REVISION: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
/// Family 6 in the CPU signature; the FPU and APIC feature flags.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;
const ISA_BUS: u8 = 0;
const ALL_LAPICS: u8 = 0xff;
/// Flags 0: polarity and trigger conform to the bus (ISA: edge, active high).
const IRQ_CONFORMING: u16 = 0;

/// Writes the floating pointer and the configuration table for `vcpus` processors.
pub fn write(memory: &GuestMemoryMmap, vcpus: u8) -> Result<(), ArchError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(ArchError::TooManyVcpus(vcpus));
    }
    let table_addr = MPTABLE_START + 16;
    let table = config_table(vcpus);
    let mut pointer = Vec::with_capacity(16);
    pointer.extend_from_slice(b"_MP_");
    pointer.extend_from_slice(&(table_addr as u32).to_le_bytes());
    // Length in 16-byte units, revision, checksum, then five feature bytes (0: a table follows).
    pointer.extend_from_slice(&[1, SPEC_REVISION, 0, 0, 0, 0, 0, 0]);
    pointer[10] = checksum(&pointer);
    let mp = ArchError::memory("the MP table");
    memory.write_slice(&pointer, GuestAddress(MPTABLE_START)).map_err(mp)?;
    memory.write_slice(&table, GuestAddress(table_addr)).map_err(ArchError::memory("the MP table"))
}

fn config_table(vcpus: u8) -> Vec<u8> {
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    for id in 0..vcpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[ENTRY_BUS, ISA_BUS]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    for irq in 0..=MAX_GSI as u8 {
        entries.extend_from_slice(&[ENTRY_INTERRUPT, INT_VECTORED]);
        entries.extend_from_slice(&IRQ_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS, irq, ioapic_id, irq]);
    }
    for (kind, pin) in [(INT_EXTINT, 0), (INT_NMI, 1)] {
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind]);
        entries.extend_from_slice(&IRQ_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS, 0, ALL_LAPICS, pin]);
    }
    let entry_count = u16::from(vcpus) + 2 + MAX_GSI as u16 + 1 + 2;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[SPEC_REVISION, 0]);
    table.extend_from_slice(b"CLOVE   ");
    table.extend_from_slice(b"MICROVM     ");
    // OEM table pointer and size, entry count, local APIC address, extended table (none).
    table.extend_from_slice(&[0; 6]);
    table.extend_from_slice(&entry_count.to_le_bytes());
    table.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    table
}

/// The byte that makes `bytes` sum to zero (its own slot still 0).
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)).wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sums_to_zero_and_fits_in_its_kib_for_the_most_vcpus() {
        let table = config_table(MAX_VCPUS);
        assert_eq!(table.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(u16::from_le_bytes([table[4], table[5]]) as usize, table.len());
        assert!(16 + table.len() <= 1024, "MP table of {} bytes overflows its KiB", table.len());
        // 20 bytes per processor, 8 per bus, I/O APIC, interrupt and local interrupt entry.
        let count = u16::from_le_bytes([table[34], table[35]]) as usize;
        assert_eq!(table.len(), 44 + 20 * usize::from(MAX_VCPUS) + 8 * (count - usize::from(MAX_VCPUS)));
    }
}
