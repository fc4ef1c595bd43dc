// clove.hpp: a header-only C++ binding of Clove's C ABI (include/clove.h), C++17 or later.
//
// Handles are move-only RAII objects that free what they own; every failed C call throws a
// `clove::error` subclass carrying its status and `clove_last_error()`; times are std::chrono.
// Guide: docs/binding-cpp.md. Ownership and threading rules of the C ABI: docs/c-api.md.
#ifndef CLOVE_HPP
#define CLOVE_HPP

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#if __has_include(<version>)
#include <version>
#endif
#ifdef __cpp_lib_span
#include <span>
#endif

#include "clove.h"

namespace clove {

// ---------------------------------------------------------------------------------------------
// Errors

/// A failed call: `status()` is the C status, `what()` the library's message for it.
class error : public std::runtime_error {
 public:
  error(clove_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}

  clove_status status() const noexcept { return status_; }

 private:
  clove_status status_;
};

/// BAD_FRAME, UNKNOWN_OPCODE or BAD_PAYLOAD: the wire between agents and the runtime.
class protocol_error : public error { public: using error::error; };
/// PERMISSION_DENIED: a policy refused.
class permission_denied : public error { public: using error::error; };
/// NOT_FOUND: an unknown or forgotten agent id, a missing program or file.
class not_found : public error { public: using error::error; };
/// TIMEOUT. `wait_for` and `next_event` report their timeouts as an empty optional instead.
class timed_out : public error { public: using error::error; };
/// LIMIT_EXCEEDED.
class limit_exceeded : public error { public: using error::error; };
/// IO: a system call failed.
class io_error : public error { public: using error::error; };
/// UNSUPPORTED, or a library whose ABI version differs from this header's.
class unsupported : public error { public: using error::error; };
/// INVALID_ARGUMENT: an unknown name, a bad path, an empty argv, a moved-from handle.
class invalid_argument : public error { public: using error::error; };
/// CONFLICT: the agent's state forbids it (pausing an ended agent), or a runtime called from its
/// own event handler.
class conflict : public error { public: using error::error; };
/// INTERNAL: a bug in Clove, or a runtime whose reactor stopped.
class internal_error : public error { public: using error::error; };

namespace detail {

/// Throws the subclass of `clove::error` that names `status`.
[[noreturn]] inline void throw_error(clove_status status, const std::string& message) {
  switch (status) {
    case CLOVE_STATUS_BAD_FRAME:
    case CLOVE_STATUS_UNKNOWN_OPCODE:
    case CLOVE_STATUS_BAD_PAYLOAD: throw protocol_error(status, message);
    case CLOVE_STATUS_PERMISSION_DENIED: throw permission_denied(status, message);
    case CLOVE_STATUS_NOT_FOUND: throw not_found(status, message);
    case CLOVE_STATUS_TIMEOUT: throw timed_out(status, message);
    case CLOVE_STATUS_LIMIT_EXCEEDED: throw limit_exceeded(status, message);
    case CLOVE_STATUS_IO: throw io_error(status, message);
    case CLOVE_STATUS_UNSUPPORTED: throw unsupported(status, message);
    case CLOVE_STATUS_INVALID_ARGUMENT: throw invalid_argument(status, message);
    case CLOVE_STATUS_CONFLICT: throw conflict(status, message);
    case CLOVE_STATUS_INTERNAL: throw internal_error(status, message);
    default: throw error(status, message);  // a status newer than this header
  }
}

/// Throws for a failed call, with the message the library left for this thread.
inline void check(clove_status status) {
  if (status != CLOVE_STATUS_OK) throw_error(status, clove_last_error());
}

/// A string for the C ABI: NUL-terminated, so a view holding a NUL (which C would silently cut
/// short) is refused. With `empty_is_null`, an empty view becomes NULL ("not given").
class c_str {
 public:
  explicit c_str(std::string_view text, bool empty_is_null = false)
      : text_(text), null_(empty_is_null && text.empty()) {
    if (text.find('\0') != std::string_view::npos) {
      throw invalid_argument(CLOVE_STATUS_INVALID_ARGUMENT,
                             "clove: a string argument contains a NUL byte");
    }
  }

  operator const char*() const noexcept { return null_ ? nullptr : text_.c_str(); }

 private:
  std::string text_;
  bool null_;
};

/// A timeout for the C ABI. A negative chrono timeout has already expired (as for
/// std::condition_variable), whereas a negative number tells the C ABI to wait forever.
inline std::int64_t timeout_ms(std::chrono::milliseconds timeout) {
  return std::max<std::int64_t>(timeout.count(), 0);
}

/// `value` clamped into the unsigned type `U`, so a negative duration cannot wrap into a huge one.
template <class U>
U clamp_to(std::int64_t value) {
  if (value <= 0) return 0;
  auto max = std::numeric_limits<U>::max();
  return static_cast<std::uint64_t>(value) > max ? max : static_cast<U>(value);
}

template <auto Free>
struct free_with {
  template <class T>
  void operator()(T* handle) const noexcept { Free(handle); }
};

/// A C handle freed by `Free`; moving it leaves NULL behind, which every `_free` accepts.
template <class T, auto Free>
using handle = std::unique_ptr<T, free_with<Free>>;

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Values

using agent_id = std::uint64_t;

/// The ABI version of the loaded library; this header was written for `CLOVE_ABI_VERSION`.
inline std::uint32_t abi_version() noexcept { return clove_abi_version(); }

/// The loaded library's version, e.g. "0.1.0".
inline std::string_view version() noexcept { return clove_version(); }

/// How an agent's process ended.
struct exit_info {
  std::optional<std::int32_t> code;  ///< set when it exited by itself
  std::int32_t signal = 0;           ///< the signal that ended it, or 0
  bool oom_killed = false;           ///< the kernel killed it for exceeding its memory limit
};

enum class agent_state {
  running = CLOVE_AGENT_STATE_RUNNING,
  paused = CLOVE_AGENT_STATE_PAUSED,
  exited = CLOVE_AGENT_STATE_EXITED,
};

enum class event_kind {
  spawned = CLOVE_EVENT_KIND_SPAWNED,
  exited = CLOVE_EVENT_KIND_EXITED,
  paused = CLOVE_EVENT_KIND_PAUSED,
  resumed = CLOVE_EVENT_KIND_RESUMED,
  restarting = CLOVE_EVENT_KIND_RESTARTING,
  escalated = CLOVE_EVENT_KIND_ESCALATED,
  oom = CLOVE_EVENT_KIND_OOM,
  // Bus events, once subscribed to with `runtime::subscribe`; `event::data_json` holds their data.
  message_received = CLOVE_EVENT_KIND_MESSAGE_RECEIVED,
  state_changed = CLOVE_EVENT_KIND_STATE_CHANGED,
  syscall_blocked = CLOVE_EVENT_KIND_SYSCALL_BLOCKED,
  resource_warning = CLOVE_EVENT_KIND_RESOURCE_WARNING,
  custom = CLOVE_EVENT_KIND_CUSTOM,  ///< `event::name` is its type
};

/// The kind's name in lower case: "spawned", "exited", ..., "message_received", "custom".
inline std::string_view to_string(event_kind kind) noexcept {
  switch (kind) {
    case event_kind::spawned: return "spawned";
    case event_kind::exited: return "exited";
    case event_kind::paused: return "paused";
    case event_kind::resumed: return "resumed";
    case event_kind::restarting: return "restarting";
    case event_kind::escalated: return "escalated";
    case event_kind::oom: return "oom";
    case event_kind::message_received: return "message_received";
    case event_kind::state_changed: return "state_changed";
    case event_kind::syscall_blocked: return "syscall_blocked";
    case event_kind::resource_warning: return "resource_warning";
    case event_kind::custom: return "custom";
  }
  return "unknown";  // a kind newer than this header
}

/// An event. Fields that do not apply to its kind are zero or empty.
struct event {
  agent_id agent = 0;
  event_kind kind = event_kind::spawned;
  std::uint32_t pid = 0;                     ///< spawned: the new process id
  exit_info exit;                            ///< exited: how it ended
  std::uint32_t attempt = 0;                 ///< restarting: the restart's number in its window
  std::chrono::milliseconds delay{0};        ///< restarting: how long until the restart
  std::chrono::system_clock::time_point time;  ///< when it happened
  std::string name;       ///< bus events: the type ("MESSAGE_RECEIVED"), or a custom event's own
  std::string data_json;  ///< bus events: the data, a JSON object
};

/// An agent's THINK as the runtime's think handler sees it (`runtime::on_think`), copied out.
struct think_request {
  agent_id agent = 0;
  std::string agent_name;
  std::string prompt;
  std::optional<std::string> system_instruction;
  std::optional<std::string> model;  ///< empty: the handler's own choice
  std::vector<std::uint8_t> image;   ///< empty when none came
  std::string image_mime_type;
  std::optional<double> temperature;
  std::uint32_t max_tokens = 0;  ///< the agent's cap lowered to its quota; 0 for no limit
  std::string thinking_level;
};

/// What a think handler answers. The tokens count against the agent's quota; an empty `model`
/// means the one asked for.
struct think_answer {
  std::string text;
  std::string model;
  std::uint64_t input_tokens = 0;
  std::uint64_t output_tokens = 0;
};

/// One agent of an `agent_list`, copied out of it.
struct agent_info {
  agent_id id = 0;
  agent_id parent = 0;  ///< the agent that spawned it; 0 for the host's own or a connected one
  std::uint32_t pid = 0;
  agent_state state = agent_state::running;
  std::chrono::milliseconds uptime{0};
  std::string name;
  std::string level;  ///< its permission level, or "custom"
  std::optional<exit_info> exit;  ///< set once it ended
};

/// An agent's cgroup counters (agents started with limits or a sandbox have a cgroup).
struct cgroup_metrics {
  std::chrono::microseconds cpu_usage{0};
  std::chrono::microseconds cpu_throttled{0};
  std::uint64_t memory_current = 0;
  std::uint64_t memory_peak = 0;
  std::uint64_t pids_current = 0;
  std::uint64_t oom_kills = 0;
};

struct agent_metrics {
  std::chrono::milliseconds uptime{0};
  std::chrono::microseconds cpu_time{0};  ///< of its main process
  std::uint64_t rss_bytes = 0;
  std::uint32_t threads = 0;
  std::uint32_t fds = 0;
  std::uint64_t syscalls = 0;  ///< every request it made to the runtime
  std::optional<cgroup_metrics> cgroup;
};

/// Resource limits; zero leaves one unset.
struct resource_limits {
  std::uint64_t memory_bytes = 0;
  std::uint32_t max_pids = 0;
  std::chrono::microseconds cpu_quota{0};
  std::chrono::microseconds cpu_period{0};
};

/// Which audit entries `runtime::audit_log_json` returns.
struct audit_filter {
  std::string_view category;  ///< "security", "lifecycle"; empty: any
  agent_id agent = 0;         ///< 0: any
  std::uint64_t since_id = 0;  ///< only entries with a greater id
  std::uint32_t limit = 0;    ///< the newest `limit` (0: 100; at most 1 000)
};

namespace detail {

inline exit_info to_exit_info(const clove_exit& raw) {
  exit_info exit;
  if (raw.has_code) exit.code = raw.code;
  exit.signal = raw.signal;
  exit.oom_killed = raw.oom_killed;
  return exit;
}

inline event to_event(const clove_event& raw) {
  event e;
  e.agent = raw.agent_id;
  e.kind = static_cast<event_kind>(raw.kind);
  e.pid = raw.pid;
  e.exit = to_exit_info(raw.exit);
  e.attempt = raw.attempt;
  e.delay = std::chrono::milliseconds(raw.delay_ms);
  e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(raw.timestamp_ms));
  // Copied now: C keeps them only until the next event on this thread.
  if (raw.name) e.name = raw.name;
  if (raw.data_json) e.data_json = raw.data_json;
  return e;
}

inline agent_info to_agent_info(const clove_agent_info& raw) {
  agent_info info;
  info.id = raw.id;
  info.parent = raw.parent;
  info.pid = raw.pid;
  info.state = static_cast<agent_state>(raw.state);
  info.uptime = std::chrono::milliseconds(raw.uptime_ms);
  info.name = raw.name;
  info.level = raw.level;
  if (raw.has_exit) info.exit = to_exit_info(raw.exit);
  return info;
}

inline agent_metrics to_agent_metrics(const clove_agent_metrics& raw) {
  agent_metrics m;
  m.uptime = std::chrono::milliseconds(raw.uptime_ms);
  m.cpu_time = std::chrono::microseconds(raw.cpu_time_us);
  m.rss_bytes = raw.rss_bytes;
  m.threads = raw.threads;
  m.fds = raw.fds;
  m.syscalls = raw.syscalls;
  if (raw.has_cgroup) {
    m.cgroup = cgroup_metrics{std::chrono::microseconds(raw.cgroup_cpu_usage_us),
                              std::chrono::microseconds(raw.cgroup_cpu_throttled_us),
                              raw.cgroup_memory_current, raw.cgroup_memory_peak,
                              raw.cgroup_pids_current, raw.cgroup_oom_kills};
  }
  return m;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Options

/// Options for a `runtime`. Setters return `*this` for chaining; a runtime copies what it needs.
class runtime_options {
 public:
  runtime_options() {
    clove_runtime_options* raw = nullptr;
    detail::check(clove_runtime_options_new(&raw));
    handle_.reset(raw);
  }

  /// The directory that `~` stands for in path policies.
  runtime_options& home(std::string_view dir) {
    detail::check(clove_runtime_options_set_home(handle_.get(), detail::c_str(dir)));
    return *this;
  }
  /// The largest frame payload accepted from an agent.
  runtime_options& max_payload(std::uint32_t bytes) {
    detail::check(clove_runtime_options_set_max_payload(handle_.get(), bytes));
    return *this;
  }
  runtime_options& audit_capacity(std::size_t entries) {
    detail::check(clove_runtime_options_set_audit_capacity(handle_.get(), entries));
    return *this;
  }
  /// How many events `runtime::next_event` may fall behind before the oldest are dropped.
  runtime_options& event_capacity(std::size_t events) {
    detail::check(clove_runtime_options_set_event_capacity(handle_.get(), events));
    return *this;
  }
  /// How many ended agents are remembered for `wait` and `list`.
  runtime_options& exited_retention(std::size_t agents) {
    detail::check(clove_runtime_options_set_exited_retention(handle_.get(), agents));
    return *this;
  }
  /// Also appends every audit entry to this file as a JSON line (mode 0600).
  runtime_options& audit_file(std::string_view path) {
    detail::check(clove_runtime_options_set_audit_file(handle_.get(), detail::c_str(path)));
    return *this;
  }
  /// The LLM provider THINK asks when no think handler is set, instead of the environment's:
  /// "openai" (any OpenAI-compatible server), "gemini" or "anthropic", or empty for none at all.
  /// Empty `base_url`, `api_key` or `model` keep the provider's default (no key).
  runtime_options& llm(std::string_view provider, std::string_view base_url = {},
                       std::string_view api_key = {}, std::string_view model = {}) {
    detail::check(clove_runtime_options_set_llm(
        handle_.get(), detail::c_str(provider, true), detail::c_str(base_url, true),
        detail::c_str(api_key, true), detail::c_str(model, true)));
    return *this;
  }
  /// Whether agents' HTTP is refused for loopback, private and link-local addresses (default).
  runtime_options& http_refuse_non_public(bool refuse) {
    detail::check(clove_runtime_options_set_http_refuse_non_public(handle_.get(), refuse));
    return *this;
  }
  /// Keeps the agents' state store (its global keys) in this database file across runs (mode
  /// 0600); constructing the runtime throws `io_error` if the file is damaged or in use.
  runtime_options& state_path(std::string_view path) {
    detail::check(clove_runtime_options_set_state_path(handle_.get(), detail::c_str(path)));
    return *this;
  }
  /// The guest kernel and initramfs microVM agents boot; "" keeps what CLOVE_VM_KERNEL and
  /// CLOVE_VM_INITRAMFS said (docs/microvm.md).
  runtime_options& vm_image(std::string_view kernel, std::string_view initramfs) {
    detail::check(clove_runtime_options_set_vm_image(handle_.get(), detail::c_str(kernel, true),
                                                     detail::c_str(initramfs, true)));
    return *this;
  }

  const clove_runtime_options* native_handle() const noexcept { return handle_.get(); }

 private:
  detail::handle<clove_runtime_options, clove_runtime_options_free> handle_;
};

/// Everything about an agent to start. Defaults: no argv (give the program first), level
/// "standard", output inherited, no restart, no limits, not sandboxed, no network. Names (level,
/// restart policy, profile) are passed through, so names a newer library adds work unchanged.
class spawn_options {
 public:
  explicit spawn_options(std::string_view name) {
    clove_spawn_options* raw = nullptr;
    detail::check(clove_spawn_options_new(detail::c_str(name), &raw));
    handle_.reset(raw);
  }

  /// Appends to argv: the program first (looked up in PATH), then its arguments.
  spawn_options& arg(std::string_view value) {
    detail::check(clove_spawn_options_add_arg(handle_.get(), detail::c_str(value)));
    return *this;
  }
  spawn_options& args(std::initializer_list<std::string_view> list) {
    for (auto item : list) arg(item);
    return *this;
  }
#ifdef __cpp_lib_span
  spawn_options& args(std::span<const std::string> list) {
#else
  spawn_options& args(const std::vector<std::string>& list) {
#endif
    for (const auto& item : list) arg(item);
    return *this;
  }
  /// Adds a variable to the agent's minimal environment; the host's is never passed on.
  spawn_options& env(std::string_view key, std::string_view value) {
    detail::check(clove_spawn_options_set_env(handle_.get(), detail::c_str(key), detail::c_str(value)));
    return *this;
  }
  spawn_options& cwd(std::string_view dir) {
    detail::check(clove_spawn_options_set_cwd(handle_.get(), detail::c_str(dir)));
    return *this;
  }
  /// "unrestricted", "standard", "sandboxed", "readonly" or "minimal".
  spawn_options& level(std::string_view name) {
    detail::check(clove_spawn_options_set_level(handle_.get(), detail::c_str(name)));
    return *this;
  }
  /// The agent's stdout and stderr go to the host's (the default).
  spawn_options& inherit_output() { return stdio(CLOVE_STDIO_INHERIT, nullptr); }
  /// The agent's stdout and stderr go to /dev/null.
  spawn_options& discard_output() { return stdio(CLOVE_STDIO_NULL, nullptr); }
  /// The agent's stdout and stderr are appended to this file.
  spawn_options& output_to_file(std::string_view path) {
    return stdio(CLOVE_STDIO_FILE, detail::c_str(path));
  }
  /// `policy` is "never", "on-failure" or "always"; after `max_restarts` restarts within
  /// `window` the agent is given up (an `escalated` event).
  spawn_options& restart(std::string_view policy, std::uint32_t max_restarts,
                         std::chrono::seconds window) {
    detail::check(clove_spawn_options_set_restart(handle_.get(), detail::c_str(policy), max_restarts,
                                                  detail::clamp_to<std::uint32_t>(window.count())));
    return *this;
  }
  spawn_options& limits(const resource_limits& wanted) {
    detail::check(clove_spawn_options_set_limits(
        handle_.get(), wanted.memory_bytes, wanted.max_pids,
        detail::clamp_to<std::uint64_t>(wanted.cpu_quota.count()),
        detail::clamp_to<std::uint64_t>(wanted.cpu_period.count())));
    return *this;
  }
  /// Runs the agent in the process sandbox (docs/security.md).
  spawn_options& sandboxed(bool on = true) {
    detail::check(clove_spawn_options_set_sandboxed(handle_.get(), on));
    return *this;
  }
  /// Runs the agent in its own microVM with `vcpus` vCPUs (0: not); its memory limit is the VM's
  /// RAM (docs/microvm.md).
  spawn_options& vm(std::uint32_t vcpus = 1) {
    detail::check(clove_spawn_options_set_vm(handle_.get(), vcpus));
    return *this;
  }
  /// Lets a sandboxed agent reach the network.
  spawn_options& network(bool on = true) {
    detail::check(clove_spawn_options_set_network(handle_.get(), on));
    return *this;
  }
  /// "permissive", "moderate" or "restrictive": turns the sandbox on and fills the limits and
  /// network not set yet, so set explicit limits first.
  spawn_options& profile(std::string_view name) {
    detail::check(clove_spawn_options_set_profile(handle_.get(), detail::c_str(name)));
    return *this;
  }
  /// Shows host path `host` inside a sandboxed agent at `guest` (both absolute).
  spawn_options& mount(std::string_view host, std::string_view guest, bool read_only = true) {
    detail::check(clove_spawn_options_add_mount(handle_.get(), detail::c_str(host),
                                                detail::c_str(guest), read_only));
    return *this;
  }

  const clove_spawn_options* native_handle() const noexcept { return handle_.get(); }

 private:
  spawn_options& stdio(clove_stdio kind, const char* path) {
    detail::check(clove_spawn_options_set_stdio(handle_.get(), kind, path));
    return *this;
  }

  detail::handle<clove_spawn_options, clove_spawn_options_free> handle_;
};

// ---------------------------------------------------------------------------------------------
// Agent list

/// A snapshot of the agents a runtime knows. Reading an entry copies it, so entries outlive the
/// list. A moved-from list is empty.
class agent_list {
 public:
  /// Iterates by value over the snapshot, so a range-for works.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = agent_info;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = agent_info;

    iterator(const agent_list* list, std::size_t index) noexcept : list_(list), index_(index) {}
    agent_info operator*() const { return list_->at(index_); }
    iterator& operator++() noexcept {
      ++index_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++index_;
      return before;
    }
    bool operator==(const iterator& other) const noexcept {
      return list_ == other.list_ && index_ == other.index_;
    }
    bool operator!=(const iterator& other) const noexcept { return !(*this == other); }

   private:
    const agent_list* list_;
    std::size_t index_;
  };

  /// Takes ownership of `list` (from `clove_runtime_list`).
  explicit agent_list(clove_agent_list* list) noexcept : handle_(list) {}

  std::size_t size() const noexcept { return clove_agent_list_len(handle_.get()); }
  bool empty() const noexcept { return size() == 0; }
  /// Throws `invalid_argument` past the end.
  agent_info at(std::size_t index) const {
    clove_agent_info raw{};
    detail::check(clove_agent_list_get(handle_.get(), index, &raw));
    return detail::to_agent_info(raw);
  }
  iterator begin() const noexcept { return iterator(this, 0); }
  iterator end() const noexcept { return iterator(this, size()); }

  const clove_agent_list* native_handle() const noexcept { return handle_.get(); }

 private:
  detail::handle<clove_agent_list, clove_agent_list_free> handle_;
};

// ---------------------------------------------------------------------------------------------
// Runtime

namespace detail {

/// The runtime whose event handler this thread is running, if any. Only a reactor thread sets
/// it, around each handler call, so that a call back into that runtime throws instead of
/// waiting forever for the thread that is making it.
inline thread_local const clove_runtime* delivering_for = nullptr;

struct event_handler {
  const clove_runtime* runtime;
  std::function<void(const event&)> call;
};

/// The C callback. An exception must not unwind into the library (that is undefined behaviour),
/// so one thrown by the handler is dropped here.
inline void deliver_event(const clove_event* raw, void* user_data) noexcept {
  auto* handler = static_cast<event_handler*>(user_data);
  delivering_for = handler->runtime;
  try {
    handler->call(to_event(*raw));
  } catch (...) {
  }
  delivering_for = nullptr;
}

using think_function = std::function<think_answer(const think_request&)>;

inline std::optional<std::string> optional_string(const char* text) {
  return text ? std::optional<std::string>(text) : std::nullopt;
}

inline think_request to_think_request(const clove_think_request& raw) {
  think_request request;
  request.agent = raw.agent_id;
  request.agent_name = raw.agent_name;
  request.prompt = raw.prompt;
  request.system_instruction = optional_string(raw.system_instruction);
  request.model = optional_string(raw.model);
  if (raw.image) request.image.assign(raw.image, raw.image + raw.image_len);
  request.image_mime_type = optional_string(raw.image_mime_type).value_or("");
  if (raw.has_temperature) request.temperature = raw.temperature;
  request.max_tokens = raw.max_tokens;
  request.thinking_level = optional_string(raw.thinking_level).value_or("");
  return request;
}

/// The C think handler, on a THINK worker thread. An exception must not unwind into the library,
/// so one thrown by the handler fails the THINK with its message.
inline void answer_think(const clove_think_request* raw, clove_think_answer* answer,
                         void* user_data) noexcept {
  try {
    const think_answer result = (*static_cast<think_function*>(user_data))(to_think_request(*raw));
    check(clove_think_answer_set_text(answer, c_str(result.text)));
    if (!result.model.empty()) check(clove_think_answer_set_model(answer, c_str(result.model)));
    check(clove_think_answer_set_usage(answer, result.input_tokens, result.output_tokens));
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\0', ' ');
    clove_think_answer_set_error(answer, message.c_str());
  } catch (...) {
    clove_think_answer_set_error(answer, "the think handler threw");
  }
}

}  // namespace detail

/// A runtime in this process: one reactor thread owning every agent. Destroying it kills every
/// agent, removes the listening socket and joins the reactor thread. Every method may be called
/// from any thread at once, but not from the runtime's own event handler (it throws `conflict`).
/// A moved-from runtime throws `invalid_argument` from every method and may be destroyed.
class runtime {
 public:
  /// A runtime with the default options.
  runtime() : handle_(start(nullptr)) {}
  explicit runtime(const runtime_options& options) : handle_(start(checked(options))) {}

  runtime(runtime&&) noexcept = default;
  runtime& operator=(runtime&& other) noexcept {
    if (this != &other) {
      handle_.reset();  // first: its reactor may be running the handler replaced below
      handler_ = std::move(other.handler_);
      think_ = std::move(other.think_);
      handle_ = std::move(other.handle_);
    }
    return *this;
  }
  ~runtime() { handle_.reset(); }  // before the handler, which the reactor may be calling

  /// Serves agents started elsewhere on a Unix socket at `path` (mode 0600). They start at, and
  /// never rise above, `max_level` (empty: "standard"); peers of another uid must present `token`
  /// (empty: none is accepted).
  void listen(std::string_view path, std::string_view max_level = {}, std::string_view token = {}) {
    detail::check(clove_runtime_listen(live(), detail::c_str(path), detail::c_str(max_level, true),
                                       detail::c_str(token, true)));
  }

  /// Starts an agent; the options may be changed or dropped afterwards.
  agent_id spawn(const spawn_options& options) {
    agent_id id = 0;
    detail::check(clove_runtime_spawn(live(), options.native_handle(), &id));
    return id;
  }

  /// Keeps `count` sandboxes shaped like `options` (which must be sandboxed) ready, so spawning
  /// an agent of that shape skips building one. Returns once they are ready.
  void prewarm(const spawn_options& options, std::size_t count) {
    detail::check(clove_runtime_prewarm(live(), options.native_handle(), count));
  }

  /// Kills an agent and everything it started.
  void kill(agent_id id) { detail::check(clove_runtime_kill(live(), id)); }
  void pause(agent_id id) { detail::check(clove_runtime_pause(live(), id)); }
  void resume(agent_id id) { detail::check(clove_runtime_resume(live(), id)); }

  /// Waits for an agent to end.
  exit_info wait(agent_id id) { return wait_ms(id, -1).value(); }
  /// Waits at most `timeout` for an agent to end; empty if it is still running.
  std::optional<exit_info> wait_for(agent_id id, std::chrono::milliseconds timeout) {
    return wait_ms(id, detail::timeout_ms(timeout));
  }

  agent_list list() {
    clove_agent_list* raw = nullptr;
    detail::check(clove_runtime_list(live(), &raw));
    return agent_list(raw);
  }

  agent_metrics metrics(agent_id id) {
    clove_agent_metrics raw{};
    detail::check(clove_runtime_agent_metrics(live(), id, &raw));
    return detail::to_agent_metrics(raw);
  }

  /// Takes the oldest unread event, waiting at most `timeout`; empty if none came. Events are
  /// queued whether or not a handler is set; each goes to one caller.
  std::optional<event> next_event(std::chrono::milliseconds timeout) {
    clove_event raw{};
    clove_status status = clove_runtime_next_event(live(), detail::timeout_ms(timeout), &raw);
    if (status == CLOVE_STATUS_TIMEOUT) return std::nullopt;
    detail::check(status);
    return detail::to_event(raw);
  }

  /// Calls `handler` for every event, on the reactor thread, replacing any handler before; an
  /// empty function clears it. Once this returns, the previous handler is not running and will
  /// not run again. The handler must return quickly and must not call this runtime (that throws
  /// `conflict`, since it would wait for the very thread running the handler): hand the event
  /// to another thread. An exception it throws is caught and dropped.
  void on_event(std::function<void(const event&)> handler) {
    clove_runtime* rt = live();
    if (!handler) {
      detail::check(clove_runtime_set_event_callback(rt, nullptr, nullptr));
      handler_.reset();
      return;
    }
    auto next = std::make_unique<detail::event_handler>(detail::event_handler{rt, std::move(handler)});
    detail::check(clove_runtime_set_event_callback(rt, detail::deliver_event, next.get()));
    handler_ = std::move(next);
  }

  /// Answers every agent's THINK with `handler` instead of the LLM provider, replacing any handler
  /// before; an empty function removes it. It runs on the runtime's THINK worker threads, several
  /// at once, never the reactor thread: it may call this runtime, but not `on_think` (that throws
  /// `conflict`) nor destroy it. An exception it throws fails that THINK with its message. Once
  /// this returns, the previous handler is not running and will not run again.
  void on_think(std::function<think_answer(const think_request&)> handler) {
    clove_runtime* rt = live();
    if (!handler) {
      detail::check(clove_runtime_set_think_handler(rt, nullptr, nullptr));
      think_.reset();
      return;
    }
    auto next = std::make_unique<detail::think_function>(std::move(handler));
    detail::check(clove_runtime_set_think_handler(rt, detail::answer_think, next.get()));
    think_ = std::move(next);
  }

  /// Adds a bus event type to get as events: "MESSAGE_RECEIVED", "STATE_CHANGED",
  /// "SYSCALL_BLOCKED", "RESOURCE_WARNING", "CUSTOM", a custom event's own name, or "*" for all.
  /// Lifecycle events always come.
  void subscribe(std::string_view event_type) {
    detail::check(clove_runtime_subscribe(live(), detail::c_str(event_type)));
  }
  /// Removes a bus event type `subscribe` added.
  void unsubscribe(std::string_view event_type) {
    detail::check(clove_runtime_unsubscribe(live(), detail::c_str(event_type)));
  }

  /// A JSON array of audit entries, oldest first (fields in docs/c-api.md).
  std::string audit_log_json(const audit_filter& filter = {}) {
    char* raw = nullptr;
    detail::check(clove_runtime_audit_log_json(live(), detail::c_str(filter.category, true),
                                               filter.agent, filter.since_id, filter.limit, &raw));
    detail::handle<char, clove_string_free> json(raw);
    return json.get();
  }

  clove_runtime* native_handle() const noexcept { return handle_.get(); }

 private:
  static const clove_runtime_options* checked(const runtime_options& options) {
    // The C ABI reads NULL options as "the defaults": a moved-from object must not mean that.
    if (!options.native_handle()) {
      throw invalid_argument(CLOVE_STATUS_INVALID_ARGUMENT, "clove::runtime: moved-from options");
    }
    return options.native_handle();
  }

  static clove_runtime* start(const clove_runtime_options* options) {
    if (clove_abi_version() != CLOVE_ABI_VERSION) {
      throw unsupported(CLOVE_STATUS_UNSUPPORTED,
                        "clove::runtime: the library's ABI version " +
                            std::to_string(clove_abi_version()) + " is not this header's " +
                            std::to_string(CLOVE_ABI_VERSION));
    }
    clove_runtime* raw = nullptr;
    detail::check(clove_runtime_new(options, &raw));
    return raw;
  }

  clove_runtime* live() const {
    if (handle_ && detail::delivering_for == handle_.get()) {
      throw conflict(CLOVE_STATUS_CONFLICT,
                     "clove::runtime: called from its own event handler, on its reactor thread");
    }
    return handle_.get();
  }

  std::optional<exit_info> wait_ms(agent_id id, std::int64_t timeout_ms) {
    clove_exit raw{};
    clove_status status = clove_runtime_wait(live(), id, timeout_ms, &raw);
    if (status == CLOVE_STATUS_TIMEOUT) return std::nullopt;
    detail::check(status);
    return detail::to_exit_info(raw);
  }

  std::unique_ptr<detail::event_handler> handler_;
  std::unique_ptr<detail::think_function> think_;  // both outlive handle_, declared after them
  detail::handle<clove_runtime, clove_runtime_free> handle_;
};

}  // namespace clove

#endif  // CLOVE_HPP
