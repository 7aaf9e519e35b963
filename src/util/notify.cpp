#include "stickyd/notify.hpp"

#include <time.h>
#include <unistd.h>

#ifdef STICKYD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace stickyd::notify {
namespace {

void send(const std::string& message) {
#ifdef STICKYD_HAVE_SYSTEMD
  // 0: keep NOTIFY_SOCKET for the process a SIGUSR2 upgrade starts. Errors are not fatal:
  // systemd may have gone away, and a service that cannot report still serves.
  (void)sd_notify(0, message.c_str());
#else
  (void)message;
#endif
}

}  // namespace

void ready(const std::string& status) {
  send("MAINPID=" + std::to_string(getpid()) + "\nREADY=1\nSTATUS=" + status);
}

void reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  long long usec = static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading");
}

void stopping(const std::string& status) { send("STOPPING=1\nSTATUS=" + status); }

}  // namespace stickyd::notify
