// stickyd: an Engine.IO-aware sticky reverse proxy for Socket.IO clusters.
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <uv.h>

#include <cstdio>
#include <iostream>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "stickyd/config.hpp"
#include "stickyd/haproxy_import.hpp"
#include "stickyd/http_request.hpp"
#include "stickyd/log.hpp"
#include "stickyd/notify.hpp"
#include "stickyd/proxy.hpp"
#include "stickyd/upgrade.hpp"
#include "stickyd/workers.hpp"

#ifndef STICKYD_VERSION
#define STICKYD_VERSION "dev"
#endif

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: stickyd -c FILE [--pid-file PATH]\n"
      "                                  run the proxy with the YAML config FILE; PATH gets\n"
      "                                  the pid of the serving process (SIGUSR2 upgrades it)\n"
      "       stickyd --check -c FILE    validate FILE: exit 0, or print FILE:LINE:COL: message\n"
      "                                  for each problem and exit 1\n"
      "       stickyd import-haproxy FILE [--backend NAME]\n"
      "                                  print a stickyd config for FILE's HAProxy cookie\n"
      "                                  persistence setup (FILE:LINE: message and exit 1 when\n"
      "                                  it cannot be read)\n"
      "       stickyd --version | --help\n",
      out);
}

// After the listeners are bound (ports below 1024 need root), become `user:`/`group:`.
bool drop_privileges(const stickyd::Config& cfg) {
  if (cfg.uid < 0 && cfg.gid < 0) return true;
  // Started by an upgrade from a process that had already switched: nothing to do.
  if ((cfg.uid < 0 || getuid() == static_cast<uid_t>(cfg.uid)) &&
      (cfg.gid < 0 || getgid() == static_cast<gid_t>(cfg.gid)))
    return true;
  if (geteuid() != 0) {
    stickyd::log::error("cannot switch user/group: not running as root",
                        {{"user", cfg.user}, {"group", cfg.group}});
    return false;
  }
  if (setgroups(0, nullptr) != 0 ||
      (cfg.gid >= 0 && setgid(static_cast<gid_t>(cfg.gid)) != 0) ||
      (cfg.uid >= 0 && setuid(static_cast<uid_t>(cfg.uid)) != 0)) {
    stickyd::log::error("cannot drop privileges", {{"error", std::strerror(errno)}});
    return false;
  }
  stickyd::log::info("privileges dropped", {{"uid", static_cast<int64_t>(getuid())},
                                            {"gid", static_cast<int64_t>(getgid())}});
  return true;
}

// `stickyd import-haproxy FILE [--backend NAME]`: YAML on stdout, one summary line on stderr.
int import_haproxy_command(int argc, char** argv) {
  stickyd::haproxy::ImportOptions opts;
  std::string file;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--backend" && i + 1 < argc) {
      opts.backend = argv[++i];
    } else if (a.rfind("--backend=", 0) == 0) {
      opts.backend = a.substr(10);
    } else if (file.empty() && (a.empty() || a[0] != '-' || a == "-")) {
      file = a;
    } else {
      std::fprintf(stderr, "stickyd import-haproxy: unexpected argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (file.empty()) {
    std::fprintf(stderr, "usage: stickyd import-haproxy FILE [--backend NAME]\n");
    return 2;
  }
  opts.file = file;
  std::ostringstream text;
  if (file == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "%s: cannot read: %s\n", file.c_str(), std::strerror(errno));
      return 1;
    }
    text << in.rdbuf();
  }
  stickyd::haproxy::ImportResult r = stickyd::haproxy::import_haproxy(
      text.str(), opts, [](std::string_view name) -> std::optional<std::string> {
        const char* v = std::getenv(std::string(name).c_str());
        return v ? std::optional<std::string>(v) : std::nullopt;
      });
  if (!r.ok) {
    std::fprintf(stderr, "%s\n", r.error.c_str());
    return 1;
  }
  for (const std::string& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::fwrite(r.yaml.data(), 1, r.yaml.size(), stdout);
  std::fprintf(stderr, "import-haproxy: %zu lines mapped, %zu kept as comments\n", r.mapped, r.unmapped);
  return 0;
}

// STATUS= line for systemd (systemctl status).
std::string serving_status(size_t backends, size_t workers) {
  return "serving " + std::to_string(backends) + " backends with " + std::to_string(workers) +
         " workers";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "import-haproxy") return import_haproxy_command(argc, argv);
  std::string config_path, pid_file;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pid-file") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stickyd: %s needs a file\n", a.c_str());
        return 2;
      }
      pid_file = argv[++i];
    } else if (a.rfind("--pid-file=", 0) == 0) {
      pid_file = a.substr(11);
    } else if (a == "-c" || a == "--config") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stickyd: %s needs a file\n", a.c_str());
        return 2;
      }
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else if (a == "--check" || a == "-t") {
      check_only = true;
    } else if (a == "--version" || a == "-v") {
      std::printf("stickyd %s (libuv %s, llhttp %d.%d.%d)\n", STICKYD_VERSION, uv_version_string(),
                  LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
      return 0;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "stickyd: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (config_path.empty()) {
    usage(stderr);
    return 2;
  }
  // A lenient llhttp accepts framing that backends read differently (request smuggling);
  // a build linked against one must not serve.
  if (!stickyd::llhttp_is_strict()) {
    std::fprintf(stderr,
                 "stickyd: the llhttp library is built lenient (LLHTTP_STRICT_MODE=0); "
                 "build stickyd with the strict llhttp sources (see meson.build)\n");
    return 1;
  }

  stickyd::ConfigResult loaded = stickyd::load_config_file(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  if (check_only) {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }
  stickyd::log::set_level(loaded.config->log_level);
  stickyd::log::set_rate_limit(loaded.config->log_rate_limit);
  signal(SIGPIPE, SIG_IGN);

  // SIGUSR2 starts the binary found at this path now (a package upgrade replaces the file).
  std::string exe(4096, '\0');
  ssize_t exe_len = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  exe.resize(exe_len > 0 ? static_cast<size_t>(exe_len) : 0);
  if (exe.empty()) exe = argv[0];
  std::vector<std::string> args(argv, argv + argc);

  // What the process this one replaces (SIGUSR2), or systemd, passed us.
  stickyd::InheritedSockets inherited = stickyd::InheritedSockets::from_environment();
  stickyd::ReceivedHandover handover = stickyd::receive_handover(loaded.config->affinity.max_sessions);

  uv_loop_t* loop = uv_default_loop();
  size_t backend_count = loaded.config->backends.size();
  stickyd::Workers workers(loop, std::move(*loaded.config));
  stickyd::Upgrader upgrader(loop, workers, exe, args);
  std::unique_ptr<stickyd::TableSync> peer;  // the process we replaced, while it drains
  struct Control {
    stickyd::Workers* workers;
    stickyd::Upgrader* upgrader;
    std::string config_path;
    uv_signal_t term, intr, hup, usr2;
    void stop_signals() {
      for (uv_signal_t* h : {&term, &intr, &hup, &usr2})
        if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(h)))
          uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      // A draining process has nothing to reload or upgrade; a stray SIGHUP/SIGUSR2 (a script
      // reading a stale pid) must not kill it and cut its tunnels.
      signal(SIGHUP, SIG_IGN);
      signal(SIGUSR2, SIG_IGN);
    }
    // Let in-flight requests and tunnels finish within the grace time. The signal handles go
    // away so the loop can end; a second signal then stops the process at once.
    void drain() {
      workers->drain(workers->main().config().shutdown_grace);
      stop_signals();
    }
  } control{&workers, &upgrader, config_path, {}, {}, {}, {}};
  auto on_stop = [](uv_signal_t* s, int signum) {
    auto* c = static_cast<Control*>(s->data);
    stickyd::log::info("stopping", {{"signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"}});
    stickyd::notify::stopping("draining");
    c->drain();
  };
  auto on_reload = [](uv_signal_t* s, int) {
    auto* c = static_cast<Control*>(s->data);
    stickyd::notify::reloading();
    stickyd::ConfigResult next = stickyd::load_config_file(c->config_path);
    if (!next.config) {
      for (const auto& e : next.errors)
        stickyd::log::error("reload refused", {{"error", e.to_string()}});
      stickyd::log::error("reload refused: keeping the running config",
                          {{"errors", next.errors.size()}});
      stickyd::notify::ready("serving; last reload refused (" + std::to_string(next.errors.size()) +
                             " config errors, see the log)");
      return;
    }
    size_t backends = next.config->backends.size();
    c->workers->reload(std::move(*next.config));
    stickyd::notify::ready(serving_status(backends, c->workers->size()));
  };
  auto on_upgrade = [](uv_signal_t* s, int) {
    auto* c = static_cast<Control*>(s->data);
    stickyd::log::info("upgrade requested", {{"signal", "SIGUSR2"}});
    c->upgrader->start();
  };
  upgrader.on_ready = [&control](int64_t) {
    // No STOPPING=1 here: the new process already told systemd it is the main process
    // (MAINPID=), and STOPPING=1 from any process of the unit would make systemd stop the
    // service, new process included, once TimeoutStopSec passes.
    control.workers->main().hand_over();
    control.drain();
  };
  for (uv_signal_t* h : {&control.term, &control.intr, &control.hup, &control.usr2}) {
    uv_signal_init(loop, h);
    h->data = &control;
  }
  uv_signal_start(&control.term, on_stop, SIGTERM);
  uv_signal_start(&control.intr, on_stop, SIGINT);
  uv_signal_start(&control.hup, on_reload, SIGHUP);
  uv_signal_start(&control.usr2, on_upgrade, SIGUSR2);

  // Signals are watched before anything listens: a SIGHUP or SIGTERM sent as soon as the
  // "listening" line appears waits in the loop instead of killing a half-started process.
  stickyd::Workers::Inherit inherit;
  inherit.sockets = &inherited;
  inherit.sessions = handover.fd >= 0 ? &handover.entries : nullptr;
  bool started = workers.start(inherit) && drop_privileges(workers.main().config());
  handover.entries = {};
  handover.entries.shrink_to_fit();
  if (started && !pid_file.empty()) started = stickyd::write_pid_file(pid_file);
  if (!started) {
    control.stop_signals();
    workers.stop();
    uv_run(loop, UV_RUN_DEFAULT);
    workers.join();
    return 1;  // an upgrading parent sees the exit and keeps serving
  }
  stickyd::log::info("started", {{"version", STICKYD_VERSION},
                                 {"pid", static_cast<int64_t>(getpid())},
                                 {"backends", backend_count},
                                 {"workers", workers.size()},
                                 {"config", config_path}});
  // Under systemd: this process is the service's main one now (after an upgrade too: the old
  // process sends nothing more), sent before the old process hears `ready` below.
  stickyd::notify::ready(serving_status(backend_count, workers.size()));
  if (handover.fd >= 0) {
    // Tell the old process we serve (it drains now), then keep sharing sessions with it
    // until it exits.
    peer = std::make_unique<stickyd::TableSync>(loop, workers, handover.fd,
                                                stickyd::HandoverDecoder::Side::New);
    peer->on_end = [](const std::string& why) {
      stickyd::log::info("upgrade: the old process is gone", {{"why", why}});
    };
    peer->start();
    std::string ready;
    stickyd::append_handover_ready(ready, static_cast<int64_t>(getpid()));
    peer->send(std::move(ready));
  }

  uv_run(loop, UV_RUN_DEFAULT);
  workers.join();  // the other workers finish their own drain
  if (peer) peer->close();
  upgrader.close();
  uv_run(loop, UV_RUN_DEFAULT);  // their close callbacks
  uv_loop_close(loop);
  if (!pid_file.empty()) stickyd::remove_pid_file(pid_file);
  stickyd::log::info("stopped");
  return 0;
}
