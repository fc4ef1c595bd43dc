//! Memory from `/proc/PID/smaps`: a process's mappings with their resident and private sizes, so
//! the guest's RAM mapping (its touched pages) can be told apart from what the VMM itself uses.

use crate::Result;

/// One mapping of `/proc/PID/smaps`; sizes in KiB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mapping {
    pub size_kib: u64,
    pub rss_kib: u64,
    /// Private_Clean + Private_Dirty: pages no other process has mapped.
    pub private_kib: u64,
}

/// Every mapping of process `pid` ("self" for this one).
pub fn mappings(pid: &str) -> Result<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some(field) = first.strip_suffix(':') {
            let (Some(last), Some(value)) = (out.last_mut(), words.next()) else { continue };
            let kib = value.parse::<u64>().unwrap_or(0);
            match field {
                "Size" => last.size_kib = kib,
                "Rss" => last.rss_kib = kib,
                "Private_Clean" | "Private_Dirty" => last.private_kib += kib,
                _ => {}
            }
        } else if first.split_once('-').is_some_and(|(start, _)| u64::from_str_radix(start, 16).is_ok()) {
            // A mapping's first line: `start-end perms offset dev inode [path]`.
            out.push(Mapping::default());
        }
    }
    Ok(out)
}

/// KiB of `[addr, addr + len)` resident in memory (`mincore`): the guest pages touched so far.
pub fn resident_kib(addr: *mut u8, len: usize) -> Result<u64> {
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr` is the page-aligned start of a live mapping of `len` bytes (the guest's RAM,
    // which its VM keeps mapped while the caller holds it) and `vec` has a byte for each page.
    let rc = unsafe { libc::mincore(addr.cast(), len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(format!("mincore: {}", std::io::Error::last_os_error()).into());
    }
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * (page as u64 / 1024))
}

/// A VMM process's guest RAM: the mapping of `guest_kib` up to 2 MiB more (QEMU may align it),
/// the largest such one.
pub fn guest_ram(maps: &[Mapping], guest_kib: u64) -> Result<Mapping> {
    maps.iter()
        .filter(|m| (guest_kib..=guest_kib + 2048).contains(&m.size_kib))
        .max_by_key(|m| m.size_kib)
        .copied()
        .ok_or_else(|| format!("no mapping of {guest_kib} KiB (the guest's RAM)").into())
}

/// Sums of RSS and private KiB over all mappings.
pub fn totals(maps: &[Mapping]) -> (u64, u64) {
    maps.iter().fold((0, 0), |(rss, private), m| (rss + m.rss_kib, private + m.private_kib))
}
