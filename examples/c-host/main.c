/*
 * A C host embeds Clove through its C ABI (include/clove.h): start the runtime, spawn two sandboxed
 * Python agents, watch the memory hog get OOM-killed alone while its sibling keeps answering. The
 * scenario of examples/rust-host. Usage: c-host <the examples directory>.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clove.h"

/* One agent of the scenario and its lifecycle as the host saw it. */
struct agent {
  const char *name;
  uint64_t memory_limit; /* bytes; 0: none */
  uint64_t id;
  char steps[256];
  bool ended;
  uint64_t ended_ms;
};

static clove_status spawn_agent(clove_runtime *rt, const char *examples, const char *sdk,
                                struct agent *agent) {
  char script[PATH_MAX + 64];
  snprintf(script, sizeof script, "%s/agents/%s.py", examples, agent->name);
  clove_spawn_options *opts = NULL;
  clove_status status = clove_spawn_options_new(agent->name, &opts);
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_add_arg(opts, "/usr/bin/python3");
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_add_arg(opts, script);
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_set_sandboxed(opts, true);
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_set_stdio(opts, CLOVE_STDIO_NULL, NULL);
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_set_limits(opts, agent->memory_limit, 0, 0, 0);
  if (status == CLOVE_STATUS_OK) status = clove_spawn_options_set_env(opts, "PYTHONPATH", sdk);
  if (status == CLOVE_STATUS_OK) status = clove_runtime_spawn(rt, opts, &agent->id);
  clove_spawn_options_free(opts);
  return status;
}

static void add_step(struct agent *agent, const char *step) {
  size_t len = strlen(agent->steps);
  snprintf(agent->steps + len, sizeof agent->steps - len, "%s%s", len > 0 ? " -> " : "", step);
}

static const char *kind_name(clove_event_kind kind) {
  switch (kind) {
    case CLOVE_EVENT_KIND_SPAWNED: return "spawned";
    case CLOVE_EVENT_KIND_EXITED: return "exited";
    case CLOVE_EVENT_KIND_PAUSED: return "paused";
    case CLOVE_EVENT_KIND_RESUMED: return "resumed";
    case CLOVE_EVENT_KIND_RESTARTING: return "restarting";
    case CLOVE_EVENT_KIND_ESCALATED: return "escalated";
    case CLOVE_EVENT_KIND_OOM: return "oom";
    case CLOVE_EVENT_KIND_MESSAGE_RECEIVED: return "message_received";
    case CLOVE_EVENT_KIND_STATE_CHANGED: return "state_changed";
    case CLOVE_EVENT_KIND_SYSCALL_BLOCKED: return "syscall_blocked";
    case CLOVE_EVENT_KIND_RESOURCE_WARNING: return "resource_warning";
    case CLOVE_EVENT_KIND_CUSTOM: return "custom";
  }
  return "unknown";
}

/* Reads events until both agents ended, recording each agent's steps. */
static clove_status watch(clove_runtime *rt, struct agent *agents, size_t count) {
  size_t ended = 0;
  while (ended < count) {
    clove_event event;
    clove_status status = clove_runtime_next_event(rt, 30000, &event);
    if (status != CLOVE_STATUS_OK) return status;
    struct agent *agent = NULL;
    for (size_t i = 0; i < count; i++) {
      if (agents[i].id == event.agent_id) agent = &agents[i];
    }
    if (agent == NULL) continue;
    if (event.kind != CLOVE_EVENT_KIND_EXITED) {
      add_step(agent, kind_name(event.kind));
      continue;
    }
    agent->ended = true;
    agent->ended_ms = event.timestamp_ms;
    ended++;
    /* A sandboxed program killed by signal s ends its sandbox with code 128 + s, as shells say. */
    char step[64];
    snprintf(step, sizeof step, "exited (%s %d%s)", event.exit.has_code ? "code" : "signal",
             event.exit.has_code ? event.exit.code : event.exit.signal,
             event.exit.oom_killed ? ", oom-killed" : "");
    add_step(agent, step);
  }
  return CLOVE_STATUS_OK;
}

int main(int argc, char **argv) {
  char examples[PATH_MAX], sdk[PATH_MAX], sdk_path[PATH_MAX + 32];
  if (argc != 2 || realpath(argv[1], examples) == NULL) {
    fprintf(stderr, "usage: c-host <the examples directory>\n");
    return 2;
  }
  snprintf(sdk_path, sizeof sdk_path, "%s/../bindings/python", examples);
  if (realpath(sdk_path, sdk) == NULL) {
    fprintf(stderr, "c-host: no Python SDK at %s\n", sdk_path);
    return 2;
  }

  struct agent agents[] = {{.name = "hog", .memory_limit = 50 << 20}, {.name = "steady"}};
  struct agent *hog = &agents[0], *steady = &agents[1];
  clove_runtime *rt = NULL;
  clove_exit hog_exit, steady_exit;
  clove_status status = clove_runtime_new(NULL, &rt);
  if (status == CLOVE_STATUS_OK) status = spawn_agent(rt, examples, sdk, hog);
  if (status == CLOVE_STATUS_OK) status = spawn_agent(rt, examples, sdk, steady);
  if (status == CLOVE_STATUS_OK) status = watch(rt, agents, 2);
  if (status == CLOVE_STATUS_OK) {
    printf("hog: %s\nsteady: %s\n", hog->steps, steady->steps);
    status = clove_runtime_wait(rt, steady->id, 5000, &steady_exit);
  }
  if (status == CLOVE_STATUS_OK) status = clove_runtime_wait(rt, hog->id, 5000, &hog_exit);
  if (status == CLOVE_STATUS_OK && steady_exit.has_code && steady_exit.code == 0 &&
      hog_exit.oom_killed && hog->ended_ms <= steady->ended_ms) {
    printf("the hog was killed alone while steady kept answering\n");
  }
  if (status != CLOVE_STATUS_OK) fprintf(stderr, "c-host: %s\n", clove_last_error());
  clove_runtime_free(rt);
  return status == CLOVE_STATUS_OK ? 0 : 1;
}
