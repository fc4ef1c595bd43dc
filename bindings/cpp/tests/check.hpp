// The test harness shared by the C++ binding's test files: one line per check, counters, and
// helpers for exceptions and events. Everything here is inline, like clove.hpp, so that every test
// file may include it.
#ifndef CLOVE_TESTS_CHECK_HPP
#define CLOVE_TESTS_CHECK_HPP

#include <chrono>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <typeinfo>

#include "clove.hpp"

namespace check {

/// Generous, for sanitizers and valgrind: waits poll with this deadline; nothing asserts a time.
inline constexpr std::chrono::seconds deadline{20};

inline int passed = 0;
inline int failed = 0;
inline int skipped = 0;

inline void report(bool ok, const std::string& what, const char* file, int line) {
  std::printf("%s - %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (ok) {
    passed++;
  } else {
    failed++;
    std::printf("     at %s:%d\n", file, line);
  }
}

inline void skip(const std::string& what) {
  std::printf("SKIPPED - %s\n", what.c_str());
  skipped++;
}

/// Runs `body` and says whether it threw exactly `Expected` (or a subclass) with `status`. Any
/// other outcome is printed.
template <class Expected, class Body>
bool throws(clove_status status, Body&& body) {
  try {
    body();
    std::printf("     nothing was thrown\n");
  } catch (const Expected& e) {
    if (e.status() == status) return true;
    std::printf("     status %d: %s\n", static_cast<int>(e.status()), e.what());
  } catch (const std::exception& e) {
    std::printf("     %s was thrown: %s\n", typeid(e).name(), e.what());
  }
  return false;
}

/// Reads events until one of `kind` for `agent` comes; empty if none comes before the deadline.
inline std::optional<clove::event> await_event(clove::runtime& rt, clove::agent_id agent,
                                               clove::event_kind kind) {
  while (auto event = rt.next_event(deadline)) {
    if (event->agent == agent && event->kind == kind) return event;
  }
  return std::nullopt;
}

}  // namespace check

#define CHECK(expr) check::report(static_cast<bool>(expr), #expr, __FILE__, __LINE__)
#define CHECK_THROWS(type, status, expr) \
  check::report(check::throws<type>(status, [&] { (void)(expr); }), \
                "throws " #type ": " #expr, __FILE__, __LINE__)

// The test files' entry points, called by main in test_main.cpp.
void test_offline();  // test_offline.cpp: no agent process is started (valgrind runs these)
void test_agents();   // test_agents.cpp: agents are started

#endif  // CLOVE_TESTS_CHECK_HPP
