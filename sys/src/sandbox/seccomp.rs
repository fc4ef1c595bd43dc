//! The seccomp deny-list, as a classic BPF program written out here (a list of equality tests is
//! short enough not to need a filter compiler).
//!
//! Layout: kill the process unless the architecture is x86_64; refuse the x32 ABI (syscall numbers
//! with bit 30 set); then one test per denied call, each returning EPERM (ENOSYS for clone3, so
//! the C library falls back to clone, whose flags the filter can see); a few calls are denied
//! only for some argument values; everything else is allowed.

use super::failure::{check, Failure, Stage};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of argument `i` (little-endian).
const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

/// Every `CLONE_NEW*` flag: a new user namespace would give back capabilities, the others are
/// refused with EPERM for the same reason unshare is.
const CLONE_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWTIME) as u32;

/// Terminal ioctls that push input into another session (CVE-2017-5226 and its VT twin).
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

/// The personalities `personality(2)` may set (those Docker allows): plain Linux, its 32-bit and
/// UNAME26 variants, and the query 0xffffffff. Anything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC)
/// weakens the program's own hardening.
const PERSONALITIES: [u32; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Calls denied whatever their arguments.
const DENIED: [libc::c_long; 45] = [
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_mount_setattr,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_lookup_dcookie,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_kcmp,
];

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}

fn load(offset: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(action: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, action)
}

fn errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | errno as u32
}

/// A seccomp program ready to install.
pub(super) struct Program {
    filter: Vec<libc::sock_filter>,
}

impl Program {
    /// The deny-list described in the module docs.
    pub fn deny_list() -> Program {
        let eperm = errno(libc::EPERM);
        let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let mut f = vec![
            load(ARCH),
            jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
            ret(libc::SECCOMP_RET_KILL_PROCESS),
            load(NR),
            jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, X32_SYSCALL_BIT, 0, 1),
            ret(eperm),
        ];
        for nr in DENIED {
            f.push(jump(jeq, nr as u32, 0, 1));
            f.push(ret(eperm));
        }
        f.push(jump(jeq, libc::SYS_clone3 as u32, 0, 1));
        f.push(ret(errno(libc::ENOSYS)));
        // Argument checks: each block loads an argument, so it ends in returns and the next block
        // is reached only by jumping over it with the syscall number still loaded.
        let clone = [
            load(arg_low(0)),
            jump(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, CLONE_NAMESPACES, 0, 1),
            ret(eperm),
            ret(libc::SECCOMP_RET_ALLOW),
        ];
        let ioctl = [
            load(arg_low(1)),
            jump(jeq, TIOCSTI, 1, 0),
            jump(jeq, TIOCLINUX, 0, 1),
            ret(eperm),
            ret(libc::SECCOMP_RET_ALLOW),
        ];
        let mut personality = vec![load(arg_low(0))];
        let n = PERSONALITIES.len() as u8;
        for (i, value) in PERSONALITIES.iter().enumerate() {
            // Jump to the ALLOW after the EPERM on a match.
            personality.push(jump(jeq, *value, n - i as u8, 0));
        }
        personality.extend([ret(eperm), ret(libc::SECCOMP_RET_ALLOW)]);
        for (nr, block) in
            [(libc::SYS_clone, &clone[..]), (libc::SYS_ioctl, &ioctl[..]), (libc::SYS_personality, &personality[..])]
        {
            f.push(jump(jeq, nr as u32, 0, block.len() as u8));
            f.extend_from_slice(block);
        }
        f.push(ret(libc::SECCOMP_RET_ALLOW));
        Program { filter: f }
    }

    /// In the program, after no_new_privs: installs the filter on this thread.
    pub fn install(&self) -> Result<(), Failure> {
        let prog = libc::sock_fprog { len: self.filter.len() as u16, filter: self.filter.as_ptr().cast_mut() };
        // SAFETY: `prog` points at `len` instructions that live for the call; the kernel copies them.
        let ret =
            unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) };
        check(ret.into(), Stage::Seccomp, 0).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF the program uses on one `seccomp_data`.
    fn run(program: &Program, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let ins = program.filter[pc];
            let code = u32::from(ins.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = ins.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c => {
                    let taken = match c & 0xf0 {
                        0x10 => a == ins.k,
                        0x30 => a >= ins.k,
                        0x40 => a & ins.k != 0,
                        other => panic!("unexpected jump {other:#x}"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
        }
    }

    fn syscall(nr: i64, args: [u64; 6]) -> u32 {
        run(&Program::deny_list(), AUDIT_ARCH_X86_64, nr, args)
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    #[test]
    fn denies_the_list_and_allows_the_rest() {
        for nr in DENIED {
            assert_eq!(syscall(nr, [0; 6]), EPERM, "syscall {nr}");
        }
        for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_openat, libc::SYS_execve, libc::SYS_exit_group] {
            assert_eq!(syscall(nr, [0; 6]), ALLOW, "syscall {nr}");
        }
        assert_eq!(syscall(libc::SYS_clone3, [0; 6]), libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    }

    #[test]
    fn checks_arguments() {
        let user = libc::CLONE_NEWUSER as u64;
        assert_eq!(syscall(libc::SYS_clone, [user | libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(syscall(libc::SYS_clone, [libc::CLONE_NEWNET as u64, 0, 0, 0, 0, 0]), EPERM);
        let thread = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64;
        assert_eq!(syscall(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(syscall(libc::SYS_ioctl, [0, u64::from(TIOCSTI), 0, 0, 0, 0]), EPERM);
        // The kernel reads the command as 32 bits: high bits must not hide it.
        assert_eq!(syscall(libc::SYS_ioctl, [0, (1 << 32) | u64::from(TIOCSTI), 0, 0, 0, 0]), EPERM);
        assert_eq!(syscall(libc::SYS_ioctl, [0, u64::from(TIOCLINUX), 0, 0, 0, 0]), EPERM);
        assert_eq!(syscall(libc::SYS_ioctl, [0, libc::TCGETS, 0, 0, 0, 0]), ALLOW);
        for value in PERSONALITIES {
            assert_eq!(syscall(libc::SYS_personality, [u64::from(value), 0, 0, 0, 0, 0]), ALLOW);
        }
        assert_eq!(syscall(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]), EPERM);
    }

    #[test]
    fn kills_other_architectures_and_refuses_x32() {
        let i386 = 0x4000_0003;
        assert_eq!(run(&Program::deny_list(), i386, libc::SYS_read, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(syscall(0x4000_0000 | libc::SYS_read, [0; 6]), EPERM);
    }
}
