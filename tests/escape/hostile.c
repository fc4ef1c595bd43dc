/* A hostile agent for Clove's escape suite: it tries to leave its sandbox in every way listed in
 * tests/escape/README.md and prints one JSON line per attempt:
 *   {"attempt": "...", "escaped": false, "detail": "syscall: ERRNO (message)"}
 * "escaped" is true only on evidence (content read, a descriptor or connection obtained, uid 0...).
 *
 * Modes: `hostile` (default) runs the attempts; `membomb` allocates until killed; `cpuhog` spins.
 * Hints from the test, read from the environment: CLOVE_ESCAPE_HOST_PID (the runtime's host pid),
 * CLOVE_ESCAPE_SOCKET (the runtime's listening socket on the host).
 * Build: gcc -O1 -Wall -Werror -o hostile hostile.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* One JSON line; `detail` is printf-formatted and must not contain quotes or backslashes. */
static void report(const char *attempt, int escaped, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(const char *attempt, int escaped, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    for (char *c = detail; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
    printf("{\"attempt\": \"%s\", \"escaped\": %s, \"detail\": \"%s\"}\n", attempt, escaped ? "true" : "false", detail);
    fflush(stdout);
}

/* "name: EPERM (Operation not permitted)" for the errno of a failed call. */
static const char *why(const char *call, int err) {
    static char buf[256];
    const char *name = strerrorname_np(err);
    snprintf(buf, sizeof buf, "%s: %s (%s)", call, name ? name : "E?", strerror(err));
    return buf;
}

/* An attempt that is one system call: escaped when it returns >= 0. */
static void one_call(const char *attempt, const char *call, long ret) {
    if (ret >= 0) {
        report(attempt, 1, "%s returned %ld", call, ret);
        if (ret > 2 && ret < 65536) close((int)ret);
    } else {
        report(attempt, 0, "%s", why(call, errno));
    }
}

/* Opens and reads a path: escaped when it yields bytes. */
static void read_path(const char *attempt, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report(attempt, 0, "%s", why("open", errno));
        return;
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    int err = errno;
    close(fd);
    if (n > 0)
        report(attempt, 1, "read %zd bytes of %s", n, path);
    else if (n == 0)
        report(attempt, 0, "open succeeded but %s is empty", path);
    else
        report(attempt, 0, "%s", why("read", err));
}

/* Creates a file for writing: escaped when the open succeeds. */
static void write_path(const char *attempt, const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t n = write(fd, "escaped\n", 8);
        close(fd);
        unlink(path);
        report(attempt, 1, "created %s and wrote %zd bytes", path, n);
    } else {
        report(attempt, 0, "%s", why("open", errno));
    }
}

/* Does /proc/1/environ (the sandbox's init, cloned from the runtime) show a variable we were not given? */
static void proc1_environ(void) {
    int fd = open("/proc/1/environ", O_RDONLY);
    if (fd < 0) {
        report("read /proc/1/environ (init cloned from the runtime)", 0, "%s", why("open", errno));
        return;
    }
    static char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        report("read /proc/1/environ (init cloned from the runtime)", 0, "%s", why("read", err));
        return;
    }
    buf[n] = 0;
    int foreign = 0;
    for (char *v = buf; v < buf + n; v += strlen(v) + 1) {
        int ours = 0;
        for (char **e = environ; *e; e++) ours |= strcmp(*e, v) == 0;
        foreign += !ours && *v;
    }
    report("read /proc/1/environ (init cloned from the runtime)", foreign > 0,
           "read %zd bytes, %d variables not in our own environment", n, foreign);
}

static void kill_host_pid(void) {
    const char *hint = getenv("CLOVE_ESCAPE_HOST_PID");
    pid_t pid = hint ? atoi(hint) : 1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    read_path("read the runtime's memory via /proc/<host pid>/mem", path);
    /* Signal 0 probes without harm; a 0 return would mean we could signal the runtime. */
    if (kill(pid, 0) == 0)
        report("signal the runtime by its host pid", 1, "kill(%d, 0) succeeded", pid);
    else
        report("signal the runtime by its host pid", 0, "%s", why("kill", errno));
}

static void chroot_breakout(void) {
    mkdir("/work/jail", 0755);
    int root = open("/", O_RDONLY | O_DIRECTORY);
    if (chroot("/work/jail") != 0) {
        report("chroot break-out (chroot + fchdir + chdir ..)", 0, "%s", why("chroot", errno));
        close(root);
        return;
    }
    int r = fchdir(root);
    for (int i = 0; i < 64; i++) r |= chdir("..");
    r |= chroot(".");
    int esc = access("/etc/shadow", F_OK) == 0;
    report("chroot break-out (chroot + fchdir + chdir ..)", esc, "chroot succeeded; /etc/shadow %s (%d)",
           esc ? "visible" : "still absent", r);
    close(root);
}

static void setns_init(void) {
    const char *nss[] = {"mnt", "user", "pid", "net"};
    char detail[512] = "";
    int escaped = 0;
    for (int i = 0; i < 4; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/1/ns/%s", nss[i]);
        int fd = open(path, O_RDONLY);
        const char *res;
        if (fd < 0) {
            res = why("open", errno);
        } else {
            long r = syscall(SYS_setns, fd, 0);
            res = r == 0 ? "setns succeeded" : why("setns", errno);
            escaped |= r == 0;
            close(fd);
        }
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%s%s %s", i ? "; " : "", nss[i], res);
    }
    report("setns into /proc/1/ns/*", escaped, "%s", detail);
}

static void mknod_block(void) {
    if (mknod("/work/vda", S_IFBLK | 0600, makedev(253, 0)) != 0) {
        report("mknod a block device (vda) in /work", 0, "%s", why("mknod", errno));
        return;
    }
    read_path("mknod a block device (vda) in /work", "/work/vda");
    unlink("/work/vda");
}

static void tcp_egress(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "1.1.1.1", &a.sin_addr);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    if (r != 0 && err == EINPROGRESS) {
        fd_set w;
        FD_ZERO(&w);
        FD_SET(s, &w);
        struct timeval tv = {2, 0};
        socklen_t len = sizeof err;
        int ready = select(s + 1, NULL, &w, NULL, &tv) == 1;
        r = ready && getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0 ? 0 : -1;
        if (r != 0 && err == EINPROGRESS) err = ETIMEDOUT;
    }
    close(s);
    if (r == 0)
        report("TCP connection to 1.1.1.1:53", 1, "connected");
    else
        report("TCP connection to 1.1.1.1:53", 0, "%s", why("connect", err));
}

static void runtime_socket(void) {
    const char *path = getenv("CLOVE_ESCAPE_SOCKET");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path ? path : "/run/clove.sock");
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    close(s);
    if (r == 0)
        report("connect to the runtime's listening socket", 1, "connected to %s", a.sun_path);
    else
        report("connect to the runtime's listening socket", 0, "%s", why("connect", err));
}

/* Runs a setuid-root binary with stdout and stderr on a full pipe, so it blocks on its first
 * message; its /proc status then shows the effective uid the kernel gave it. */
static void setuid_binary(const char *path) {
    char attempt[128];
    snprintf(attempt, sizeof attempt, "run setuid-root %s for euid 0", path);
    int p[2];
    if (pipe2(p, O_NONBLOCK) != 0) {
        report(attempt, 0, "%s", why("pipe", errno));
        return;
    }
    char junk[4096] = {0};
    while (write(p[1], junk, sizeof junk) > 0) {}
    int flags = fcntl(p[1], F_GETFL);
    fcntl(p[1], F_SETFL, flags & ~O_NONBLOCK);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        char *argv[] = {(char *)path, NULL};
        execv(path, argv);
        _exit(127);
    }
    close(p[1]);
    char status_path[64], line[256] = "", euid[64] = "?";
    snprintf(status_path, sizeof status_path, "/proc/%d/status", pid);
    for (int i = 0; i < 200 && euid[0] == '?'; i++) {
        char exe[256] = "";
        char exe_path[64];
        snprintf(exe_path, sizeof exe_path, "/proc/%d/exe", pid);
        ssize_t n = readlink(exe_path, exe, sizeof exe - 1);
        if (n > 0 && strstr(exe, path + 5)) {
            FILE *f = fopen(status_path, "r");
            while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "Uid:", 4) == 0) {
                    unsigned r, e;
                    if (sscanf(line + 4, "%u %u", &r, &e) == 2) snprintf(euid, sizeof euid, "%u", e);
                }
            if (f) fclose(f);
        }
        usleep(5000);
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    close(p[0]);
    report(attempt, strcmp(euid, "0") == 0, "euid seen while it ran: %s (exit status %#x)", euid, st);
}

static void fd_exhaustion(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    struct rlimit want = {1 << 20, 1 << 20};
    int raised = setrlimit(RLIMIT_NOFILE, &want) == 0;
    report("raise RLIMIT_NOFILE above its hard limit", raised, "%s",
           raised ? "raised to 1048576" : why("setrlimit", errno));
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int count = 0, first = -1, err = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            err = errno;
            break;
        }
        if (first < 0) first = fd;
        if (++count > 100000) break;
    }
    for (int fd = first; first >= 0 && fd < first + count; fd++) close(fd);
    report("fd exhaustion (open until refused)", count > 4096, "opened %d more descriptors, then %s (hard limit %llu)",
           count, why("open", err), (unsigned long long)rl.rlim_max);
}

static void fill_tmp(void) {
    int fd = open("/tmp/fill", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        report("fill /tmp with 200 MiB", 0, "%s", why("open", errno));
        return;
    }
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof chunk);
    long written = 0;
    int err = 0;
    while (written < (200L << 20)) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n <= 0) {
            err = errno;
            break;
        }
        written += n;
    }
    close(fd);
    unlink("/tmp/fill");
    report("fill /tmp with 200 MiB", written >= (200L << 20), "wrote %ld MiB, then %s", written >> 20,
           why("write", err));
}

/* Forks sleepers until refused; each child signals a pipe once it runs. */
static void fork_bomb(void) {
    int p[2];
    if (pipe(p) != 0) return;
    pid_t kids[512];
    int n = 0, err = 0;
    while (n < 512) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            if (write(p[1], "x", 1) != 1) _exit(1);
            pause();
            _exit(0);
        }
        kids[n++] = pid;
    }
    close(p[1]);
    struct timespec settle = {0, 200 * 1000 * 1000};
    nanosleep(&settle, NULL);
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
    char buf[1024];
    ssize_t started = 0, r;
    while ((r = read(p[0], buf, sizeof buf)) > 0) started += r;
    close(p[0]);
    report("fork bomb (pids limit 32)", started > 31, "%zd children started, then %s", started, why("fork", err));
}

static void inherited_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    char detail[400] = "";
    int escaped = 0;
    const char *channel = getenv("CLOVE_FD");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d) || (channel && fd == atoi(channel))) continue;
        char link[64], target[128] = "";
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        if (readlink(link, target, sizeof target - 1) < 0) continue;
        struct stat st;
        /* A directory of the host would let openat(fd, "..") walk out of the root. */
        escaped |= fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " %d->%s", fd, target);
    }
    if (d) closedir(d);
    report("use a descriptor inherited from the host", escaped, "extra descriptors:%s", detail[0] ? detail : " none");
}

static void bpf_attempt(void) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    one_call("bpf map create", "bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

static void perf_attempt(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    long fd = syscall(SYS_perf_event_open, &attr, -1, 0, -1, 0);
    one_call("perf_event_open on every process of cpu 0", "perf_event_open", fd);
}

static long ptrace_attach(void) {
    return ptrace(PTRACE_ATTACH, 1, NULL, NULL);
}

static void kill_everything(void) {
    pid_t witness = fork();
    if (witness == 0) {
        pause();
        _exit(0);
    }
    usleep(20000);
    int r = kill(-1, SIGKILL);
    int err = errno, st = 0;
    waitpid(witness, &st, 0);
    /* Only this sandbox's processes can be reached; the test checks that a sibling agent and a host
     * process survived. */
    report("kill(-1, SIGKILL)", 0, "%s; our own witness child %s", r == 0 ? "returned 0" : why("kill", err),
           WIFSIGNALED(st) ? "was killed" : "survived");
}

static int hostile(void) {
    read_path("read /etc/shadow", "/etc/shadow");
    one_call("list /root", "open", open("/root", O_RDONLY | O_DIRECTORY));
    one_call("list another user's home (/home)", "open", open("/home", O_RDONLY | O_DIRECTORY));
    proc1_environ();
    kill_host_pid();
    read_path("/proc/1/root/etc/shadow", "/proc/1/root/etc/shadow");
    read_path("'..' out of /work to /etc/shadow", "/work/../../../../etc/shadow");
    if (symlink("/etc/shadow", "/work/shadow-link") == 0 || errno == EEXIST)
        read_path("symlink in /work to /etc/shadow", "/work/shadow-link");
    write_path("write into /usr", "/usr/clove-escape");
    write_path("write into /", "/clove-escape");
    write_path("write into /etc", "/etc/clove-escape");
    one_call("ptrace attach to pid 1", "ptrace", ptrace_attach());
    one_call("mount a tmpfs", "mount", mount("none", "/work", "tmpfs", 0, NULL));
    one_call("umount /work", "umount2", umount2("/work", MNT_DETACH));
    one_call("pivot_root", "pivot_root", syscall(SYS_pivot_root, "/work", "/work"));
    chroot_breakout();
    one_call("unshare(CLONE_NEWUSER)", "unshare", unshare(CLONE_NEWUSER));
    one_call("clone(CLONE_NEWUSER)", "clone", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    setns_init();
    one_call("open /dev/kvm", "open", open("/dev/kvm", O_RDWR));
    one_call("open raw block device /dev/vda", "open", open("/dev/vda", O_RDONLY));
    one_call("open raw block device /dev/sda", "open", open("/dev/sda", O_RDONLY));
    one_call("open /dev/mem", "open", open("/dev/mem", O_RDONLY));
    mknod_block();
    one_call("raw IP socket", "socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    one_call("packet socket", "socket", socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    tcp_egress();
    runtime_socket();
    setuid_binary("/usr/bin/su");
    setuid_binary("/usr/bin/passwd");
    int uid0 = setuid(0) == 0 && getuid() == 0;
    report("setuid(0)", uid0, "%s", uid0 ? "became uid 0" : why("setuid", errno));
    one_call("keyctl read the session keyring", "keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0));
    bpf_attempt();
    perf_attempt();
    char params[120] = {0};
    one_call("io_uring_setup", "io_uring_setup", syscall(SYS_io_uring_setup, 8, params));
    one_call("userfaultfd", "userfaultfd", syscall(SYS_userfaultfd, 0));
    one_call("kexec_load", "kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    one_call("init_module", "init_module", syscall(SYS_init_module, "", 0, ""));
    one_call("reboot (enable ctrl-alt-del)", "reboot", reboot(RB_ENABLE_CAD));
    one_call("iopl(3)", "iopl", syscall(SYS_iopl, 3));
    one_call("write /proc/sysrq-trigger", "open", open("/proc/sysrq-trigger", O_WRONLY));
    one_call("write /sys/kernel/uevent_helper", "open", open("/sys/kernel/uevent_helper", O_WRONLY));
    one_call("write a cgroup release_agent", "open", open("/sys/fs/cgroup/memory/release_agent", O_WRONLY));
    char handle[136] = {0};
    ((unsigned *)handle)[0] = 8;
    one_call("open_by_handle_at", "open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, handle, O_RDONLY));
    char c = 'x';
    one_call("TIOCSTI into stdin", "ioctl", ioctl(0, TIOCSTI, &c));
    one_call("open the controlling terminal /dev/tty", "open", open("/dev/tty", O_RDWR));
    inherited_fds();
    fd_exhaustion();
    fill_tmp();
    fork_bomb();
    kill_everything();
    return 0;
}

/* Allocates and touches 8 MiB at a time; prints how far it got. Expected to be OOM-killed. */
static int membomb(void) {
    for (long mib = 8; mib <= 1024; mib += 8) {
        char *p = malloc(8 << 20);
        if (!p) {
            report("memory bomb (memory limit 64 MiB)", 0, "malloc failed at %ld MiB", mib);
            return 1;
        }
        memset(p, 1, 8 << 20);
        usleep(10000);
    }
    report("memory bomb (memory limit 64 MiB)", 1, "allocated and touched 1024 MiB");
    return 0;
}

static int cpuhog(void) {
    volatile unsigned long n = 0;
    for (;;) n++;
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "hostile";
    /* Never outside a sandbox: kill(-1) and the fork bomb would hit the caller's own session. */
    if (!getenv("CLOVE_AGENT_ID") || getuid() == 0 || getpid() > 64) {
        fprintf(stderr, "hostile: refusing to run outside a Clove sandbox (uid %d, pid %d)\n", getuid(), getpid());
        return 2;
    }
    if (strcmp(mode, "membomb") == 0) return membomb();
    if (strcmp(mode, "cpuhog") == 0) return cpuhog();
    return hostile();
}
