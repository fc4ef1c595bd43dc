// Checks of the C++ binding that start no agent process, so valgrind can run them too: errors and
// their types, options, runtimes without agents, moves.
#include <unistd.h>

#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "check.hpp"

namespace {

template <class T>
constexpr bool move_only = !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T> &&
                           std::is_nothrow_move_constructible_v<T> &&
                           std::is_nothrow_move_assignable_v<T>;
static_assert(move_only<clove::runtime>);
static_assert(move_only<clove::runtime_options>);
static_assert(move_only<clove::spawn_options>);
static_assert(move_only<clove::agent_list>);

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

void test_versions() {
  CHECK(clove::abi_version() == CLOVE_ABI_VERSION);
  CHECK(!clove::version().empty());
}

// Every status becomes its own exception type, and each one is a clove::error.
#define CHECK_MAPS(type, status) CHECK_THROWS(type, status, clove::detail::throw_error(status, "x"))

void test_error_types() {
  CHECK_MAPS(clove::protocol_error, CLOVE_STATUS_BAD_FRAME);
  CHECK_MAPS(clove::protocol_error, CLOVE_STATUS_UNKNOWN_OPCODE);
  CHECK_MAPS(clove::protocol_error, CLOVE_STATUS_BAD_PAYLOAD);
  CHECK_MAPS(clove::permission_denied, CLOVE_STATUS_PERMISSION_DENIED);
  CHECK_MAPS(clove::not_found, CLOVE_STATUS_NOT_FOUND);
  CHECK_MAPS(clove::timed_out, CLOVE_STATUS_TIMEOUT);
  CHECK_MAPS(clove::limit_exceeded, CLOVE_STATUS_LIMIT_EXCEEDED);
  CHECK_MAPS(clove::io_error, CLOVE_STATUS_IO);
  CHECK_MAPS(clove::unsupported, CLOVE_STATUS_UNSUPPORTED);
  CHECK_MAPS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK_MAPS(clove::conflict, CLOVE_STATUS_CONFLICT);
  CHECK_MAPS(clove::internal_error, CLOVE_STATUS_INTERNAL);

  // A status newer than the header (the next number; UBSan rejects one out of the enum's range)
  // is still a clove::error, of the base type.
  const auto future = static_cast<clove_status>(CLOVE_STATUS_INTERNAL + 1);
  bool base_only = false;
  try {
    clove::detail::throw_error(future, "from the future");
  } catch (const clove::error& e) {
    base_only = typeid(e) == typeid(clove::error) && e.status() == future &&
                std::string(e.what()) == "from the future";
  }
  CHECK(base_only);

  bool is_runtime_error = false;
  try {
    clove::detail::throw_error(CLOVE_STATUS_NOT_FOUND, "gone");
  } catch (const std::runtime_error& e) {
    is_runtime_error = std::string(e.what()) == "gone";
  }
  CHECK(is_runtime_error);
}

// A bad option throws at the setter that took it, with the library's message.
void test_bad_options() {
  clove::spawn_options opts("bad");
  CHECK(&opts.arg("/bin/true") == &opts);
  std::string message;
  try {
    opts.level("root");
  } catch (const clove::invalid_argument& e) {
    message = e.what();
  }
  CHECK(contains(message, "clove_spawn_options_set_level"));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT,
               opts.restart("sometimes", 1, std::chrono::seconds(1)));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, opts.env("A=B", "c"));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, opts.profile("reckless"));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, opts.mount("relative", "/b"));
  using namespace std::string_view_literals;
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, opts.arg("a\0b"sv));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, clove::spawn_options("a\0b"sv));

  // Good values pass, through every setter.
  opts.args({"-c", "true"})
      .args(std::vector<std::string>{"x", "y"})
      .env("GREETING", "hello")
      .cwd("/")
      .level("ReadOnly")
      .discard_output()
      .inherit_output()
      .output_to_file("/tmp/clove-cpp-unused.log")
      .restart("on-failure", 2, std::chrono::minutes(1))
      .limits({64 << 20, 32, std::chrono::milliseconds(50), std::chrono::milliseconds(100)})
      .sandboxed()
      .network(false)
      .profile("moderate")
      .mount("/usr", "/opt/usr");
  CHECK(opts.native_handle() != nullptr);
}

void test_runtime_without_agents(const std::string& audit) {
  clove::runtime_options options;
  options.home("/tmp")
      .max_payload(1 << 20)
      .audit_capacity(1000)
      .event_capacity(256)
      .exited_retention(16)
      .audit_file(audit);
  clove::runtime rt(options);
  clove::runtime defaults;
  CHECK(defaults.list().empty());

  // Unknown ids.
  const clove::agent_id unknown = 999999;
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.kill(unknown));
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.pause(unknown));
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.resume(unknown));
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.metrics(unknown));
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.wait(unknown));
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.wait_for(unknown, check::deadline));
  std::string message;
  try {
    rt.kill(unknown);
  } catch (const clove::error& e) {
    message = e.what();
  }
  CHECK(contains(message, "clove_runtime_kill"));

  // Spawns the library refuses.
  clove::spawn_options empty("empty");
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, rt.spawn(empty));
  clove::spawn_options plain("plain");
  plain.arg("true");
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, rt.prewarm(plain, 1));

  // No agents, no events: a zero or negative timeout returns at once.
  CHECK(rt.list().size() == 0);
  CHECK(!rt.next_event(std::chrono::milliseconds(0)));
  CHECK(!rt.next_event(std::chrono::milliseconds(-5)));
  rt.on_event([](const clove::event&) {});
  rt.on_event(nullptr);

  const std::string socket = "/tmp/clove-cpp-test-" + std::to_string(getpid()) + ".sock";
  rt.listen(socket, "readonly", "secret");
  CHECK(access(socket.c_str(), F_OK) == 0);
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, rt.listen(socket + "2", "root"));
  CHECK(rt.audit_log_json().front() == '[');
  CHECK(rt.audit_log_json({"lifecycle", 0, 0, 10}).front() == '[');

  // A durable state store; a damaged file is refused.
  const std::string state = "/tmp/clove-cpp-test-" + std::to_string(getpid()) + ".state";
  clove::runtime_options durable;
  durable.state_path(state);
  { clove::runtime kept(durable); }
  CHECK(truncate(state.c_str(), 100) == 0);
  CHECK_THROWS(clove::io_error, CLOVE_STATUS_IO, clove::runtime(durable));
  unlink(state.c_str());
}

// A moved-from object may be destroyed, and using it throws instead of crashing.
void test_moves() {
  clove::runtime first;
  clove::runtime second(std::move(first));
  CHECK(first.native_handle() == nullptr);
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, first.list());
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, first.on_event([](const clove::event&) {}));
  CHECK(second.list().empty());

  clove::runtime third;
  third = std::move(second);  // frees the runtime `third` held
  CHECK(third.list().empty());
  clove::runtime& alias = third;
  third = std::move(alias);
  CHECK(third.list().empty());

  clove::spawn_options opts("moved");
  clove::spawn_options taken(std::move(opts));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, opts.arg("true"));
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, third.spawn(opts));
  taken.arg("true");
  opts = std::move(taken);
  CHECK(opts.native_handle() != nullptr && taken.native_handle() == nullptr);

  clove::runtime_options options;
  clove::runtime_options kept = std::move(options);
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, clove::runtime{options});
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, options.home("/tmp"));

  clove::agent_list list = third.list();
  clove::agent_list moved = std::move(list);
  CHECK(list.empty() && list.begin() == list.end());
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, list.at(0));
}

}  // namespace

void test_offline() {
  test_versions();
  test_error_types();
  test_bad_options();
  const std::string audit = "/tmp/clove-cpp-test-" + std::to_string(getpid()) + ".offline.audit";
  test_runtime_without_agents(audit);
  unlink(audit.c_str());  // once the runtime that writes it is gone
  test_moves();
}
