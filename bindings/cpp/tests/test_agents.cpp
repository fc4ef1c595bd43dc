// Checks of the C++ binding that start agents: exit codes, environment and working directory,
// kill, pause and resume, list, metrics, restarts, events polled and pushed to a handler, bus
// events, and, as root, sandboxed Python agents speaking clove_sdk, one of them OOM-killed by its
// memory limit.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"

namespace {

using namespace std::chrono_literals;

const clove::agent_id another_generation = clove::agent_id{1} << 32;

/// Polls `condition` until it holds or the deadline passes.
bool eventually(const std::function<bool()>& condition) {
  const auto give_up = std::chrono::steady_clock::now() + check::deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

clove::spawn_options shell(std::string_view name, std::string_view script) {
  clove::spawn_options opts(name);
  opts.args({"/bin/sh", "-c", script}).discard_output();
  return opts;
}

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

std::string temp_path(std::string_view what) {
  return "/tmp/clove-cpp-test-" + std::to_string(getpid()) + "." + std::string(what);
}

void test_exit_code(clove::runtime& rt, const std::string& audit_file) {
  const clove::agent_id id = rt.spawn(shell("exit42", "exit 42"));
  CHECK(id != 0);
  const auto exit = rt.wait_for(id, check::deadline);
  CHECK(exit && exit->code == 42 && exit->signal == 0 && !exit->oom_killed);
  const auto event = check::await_event(rt, id, clove::event_kind::exited);
  CHECK(event && event->exit.code == 42);
  CHECK(event && event->time > std::chrono::system_clock::time_point{});
  CHECK(rt.wait(id).code == 42);  // an ended agent is remembered
  CHECK_THROWS(clove::conflict, CLOVE_STATUS_CONFLICT, rt.pause(id));
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.kill(id + another_generation));

  clove::spawn_options missing("missing");
  missing.arg("/nonexistent/clove-agent");
  CHECK_THROWS(clove::not_found, CLOVE_STATUS_NOT_FOUND, rt.spawn(missing));

  const std::string audit = rt.audit_log_json({"lifecycle", id, 0, 0});
  CHECK(audit.find("\"category\":\"lifecycle\"") != std::string::npos);
  CHECK(read_file(audit_file).rfind('{', 0) == 0);
}

// The agent gets its own minimal environment, never the host's.
void test_env_and_cwd(clove::runtime& rt) {
  setenv("CLOVE_CPP_TEST_SECRET", "leaked", 1);
  const std::string log = temp_path("log");
  clove::spawn_options opts("env");
  opts.args({"/bin/sh", "-c", R"(echo "$GREETING from $PWD, secret ${CLOVE_CPP_TEST_SECRET-unset}")"})
      .env("GREETING", "hello")
      .cwd("/")
      .output_to_file(log);
  const auto exit = rt.wait_for(rt.spawn(opts), check::deadline);
  CHECK(exit && exit->code == 0);
  CHECK(read_file(log) == "hello from /, secret unset\n");
  unlink(log.c_str());
}

std::optional<clove::agent_info> find_agent(clove::runtime& rt, clove::agent_id id) {
  for (clove::agent_info info : rt.list()) {
    if (info.id == id) return info;  // a copy: it outlives the list
  }
  return std::nullopt;
}

void test_kill_pause_resume_list(clove::runtime& rt) {
  clove::spawn_options opts("sleeper");
  opts.args({"sleep", "30"}).level("readonly").discard_output();
  const clove::agent_id id = rt.spawn(opts);
  const auto spawned = check::await_event(rt, id, clove::event_kind::spawned);
  CHECK(spawned && spawned->pid != 0);
  CHECK(!rt.wait_for(id, 10ms));

  auto info = find_agent(rt, id);
  CHECK(info && info->name == "sleeper" && info->level == "readonly");
  CHECK(info && info->state == clove::agent_state::running && !info->exit && info->parent == 0);
  CHECK(info && spawned && info->pid == spawned->pid);

  rt.pause(id);
  CHECK(check::await_event(rt, id, clove::event_kind::paused));
  info = find_agent(rt, id);
  CHECK(info && info->state == clove::agent_state::paused);
  rt.resume(id);
  CHECK(check::await_event(rt, id, clove::event_kind::resumed));
  info = find_agent(rt, id);
  CHECK(info && info->state == clove::agent_state::running);

  const clove::agent_metrics metrics = rt.metrics(id);
  CHECK(metrics.rss_bytes > 0 && metrics.threads == 1 && metrics.syscalls == 0);
  CHECK(!metrics.cgroup);

  // Another thread waits for the same agent.
  std::optional<clove::exit_info> seen_by_waiter;
  std::thread waiter([&] { seen_by_waiter = rt.wait(id); });
  rt.kill(id);
  const auto exit = rt.wait_for(id, check::deadline);
  waiter.join();
  CHECK(exit && !exit->code && exit->signal == 9);
  CHECK(seen_by_waiter && seen_by_waiter->signal == 9);
  const auto exited = check::await_event(rt, id, clove::event_kind::exited);
  CHECK(exited && exited->exit.signal == 9);
  info = find_agent(rt, id);
  CHECK(info && info->state == clove::agent_state::exited && info->exit && info->exit->signal == 9);
}

void test_restart(clove::runtime& rt) {
  clove::spawn_options opts = shell("flaky", "exit 3");
  opts.restart("on-failure", 1, 60s);
  const clove::agent_id id = rt.spawn(opts);
  const auto restarting = check::await_event(rt, id, clove::event_kind::restarting);
  CHECK(restarting && restarting->attempt == 1);
  CHECK(check::await_event(rt, id, clove::event_kind::escalated));
}

void test_event_handler() {
  std::atomic<int> spawned{0};
  std::atomic<int> exited{0};
  std::atomic<bool> reentry_refused{false};
  clove::runtime rt;
  {
    clove::runtime source;
    source.on_event([&](const clove::event& event) {
      if (event.kind == clove::event_kind::spawned) spawned++;
      if (event.kind == clove::event_kind::exited) exited++;
      try {
        rt.list();
      } catch (const clove::conflict&) {
        reentry_refused = true;
      }
    });
    rt = std::move(source);  // the handler moves with its runtime
  }
  const clove::agent_id first = rt.spawn(shell("first", "true"));
  CHECK(rt.wait_for(first, check::deadline));
  CHECK(eventually([&] { return exited == 1; }));
  CHECK(spawned == 1);
  CHECK(reentry_refused);

  // A handler that throws loses its event, nothing else.
  std::atomic<int> thrown{0};
  rt.on_event([&](const clove::event&) {
    thrown++;
    throw std::runtime_error("a handler that fails");
  });
  const clove::agent_id second = rt.spawn(shell("second", "true"));
  CHECK(rt.wait_for(second, check::deadline));
  CHECK(eventually([&] { return thrown == 2; }));

  // Cleared: events still queue for next_event, the handler is not called.
  rt.on_event(nullptr);
  const clove::agent_id third = rt.spawn(shell("third", "true"));
  CHECK(rt.wait_for(third, check::deadline));
  CHECK(check::await_event(rt, third, clove::event_kind::exited));
  CHECK(thrown == 2 && exited == 1);

  // A runtime destroyed with its handler set and an agent running: the handler may see that agent
  // die, and its state must outlive every call (ASAN reads it).
  std::atomic<int> seen_by_doomed{0};
  {
    clove::runtime doomed;
    doomed.on_event([&](const clove::event&) { seen_by_doomed++; });
    doomed.spawn(shell("doomed", "sleep 30"));
    CHECK(eventually([&] { return seen_by_doomed == 1; }));
  }
  CHECK(seen_by_doomed >= 1);
}

/// A Python agent that emits two custom events, only the second of which the host subscribes to.
const char* const emitter = R"(from clove_sdk import CloveClient
with CloveClient() as client:
    client.emit_event("ignored", {})
    client.emit_event("deploy_done", {"v": 1})
)";

// Bus events reach the host once subscribed to, polled and pushed, with their name and data.
void test_bus_events() {
  const char* repo = std::getenv("CLOVE_REPO");
  if (!repo) {
    check::skip("bus events: the emitting agent needs the Python SDK, found through CLOVE_REPO");
    return;
  }
  const auto spawn_emitter = [&](clove::runtime& rt) {
    clove::spawn_options opts("emitter");
    opts.args({"python3", "-c", emitter})
        .env("PYTHONPATH", std::string(repo) + "/bindings/python")
        .discard_output();
    return rt.spawn(opts);
  };
  std::mutex mutex;
  std::vector<clove::event> pushed;  // outlives the runtime, whose handler fills it
  clove::runtime rt;
  rt.on_event([&](const clove::event& event) {
    std::lock_guard<std::mutex> lock(mutex);
    if (event.kind == clove::event_kind::custom) pushed.push_back(event);
  });
  CHECK_THROWS(clove::invalid_argument, CLOVE_STATUS_INVALID_ARGUMENT, rt.subscribe(""));
  rt.subscribe("deploy_done");

  const clove::agent_id first = spawn_emitter(rt);
  const auto polled = check::await_event(rt, first, clove::event_kind::custom);
  CHECK(polled && polled->name == "deploy_done" && polled->data_json == R"({"v": 1})");
  const auto first_exit = rt.wait_for(first, check::deadline);
  CHECK(first_exit && first_exit->code == 0);
  CHECK(eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return !pushed.empty();
  }));
  {
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(pushed.size() == 1 && pushed[0].name == "deploy_done");
    CHECK(pushed.size() == 1 && pushed[0].data_json == R"({"v": 1})");
  }

  // Unsubscribed: the same events no longer come; the lifecycle ones still do.
  rt.unsubscribe("deploy_done");
  const clove::agent_id second = spawn_emitter(rt);
  bool custom_came = false;
  bool exited_came = false;
  while (!exited_came) {
    const auto event = rt.next_event(check::deadline);
    if (!event) break;
    if (event->agent != second) continue;
    custom_came = custom_came || event->kind == clove::event_kind::custom;
    exited_came = event->kind == clove::event_kind::exited;
  }
  CHECK(exited_came && !custom_came);
  rt.on_event(nullptr);
  CHECK(pushed.size() == 1);
}

/// A Python agent speaking clove_sdk; argv[1] says what it does.
const char* const python_agent = R"(import sys, time
from clove_sdk import CloveClient

with CloveClient() as client:
    if client.echo("ping") != "ping":
        sys.exit(1)
    if sys.argv[1] == "stay":
        time.sleep(60)
    if sys.argv[1] == "hog":
        chunks = []
        while True:
            chunks.append(b"x" * (10 << 20))
)";

void test_sandboxed_python() {
  const char* repo = std::getenv("CLOVE_REPO");
  if (geteuid() != 0 || !repo) {
    check::skip("sandboxed Python agents and OOM: they need root and CLOVE_REPO (test.sh sets it)");
    return;
  }
  char dir[] = "/tmp/clove-cpp-agent-XXXXXX";
  // Readable by the sandbox's uid, which is not root's.
  if (!mkdtemp(dir) || chmod(dir, 0755) != 0) throw std::runtime_error("no temporary directory");
  const std::string script = std::string(dir) + "/agent.py";
  const std::string log = std::string(dir) + "/agent.log";
  std::ofstream(script) << python_agent;

  const auto python = [&](std::string_view mode) {
    clove::spawn_options opts(mode);
    opts.args({"/usr/bin/python3", script, mode})
        .env("PYTHONPATH", std::string(repo) + "/bindings/python")
        .sandboxed()
        .output_to_file(log);
    return opts;
  };
  const int failed_before = check::failed;
  clove::runtime rt;

  // Spawning after a prewarm of the same shape.
  const clove::spawn_options echo = python("echo");
  rt.prewarm(echo, 1);
  const auto answered = rt.wait_for(rt.spawn(echo), check::deadline);
  CHECK(answered && answered->code == 0);

  const clove::agent_id stay = rt.spawn(python("stay"));
  CHECK(eventually([&] { return rt.metrics(stay).syscalls >= 1; }));
  const clove::agent_metrics metrics = rt.metrics(stay);
  CHECK(metrics.cgroup && metrics.cgroup->memory_current > 0 && metrics.cgroup->pids_current >= 1);
  rt.kill(stay);
  const auto killed = rt.wait_for(stay, check::deadline);
  CHECK(killed && killed->signal == 9 && !killed->oom_killed);

  clove::spawn_options hog = python("hog");
  hog.limits({50 << 20, 0, 0us, 0us});
  const clove::agent_id hog_id = rt.spawn(hog);
  CHECK(check::await_event(rt, hog_id, clove::event_kind::oom));
  const auto exited = check::await_event(rt, hog_id, clove::event_kind::exited);
  CHECK(exited && exited->exit.oom_killed);
  const auto exit = rt.wait_for(hog_id, check::deadline);
  CHECK(exit && exit->oom_killed && exit->code != 0);

  if (check::failed > failed_before) {
    std::printf("     the agents said:\n%s", read_file(log).c_str());
  }
  unlink(log.c_str());
  unlink(script.c_str());
  rmdir(dir);
}

// A Python agent's THINK is answered by a C++ handler, on a worker thread.
void test_think_handler() {
  const char* repo = std::getenv("CLOVE_REPO");
  if (!repo) {
    check::skip("think handler: the thinking agent needs the Python SDK, found through CLOVE_REPO");
    return;
  }
  std::mutex mutex;
  std::vector<clove::think_request> seen;  // outlives the runtime, whose handler fills it
  std::atomic<bool> reentry_refused{false};
  clove::runtime_options options;
  options.llm("").http_refuse_non_public(true);
  clove::runtime rt(options);
  rt.on_think([&](const clove::think_request& request) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen.push_back(request);
    }
    try {
      rt.on_think({});
    } catch (const clove::conflict&) {
      reentry_refused = true;
    }
    if (request.prompt == "fail") throw std::runtime_error("no model for that");
    return clove::think_answer{"echo: " + request.prompt, "cpp-model", 7, 3};
  });
  clove::spawn_options opts("thinker");
  opts.args({"python3", "-c",
             "from clove_sdk import CloveClient\n"
             "with CloveClient() as c:\n"
             "    r = c.think('hello', image=b'\\x01\\x02', image_mime_type='image/png',\n"
             "                system_instruction='sys', temperature=0.5)\n"
             "    f = c.think('fail')\n"
             "    ok = (r['content'], r['model'], r['provider'], r['tokens']) == "
             "('echo: hello', 'cpp-model', 'host', 10)\n"
             "    ok = ok and f['success'] is False and 'no model for that' in f['error']\n"
             "    raise SystemExit(0 if ok else 1)\n"})
      .env("PYTHONPATH", std::string(repo) + "/bindings/python")
      .discard_output();
  const clove::agent_id id = rt.spawn(opts);
  const auto exit = rt.wait_for(id, check::deadline);
  CHECK(exit && exit->code == 0);
  rt.on_think({});
  std::lock_guard<std::mutex> lock(mutex);
  CHECK(seen.size() == 2 && seen[0].agent == id && seen[0].prompt == "hello");
  CHECK(!seen.empty() && seen[0].system_instruction == "sys" && !seen[0].model);
  const std::vector<std::uint8_t> image = {1, 2};
  CHECK(!seen.empty() && seen[0].image == image && seen[0].image_mime_type == "image/png" &&
        seen[0].temperature == 0.5);
  CHECK(reentry_refused);
}

}  // namespace

void test_agents() {
  const std::string audit_file = temp_path("audit");
  {
    clove::runtime_options options;
    options.audit_file(audit_file);
    clove::runtime rt(options);
    test_exit_code(rt, audit_file);
    test_env_and_cwd(rt);
    test_kill_pause_resume_list(rt);
    test_restart(rt);
  }
  unlink(audit_file.c_str());  // once the runtime that writes it is gone
  test_event_handler();
  test_bus_events();
  test_think_handler();
  test_sandboxed_python();
}
