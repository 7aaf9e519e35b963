// LD_PRELOAD shim for the end-to-end tests: makes splice(2), pipe2(2) or liburing's ring setup
// fail inside a real stickyd process, so that the tests can check that websocket tunnels fall
// back to the copy path, and writes to one write(2) each, instead of breaking. Chosen by
// STICKYD_FAULT:
//   splice-einval  every splice() fails with EINVAL (a kernel or fd type without splice)
//   pipe-emfile    every pipe2() stickyd's own code makes fails with EMFILE (out of file
//                  descriptors for pipes); libuv's (its signal pipes, at start-up) still work
//   pipe-emfile-after-N   the same once stickyd has made N pipes
//   io_uring-eperm  the io_uring setup fails with EPERM (as under Docker's default seccomp
//                  profile or kernel.io_uring_disabled=2)
// Anything else (or unset) passes every call through. Never used outside tests.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fault_is(const char* name) {
  const char* f = getenv("STICKYD_FAULT");
  return f && strcmp(f, name) == 0;
}

// How many pipes stickyd may make before pipe2() fails; -1: no pipe fault.
static long pipes_allowed(void) {
  const char* f = getenv("STICKYD_FAULT");
  if (!f) return -1;
  if (strcmp(f, "pipe-emfile") == 0) return 0;
  const char prefix[] = "pipe-emfile-after-";
  if (strncmp(f, prefix, sizeof prefix - 1) == 0) return strtol(f + sizeof prefix - 1, NULL, 10);
  return -1;
}

ssize_t splice(int fd_in, loff_t* off_in, int fd_out, loff_t* off_out, size_t len,
               unsigned int flags) {
  typedef ssize_t (*splice_fn)(int, loff_t*, int, loff_t*, size_t, unsigned int);
  static splice_fn real;
  if (fault_is("splice-einval")) {
    errno = EINVAL;
    return -1;
  }
  if (!real) real = (splice_fn)dlsym(RTLD_NEXT, "splice");
  return real(fd_in, off_in, fd_out, off_out, len, flags);
}

// The caller's object file: libuv aborts when it cannot make its signal pipe, which is not the
// fault under test.
static int called_from_libuv(const void* ret) {
  Dl_info info;
  return dladdr(ret, &info) && info.dli_fname && strstr(info.dli_fname, "libuv");
}

int pipe2(int fds[2], int flags) {
  typedef int (*pipe2_fn)(int*, int);
  static pipe2_fn real;
  static long made;  // pipes stickyd made (its worker threads may race: atomics)
  if (!real) real = (pipe2_fn)dlsym(RTLD_NEXT, "pipe2");
  long allowed = pipes_allowed();
  if (allowed < 0 || called_from_libuv(__builtin_return_address(0))) return real(fds, flags);
  if (__atomic_load_n(&made, __ATOMIC_RELAXED) >= allowed) {
    errno = EMFILE;
    return -1;
  }
  int r = real(fds, flags);
  if (r == 0) __atomic_fetch_add(&made, 1, __ATOMIC_RELAXED);
  return r;
}

// stickyd sets its ring up through liburing (a shared library, so its entry point can be
// interposed): io_uring_queue_init_params answering -EPERM is what a kernel refusing
// io_uring_setup(2) looks like to it.
struct io_uring;
struct io_uring_params;
int io_uring_queue_init_params(unsigned entries, struct io_uring* ring, struct io_uring_params* p) {
  typedef int (*init_fn)(unsigned, struct io_uring*, struct io_uring_params*);
  static init_fn real;
  if (fault_is("io_uring-eperm")) return -EPERM;
  if (!real) real = (init_fn)dlsym(RTLD_NEXT, "io_uring_queue_init_params");
  return real(entries, ring, p);
}
