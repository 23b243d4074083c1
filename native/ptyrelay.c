/*
 * captree ptyrelay: the terminal end of `captree shell`, run as the shell child itself, inside
 * the child's confinement (its cgroup, network namespace, mount namespace, no capabilities).
 *
 * Usage: captree-ptyrelay [--wait-ms N] [--no-isolate] [--hide DIR]... [--ro DIR]...
 *                         SOCKET -- PROGRAM [ARG...]
 *
 * It connects to SOCKET (a unix stream socket the `captree shell` client listens on: a path
 * socket, so it is reachable across network namespaces and from a read-only view), waits for
 * the client's first window-size frame, opens a pseudo-terminal (posix_openpt), forks PROGRAM on
 * the terminal's slave side as a new session whose controlling terminal it is (setsid,
 * TIOCSCTTY), and relays between the terminal's master side and the socket until PROGRAM exits.
 *
 * Isolation (unless --no-isolate): the confinement captree gives every child (cgroup, network
 * namespace, mount namespace hiding services and credentials, no capabilities) leaves other
 * processes of the host visible in /proc (and through /proc/PID/root, their mount namespaces:
 * a sibling's secrets) and, for a child running as root, the state directory's control and
 * launcher sockets. A shell is where a person goes looking, so PROGRAM additionally runs in
 *   - a new user namespace (its uid is unmapped: `nobody` inside, still its own uid on files
 *     outside; it holds no capability outside and, after exec, none inside either),
 *   - a new PID namespace with a fresh /proc: PROGRAM is PID 1 and sees only its descendants,
 *   - a new mount namespace in which every --hide DIR is covered by an empty read-only
 *     directory (made beside SOCKET, removed by the client afterwards), except the
 *     unix services granted to it (the directories of CAPTREE_SERVICE_*=unix:PATH) and its
 *     own CREDENTIALS_DIRECTORY, mounted back; every --ro DIR is made read-only, recursively
 *     (captree passes /sys/fs/cgroup: the shell reads its limits and cannot raise them).
 * If that is not possible (user namespaces disabled), the relay refuses with an 'e' frame
 * saying why: it fails closed.
 *
 * Protocol (both directions): frames of
 *   u32 little-endian length of what follows | one type byte | payload (length - 1 bytes)
 * client -> relay:
 *   'w'  rows u16 LE, cols u16 LE     window size (TIOCSWINSZ; the kernel sends SIGWINCH to the
 *                                     terminal's foreground process group). Must come first.
 *   'd'  bytes                        input, written to the terminal as typed (raw mode on the
 *                                     client: Ctrl-C is byte 0x03, turned into SIGINT by the
 *                                     terminal's line discipline, for the foreground job only).
 * relay -> client:
 *   's'  pid u32 LE                   PROGRAM started (its pid as seen by the relay).
 *   'd'  bytes                        output of the terminal.
 *   'x'  kind u8 (0 exited, 1 killed by a signal), value u8 (code or signal number)
 *                                     PROGRAM ended; sent after every byte of output it wrote
 *                                     before ending. Last frame.
 *   'e'  text                         the relay could not do its job (why); last frame.
 * Ending: after 'x' the relay waits (at most --wait-ms, default 10000) for the client to close
 * the connection, then exits 0. If the client goes away first, the relay hangs the terminal up
 * (the session gets SIGHUP, as when an ssh connection drops), waits briefly for PROGRAM and
 * exits 0. On SIGTERM (captree stopping the child) it does the same. Exit codes: 0 done, 111
 * could not connect / bad usage / relay failure (also reported in an 'e' frame when connected).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_IN (1u << 20) /* largest frame accepted from the client */
#define CHUNK 65536

static int sock = -1;
static int master = -1;
static pid_t shell = -1;

static void sendall(const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(sock, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* the client is gone: the read side notices */
    }
    c += w;
    n -= (size_t)w;
  }
}

static void frame(char type, const void *payload, size_t n) {
  unsigned char hdr[5];
  uint32_t len = (uint32_t)n + 1;
  hdr[0] = len & 0xff;
  hdr[1] = (len >> 8) & 0xff;
  hdr[2] = (len >> 16) & 0xff;
  hdr[3] = (len >> 24) & 0xff;
  hdr[4] = (unsigned char)type;
  if (n <= 4096) {
    unsigned char b[5 + 4096];
    memcpy(b, hdr, 5);
    if (n) memcpy(b + 5, payload, n);
    sendall(b, 5 + n);
  } else {
    sendall(hdr, 5);
    sendall(payload, n);
  }
}

static void fail(const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  fprintf(stderr, "captree-ptyrelay: %s\n", msg);
  if (sock >= 0) frame('e', msg, strlen(msg));
  if (shell > 0) kill(-shell, SIGKILL);
  exit(111);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Input frames from the client, and input bytes waiting for the terminal to take them. */
static unsigned char *inbuf;
static size_t inlen, incap;
static unsigned char *pend;
static size_t pendlen, pendoff, pendcap;
static int have_size;

static void set_size(const unsigned char *p) {
  struct winsize ws = {0};
  ws.ws_row = (unsigned short)(p[0] | p[1] << 8);
  ws.ws_col = (unsigned short)(p[2] | p[3] << 8);
  if (master >= 0) ioctl(master, TIOCSWINSZ, &ws);
}

static struct winsize first_size;

/* Handles every whole frame in inbuf; returns 0, or -1 on a protocol error. */
static int handle_frames(void) {
  size_t off = 0;
  while (inlen - off >= 5) {
    uint32_t len = inbuf[off] | inbuf[off + 1] << 8 | inbuf[off + 2] << 16 | (uint32_t)inbuf[off + 3] << 24;
    if (len == 0 || len > MAX_IN) return -1;
    if (inlen - off - 4 < len) break;
    unsigned char type = inbuf[off + 4];
    const unsigned char *p = inbuf + off + 5;
    size_t n = len - 1;
    if (type == 'w' && n >= 4) {
      if (master >= 0) set_size(p);
      else {
        first_size.ws_row = (unsigned short)(p[0] | p[1] << 8);
        first_size.ws_col = (unsigned short)(p[2] | p[3] << 8);
      }
      have_size = 1;
    } else if (type == 'd' && n > 0) {
      if (pendlen + n > pendcap) {
        size_t cap = pendcap ? pendcap : 4096;
        while (cap < pendlen + n) cap *= 2;
        unsigned char *q = realloc(pend, cap);
        if (!q) fail("realloc");
        pend = q;
        pendcap = cap;
      }
      memcpy(pend + pendlen, p, n);
      pendlen += n;
    } /* unknown types are skipped: newer clients may send more */
    off += 4 + len;
  }
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
  return 0;
}

/* Reads what the socket has; returns bytes read, 0 on EOF, -1 on error. */
static ssize_t read_sock(void) {
  if (incap - inlen < CHUNK) {
    size_t cap = incap ? incap * 2 : 2 * CHUNK;
    while (cap - inlen < CHUNK) cap *= 2;
    if (cap > MAX_IN + 2 * CHUNK) cap = MAX_IN + 2 * CHUNK;
    unsigned char *q = realloc(inbuf, cap);
    if (!q) fail("realloc");
    inbuf = q;
    incap = cap;
  }
  ssize_t r = read(sock, inbuf + inlen, incap - inlen);
  if (r > 0) inlen += (size_t)r;
  return r;
}

/* Sends whatever the terminal has to say now; returns 0 once the slave side is closed (EIO). */
static int drain_master(void) {
  static unsigned char b[CHUNK];
  for (;;) {
    ssize_t r = read(master, b, sizeof b);
    if (r > 0) {
      frame('d', b, (size_t)r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return 1;
    return 0; /* EIO: no process holds the slave any more */
  }
}

#define MAX_PATHS 64
static const char *hide_dirs[MAX_PATHS], *ro_dirs[MAX_PATHS];
static int nhide, nro;

struct ct_mount_attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* Writes to the terminal (the child's stderr) and exits: PROGRAM never runs unconfined. */
static void child_fail(const char *what, const char *path) {
  fprintf(stderr, "captree shell: cannot isolate the shell: %s %s: %s\r\n", what, path ? path : "",
          strerror(errno));
  _exit(126);
}

static void mkdirs(const char *path) {
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/') continue;
    *c = 0;
    mkdir(p, 0755);
    *c = '/';
  }
  mkdir(p, 0755);
}

/*
 * The view that covers each --hide DIR: an empty directory made next to SOCKET before the
 * namespaces exist (inside them, an unmapped uid cannot create files, not even on a tmpfs of its
 * own), holding only the mount points of what is kept; bound over DIR, then made read-only.
 * The client removes these directories after the session.
 */
static const char *keep[MAX_PATHS], *view[MAX_PATHS];
static int nkeep;

static void prepare_views(const char *socket_path) {
  extern char **environ;
  for (char **e = environ; *e && nkeep < MAX_PATHS; e++) {
    const char *v = NULL;
    char dir[4096];
    if (strncmp(*e, "CAPTREE_SERVICE_", 16) == 0 && (v = strchr(*e, '=')) && strncmp(v + 1, "unix:", 5) == 0) {
      snprintf(dir, sizeof dir, "%s", v + 6);
      char *slash = strrchr(dir, '/');
      if (!slash || slash == dir) continue;
      *slash = 0;
    } else if (strncmp(*e, "CREDENTIALS_DIRECTORY=", 22) == 0) {
      snprintf(dir, sizeof dir, "%s", *e + 22);
    } else
      continue;
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) continue; /* not there: nothing to keep */
    keep[nkeep++] = strdup(dir);
  }
  char base[4096];
  snprintf(base, sizeof base, "%s", socket_path);
  char *slash = strrchr(base, '/');
  if (slash) *slash = 0;
  for (int i = 0; i < nhide; i++) {
    char v[4096];
    snprintf(v, sizeof v, "%s/view-%d", slash ? base : ".", i);
    mkdirs(v);
    size_t hl = strlen(hide_dirs[i]);
    for (int k = 0; k < nkeep; k++) {
      if (strncmp(keep[k], hide_dirs[i], hl) != 0 || keep[k][hl] != '/') continue;
      char point[8192];
      snprintf(point, sizeof point, "%s%s", v, keep[k] + hl);
      mkdirs(point);
    }
    struct stat st;
    if (stat(v, &st) < 0) fail("creating the view that hides a directory");
    view[i] = strdup(v);
  }
}

/* O_PATH handles opened in the new mount namespace (a bind's source must belong to it). */
static int open_dir(const char *path) {
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) child_fail("open", path);
  return fd;
}

/* In the child, PID 1 of its PID namespace, on its terminal, before exec (see the top comment). */
static void isolate_child(void) {
  char src[64];
  int keep_fd[MAX_PATHS], view_fd[MAX_PATHS];
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) child_fail("make / private", NULL);
  for (int k = 0; k < nkeep; k++) keep_fd[k] = open_dir(keep[k]);
  for (int i = 0; i < nhide; i++) view_fd[i] = open_dir(view[i]);
  for (int i = 0; i < nhide; i++) {
    snprintf(src, sizeof src, "/proc/self/fd/%d", view_fd[i]);
    if (mount(src, hide_dirs[i], NULL, MS_BIND, NULL) < 0) child_fail("hide", hide_dirs[i]);
    struct ct_mount_attr attr = {.attr_set = 0x1 /* MOUNT_ATTR_RDONLY */};
    if (syscall(SYS_mount_setattr, AT_FDCWD, hide_dirs[i], 0, &attr, sizeof attr) < 0)
      child_fail("make read-only", hide_dirs[i]);
  }
  for (int k = 0; k < nkeep; k++) {
    snprintf(src, sizeof src, "/proc/self/fd/%d", keep_fd[k]);
    if (mount(src, keep[k], NULL, MS_BIND | MS_REC, NULL) < 0) child_fail("mount back", keep[k]);
  }
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) child_fail("mount", "/proc");
  for (int i = 0; i < nro; i++) {
    struct ct_mount_attr attr = {.attr_set = 0x1 /* MOUNT_ATTR_RDONLY */};
    if (syscall(SYS_mount_setattr, AT_FDCWD, ro_dirs[i], 0x8000 /* AT_RECURSIVE */, &attr, sizeof attr) < 0)
      child_fail("make read-only", ro_dirs[i]);
  }
  /* No capability survives exec anyway (the uid is unmapped); drop the bounding set too. */
  for (int cap = 0; cap < 64; cap++) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail("no_new_privs", NULL);
}

static void usage(void) {
  fprintf(stderr, "usage: captree-ptyrelay [--wait-ms N] [--no-isolate] [--hide DIR]... [--ro DIR]... SOCKET -- "
                  "PROGRAM [ARG...]\n");
  exit(111);
}

int main(int argc, char **argv) {
  long wait_ms = 10000;
  int isolate = 1;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--no-isolate") == 0) isolate = 0;
    else if (i + 1 < argc && strcmp(argv[i], "--wait-ms") == 0) wait_ms = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--hide") == 0 && nhide < MAX_PATHS) hide_dirs[nhide++] = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--ro") == 0 && nro < MAX_PATHS) ro_dirs[nro++] = argv[++i];
    else break;
  }
  if (i + 2 >= argc || strcmp(argv[i + 1], "--") != 0) usage();
  const char *path = argv[i];
  char **prog = argv + i + 2;

  signal(SIGPIPE, SIG_IGN);
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGINT);
  if (sigprocmask(SIG_BLOCK, &mask, &old) < 0) fail("sigprocmask");
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) fail("signalfd");

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    fail(path);
  }
  strcpy(addr.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket");
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
    char what[200];
    snprintf(what, sizeof what, "connect %.150s", path);
    fail(what);
  }
  sock = s;

  /* The first frame is the window size, so the program starts with the right one. */
  while (!have_size) {
    struct pollfd pf = {.fd = sock, .events = POLLIN};
    int n = poll(&pf, 1, 30000);
    if (n == 0) {
      errno = ETIMEDOUT;
      fail("waiting for the window size");
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    ssize_t r = read_sock();
    if (r == 0) return 0; /* the client gave up before anything started */
    if (r < 0 && errno != EINTR) fail("read");
    if (handle_frames() < 0) {
      errno = EPROTO;
      fail("bad frame from the client");
    }
  }

  master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) fail("posix_openpt");
  if (grantpt(master) < 0) fail("grantpt");
  if (unlockpt(master) < 0) fail("unlockpt");
  char *slave_name = ptsname(master);
  if (!slave_name) fail("ptsname");
  ioctl(master, TIOCSWINSZ, &first_size);

  if (isolate) prepare_views(path);
  if (isolate && unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) < 0)
    fail("cannot isolate the shell (a user, mount and PID namespace); refusing to run it without");
  shell = fork();
  if (shell < 0) fail("fork");
  if (shell == 0) {
    if (setsid() < 0) _exit(126);
    int slave = open(slave_name, O_RDWR);
    if (slave < 0) _exit(126);
    if (ioctl(slave, TIOCSCTTY, 0) < 0) _exit(126);
    dup2(slave, 0);
    dup2(slave, 1);
    dup2(slave, 2);
    if (slave > 2) close(slave);
    if (isolate) isolate_child();
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(prog[0], prog);
    fprintf(stderr, "captree shell: cannot run %s: %s\r\n", prog[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  {
    unsigned char p[4] = {shell & 0xff, (shell >> 8) & 0xff, (shell >> 16) & 0xff, (shell >> 24) & 0xff};
    frame('s', p, 4);
  }
  if (fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK) < 0) fail("fcntl");
  set_size((const unsigned char[]){first_size.ws_row & 0xff, first_size.ws_row >> 8,
                                   first_size.ws_col & 0xff, first_size.ws_col >> 8});

  int status = 0, exited = 0, hup = 0, client_gone = 0, slave_open = 1;
  int64_t deadline = -1; /* after a hangup: how long PROGRAM gets to go */
  while (!exited) {
    struct pollfd pf[3] = {
        {.fd = sigfd, .events = POLLIN},
        {.fd = slave_open ? master : -1, .events = POLLIN | (pendlen > pendoff ? POLLOUT : 0)},
        /* Input waits while the terminal has not taken the previous input: no unbounded buffer. */
        {.fd = client_gone || pendlen > pendoff ? -1 : sock, .events = POLLIN},
    };
    if (!slave_open && pendlen > pendoff) pendoff = pendlen; /* nobody to read it */
    int timeout = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ms();
      if (left <= 0) {
        kill(-shell, SIGKILL);
        deadline = -1;
      } else timeout = (int)left;
    }
    int n = poll(pf, 3, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    if (pf[0].revents) {
      struct signalfd_siginfo si;
      while (read(sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
          pid_t w;
          int st;
          while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            if (w == shell) {
              status = st;
              exited = 1;
            }
        } else if (!hup) {
          /* Stopped by captree (or a hangup of our own): hang the terminal up. */
          hup = 1;
          client_gone = 1;
        }
      }
    }
    if (pf[1].revents & POLLOUT && pendlen > pendoff) {
      ssize_t w = write(master, pend + pendoff, pendlen - pendoff);
      if (w > 0) pendoff += (size_t)w;
      if (pendoff == pendlen) pendoff = pendlen = 0;
    }
    if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!drain_master()) slave_open = 0;
    }
    if (pf[2].revents) {
      ssize_t r = read_sock();
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
        client_gone = 1;
        hup = 1;
      } else if (r > 0 && handle_frames() < 0) {
        errno = EPROTO;
        fail("bad frame from the client");
      }
    }
    if (hup == 1) {
      /* Closing the master hangs the terminal up: SIGHUP to the session leader (and through
       * the shell, to its jobs) as when a remote terminal goes away. */
      hup = 2;
      kill(-shell, SIGHUP);
      kill(-shell, SIGCONT);
      close(master);
      master = -1;
      slave_open = 0;
      deadline = now_ms() + 2000;
    }
  }
  /* Everything PROGRAM wrote before it ended is in the terminal's buffer: send it first. */
  if (master >= 0 && slave_open) drain_master();
  unsigned char x[2];
  if (WIFSIGNALED(status)) {
    x[0] = 1;
    x[1] = (unsigned char)WTERMSIG(status);
  } else {
    x[0] = 0;
    x[1] = (unsigned char)WEXITSTATUS(status);
  }
  if (!client_gone) {
    frame('x', x, 2);
    /* Wait for the client to close (it has what it needs), or for a stop. */
    shutdown(sock, SHUT_WR);
    int64_t end = now_ms() + wait_ms;
    for (;;) {
      int64_t left = end - now_ms();
      if (left <= 0) break;
      struct pollfd pf[2] = {{.fd = sock, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}};
      if (poll(pf, 2, (int)left) < 0 && errno != EINTR) break;
      if (pf[1].revents) {
        struct signalfd_siginfo si;
        int stop = 0;
        while (read(sigfd, &si, sizeof si) == sizeof si)
          if (si.ssi_signo != SIGCHLD) stop = 1;
        if (stop) break;
      }
      if (pf[0].revents) {
        inlen = 0;
        ssize_t r = read_sock();
        if (r <= 0 && !(r < 0 && errno == EINTR)) break;
      }
    }
  }
  return 0;
}
