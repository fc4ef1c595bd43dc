/*
 * The C ABI from C: a real program against include/clove.h, run by tests/c/run.sh against both
 * libclove.so and libclove.a under valgrind and ASAN. Prints one line per check and
 * "N passed, M failed, K skipped"; exits non-zero on any failure. CLOVE_TEST_SKIP_AGENTS=1 skips the
 * checks that start agent processes (for a valgrind that cannot run pidfd_open). CLOVE_SDK_PATH
 * names bindings/python, for the agent that emits a bus event.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clove.h"

/* Generous: valgrind slows everything down. Waits poll with this deadline; nothing asserts a time. */
#define DEADLINE_MS 20000

static int passed, failed, skipped;
static char audit_path[128];

static void check(bool ok, const char *what) {
  printf("%s - %s\n", ok ? "ok" : "FAIL", what);
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("     last error: %s\n", clove_last_error());
  }
}

#define CHECK(expr) check((expr), #expr)

/* `call` must fail with INVALID_ARGUMENT and a last error that names `arg`. */
static void check_null(clove_status status, const char *arg, const char *what) {
  char needle[64];
  snprintf(needle, sizeof needle, "`%s`", arg);
  bool ok = status == CLOVE_STATUS_INVALID_ARGUMENT && strstr(clove_last_error(), needle) != NULL;
  check(ok, what);
}

#define CHECK_NULL(call, arg) check_null((call), (arg), #call)

/* What the event callback saw; it runs on the reactor thread. */
struct seen {
  atomic_int spawned;
  atomic_int exited;
};

static void on_event(const clove_event *event, void *user_data) {
  struct seen *seen = user_data;
  if (event->kind == CLOVE_EVENT_KIND_SPAWNED) atomic_fetch_add(&seen->spawned, 1);
  if (event->kind == CLOVE_EVENT_KIND_EXITED) atomic_fetch_add(&seen->exited, 1);
}

/* Reads events until one of `kind` for agent `id` comes, or none comes before the deadline. */
static bool await_event(clove_runtime *rt, uint64_t id, clove_event_kind kind, clove_event *out) {
  for (int i = 0; i < 1000; i++) {
    clove_event event;
    if (clove_runtime_next_event(rt, DEADLINE_MS, &event) != CLOVE_STATUS_OK) return false;
    if (event.agent_id == id && event.kind == kind) {
      if (out) *out = event;
      return true;
    }
  }
  return false;
}

static clove_status spawn(clove_runtime *rt, const char *name, const char *level,
                          const char *const *argv, uint64_t *id) {
  clove_spawn_options *opts = NULL;
  clove_status status = clove_spawn_options_new(name, &opts);
  for (size_t i = 0; status == CLOVE_STATUS_OK && argv[i]; i++) {
    status = clove_spawn_options_add_arg(opts, argv[i]);
  }
  if (status == CLOVE_STATUS_OK && level) status = clove_spawn_options_set_level(opts, level);
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_set_stdio(opts, CLOVE_STDIO_NULL, NULL);
  if (status == CLOVE_STATUS_OK) status = clove_runtime_spawn(rt, opts, id);
  clove_spawn_options_free(opts);
  return status;
}

/* Finds agent `id` in a fresh list. */
static bool find_agent(clove_runtime *rt, uint64_t id, clove_agent_info *out, char *name,
                       size_t name_len) {
  clove_agent_list *list = NULL;
  if (clove_runtime_list(rt, &list) != CLOVE_STATUS_OK) return false;
  bool found = false;
  for (size_t i = 0; i < clove_agent_list_len(list) && !found; i++) {
    if (clove_agent_list_get(list, i, out) == CLOVE_STATUS_OK && out->id == id) {
      snprintf(name, name_len, "%s:%s", out->name, out->level);
      found = true;
    }
  }
  clove_agent_list_free(list);
  return found;
}

struct waiter {
  clove_runtime *rt;
  uint64_t id;
  clove_status status;
  clove_exit exit;
};

static void *wait_in_thread(void *arg) {
  struct waiter *w = arg;
  w->status = clove_runtime_wait(w->rt, w->id, -1, &w->exit);
  return NULL;
}

static void test_versions(void) {
  CHECK(clove_abi_version() == CLOVE_ABI_VERSION);
  CHECK(strlen(clove_version()) > 0);
  CHECK(strcmp(clove_last_error(), "") == 0);
}

static clove_runtime *test_runtime_new(void) {
  clove_runtime_options *opts = NULL;
  CHECK(clove_runtime_options_new(&opts) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_home(opts, "/tmp") == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_max_payload(opts, 1 << 20) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_audit_capacity(opts, 1000) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_event_capacity(opts, 256) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_exited_retention(opts, 16) == CLOVE_STATUS_OK);
  snprintf(audit_path, sizeof audit_path, "/tmp/clove-test-abi-%ld.audit", (long)getpid());
  CHECK(clove_runtime_options_set_audit_file(opts, audit_path) == CLOVE_STATUS_OK);
  /* THINK goes to the host handler of test_think_handler, whatever the environment names. */
  CHECK(clove_runtime_options_set_llm(opts, NULL, NULL, NULL, NULL) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_http_refuse_non_public(opts, true) == CLOVE_STATUS_OK);
  clove_runtime *rt = NULL;
  CHECK(clove_runtime_new(opts, &rt) == CLOVE_STATUS_OK && rt != NULL);
  clove_runtime_options_free(opts);

  /* A durable state store: a damaged file is refused with an error that names it. */
  char state_path[128];
  snprintf(state_path, sizeof state_path, "/tmp/clove-test-abi-%ld.state", (long)getpid());
  CHECK(clove_runtime_options_new(&opts) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_options_set_state_path(opts, state_path) == CLOVE_STATUS_OK);
  clove_runtime *durable = NULL;
  CHECK(clove_runtime_new(opts, &durable) == CLOVE_STATUS_OK && durable != NULL);
  clove_runtime_free(durable);
  FILE *damaged = fopen(state_path, "w");
  CHECK(damaged != NULL && fputs("not a database", damaged) >= 0 && fclose(damaged) == 0);
  durable = NULL;
  CHECK(clove_runtime_new(opts, &durable) == CLOVE_STATUS_IO && durable == NULL);
  CHECK(strstr(clove_last_error(), state_path) != NULL);
  CHECK(clove_runtime_options_set_state_path(opts, NULL) == CLOVE_STATUS_OK);
  clove_runtime_options_free(opts);
  unlink(state_path);

  clove_runtime *defaults = NULL;
  CHECK(clove_runtime_new(NULL, &defaults) == CLOVE_STATUS_OK && defaults != NULL);
  clove_runtime_free(defaults);
  return rt;
}

static void test_exit_code(clove_runtime *rt) {
  const char *const argv[] = {"/bin/sh", "-c", "exit 42", NULL};
  uint64_t id = 0;
  CHECK(spawn(rt, "exit42", NULL, argv, &id) == CLOVE_STATUS_OK && id != 0);
  clove_exit exit = {0};
  CHECK(clove_runtime_wait(rt, id, DEADLINE_MS, &exit) == CLOVE_STATUS_OK);
  CHECK(exit.has_code && exit.code == 42 && exit.signal == 0);
  clove_event event;
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_EXITED, &event) && event.exit.code == 42);
  CHECK(clove_runtime_pause(rt, id) == CLOVE_STATUS_CONFLICT);
  CHECK(strstr(clove_last_error(), "clove_runtime_pause") != NULL);
  /* The same slot with another generation: an id that outlived its agent. */
  CHECK(clove_runtime_kill(rt, id + (UINT64_C(1) << 32)) == CLOVE_STATUS_NOT_FOUND);
  CHECK(clove_runtime_wait(rt, UINT64_C(999999), DEADLINE_MS, &exit) == CLOVE_STATUS_NOT_FOUND);
  CHECK(clove_runtime_resume(rt, UINT64_C(999999)) == CLOVE_STATUS_NOT_FOUND);
}

static void test_sleeper(clove_runtime *rt) {
  const char *const argv[] = {"sleep", "30", NULL};
  uint64_t id = 0;
  CHECK(spawn(rt, "sleeper", "readonly", argv, &id) == CLOVE_STATUS_OK && id != 0);
  clove_event event;
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_SPAWNED, &event) && event.pid != 0);

  clove_exit exit = {0};
  CHECK(clove_runtime_wait(rt, id, 10, &exit) == CLOVE_STATUS_TIMEOUT);
  CHECK(strlen(clove_last_error()) > 0);

  clove_agent_info info;
  char label[128] = "";
  CHECK(find_agent(rt, id, &info, label, sizeof label));
  CHECK(strcmp(label, "sleeper:readonly") == 0);
  CHECK(info.state == CLOVE_AGENT_STATE_RUNNING && info.pid == event.pid && !info.has_exit);
  CHECK(info.parent == 0);

  CHECK(clove_runtime_pause(rt, id) == CLOVE_STATUS_OK);
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_PAUSED, NULL));
  CHECK(find_agent(rt, id, &info, label, sizeof label) && info.state == CLOVE_AGENT_STATE_PAUSED);
  CHECK(clove_runtime_resume(rt, id) == CLOVE_STATUS_OK);
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_RESUMED, NULL));
  clove_agent_metrics metrics;
  memset(&metrics, 0xA5, sizeof metrics);
  CHECK(clove_runtime_agent_metrics(rt, id, &metrics) == CLOVE_STATUS_OK);
  CHECK(metrics.rss_bytes > 0 && metrics.threads == 1 && metrics.syscalls == 0 && !metrics.has_cgroup);
  CHECK(clove_runtime_agent_metrics(rt, id + (UINT64_C(1) << 32), &metrics) == CLOVE_STATUS_NOT_FOUND);

  struct waiter waiter = {.rt = rt, .id = id, .status = CLOVE_STATUS_INTERNAL};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, wait_in_thread, &waiter) == 0);
  CHECK(clove_runtime_kill(rt, id) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_wait(rt, id, DEADLINE_MS, &exit) == CLOVE_STATUS_OK);
  CHECK(!exit.has_code && exit.signal == 9);
  CHECK(pthread_join(thread, NULL) == 0);
  CHECK(waiter.status == CLOVE_STATUS_OK && waiter.exit.signal == 9);
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_EXITED, &event) && event.exit.signal == 9);
  CHECK(find_agent(rt, id, &info, label, sizeof label) && info.state == CLOVE_AGENT_STATE_EXITED &&
        info.has_exit && info.exit.signal == 9);
}

static void test_restart(clove_runtime *rt) {
  clove_spawn_options *opts = NULL;
  CHECK(clove_spawn_options_new("flaky", &opts) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "/bin/sh") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "-c") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "echo \"$GREETING from $PWD\"; exit 3") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_env(opts, "GREETING", "hello") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_cwd(opts, "/") == CLOVE_STATUS_OK);
  char log[128];
  snprintf(log, sizeof log, "/tmp/clove-test-abi-%ld.log", (long)getpid());
  CHECK(clove_spawn_options_set_stdio(opts, CLOVE_STDIO_FILE, log) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_restart(opts, "on-failure", 1, 60) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_limits(opts, 64 << 20, 32, 50000, 100000) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_sandboxed(opts, false) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_network(opts, false) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_level(opts, "root") == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK(clove_spawn_options_set_restart(opts, "sometimes", 1, 1) == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK(clove_spawn_options_set_env(opts, "A=B", "c") == CLOVE_STATUS_INVALID_ARGUMENT);
  uint64_t id = 0;
  CHECK(clove_runtime_spawn(rt, opts, &id) == CLOVE_STATUS_OK);
  clove_spawn_options_free(opts);

  clove_event event;
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_RESTARTING, &event) && event.attempt == 1);
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_ESCALATED, NULL));
  char text[128] = "";
  FILE *file = fopen(log, "r");
  size_t read = file ? fread(text, 1, sizeof text - 1, file) : 0;
  if (file) fclose(file);
  unlink(log);
  CHECK(read > 0 && strcmp(text, "hello from /\nhello from /\n") == 0);
  char *json = NULL;
  CHECK(clove_runtime_audit_log_json(rt, "lifecycle", id, 0, 1, &json) == CLOVE_STATUS_OK);
  CHECK(json != NULL && strstr(json, "\"category\":\"lifecycle\"") != NULL);
  clove_string_free(json);

  const char *const missing[] = {"/nonexistent/clove-agent", NULL};
  CHECK(spawn(rt, "missing", NULL, missing, &id) != CLOVE_STATUS_OK);
  CHECK(strlen(clove_last_error()) > 0);
  const char *const empty[] = {NULL};
  CHECK(spawn(rt, "empty", NULL, empty, &id) == CLOVE_STATUS_INVALID_ARGUMENT);
}

/* What the think handler saw; it runs on a THINK worker thread. */
struct think_seen {
  clove_runtime *rt;
  atomic_int calls;
  uint64_t agent_id;
  char prompt[32];
  char system[32];
  size_t image_len;
  bool has_temperature;
  double temperature;
  clove_status null_text;
  clove_status reentry;
};

/* The host provider: answers "echo: <prompt>", or an error for the prompt "fail". */
static void on_think(const clove_think_request *request, clove_think_answer *answer,
                     void *user_data) {
  struct think_seen *seen = user_data;
  if (strcmp(request->prompt, "fail") == 0) {
    clove_think_answer_set_error(answer, "no model for that");
    return;
  }
  seen->agent_id = request->agent_id;
  snprintf(seen->prompt, sizeof seen->prompt, "%s", request->prompt);
  snprintf(seen->system, sizeof seen->system, "%s",
           request->system_instruction ? request->system_instruction : "(none)");
  seen->image_len = request->image ? request->image_len : 0;
  seen->has_temperature = request->has_temperature;
  seen->temperature = request->temperature;
  seen->null_text = clove_think_answer_set_text(answer, NULL);
  seen->reentry = clove_runtime_set_think_handler(seen->rt, NULL, NULL);
  char text[64];
  snprintf(text, sizeof text, "echo: %s", request->prompt);
  clove_think_answer_set_text(answer, text);
  clove_think_answer_set_model(answer, "c-model");
  clove_think_answer_set_usage(answer, 7, 3);
  atomic_fetch_add(&seen->calls, 1);
}

/* A Python agent thinks twice; the C handler answers; the agent's exit code says what it got. */
static void test_think_handler(clove_runtime *rt) {
  const char *sdk = getenv("CLOVE_SDK_PATH");
  if (!sdk) {
    printf("SKIPPED - think handler: CLOVE_SDK_PATH does not name the Python SDK\n");
    skipped++;
    return;
  }
  struct think_seen seen = {.rt = rt};
  CHECK(clove_runtime_set_think_handler(rt, on_think, &seen) == CLOVE_STATUS_OK);
  const char *script =
      "from clove_sdk import CloveClient\n"
      "with CloveClient() as c:\n"
      "    r = c.think('hello', image=b'\\x01\\x02', image_mime_type='image/png',\n"
      "                system_instruction='sys', temperature=0.5)\n"
      "    f = c.think('fail')\n"
      "    ok = (r['content'], r['model'], r['provider'], r['tokens']) == "
      "('echo: hello', 'c-model', 'host', 10)\n"
      "    ok = ok and f['success'] is False and 'no model for that' in f['error']\n"
      "    raise SystemExit(0 if ok else 1)\n";
  clove_spawn_options *opts = NULL;
  CHECK(clove_spawn_options_new("thinker", &opts) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "python3") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "-c") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, script) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_env(opts, "PYTHONPATH", sdk) == CLOVE_STATUS_OK);
  uint64_t id = 0;
  CHECK(clove_runtime_spawn(rt, opts, &id) == CLOVE_STATUS_OK);
  clove_spawn_options_free(opts);
  clove_exit exit = {0};
  CHECK(clove_runtime_wait(rt, id, DEADLINE_MS, &exit) == CLOVE_STATUS_OK);
  CHECK(exit.has_code && exit.code == 0);
  CHECK(atomic_load(&seen.calls) == 1 && seen.agent_id == id);
  CHECK(strcmp(seen.prompt, "hello") == 0 && strcmp(seen.system, "sys") == 0);
  CHECK(seen.image_len == 2 && seen.has_temperature && seen.temperature == 0.5);
  CHECK(seen.null_text == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK(seen.reentry == CLOVE_STATUS_CONFLICT);
  CHECK(clove_runtime_set_think_handler(rt, NULL, NULL) == CLOVE_STATUS_OK);
}

/* A Python agent (the SDK from CLOVE_SDK_PATH) emits a custom event the host subscribed to. */
static void test_bus_events(clove_runtime *rt) {
  const char *sdk = getenv("CLOVE_SDK_PATH");
  if (!sdk) {
    printf("SKIPPED - bus events: CLOVE_SDK_PATH does not name the Python SDK\n");
    skipped++;
    return;
  }
  CHECK(clove_runtime_subscribe(rt, "deploy_done") == CLOVE_STATUS_OK);
  CHECK(clove_runtime_subscribe(rt, "") == CLOVE_STATUS_INVALID_ARGUMENT);
  clove_spawn_options *opts = NULL;
  CHECK(clove_spawn_options_new("emitter", &opts) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "python3") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(opts, "-c") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_add_arg(
            opts, "from clove_sdk import CloveClient\n"
                  "with CloveClient() as c:\n"
                  "    c.emit_event('ignored', {})\n"
                  "    c.emit_event('deploy_done', {'v': 1})\n") == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_env(opts, "PYTHONPATH", sdk) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_set_stdio(opts, CLOVE_STDIO_NULL, NULL) == CLOVE_STATUS_OK);
  uint64_t id = 0;
  CHECK(clove_runtime_spawn(rt, opts, &id) == CLOVE_STATUS_OK);
  clove_spawn_options_free(opts);
  clove_event event;
  CHECK(await_event(rt, id, CLOVE_EVENT_KIND_CUSTOM, &event));
  CHECK(event.name != NULL && strcmp(event.name, "deploy_done") == 0);
  /* The emitter's JSON, as it wrote it. */
  CHECK(event.data_json != NULL && strcmp(event.data_json, "{\"v\": 1}") == 0);
  clove_exit exit;
  CHECK(clove_runtime_wait(rt, id, DEADLINE_MS, &exit) == CLOVE_STATUS_OK && exit.has_code && exit.code == 0);
  CHECK(clove_runtime_unsubscribe(rt, "deploy_done") == CLOVE_STATUS_OK);
}

static void test_listen_and_audit(clove_runtime *rt) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/clove-test-abi-%ld.sock", (long)getpid());
  CHECK(clove_runtime_listen(rt, path, "readonly", "secret") == CLOVE_STATUS_OK);
  CHECK(access(path, F_OK) == 0);
  CHECK(clove_runtime_listen(rt, path, "root", NULL) == CLOVE_STATUS_INVALID_ARGUMENT);

  char *json = NULL;
  CHECK(clove_runtime_audit_log_json(rt, "lifecycle", 0, 0, 0, &json) == CLOVE_STATUS_OK);
  CHECK(json != NULL && json[0] == '[');
  clove_string_free(json);
}

/* NULL for every pointer argument of every function. */
static void test_nulls(clove_runtime *rt) {
  clove_runtime_options *ropts = NULL;
  clove_spawn_options *sopts = NULL;
  clove_agent_list *list = NULL;
  CHECK(clove_runtime_options_new(&ropts) == CLOVE_STATUS_OK);
  CHECK(clove_spawn_options_new("nulls", &sopts) == CLOVE_STATUS_OK);
  CHECK(clove_runtime_list(rt, &list) == CLOVE_STATUS_OK);
  uint64_t id = 0;
  clove_exit exit;
  clove_event event;
  clove_agent_info info;
  clove_agent_metrics metrics_out;
  char *json = NULL;

  CHECK_NULL(clove_runtime_options_new(NULL), "out");
  CHECK_NULL(clove_runtime_options_set_home(NULL, "/tmp"), "opts");
  CHECK_NULL(clove_runtime_options_set_home(ropts, NULL), "home");
  CHECK_NULL(clove_runtime_options_set_max_payload(NULL, 1), "opts");
  CHECK_NULL(clove_runtime_options_set_audit_capacity(NULL, 1), "opts");
  CHECK_NULL(clove_runtime_options_set_event_capacity(NULL, 1), "opts");
  CHECK_NULL(clove_runtime_options_set_exited_retention(NULL, 1), "opts");
  CHECK_NULL(clove_runtime_options_set_audit_file(NULL, "/tmp/x.audit"), "opts");
  CHECK(clove_runtime_options_set_audit_file(ropts, NULL) == CLOVE_STATUS_OK);
  CHECK_NULL(clove_runtime_options_set_state_path(NULL, "/tmp/x.state"), "opts");
  CHECK_NULL(clove_runtime_new(ropts, NULL), "out");
  CHECK_NULL(clove_runtime_listen(NULL, "/tmp/x.sock", NULL, NULL), "rt");
  CHECK_NULL(clove_runtime_listen(rt, NULL, NULL, NULL), "path");
  CHECK_NULL(clove_runtime_kill(NULL, 1), "rt");
  CHECK_NULL(clove_runtime_agent_metrics(NULL, 1, &metrics_out), "rt");
  CHECK_NULL(clove_runtime_agent_metrics(rt, 1, NULL), "out");
  CHECK_NULL(clove_runtime_pause(NULL, 1), "rt");
  CHECK_NULL(clove_runtime_resume(NULL, 1), "rt");
  CHECK_NULL(clove_runtime_wait(NULL, 1, 0, &exit), "rt");
  CHECK_NULL(clove_runtime_wait(rt, 1, 0, NULL), "out");

  CHECK_NULL(clove_spawn_options_new(NULL, &sopts), "name");
  CHECK_NULL(clove_spawn_options_new("x", NULL), "out");
  CHECK_NULL(clove_spawn_options_add_arg(NULL, "x"), "opts");
  CHECK_NULL(clove_spawn_options_add_arg(sopts, NULL), "arg");
  CHECK_NULL(clove_spawn_options_set_env(NULL, "K", "v"), "opts");
  CHECK_NULL(clove_spawn_options_set_env(sopts, NULL, "v"), "key");
  CHECK_NULL(clove_spawn_options_set_env(sopts, "K", NULL), "value");
  CHECK_NULL(clove_spawn_options_set_cwd(NULL, "/"), "opts");
  CHECK_NULL(clove_spawn_options_set_cwd(sopts, NULL), "cwd");
  CHECK_NULL(clove_spawn_options_set_level(NULL, "standard"), "opts");
  CHECK_NULL(clove_spawn_options_set_level(sopts, NULL), "level");
  CHECK_NULL(clove_spawn_options_set_stdio(NULL, CLOVE_STDIO_NULL, NULL), "opts");
  CHECK_NULL(clove_spawn_options_set_stdio(sopts, CLOVE_STDIO_FILE, NULL), "path");
  CHECK(clove_spawn_options_set_stdio(sopts, CLOVE_STDIO_FILE, "") == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK_NULL(clove_spawn_options_set_restart(NULL, "never", 0, 0), "opts");
  CHECK_NULL(clove_spawn_options_set_restart(sopts, NULL, 0, 0), "policy");
  CHECK_NULL(clove_spawn_options_set_limits(NULL, 0, 0, 0, 0), "opts");
  CHECK_NULL(clove_spawn_options_set_sandboxed(NULL, true), "opts");
  CHECK_NULL(clove_spawn_options_set_network(NULL, true), "opts");
  CHECK_NULL(clove_runtime_prewarm(NULL, sopts, 1), "rt");
  CHECK_NULL(clove_runtime_prewarm(rt, NULL, 1), "opts");
  CHECK(clove_runtime_prewarm(rt, sopts, 1) == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK_NULL(clove_spawn_options_set_profile(NULL, "moderate"), "opts");
  CHECK_NULL(clove_spawn_options_set_profile(sopts, NULL), "profile");
  CHECK_NULL(clove_spawn_options_add_mount(NULL, "/a", "/b", true), "opts");
  CHECK_NULL(clove_spawn_options_add_mount(sopts, NULL, "/b", true), "host");
  CHECK_NULL(clove_spawn_options_add_mount(sopts, "/a", NULL, true), "guest");
  CHECK(clove_spawn_options_set_profile(sopts, "reckless") == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK(clove_spawn_options_add_mount(sopts, "relative", "/b", true) == CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK(clove_spawn_options_add_arg(sopts, "true") == CLOVE_STATUS_OK);
  CHECK_NULL(clove_runtime_spawn(NULL, sopts, &id), "rt");
  CHECK_NULL(clove_runtime_spawn(rt, NULL, &id), "opts");
  CHECK_NULL(clove_runtime_spawn(rt, sopts, NULL), "out_id");

  CHECK_NULL(clove_runtime_list(NULL, &list), "rt");
  CHECK_NULL(clove_runtime_list(rt, NULL), "out");
  CHECK(clove_agent_list_len(NULL) == 0);
  CHECK_NULL(clove_agent_list_get(NULL, 0, &info), "list");
  CHECK_NULL(clove_agent_list_get(list, 0, NULL), "out");
  CHECK(clove_agent_list_get(list, clove_agent_list_len(list), &info) ==
        CLOVE_STATUS_INVALID_ARGUMENT);

  CHECK_NULL(clove_runtime_next_event(NULL, 0, &event), "rt");
  CHECK_NULL(clove_runtime_next_event(rt, 0, NULL), "out");
  CHECK_NULL(clove_runtime_subscribe(NULL, "CUSTOM"), "rt");
  CHECK_NULL(clove_runtime_subscribe(rt, NULL), "event_type");
  CHECK_NULL(clove_runtime_unsubscribe(NULL, "CUSTOM"), "rt");
  CHECK_NULL(clove_runtime_unsubscribe(rt, NULL), "event_type");
  CHECK_NULL(clove_runtime_set_event_callback(NULL, on_event, NULL), "rt");
  CHECK_NULL(clove_runtime_options_set_llm(NULL, "openai", NULL, NULL, NULL), "opts");
  CHECK(clove_runtime_options_set_llm(ropts, "mystery", NULL, NULL, NULL) ==
        CLOVE_STATUS_INVALID_ARGUMENT);
  CHECK(clove_runtime_options_set_llm(ropts, "anthropic", "http://127.0.0.1:1", "key", "m") ==
        CLOVE_STATUS_OK);
  CHECK_NULL(clove_runtime_options_set_http_refuse_non_public(NULL, false), "opts");
  CHECK_NULL(clove_runtime_set_think_handler(NULL, on_think, NULL), "rt");
  CHECK_NULL(clove_think_answer_set_text(NULL, "x"), "answer");
  CHECK_NULL(clove_think_answer_set_model(NULL, "x"), "answer");
  CHECK_NULL(clove_think_answer_set_usage(NULL, 1, 2), "answer");
  CHECK_NULL(clove_think_answer_set_error(NULL, "x"), "answer");
  CHECK_NULL(clove_runtime_audit_log_json(NULL, NULL, 0, 0, 0, &json), "rt");
  CHECK_NULL(clove_runtime_audit_log_json(rt, NULL, 0, 0, 0, NULL), "out_json");
  CHECK(json == NULL);

  /* `_free(NULL)` does nothing and leaves no error behind. */
  clove_runtime_options_free(NULL);
  clove_spawn_options_free(NULL);
  clove_agent_list_free(NULL);
  clove_string_free(NULL);
  clove_runtime_free(NULL);
  CHECK(strstr(clove_last_error(), "out_json") != NULL);

  clove_agent_list_free(list);
  clove_spawn_options_free(sopts);
  clove_runtime_options_free(ropts);
}

int main(void) {
  test_versions();
  clove_runtime *rt = test_runtime_new();
  if (!rt) {
    printf("%d passed, %d failed, %d skipped\n", passed, failed + 1, skipped);
    return 1;
  }
  const char *skip = getenv("CLOVE_TEST_SKIP_AGENTS");
  if (skip && strcmp(skip, "1") == 0) {
    printf("SKIPPED - agent processes: exit code, list, pause/resume, kill, restart, callback, "
           "bus events, think handler\n");
    skipped++;
  } else {
    struct seen seen = {0};
    CHECK(clove_runtime_set_event_callback(rt, on_event, &seen) == CLOVE_STATUS_OK);
    test_exit_code(rt);
    test_sleeper(rt);
    test_restart(rt);
    test_bus_events(rt);
    test_think_handler(rt);
    CHECK(clove_runtime_set_event_callback(rt, NULL, NULL) == CLOVE_STATUS_OK);
    /* exit42, sleeper, and flaky twice. */
    CHECK(atomic_load(&seen.spawned) >= 4 && atomic_load(&seen.exited) >= 4);
    FILE *audit = fopen(audit_path, "r");
    char line[16] = "";
    CHECK(audit != NULL && fgets(line, sizeof line, audit) != NULL && line[0] == '{');
    if (audit) fclose(audit);
  }
  test_listen_and_audit(rt);
  test_nulls(rt);
  clove_runtime_free(rt);
  unlink(audit_path);
  CHECK(clove_runtime_next_event(NULL, 0, NULL) == CLOVE_STATUS_INVALID_ARGUMENT);

  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}
