// A C++ host embeds Clove through bindings/cpp/clove.hpp: start the runtime, spawn two sandboxed
// Python agents, watch the memory hog get OOM-killed alone while its sibling keeps answering. The
// scenario of examples/rust-host. Usage: cpp-host <the examples directory>.
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "clove.hpp"

namespace {

namespace fs = std::filesystem;

clove::spawn_options python_agent(const fs::path& examples, const fs::path& sdk, const std::string& name,
                                  std::uint64_t memory_limit) {
  clove::spawn_options opts(name);
  opts.args({"/usr/bin/python3", (examples / "agents" / (name + ".py")).string()})
      .sandboxed()
      .discard_output()
      .limits({memory_limit, 0, {}, {}})
      .env("PYTHONPATH", sdk.string());
  return opts;
}

std::string describe(const clove::event& event) {
  if (event.kind != clove::event_kind::exited) return std::string(clove::to_string(event.kind));
  // A sandboxed program killed by signal s ends its sandbox with code 128 + s, as shells say.
  const clove::exit_info& exit = event.exit;
  std::string how = exit.code ? "code " + std::to_string(*exit.code) : "signal " + std::to_string(exit.signal);
  return "exited (" + how + (exit.oom_killed ? ", oom-killed" : "") + ")";
}

std::string join(const std::vector<std::string>& steps) {
  std::string joined;
  for (const std::string& step : steps) joined += (joined.empty() ? "" : " -> ") + step;
  return joined;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::cerr << "usage: cpp-host <the examples directory>\n";
    return 2;
  }
  const fs::path examples = fs::canonical(argv[1]);
  const fs::path sdk = fs::canonical(examples / ".." / "bindings" / "python");

  clove::runtime runtime;
  const clove::agent_id hog = runtime.spawn(python_agent(examples, sdk, "hog", 50 << 20));
  const clove::agent_id steady = runtime.spawn(python_agent(examples, sdk, "steady", 0));

  // Each agent's lifecycle as the host saw it, and when each one ended.
  std::map<clove::agent_id, std::vector<std::string>> seen;
  std::map<clove::agent_id, std::chrono::system_clock::time_point> ended;
  while (ended.size() < 2) {
    const auto event = runtime.next_event(std::chrono::seconds(30));
    if (!event) throw std::runtime_error("no event within 30 s");
    if (event->kind == clove::event_kind::exited) ended[event->agent] = event->time;
    seen[event->agent].push_back(describe(*event));
  }
  std::cout << "hog: " << join(seen[hog]) << "\nsteady: " << join(seen[steady]) << "\n";
  // Both have ended (their exited events came), so neither wait blocks.
  if (runtime.wait(steady).code == 0 && runtime.wait(hog).oom_killed && ended[hog] <= ended[steady]) {
    std::cout << "the hog was killed alone while steady kept answering\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "cpp-host: " << e.what() << "\n";
  return 1;
}
