//! Loading what the guest boots from: the kernel (an ELF vmlinux, entered through PVH when it has
//! the Xen PVH note, else through the 64-bit Linux boot protocol; or a bzImage), the initramfs
//! at the top of low memory, the command line, and the boot parameters with the e820 map.

use std::fs::File;
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{self, BzImage, Elf, KernelLoader};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::layout::{
    CMDLINE_START, EBDA_START, HIGH_MEMORY_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START,
};
use super::ArchError;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const PVH_MAGIC: u32 = 0x336e_c578;
/// From Documentation/arch/x86/boot.rst: "HdrS", the boot sector flag, "undefined" loader id.
const SETUP_HEADER_MAGIC: u32 = 0x5372_6448;
const BOOT_FLAG: u16 = 0xaa55;
const LOADER_UNDEFINED: u8 = 0xff;
const KERNEL_ALIGNMENT: u32 = 0x100_0000;
const XLF_KERNEL_64: u16 = 1;
/// The 64-bit entry point of a bzImage is 0x200 past where its protected-mode part is loaded.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Where an initramfs may end when the kernel does not say (the boot protocol's default).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

/// How the vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// The 64-bit Linux boot protocol: long mode, paging on, `rsi` = the zero page.
    Linux64,
    /// Xen's PVH entry: 32-bit protected mode, paging off, `rbx` = the `hvm_start_info`.
    Pvh,
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry {
    pub protocol: BootProtocol,
    pub entry: GuestAddress,
}

/// A kernel in guest memory.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    pub entry: BootEntry,
    end: u64,
    /// A bzImage's setup header, the base of its zero page.
    header: Option<setup_header>,
}

/// The initramfs in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initramfs {
    pub addr: GuestAddress,
    pub size: usize,
}

/// Loads the kernel at `path`: an ELF vmlinux if it is one, else a bzImage.
pub fn load_kernel(memory: &GuestMemoryMmap, path: &Path) -> Result<Kernel, ArchError> {
    let file_error = |source| ArchError::KernelFile { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(file_error)?;
    let high = Some(GuestAddress(HIGH_MEMORY_START));
    match Elf::load(memory, None, &mut file, high) {
        Ok(loaded) => {
            let entry = match loaded.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(entry) => BootEntry { protocol: BootProtocol::Pvh, entry },
                _ => BootEntry { protocol: BootProtocol::Linux64, entry: loaded.kernel_load },
            };
            Ok(Kernel { entry, end: loaded.kernel_end, header: None })
        }
        Err(loader::Error::Elf(loader::elf::Error::InvalidElfMagicNumber)) => {
            let loaded = BzImage::load(memory, None, &mut file, high).map_err(ArchError::KernelLoad)?;
            let header = loaded.setup_header.unwrap_or_default();
            let (version, xloadflags) = (header.version, header.xloadflags);
            if version < 0x020c || xloadflags & XLF_KERNEL_64 == 0 {
                return Err(ArchError::No64BitEntry(version));
            }
            let entry = loaded.kernel_load.unchecked_add(BZIMAGE_64BIT_ENTRY_OFFSET);
            let entry = BootEntry { protocol: BootProtocol::Linux64, entry };
            // The kernel decompresses itself in place and needs `init_size` bytes from its load
            // address: an initramfs there would be overwritten.
            let in_place = loaded.kernel_load.raw_value() + u64::from(header.init_size);
            Ok(Kernel { entry, end: loaded.kernel_end.max(in_place), header: Some(header) })
        }
        Err(e) => Err(ArchError::KernelLoad(e)),
    }
}

/// Where an initramfs of `size` bytes goes: page-aligned at the top of guest memory (below the
/// kernel's limit for it), above the kernel. The caller writes it there.
pub fn place_initramfs(memory: &GuestMemoryMmap, kernel: &Kernel, size: usize) -> Result<Initramfs, ArchError> {
    let addr_max = kernel.header.map_or(DEFAULT_INITRD_ADDR_MAX, |h| u64::from(h.initrd_addr_max));
    let limit = memory_end(memory).min(addr_max.saturating_add(1));
    let too_big = || ArchError::InitramfsTooBig { size, kernel_end: kernel.end, limit };
    let start = limit.checked_sub(size as u64).ok_or_else(too_big)? & !0xfff;
    if start < kernel.end {
        return Err(too_big());
    }
    Ok(Initramfs { addr: GuestAddress(start), size })
}

/// Writes the command line at its fixed address; returns its length without the NUL.
pub fn load_cmdline(memory: &GuestMemoryMmap, cmdline: &Cmdline) -> Result<usize, ArchError> {
    loader::load_cmdline(memory, GuestAddress(CMDLINE_START), cmdline).map_err(ArchError::CmdlineLoad)?;
    Ok(cmdline.as_cstring().map_err(ArchError::Cmdline)?.as_bytes().len())
}

/// Writes what the kernel reads first: the zero page (Linux boot) or the `hvm_start_info` (PVH).
pub fn write_boot_params(
    memory: &GuestMemoryMmap,
    kernel: &Kernel,
    cmdline_len: usize,
    initramfs: Option<Initramfs>,
) -> Result<(), ArchError> {
    let ram = ram_map(memory);
    match kernel.entry.protocol {
        BootProtocol::Linux64 => write_zero_page(memory, kernel, cmdline_len, initramfs, &ram),
        BootProtocol::Pvh => write_pvh_start_info(memory, initramfs, &ram),
    }
}

fn write_zero_page(
    memory: &GuestMemoryMmap,
    kernel: &Kernel,
    cmdline_len: usize,
    initramfs: Option<Initramfs>,
    ram: &[(u64, u64, u32)],
) -> Result<(), ArchError> {
    let mut params = boot_params { hdr: kernel.header.unwrap_or_default(), ..Default::default() };
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.boot_flag = BOOT_FLAG;
    params.hdr.header = SETUP_HEADER_MAGIC;
    params.hdr.kernel_alignment = KERNEL_ALIGNMENT;
    // Both fit in 32 bits: the layout puts the command line at 128 KiB and RAM below 4 GiB.
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some(initramfs) = initramfs {
        params.hdr.ramdisk_image = initramfs.addr.raw_value() as u32;
        params.hdr.ramdisk_size = initramfs.size as u32;
    }
    for (slot, &(addr, size, r#type)) in params.e820_table.iter_mut().zip(ram) {
        *slot = boot_e820_entry { addr, size, r#type };
    }
    params.e820_entries = ram.len() as u8;
    let params = BootParams::new(&params, GuestAddress(ZERO_PAGE_START));
    LinuxBootConfigurator::write_bootparams(&params, memory).map_err(ArchError::BootParams)
}

fn write_pvh_start_info(
    memory: &GuestMemoryMmap,
    initramfs: Option<Initramfs>,
    ram: &[(u64, u64, u32)],
) -> Result<(), ArchError> {
    let memmap: Vec<hvm_memmap_table_entry> =
        ram.iter().map(|&(addr, size, type_)| hvm_memmap_table_entry { addr, size, type_, reserved: 0 }).collect();
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let modules: Vec<hvm_modlist_entry> = initramfs
        .map(|i| hvm_modlist_entry { paddr: i.addr.raw_value(), size: i.size as u64, ..Default::default() })
        .into_iter()
        .collect();
    if !modules.is_empty() {
        info.nr_modules = modules.len() as u32;
        info.modlist_paddr = PVH_MODLIST_START;
    }
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams(&params, memory).map_err(ArchError::BootParams)
}

/// The e820 map as (start, size, type): RAM below the EBDA, the legacy hole reserved, RAM from
/// 1 MiB to the end of guest memory (which the builder keeps above 1 MiB and below the MMIO window).
fn ram_map(memory: &GuestMemoryMmap) -> [(u64, u64, u32); 3] {
    let end = memory_end(memory);
    [
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIGH_MEMORY_START - EBDA_START, E820_RESERVED),
        (HIGH_MEMORY_START, end.saturating_sub(HIGH_MEMORY_START), E820_RAM),
    ]
}

fn memory_end(memory: &GuestMemoryMmap) -> u64 {
    memory.last_addr().raw_value() + 1
}
