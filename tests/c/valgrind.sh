# Sourced by the C and C++ test scripts, with $out a scratch directory: sets `valgrind` (the command
# that fails on memory errors and definite leaks) and `skip_agents` (1 when this valgrind cannot
# run pidfd_open: the runtime watches agents through pidfds, and valgrind 3.19, Debian 12's, fails
# it with ENOSYS, so checks that start agents must be skipped under it, and say so).
cat >"$out/pidfd_probe.c" <<'PROBE'
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>
int main(void) { return syscall(SYS_pidfd_open, getpid(), 0) >= 0 ? 0 : 1; }
PROBE
gcc -o "$out/pidfd_probe" "$out/pidfd_probe.c"
valgrind=(valgrind --quiet --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --error-exitcode=1)
skip_agents=0
if ! "${valgrind[@]}" "$out/pidfd_probe" 2>/dev/null; then
    skip_agents=1
    echo "!! SKIPPED under valgrind: $(valgrind --version) cannot run pidfd_open, so the checks"
    echo "!! that start agents are skipped there; they run natively and under ASAN below."
fi
