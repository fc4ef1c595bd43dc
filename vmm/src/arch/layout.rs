//! Where things sit in guest-physical memory (x86_64). Other crates mirror the device numbers.

/// The boot GDT (four entries) and the empty IDT after it.
pub const GDT_START: u64 = 0x500;
pub const IDT_START: u64 = 0x520;
/// PVH: the `hvm_start_info` and, after it, the module list (the initramfs).
pub const PVH_INFO_START: u64 = 0x6000;
pub const PVH_MODLIST_START: u64 = 0x6040;
/// Linux boot: the zero page (`boot_params`). PVH: the memory map (the zero page is unused there).
pub const ZERO_PAGE_START: u64 = 0x7000;
pub const PVH_MEMMAP_START: u64 = 0x7000;
/// The boot stack grows down from here.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity page tables for the first GiB: one PML4, one PDPT, one page directory of 2 MiB pages.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// The kernel command line and its longest accepted length (with the NUL).
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// The end of conventional memory (640 KiB less the 1 KiB the MP table takes) and the end of the
/// legacy hole: [`EBDA_START`, `HIGH_MEMORY_START`) is reserved in the e820 map.
pub const EBDA_START: u64 = 0x9fc00;
pub const MPTABLE_START: u64 = EBDA_START;
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// KVM's task state segment (three pages) and identity-map page (one page), needed on Intel, just
/// below the 4 GiB boundary where no RAM or device is.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// The local APIC and the I/O APIC register windows (their architectural defaults).
pub const APIC_START: u64 = 0xfee0_0000;
pub const IOAPIC_START: u64 = 0xfec0_0000;

/// virtio-mmio slots: slot n is the 4 KiB at `MMIO_START + n * MMIO_SLOT_SIZE`, with GSI
/// `MMIO_FIRST_GSI + n`. RAM must end below `MMIO_START`.
pub const MMIO_START: u64 = 0xd000_0000;
pub const MMIO_SLOT_SIZE: u64 = 0x1000;
pub const MMIO_FIRST_GSI: u32 = 5;
/// GSIs go up to 23 (the I/O APIC's last pin), so at most 19 slots.
pub const MMIO_MAX_SLOTS: u32 = 24 - MMIO_FIRST_GSI;
/// The last GSI the MP table routes (I/O APIC pins 0..=23).
pub const MAX_GSI: u32 = 23;

/// The serial console (COM1) and the i8042 controller (data 0x60, command/status 0x64).
pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_PORT_LEN: u16 = 8;
pub const SERIAL_GSI: u32 = 4;
pub const I8042_PORT: u16 = 0x60;
pub const I8042_PORT_LEN: u16 = 5;

/// Guest RAM limits: enough for a kernel and an initramfs, and all of it below the MMIO window.
pub const MIN_MEMORY_MIB: u32 = 16;
pub const MAX_MEMORY_MIB: u32 = (MMIO_START >> 20) as u32;
/// The MP table has room (in its 1 KiB) for this many processors.
pub const MAX_VCPUS: u8 = 32;
