/*
 * clove.h: the C ABI of Clove, a library that runs AI agents as OS processes.
 * Link with -lclove (libclove.so or libclove.a). Rules for ownership, threads, NULL, panics and
 * callbacks: docs/c-api.md.
 */

#ifndef CLOVE_H
#define CLOVE_H

/* Generated from ffi/src by cbindgen (see ffi/cbindgen.toml): do not edit by hand. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * The version of the ABI this header describes. It changes only when a function, type or value
 * changes in a way that breaks a program built against an older header.
 */
#define CLOVE_ABI_VERSION 1

/**
 * What every call returns. `CLOVE_STATUS_OK` is 0; the other numbers are the runtime's error codes
 * (also sent to agents on the wire) and never change.
 */
typedef enum clove_status {
  CLOVE_STATUS_OK = 0,
  /**
   * Bytes that are not a frame.
   */
  CLOVE_STATUS_BAD_FRAME = 1,
  CLOVE_STATUS_UNKNOWN_OPCODE = 2,
  CLOVE_STATUS_BAD_PAYLOAD = 3,
  CLOVE_STATUS_PERMISSION_DENIED = 4,
  /**
   * No agent has this id (it never existed, or it ended and was forgotten).
   */
  CLOVE_STATUS_NOT_FOUND = 5,
  /**
   * The wait ended before the agent or the event did.
   */
  CLOVE_STATUS_TIMEOUT = 6,
  CLOVE_STATUS_LIMIT_EXCEEDED = 7,
  CLOVE_STATUS_IO = 8,
  CLOVE_STATUS_UNSUPPORTED = 9,
  /**
   * A NULL pointer, a string that is not UTF-8, an unknown name or an index out of range.
   */
  CLOVE_STATUS_INVALID_ARGUMENT = 10,
  /**
   * The request conflicts with the agent's state (e.g. pausing a paused agent).
   */
  CLOVE_STATUS_CONFLICT = 11,
  /**
   * A bug in Clove (a caught panic) or a runtime that has stopped.
   */
  CLOVE_STATUS_INTERNAL = 12,
} clove_status;

/**
 * Where an agent's stdout and stderr go.
 */
typedef enum clove_stdio {
  /**
   * The host's own stdout and stderr.
   */
  CLOVE_STDIO_INHERIT = 0,
  /**
   * `/dev/null`.
   */
  CLOVE_STDIO_NULL = 1,
  /**
   * Appended to a file, both streams.
   */
  CLOVE_STDIO_FILE = 2,
} clove_stdio;

/**
 * An agent's state.
 */
typedef enum clove_agent_state {
  CLOVE_AGENT_STATE_RUNNING = 0,
  CLOVE_AGENT_STATE_PAUSED = 1,
  CLOVE_AGENT_STATE_EXITED = 2,
} clove_agent_state;

/**
 * What happened to an agent.
 */
typedef enum clove_event_kind {
  /**
   * Its process started (again, after a restart); see `pid`.
   */
  CLOVE_EVENT_KIND_SPAWNED = 0,
  /**
   * Its process ended, by itself or by a kill; see `exit`.
   */
  CLOVE_EVENT_KIND_EXITED = 1,
  CLOVE_EVENT_KIND_PAUSED = 2,
  CLOVE_EVENT_KIND_RESUMED = 3,
  /**
   * It will be started again after `delay_ms`: restart number `attempt` in its window.
   */
  CLOVE_EVENT_KIND_RESTARTING = 4,
  /**
   * Its restart budget is spent; it will not be started again.
   */
  CLOVE_EVENT_KIND_ESCALATED = 5,
  /**
   * The kernel killed one of its processes for exceeding its memory limit; EXITED follows.
   */
  CLOVE_EVENT_KIND_OOM = 6,
  /**
   * The bus events below come once subscribed to with `clove_runtime_subscribe`; `data_json`
   * holds their data. A message reached an agent's mailbox.
   */
  CLOVE_EVENT_KIND_MESSAGE_RECEIVED = 7,
  /**
   * A state store key changed.
   */
  CLOVE_EVENT_KIND_STATE_CHANGED = 8,
  /**
   * The policy refused one of the agent's requests.
   */
  CLOVE_EVENT_KIND_SYSCALL_BLOCKED = 9,
  /**
   * An agent hit a limit (its mailbox was full, ...).
   */
  CLOVE_EVENT_KIND_RESOURCE_WARNING = 10,
  /**
   * An agent emitted a custom event; `name` is its type.
   */
  CLOVE_EVENT_KIND_CUSTOM = 11,
} clove_event_kind;

/**
 * A snapshot of every agent the runtime knows, running or recently ended. Owned by the caller:
 * free with `clove_agent_list_free`.
 */
typedef struct clove_agent_list clove_agent_list;

/**
 * A running runtime: one reactor thread that owns every agent. Owned by the caller: free with
 * `clove_runtime_free`.
 */
typedef struct clove_runtime clove_runtime;

/**
 * Options for `clove_runtime_new`, set one by one so that new options never break old callers.
 * Owned by the caller: free with `clove_runtime_options_free`.
 */
typedef struct clove_runtime_options clove_runtime_options;

/**
 * Everything about an agent to start. Owned by the caller: free with `clove_spawn_options_free`.
 * Defaults: no argv (add the program first), level "standard", stdio inherited, no restart, no
 * limits, not sandboxed, no network.
 */
typedef struct clove_spawn_options clove_spawn_options;

/**
 * Where the host handler puts its answer, through the `clove_think_answer_set_*` setters, which
 * copy what they are given. Owned by the library and valid only during the handler's call. An
 * answer with an error set fails the THINK with that message; one with neither text nor error
 * fails it too.
 */
typedef struct clove_think_answer clove_think_answer;

/**
 * How an agent's process ended.
 */
typedef struct clove_exit {
  /**
   * Whether it exited by itself, with `code`.
   */
  bool has_code;
  /**
   * Its exit code when `has_code`, else 0.
   */
  int32_t code;
  /**
   * The signal that ended it, or 0.
   */
  int32_t signal;
  /**
   * The kernel killed it for exceeding its memory limit.
   */
  bool oom_killed;
} clove_exit;

/**
 * One agent of a `clove_agent_list`. Its strings belong to the list.
 */
typedef struct clove_agent_info {
  uint64_t id;
  /**
   * The agent that spawned it, or 0 for one the host spawned or that connected.
   */
  uint64_t parent;
  /**
   * Its process id (of its last run when ended); 0 for one that connected.
   */
  uint32_t pid;
  enum clove_agent_state state;
  uint64_t uptime_ms;
  /**
   * Valid until `clove_agent_list_free`.
   */
  const char *name;
  /**
   * Its level's name, or "custom" for custom permissions. Valid until `clove_agent_list_free`.
   */
  const char *level;
  /**
   * Whether it ended, as told by `exit`.
   */
  bool has_exit;
  struct clove_exit exit;
} clove_agent_info;

/**
 * An event. Fields that do not apply to its kind are 0 or NULL.
 */
typedef struct clove_event {
  uint64_t agent_id;
  enum clove_event_kind kind;
  /**
   * For SPAWNED: the new process id.
   */
  uint32_t pid;
  /**
   * For EXITED: how it ended.
   */
  struct clove_exit exit;
  /**
   * For RESTARTING: the restart's number within the window.
   */
  uint32_t attempt;
  /**
   * For RESTARTING: how long until the restart.
   */
  uint64_t delay_ms;
  /**
   * When it happened, in milliseconds since the Unix epoch.
   */
  uint64_t timestamp_ms;
  /**
   * For bus events: the seed's type name (`"MESSAGE_RECEIVED"`), or for CUSTOM the emitter's
   * own name. NULL for lifecycle events.
   */
  const char *name;
  /**
   * For bus events: the event's data as a JSON object. NULL for lifecycle events.
   */
  const char *data_json;
} clove_event;

/**
 * Called on the runtime's reactor thread for every event, with the `user_data` given to
 * `clove_runtime_set_event_callback`. `event` is valid only during the call. The callback must
 * return quickly and must not call any `clove_runtime_*` function on the same runtime (that
 * function would wait for the thread that is running the callback); hand the event to another
 * thread instead.
 */
typedef void (*clove_event_callback)(const struct clove_event *event, void *user_data);

/**
 * An agent's figures. The cgroup fields are 0 when `has_cgroup` is false (an agent started without
 * limits or sandbox has none).
 */
typedef struct clove_agent_metrics {
  uint64_t uptime_ms;
  /**
   * CPU time of its main process.
   */
  uint64_t cpu_time_us;
  uint64_t rss_bytes;
  uint32_t threads;
  uint32_t fds;
  /**
   * Every request it made, of any opcode.
   */
  uint64_t syscalls;
  bool has_cgroup;
  uint64_t cgroup_cpu_usage_us;
  uint64_t cgroup_cpu_throttled_us;
  uint64_t cgroup_memory_current;
  uint64_t cgroup_memory_peak;
  uint64_t cgroup_pids_current;
  uint64_t cgroup_oom_kills;
} clove_agent_metrics;

/**
 * A THINK as the host handler sees it. Strings are NUL-terminated UTF-8; everything is valid only
 * during the handler's call.
 */
typedef struct clove_think_request {
  /**
   * The agent that asks.
   */
  uint64_t agent_id;
  const char *agent_name;
  const char *prompt;
  /**
   * NULL when none.
   */
  const char *system_instruction;
  /**
   * NULL when the agent named no model.
   */
  const char *model;
  /**
   * NULL (and `image_len` 0) when no image came with the prompt.
   */
  const uint8_t *image;
  size_t image_len;
  /**
   * "image/png", ...; NULL when no image.
   */
  const char *image_mime_type;
  /**
   * Whether `temperature` was given.
   */
  bool has_temperature;
  double temperature;
  /**
   * The most output tokens (the agent's cap, lowered to its quota), or 0 for no limit.
   */
  uint32_t max_tokens;
  /**
   * NULL when none.
   */
  const char *thinking_level;
} clove_think_request;

/**
 * Answers a THINK: reads `request`, fills `answer` with the setters, and returns. Called on one
 * of the runtime's THINK worker threads (never the reactor thread), possibly on several at once,
 * with the `user_data` given at registration. It may call other `clove_runtime_*` functions, but
 * not `clove_runtime_set_think_handler` nor `clove_runtime_free`.
 */
typedef void (*clove_think_handler)(const struct clove_think_request *request,
                                    struct clove_think_answer *answer,
                                    void *user_data);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The ABI version of the loaded library; compare it with `CLOVE_ABI_VERSION`.
 *
 * Thread-safety: any thread.
 */
uint32_t clove_abi_version(void);

/**
 * The library's version, e.g. "0.1.0": a static string, never freed.
 *
 * Thread-safety: any thread.
 */
const char *clove_version(void);

/**
 * The message of the last failed call on this thread, or "" if none failed. Valid until the next
 * `clove_*` call on the same thread; never NULL, never freed by the caller.
 *
 * Thread-safety: any thread; each thread has its own message.
 */
const char *clove_last_error(void);

/**
 * Creates options holding the defaults: max payload 1 MiB, home `$HOME` (else `/root`), 10 000
 * audit entries, 1 024 queued events, 256 ended agents remembered.
 *
 * Thread-safety: any thread.
 *
 * # Safety
 * `out` is NULL or valid for writing one pointer.
 */
enum clove_status clove_runtime_options_new(struct clove_runtime_options **out);

/**
 * Frees options; NULL does nothing. A runtime created from them does not need them.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or came from `clove_runtime_options_new` and was not freed.
 */
void clove_runtime_options_free(struct clove_runtime_options *opts);

/**
 * Sets the directory that `~` stands for in path policies.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options; `home` is NULL or a NUL-terminated string.
 */
enum clove_status clove_runtime_options_set_home(struct clove_runtime_options *opts,
                                                 const char *home);

/**
 * Sets the largest frame payload accepted from an agent, in bytes.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options.
 */
enum clove_status clove_runtime_options_set_max_payload(struct clove_runtime_options *opts,
                                                        uint32_t max_payload);

/**
 * Sets how many audit entries are kept in memory.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options.
 */
enum clove_status clove_runtime_options_set_audit_capacity(struct clove_runtime_options *opts,
                                                           size_t capacity);

/**
 * Sets how many events `clove_runtime_next_event` can fall behind before the oldest is dropped.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options.
 */
enum clove_status clove_runtime_options_set_event_capacity(struct clove_runtime_options *opts,
                                                           size_t capacity);

/**
 * Sets how many ended agents are remembered for `clove_runtime_wait` and `clove_runtime_list`.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options.
 */
enum clove_status clove_runtime_options_set_exited_retention(struct clove_runtime_options *opts,
                                                             size_t retention);

/**
 * Also appends every audit entry to the file at `path` as a JSON line (created with mode 0600);
 * NULL stops that (the default).
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options; `path` is NULL or a NUL-terminated string.
 */
enum clove_status clove_runtime_options_set_audit_file(struct clove_runtime_options *opts,
                                                       const char *path);

/**
 * Keeps the state store's global keys in the database file at `path` (created with mode 0600), so
 * they outlive the runtime: each STORE or DELETE of one is answered once committed to disk. NULL
 * keeps the store in memory (the default). `clove_runtime_new` fails with `CLOVE_STATUS_IO` and a
 * last error naming the file when it is damaged or another runtime has it open.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options; `path` is NULL or a NUL-terminated string.
 */
enum clove_status clove_runtime_options_set_state_path(struct clove_runtime_options *opts,
                                                       const char *path);

/**
 * The guest kernel and initramfs that microVM agents boot (`guest/kernel/build.sh` and
 * `guest/initramfs.sh` build them). NULL keeps what `CLOVE_VM_KERNEL` and `CLOVE_VM_INITRAMFS`
 * said when the options were made. Checked when a VM agent is spawned, not here.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options; `kernel` and `initramfs` are NULL or NUL-terminated strings.
 */
enum clove_status clove_runtime_options_set_vm_image(struct clove_runtime_options *opts,
                                                     const char *kernel,
                                                     const char *initramfs);

/**
 * Starts a runtime: its reactor thread runs until `clove_runtime_free`. `opts` may be NULL for the
 * defaults; the runtime copies what it needs, so `opts` may be freed at once.
 *
 * Thread-safety: any thread.
 *
 * # Safety
 * `opts` is NULL or live options; `out` is NULL or valid for writing one pointer.
 */
enum clove_status clove_runtime_new(const struct clove_runtime_options *opts,
                                    struct clove_runtime **out);

/**
 * Kills every agent, removes the listening socket, joins the reactor thread and frees the
 * runtime; NULL does nothing. After it returns, the event callback is not called again.
 *
 * Thread-safety: any thread but the reactor's (never from the event callback), and only once no
 * other call on this runtime is running or will start.
 *
 * # Safety
 * `rt` is NULL or came from `clove_runtime_new` and was not freed.
 */
void clove_runtime_free(struct clove_runtime *rt);

/**
 * Serves agents started elsewhere on a Unix socket at `path` (mode 0600). They start at, and can
 * never rise above, `max_level` (NULL: "standard"). Peers with this process's uid are admitted;
 * others must present `token` (NULL: no token, so they are refused).
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; each string is NULL or NUL-terminated.
 */
enum clove_status clove_runtime_listen(struct clove_runtime *rt,
                                       const char *path,
                                       const char *max_level,
                                       const char *token);

/**
 * Kills an agent and everything it started (SIGKILL to its process group). An id the runtime
 * does not know gives `CLOVE_STATUS_NOT_FOUND`.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime.
 */
enum clove_status clove_runtime_kill(struct clove_runtime *rt, uint64_t id);

/**
 * Stops an agent's process group (SIGSTOP) until `clove_runtime_resume`.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime.
 */
enum clove_status clove_runtime_pause(struct clove_runtime *rt, uint64_t id);

/**
 * Continues a paused agent.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime.
 */
enum clove_status clove_runtime_resume(struct clove_runtime *rt, uint64_t id);

/**
 * Waits for an agent to end and writes how it ended to `out`. `timeout_ms` < 0 waits forever;
 * `CLOVE_STATUS_TIMEOUT` means it is still running.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime (several threads may
 * wait for the same agent).
 *
 * # Safety
 * `rt` is NULL or a live runtime; `out` is NULL or valid for writing one `clove_exit`.
 */
enum clove_status clove_runtime_wait(struct clove_runtime *rt,
                                     uint64_t id,
                                     int64_t timeout_ms,
                                     struct clove_exit *out);

/**
 * Creates spawn options for an agent called `name`.
 *
 * Thread-safety: any thread.
 *
 * # Safety
 * `name` is NULL or NUL-terminated; `out` is NULL or valid for writing one pointer.
 */
enum clove_status clove_spawn_options_new(const char *name, struct clove_spawn_options **out);

/**
 * Frees spawn options; NULL does nothing. Agents spawned from them do not need them.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or came from `clove_spawn_options_new` and was not freed.
 */
void clove_spawn_options_free(struct clove_spawn_options *opts);

/**
 * Appends to the agent's argv: the program first (looked up in `PATH`), then its arguments.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `arg` is NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_add_arg(struct clove_spawn_options *opts, const char *arg);

/**
 * Adds a variable to the agent's minimal environment (PATH, HOME, LANG, CLOVE_FD, CLOVE_AGENT_ID);
 * the host's own environment is never passed on.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `key` and `value` are NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_set_env(struct clove_spawn_options *opts,
                                              const char *key,
                                              const char *value);

/**
 * Sets the agent's working directory (default: the host's).
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `cwd` is NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_set_cwd(struct clove_spawn_options *opts, const char *cwd);

/**
 * Sets the agent's permission level by name: "unrestricted", "standard", "sandboxed", "readonly"
 * or "minimal" (any case). Another name gives `CLOVE_STATUS_INVALID_ARGUMENT`.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `level` is NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_set_level(struct clove_spawn_options *opts,
                                                const char *level);

/**
 * Sends the agent's stdout and stderr to the host's (`CLOVE_STDIO_INHERIT`), to `/dev/null`
 * (`CLOVE_STDIO_NULL`) or, appended, to the file at `path` (`CLOVE_STDIO_FILE`). `path` is read
 * only for `CLOVE_STDIO_FILE`, and may be NULL otherwise.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `kind` is one of the `clove_stdio` values; `path` is NULL
 * or NUL-terminated.
 */
enum clove_status clove_spawn_options_set_stdio(struct clove_spawn_options *opts,
                                                enum clove_stdio kind,
                                                const char *path);

/**
 * Restarts the agent when it ends: `policy` is "never", "on-failure" (a non-zero code or a
 * signal) or "always". After `max_restarts` restarts within `window_s` seconds it is given up
 * (an ESCALATED event).
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `policy` is NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_set_restart(struct clove_spawn_options *opts,
                                                  const char *policy,
                                                  uint32_t max_restarts,
                                                  uint32_t window_s);

/**
 * Sets resource limits; 0 leaves one unset. Stored now, enforced by the sandbox tier.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options.
 */
enum clove_status clove_spawn_options_set_limits(struct clove_spawn_options *opts,
                                                 uint64_t memory_bytes,
                                                 uint32_t max_pids,
                                                 uint64_t cpu_quota_us,
                                                 uint64_t cpu_period_us);

/**
 * Asks for the agent to run in a sandbox (enforced by the sandbox tier).
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options.
 */
enum clove_status clove_spawn_options_set_sandboxed(struct clove_spawn_options *opts,
                                                    bool sandboxed);

/**
 * Runs the agent in its own microVM with `vcpus` vCPUs (1 to 32) instead of a process sandbox; 0
 * turns that off. Its memory limit (`clove_spawn_options_set_memory`) is the VM's RAM, 256 MiB
 * when unset. Spawning fails with `CLOVE_STATUS_UNSUPPORTED` on a host that cannot boot a VM
 * (no /dev/kvm, or a software KVM such as kvm_pvm), with a last error saying why.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options.
 */
enum clove_status clove_spawn_options_set_vm(struct clove_spawn_options *opts, uint32_t vcpus);

/**
 * Lets a sandboxed agent reach the network.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options.
 */
enum clove_status clove_spawn_options_set_network(struct clove_spawn_options *opts, bool network);

/**
 * Applies a profile to sandboxed options: "permissive", "moderate" or "restrictive" (unknown →
 * `CLOVE_STATUS_INVALID_ARGUMENT`). It turns the sandbox on and fills the limits and network that
 * are not set yet, so set explicit limits first. See docs/security.md.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `profile` is NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_set_profile(struct clove_spawn_options *opts,
                                                  const char *profile);

/**
 * Shows host path `host` inside a sandboxed agent at `guest` (both absolute), read-only or not.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live spawn options; `host` and `guest` are NULL or NUL-terminated.
 */
enum clove_status clove_spawn_options_add_mount(struct clove_spawn_options *opts,
                                                const char *host,
                                                const char *guest,
                                                bool read_only);

/**
 * Starts an agent and writes its id (never 0) to `out_id`. The options are copied and may be
 * freed or reused at once.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime; `opts` must not be
 * changed by another thread meanwhile.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `opts` is NULL or live spawn options; `out_id` is NULL or valid
 * for writing one `uint64_t`.
 */
enum clove_status clove_runtime_spawn(struct clove_runtime *rt,
                                      const struct clove_spawn_options *opts,
                                      uint64_t *out_id);

/**
 * Keeps `count` sandboxes shaped like `opts` (what they show, network, stdio and limits) ready, so
 * that spawning a sandboxed agent of that shape skips building one. Returns once they are ready;
 * each one handed out is replaced in the background. `opts` must be sandboxed.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `opts` is NULL or live spawn options.
 */
enum clove_status clove_runtime_prewarm(struct clove_runtime *rt,
                                        const struct clove_spawn_options *opts,
                                        size_t count);

/**
 * Takes a snapshot of every agent the runtime knows, running or recently ended.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `out` is NULL or valid for writing one pointer.
 */
enum clove_status clove_runtime_list(struct clove_runtime *rt, struct clove_agent_list **out);

/**
 * The number of agents in a list; 0 for NULL.
 *
 * Thread-safety: any thread; a list is never changed after it is made.
 *
 * # Safety
 * `list` is NULL or a live list.
 */
size_t clove_agent_list_len(const struct clove_agent_list *list);

/**
 * Writes the agent at `index` to `out`; an index past the end gives
 * `CLOVE_STATUS_INVALID_ARGUMENT`.
 *
 * Thread-safety: any thread; a list is never changed after it is made.
 *
 * # Safety
 * `list` is NULL or a live list; `out` is NULL or valid for writing one `clove_agent_info`.
 */
enum clove_status clove_agent_list_get(const struct clove_agent_list *list,
                                       size_t index,
                                       struct clove_agent_info *out);

/**
 * Frees a list and the strings of every `clove_agent_info` read from it; NULL does nothing.
 *
 * Thread-safety: not while another call uses the same list.
 *
 * # Safety
 * `list` is NULL or came from `clove_runtime_list` and was not freed.
 */
void clove_agent_list_free(struct clove_agent_list *list);

/**
 * Takes the oldest unread event into `out`, waiting up to `timeout_ms` (< 0: forever);
 * `CLOVE_STATUS_TIMEOUT` when none came. Events are queued whether or not a callback is set; when
 * the host falls behind, the oldest are dropped. A bus event's `name` and `data_json` stay valid
 * until the next call of this function on the same thread.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime; each event goes to
 * one caller only.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `out` is NULL or valid for writing one `clove_event`.
 */
enum clove_status clove_runtime_next_event(struct clove_runtime *rt,
                                           int64_t timeout_ms,
                                           struct clove_event *out);

/**
 * Sets the callback run on the reactor thread for every event, replacing any other; NULL clears
 * it. Once this returns, the previous callback is not running and will not be called again, so
 * its `user_data` may be released. `clove_runtime_free` clears the callback the same way.
 *
 * Thread-safety: any thread but the reactor's (never from inside a callback), concurrently with
 * other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime. `callback` is NULL or a function safe to call on another thread
 * with `user_data` until it is replaced, cleared or the runtime freed.
 */
enum clove_status clove_runtime_set_event_callback(struct clove_runtime *rt,
                                                   clove_event_callback callback,
                                                   void *user_data);

/**
 * Adds a bus event type the host gets, as events of the bus kinds: `"MESSAGE_RECEIVED"`,
 * `"STATE_CHANGED"`, `"SYSCALL_BLOCKED"`, `"RESOURCE_WARNING"`, `"CUSTOM"`, a custom event's own
 * name, or `"*"` for all. Lifecycle events always come.
 *
 * Thread-safety: any thread but the reactor's, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `event_type` is NULL or a NUL-terminated string.
 */
enum clove_status clove_runtime_subscribe(struct clove_runtime *rt, const char *event_type);

/**
 * Removes a bus event type `clove_runtime_subscribe` added.
 *
 * Thread-safety: any thread but the reactor's, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `event_type` is NULL or a NUL-terminated string.
 */
enum clove_status clove_runtime_unsubscribe(struct clove_runtime *rt, const char *event_type);

/**
 * Writes to `out_json` a JSON array of audit entries, oldest first: those of `category`
 * ("security", "lifecycle"; NULL: any), of agent `agent_id` (0: any), with an id above
 * `since_id`, the newest `limit` of them (0: 100; at most 1 000). Each entry is an object with
 * `id`, `timestamp_ms`, `category`, `event`, `agent_id`, `agent_name`, `success` and
 * `details_json` (a JSON object as text). Free the string with `clove_string_free`.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `category` is NULL or NUL-terminated; `out_json` is NULL or
 * valid for writing one pointer.
 */
enum clove_status clove_runtime_audit_log_json(struct clove_runtime *rt,
                                               const char *category,
                                               uint64_t agent_id,
                                               uint64_t since_id,
                                               uint32_t limit,
                                               char **out_json);

/**
 * Frees a string the library returned; NULL does nothing.
 *
 * Thread-safety: any thread, once nothing else reads the string.
 *
 * # Safety
 * `s` is NULL or a string returned by a `clove_*` function for the caller to free, not yet freed.
 */
void clove_string_free(char *s);

/**
 * Writes agent `id`'s metrics to `out`; `CLOVE_STATUS_NOT_FOUND` for an unknown id.
 *
 * Thread-safety: any thread, concurrently with other calls on the runtime.
 *
 * # Safety
 * `rt` is NULL or a live runtime; `out` is NULL or valid for writing one `clove_agent_metrics`.
 */
enum clove_status clove_runtime_agent_metrics(struct clove_runtime *rt,
                                              uint64_t id,
                                              struct clove_agent_metrics *out);

/**
 * Sets the LLM provider THINK asks when no host handler is registered, replacing the one the
 * environment named (see docs/services.md). `provider` is "openai" (any OpenAI-compatible
 * server), "gemini" or "anthropic"; NULL means none. `base_url`, `api_key` and `model` may each
 * be NULL for the provider's default (no key).
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options; each string is NULL or NUL-terminated.
 */
enum clove_status clove_runtime_options_set_llm(struct clove_runtime_options *opts,
                                                const char *provider,
                                                const char *base_url,
                                                const char *api_key,
                                                const char *model);

/**
 * Sets whether agents' HTTP may reach addresses that are not public: loopback, private ranges,
 * link-local (cloud metadata), and the like, checked on every address a name resolves to. The
 * default refuses them.
 *
 * Thread-safety: not while another call uses the same options.
 *
 * # Safety
 * `opts` is NULL or live options.
 */
enum clove_status clove_runtime_options_set_http_refuse_non_public(struct clove_runtime_options *opts,
                                                                   bool refuse);

/**
 * Sets the answer's text.
 *
 * Thread-safety: the handler's thread, during the handler's call.
 *
 * # Safety
 * `answer` is NULL or the handler's answer; `text` is NULL or NUL-terminated.
 */
enum clove_status clove_think_answer_set_text(struct clove_think_answer *answer, const char *text);

/**
 * Sets the name of the model that answered (default: the one asked for).
 *
 * Thread-safety: the handler's thread, during the handler's call.
 *
 * # Safety
 * `answer` is NULL or the handler's answer; `model` is NULL or NUL-terminated.
 */
enum clove_status clove_think_answer_set_model(struct clove_think_answer *answer,
                                               const char *model);

/**
 * Sets the tokens the answer cost, which count against the agent's quota.
 *
 * Thread-safety: the handler's thread, during the handler's call.
 *
 * # Safety
 * `answer` is NULL or the handler's answer.
 */
enum clove_status clove_think_answer_set_usage(struct clove_think_answer *answer,
                                               uint64_t input_tokens,
                                               uint64_t output_tokens);

/**
 * Fails the THINK: the agent receives `message` as an `io` error.
 *
 * Thread-safety: the handler's thread, during the handler's call.
 *
 * # Safety
 * `answer` is NULL or the handler's answer; `message` is NULL or NUL-terminated.
 */
enum clove_status clove_think_answer_set_error(struct clove_think_answer *answer,
                                               const char *message);

/**
 * Registers `handler` to answer every THINK instead of the configured provider, called with
 * `user_data`; NULL removes it. Once this returns, the previous handler is not running and will
 * not be called again, so its `user_data` may be released; `clove_runtime_free` does the same.
 * Called from inside a handler it fails with `CLOVE_STATUS_CONFLICT`.
 *
 * Thread-safety: any thread but a THINK worker's, concurrently with other calls on the runtime.
 * It waits for the calls of the previous handler still running.
 *
 * # Safety
 * `rt` is NULL or a live runtime. `handler` is NULL or a function safe to call on any thread, on
 * several at once, with `user_data`, until it is replaced or the runtime freed.
 */
enum clove_status clove_runtime_set_think_handler(struct clove_runtime *rt,
                                                  clove_think_handler handler,
                                                  void *user_data);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* CLOVE_H */
