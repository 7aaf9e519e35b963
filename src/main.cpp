// stickyd: an Engine.IO-aware sticky reverse proxy for Socket.IO clusters.
#include <signal.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "stickyd/config.hpp"
#include "stickyd/log.hpp"
#include "stickyd/proxy.hpp"

#ifndef STICKYD_VERSION
#define STICKYD_VERSION "dev"
#endif

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: stickyd -c FILE            run the proxy with the YAML config FILE\n"
      "       stickyd --check -c FILE    validate FILE: exit 0, or print FILE:LINE:COL: message\n"
      "                                  for each problem and exit 1\n"
      "       stickyd --version | --help\n",
      out);
}

struct Signals {
  uv_signal_t term, intr;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-c" || a == "--config") {
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

  stickyd::ConfigResult loaded = stickyd::load_config_file(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  if (check_only) {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }
  const stickyd::Config& cfg = *loaded.config;
  stickyd::log::set_level(cfg.log_level);
  signal(SIGPIPE, SIG_IGN);

  uv_loop_t* loop = uv_default_loop();
  stickyd::Server server(loop, cfg);
  if (!server.start()) {
    server.stop();
    uv_run(loop, UV_RUN_DEFAULT);
    return 1;
  }
  stickyd::log::info("started", {{"version", STICKYD_VERSION},
                                 {"backends", cfg.backends.size()},
                                 {"config", config_path}});

  Signals sig;
  sig.term.data = sig.intr.data = &server;
  auto on_signal = [](uv_signal_t* s, int signum) {
    auto* srv = static_cast<stickyd::Server*>(s->data);
    stickyd::log::info("stopping", {{"signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"}});
    srv->stop();
    uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
    uv_walk(s->loop, [](uv_handle_t* h, void*) {
      if (h->type == UV_SIGNAL && !uv_is_closing(h)) uv_close(h, nullptr);
    }, nullptr);
  };
  uv_signal_init(loop, &sig.term);
  uv_signal_init(loop, &sig.intr);
  uv_signal_start(&sig.term, on_signal, SIGTERM);
  uv_signal_start(&sig.intr, on_signal, SIGINT);

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  stickyd::log::info("stopped");
  return 0;
}
