// systemd's service notification protocol (sd_notify(3)) for a Type=notify unit.
//
// Built with libsystemd (STICKYD_HAVE_SYSTEMD) these send to $NOTIFY_SOCKET; without it, or
// when NOTIFY_SOCKET is unset (not started by systemd), they do nothing. NOTIFY_SOCKET stays in
// the environment: a process started by a SIGUSR2 upgrade inherits it and announces itself as
// the service's new main process (MAINPID=, which needs NotifyAccess=all in the unit).
#pragma once

#include <string>

namespace stickyd::notify {

// Serving: MAINPID=<this pid>, READY=1, STATUS=<status>.
void ready(const std::string& status);
// SIGHUP received: RELOADING=1, MONOTONIC_USEC=<now>. ready() when the reload is done (or
// refused: the old config keeps serving).
void reloading();
// Draining before exit: STOPPING=1, STATUS=<status>.
void stopping(const std::string& status);

}  // namespace stickyd::notify
