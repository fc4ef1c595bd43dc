// The C++ binding's test program: test_offline.cpp and test_agents.cpp, linked together, both
// including clove.hpp (a definition that is not inline would fail the link). Prints one line per
// check and "N passed, M failed, K skipped"; exits non-zero on any failure.
// CLOVE_TEST_SKIP_AGENTS=1 skips the checks that start agents (for a valgrind without pidfd_open).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "check.hpp"

namespace {

/// Runs a group of checks; an exception it did not expect fails it and the others still run.
void run(const char* group, void (*checks)()) {
  try {
    checks();
  } catch (const std::exception& e) {
    check::report(false, std::string(group) + " threw: " + e.what(), __FILE__, __LINE__);
  }
}

}  // namespace

int main() {
  run("test_offline", test_offline);
  const char* skip_agents = std::getenv("CLOVE_TEST_SKIP_AGENTS");
  if (skip_agents && std::string_view(skip_agents) == "1") {
    check::skip("agent processes: exits, env and cwd, kill, pause/resume, list, events, "
                "bus events, sandbox, OOM");
  } else {
    run("test_agents", test_agents);
  }
  std::printf("%d passed, %d failed, %d skipped\n", check::passed, check::failed, check::skipped);
  return check::failed == 0 ? 0 : 1;
}
