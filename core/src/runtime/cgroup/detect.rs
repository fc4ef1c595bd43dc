//! Which cgroup layout this machine has: the `statfs` magic of `/sys/fs/cgroup` says unified or not, and
//! `/proc/self/mountinfo` says where each v1 controller is mounted.

use std::path::{Path, PathBuf};

use clove_sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};

use super::{v1, v2, CgroupError, CgroupMode, CgroupRoot, Controller, Hierarchies, Result};

/// The layout given the magic of `base` (normally `/sys/fs/cgroup`) and the text of a mountinfo file.
pub(super) fn from_mounts(base: &Path, magic: u64, mountinfo: &str) -> Result<CgroupRoot> {
    if magic == CGROUP2_SUPER_MAGIC {
        return Ok(CgroupRoot {
            mode: CgroupMode::Unified,
            hierarchies: Hierarchies::V2(v2::V2Root::new(base.to_path_buf())),
        });
    }
    if magic != TMPFS_MAGIC {
        return Err(CgroupError::NotMounted { path: base.to_path_buf(), magic });
    }
    let mut controllers = Vec::new();
    let mut hybrid = false;
    for line in mountinfo.lines() {
        let Some((mount_point, fstype, options)) = parse_line(line) else { continue };
        match fstype {
            "cgroup2" => hybrid = true,
            "cgroup" => {
                for controller in Controller::ALL {
                    let listed = options.split(',').any(|o| o == controller.name());
                    // The first mount of a hierarchy wins; a later one is a bind of the same.
                    if listed && !controllers.iter().any(|(c, _)| *c == controller) {
                        controllers.push((controller, mount_point.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let mode = if hybrid { CgroupMode::Hybrid } else { CgroupMode::Legacy };
    Ok(CgroupRoot { mode, hierarchies: Hierarchies::V1(v1::V1Root::new(controllers)) })
}

/// The mount point, filesystem type and super options of one mountinfo line:
/// `id parent major:minor root mount-point options [optional...] - fstype source super-options`.
fn parse_line(line: &str) -> Option<(PathBuf, &str, &str)> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let options = after.nth(1)?;
    Some((PathBuf::from(unescape(mount_point)), fstype, options))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 35 0:32 / /mnt/other\\040memory rw,relatime - cgroup cgroup rw,memory
";

    fn v1_mounts(root: &CgroupRoot) -> Vec<(Controller, PathBuf)> {
        match &root.hierarchies {
            Hierarchies::V1(v1) => {
                Controller::ALL.into_iter().filter_map(|c| v1.mount(c).map(|path| (c, path.to_path_buf()))).collect()
            }
            Hierarchies::V2(_) => panic!("expected v1, got {root:?}"),
        }
    }

    #[test]
    fn cgroup2_magic_is_unified() {
        let root = from_mounts(Path::new("/sys/fs/cgroup"), CGROUP2_SUPER_MAGIC, HYBRID).unwrap();
        assert_eq!(root.mode(), CgroupMode::Unified);
        assert!(matches!(root.hierarchies, Hierarchies::V2(_)));
    }

    #[test]
    fn tmpfs_with_cgroup2_is_hybrid_and_finds_every_controller() {
        let root = from_mounts(Path::new("/sys/fs/cgroup"), TMPFS_MAGIC, HYBRID).unwrap();
        assert_eq!(root.mode(), CgroupMode::Hybrid);
        let cpu = PathBuf::from("/sys/fs/cgroup/cpu,cpuacct");
        let mut mounts = v1_mounts(&root);
        mounts.sort();
        assert_eq!(
            mounts,
            vec![
                (Controller::Memory, PathBuf::from("/sys/fs/cgroup/memory")),
                (Controller::Cpu, cpu.clone()),
                (Controller::Cpuacct, cpu),
                (Controller::Pids, PathBuf::from("/sys/fs/cgroup/pids")),
                (Controller::Freezer, PathBuf::from("/sys/fs/cgroup/freezer")),
            ]
        );
    }

    #[test]
    fn tmpfs_without_cgroup2_is_legacy_and_lists_what_is_missing() {
        let legacy: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2") && !l.contains("pids"))
            .map(|l| format!("{l}\n"))
            .collect();
        let root = from_mounts(Path::new("/sys/fs/cgroup"), TMPFS_MAGIC, &legacy).unwrap();
        assert_eq!(root.mode(), CgroupMode::Legacy);
        assert!(!root.available().unwrap().contains(&Controller::Pids));
    }

    #[test]
    fn other_filesystems_are_not_cgroups() {
        let err = from_mounts(Path::new("/sys/fs/cgroup"), 0x9fa0, HYBRID).unwrap_err();
        assert_eq!(err.to_string(), "/sys/fs/cgroup is not a cgroup mount (filesystem magic 0x9fa0)");
    }

    #[test]
    fn escapes_and_garbage() {
        assert_eq!(unescape("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
        assert_eq!(unescape("/mnt/trailing\\04"), "/mnt/trailing\\04");
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("1 2 3 - cgroup"), None);
        let root = from_mounts(Path::new("/x"), TMPFS_MAGIC, "\u{0}\n - - -\n").unwrap();
        assert!(root.available().unwrap().is_empty());
    }
}
