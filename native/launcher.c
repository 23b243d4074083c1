/*
 * captree launcher: the small, long-lived process that starts every OS process for captree.
 *
 * Node's child_process.spawn forks the whole Node process, so its cost grows with the
 * supervisor's heap and blocks its event loop. This process stays small, so fork is cheap; it is
 * also the children's parent and a child subreaper, so it reaps everything below it (double-forked
 * daemons included) and can keep children running while its client restarts.
 *
 * Usage: captree-launcher --runtime-dir DIR [--socket PATH] [--remove-runtime-dir]
 *   fd 3 is the first client connection (a socketpair from the Node client).
 *   DIR holds per-child sd_notify sockets (path sockets, so they work across network namespaces).
 *   With --socket, a later client may connect at PATH (re-attach) and the launcher outlives a
 *   client disconnect; without it, losing the client SIGKILLs every child's process group and
 *   the launcher exits.
 *
 * Protocol (both directions): frames of
 *   u32 little-endian payload length | payload
 * payload = one type byte, then fields, each "name=value" terminated by NUL. Names may repeat
 * (arg, env, cgroup, listen, ...). The one exception is the output event: type 'o', one field
 * "key=<stream key>" NUL, then the raw bytes up to the end of the frame.
 *
 * Requests (client -> launcher); every request carries id=<u32> and is answered by exactly one
 * 'R' reply with the same id, either ok=1 plus result fields, or err=<strerror text> errno=<n>:
 *   'S' spawn  arg=.. (1+) env=.. (0+, exactly the child's env) cwd= uid= gid= cgroup=<path of a
 *              cgroup.procs file> (0+) notifyfd=<N> sdnotify=1 stdout=<key> stderr=<key>
 *              listen=<handle>:<name> (0+, placed at fd 3,4,...) netns=1 netnspath=<file>
 *              nonewprivs=1 tag=<the client's name for it> pidfile=<path> pidfilems=<n>
 *              mntns=1 hide=<dir> (0+) bind=<path> (0+) bindopt=<path> (0+) ro=<path> (0+)
 *              delegate=<cgroup dir> (0+) credsdir=<dir> cred=<NAME>:<hex of the value> (0+)
 *              view=1 rw=<path> (0+)
 *              caps=<mask> protect=1 wr=<path> (0+)
 *              -> ok pid=<pid> [main=<pid of the program: pid itself, or below a confined
 *                 child's outer process and init>] t=<CLOCK_MONOTONIC ns just before fork>
 *              tag= is kept with the child and listed by 'l': who a child is, by our own record
 *              (a child can rewrite its environment and title, not our memory).
 *              Mount confinement (any of hide/bind/ro/credsdir implies mntns=1), in the child,
 *              after the cgroup join and the network namespace, before chdir and setuid:
 *                unshare(CLONE_NEWNS), "/" made recursively private (nothing propagates back);
 *                every bind= path is opened (O_PATH) in the original view; every hide= dir is
 *                covered by an empty tmpfs; every bind= path is mounted back at its own place
 *                (mount points created as needed), so only those survive under a hidden dir;
 *                (bindopt= likewise, skipped if it does not exist); the child's own sd_notify
 *                socket is mounted back when it lies under a hidden dir;
 *                every ro= path is bind-mounted onto itself and remounted read-only;
 *                credsdir= gets a fresh tmpfs holding one file per cred= (mode 0400, the
 *                directory 0500, both owned by the child's uid/gid), then is remounted
 *                read-only; CREDENTIALS_DIRECTORY=<dir> is added to the environment;
 *                every mount at or below /sys/fs/cgroup is remounted read-only
 *                (MS_BIND|MS_REMOUNT|MS_RDONLY, one by one), except each delegate= dir (a
 *                supervisor child's own cgroup): bound onto itself writable, with its existing
 *                files (its limits) bound read-only again except cgroup.procs, cgroup.threads,
 *                cgroup.subtree_control and tasks; groups it creates below are its own;
 *                finally every hide= tmpfs is made read-only.
 *              Narrowed view (view=1; any rw= implies it): the ro= paths are not remounted in place;
 *                instead, after all of the above, the child's root becomes a new one holding only:
 *                /usr, /etc and every directory /bin, /sbin, /lib* (read-only; those that are
 *                symlinks, as with usr-merge, recreated as the same symlinks); /sys (read-only,
 *                every mount below it too, except delegate= dirs as above); a fresh /dev (tmpfs,
 *                read-only, with the host's null, zero, full, random, urandom and tty bound in, its
 *                own devpts instance with ptmx, a tmpfs /dev/shm, fd/stdin/stdout/stderr links); a
 *                private tmpfs /tmp; an empty /proc for the PID namespace's own; the directory of
 *                the program (argv[0] as found in the child's PATH, and of its realpath) read-only
 *                when outside the system and the grants; every ro= path read-only and rw= path
 *                writable (shorter paths first, so nested grants work); then what the runtime
 *                mounted back (bind=, bindopt=, the sd_notify socket, credsdir=), as they are.
 *                Every source is opened (O_PATH) in the confined view first and bound recursively,
 *                so what is hidden below a granted path stays hidden. The root is assembled on a
 *                tmpfs over /tmp (in this namespace only), made read-only, entered with
 *                pivot_root(".", ".") and the old root detached. cwd= must exist in the new view.
 *              Privileges: caps=<decimal mask of CAP_* bits> are the only capabilities kept (bounding,
 *                inheritable, permitted and ambient sets), across a uid switch too; without it
 *                none (with nonewprivs=1). protect=1 (with mntns): right after "/" is made
 *                private, every mount of the child's namespace becomes read-only
 *                (mount_setattr AT_RECURSIVE), except each wr= directory (existing ones only),
 *                cloned writable beforehand (open_tree) and moved back onto itself; what is
 *                mounted back under a hidden dir is made writable again. A uid 0 child that was
 *                not granted `root` so owns root's files without being able to change them.
 *              Network: netns=1 unshares a fresh namespace with only lo (up); netnspath= joins the
 *                namespace held at that file ('N' below), setns(CLONE_NEWNET), right after the
 *                cgroup join; the two exclude each other.
 *              Confinement: a spawn with netns=1, netnspath=, nonewprivs=1 or any mount field is confined:
 *                it always gets the mount namespace above (cgroups read-only even with no other
 *                mount field) and a PID namespace. The forked process (the pid the launcher
 *                reports, tracks, signals and reaps) unshares CLONE_NEWPID and forks an init
 *                (pid 1 inside) that mounts a fresh /proc and forks the program (pid 2, its own
 *                session; LISTEN_PID=2). SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT (every
 *                catchable signal but the synchronous faults and SIGCHLD) sent to the outer
 *                process (or its group) are forwarded to init, which sends them to the main
 *                process's group (to every process of the namespace once it is gone); a signal
 *                sent with a scope ('K' scope=) goes to every process of the namespace (all) or
 *                to the main process only (main), and starts a stop.
 *                The main process is the program until it exits 0 leaving processes behind (a
 *                daemon forked into the background): then the pid in pidfile= (as the child sees
 *                paths and pids, waited for up to pidfilems= ms, default 10000; the program
 *                removes a stale one before exec, with its own credentials), else the oldest
 *                process left; init reports it on a status pipe and the launcher sends 'm'.
 *                When the main process ends, init ends the namespace (the kernel kills the rest)
 *                and the outer process exits exactly as the main process did (code, or the same
 *                signal, without a second core dump; 255 for a main process init could not reap)
 *                -- except during a stop of scope all, when init waits for every process to be
 *                gone first. SIGKILL of the outer process kills init (parent death signal), so
 *                the whole namespace.
 *              The values of cred= never reach the environment or the host's filesystem.
 *              A failure before exec (cgroup write, chdir, setuid, exec...) is an err reply whose
 *              text names the step; the child then never ran the program.
 *   'K' kill   pid= sig= [group=1 | scope=all|main] -> ok
 *              scope= (a child of ours): all = every process of the child (its PID namespace
 *              through init's kill(-1), or every pid of its first cgroup), main = its main process.
 *   'L' listen tcp=<host>:<port> | unix=<path> [backlog=]  -> ok handle=<n> [port=<bound port>]
 *   'N' netns  path=<file> [remove=1]            -> ok existed=0|1 (remove: ok)
 *              A named network: a network namespace held by a bind mount of its ns file at path=
 *              (the file is created). If path= already holds one (a re-attached runtime), it is
 *              kept (existed=1); otherwise the launcher unshares CLONE_NEWNET, brings lo up,
 *              bind-mounts /proc/self/ns/net at path= and setns()es back to its own namespace.
 *              remove=1 unmounts it (MNT_DETACH; the namespace ends with its last member) and
 *              removes the file; a path that holds nothing is fine.
 *   'C' close-listen handle=                     -> ok
 *   'c' close-stream key=                        -> ok
 *   'l' list  -> ok child=<pid> (0+) tag=<pid>:<tag> (0+) main=<pid>:<main pid> (0+) stream=<key> (0+) handle=<n> (0+)
 *   'P' ping                                     -> ok pid=<launcher pid> children=<n> t=<ns>
 *   'Q' shutdown (SIGKILL every child's group, reply, exit)   -> ok
 * Events (launcher -> client):
 *   'h' hello    pid=<launcher pid> version=1   (on every new client connection)
 *   'x' exited   pid= (code=<n> | sig=<n>) t=<CLOCK_MONOTONIC ns of reap>
 *   'r' ready    pid=                           (a newline arrived on the child's notify fd)
 *   'n' notify   pid= text=<datagram text>      (one per sd_notify datagram)
 *   'm' main     pid= main=<host pid> via=pidfile|oldest|oldest-no-pidfile  (a new main process)
 *   'o' output   key=<stream key> NUL <bytes>
 * Events for a child (ready, notify, its streams' output) are sent before its 'x' event.
 * While no client is attached, small events queue (bounded, 1 MiB) and stream pipes are not
 * read, so children block on a full pipe rather than lose output (that output then arrives
 * after the exits that queued meanwhile). Anything unsent to a client that disconnects is lost.
 * Closing: on shutdown, or losing the only client without --socket, every descendant (tracked
 * children's process groups, and every orphan adopted as subreaper) is SIGKILLed and reaped.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#define MAX_FRAME (16u << 20)
#define OUT_HIGH (4u << 20)     /* stop reading child streams above this much unsent output */
#define DETACHED_MAX (1u << 20) /* queued events kept while no client is attached */
#define MAX_FIELDS 8192

struct buf {
  char *p;
  size_t len, cap;
};

struct child {
  pid_t pid;
  int notify_fd; /* read end of the s6-style notification pipe, or -1 */
  int sd_fd;     /* sd_notify datagram socket, or -1 */
  char *sd_path;
  char *tag;     /* the client's name for it (a tree path): our record, not the child's memory */
  int confined;  /* pid is the outer process of a PID namespace (see enter_pid_namespace) */
  int status_fd; /* read end of the pipe its init reports the main process on, or -1 */
  pid_t main;    /* host pid of its main process (the program, or the daemon it forked), or 0 */
  char *cgroup;  /* its first cgroup.procs file, for signals to the whole group, or NULL */
  struct child *next;
};

struct stream {
  char *key;
  int rfd, wfd; /* the launcher keeps the write end so the pipe outlives each child */
  struct stream *next;
};

struct handle {
  int id;
  int fd;
  char *unix_path;
  struct handle *next;
};

static struct child *children;
static struct stream *streams;
static struct handle *handles;
static int next_handle = 1;
static unsigned long sd_seq;

static int cfd = -1; /* current client */
static int lfd = -1; /* re-attach listening socket */
static char *socket_path;
static char *runtime_dir;
static int remove_runtime_dir;
static struct buf inbuf, outbuf;
static size_t frame_start;
static int sigfd = -1;

static void die(const char *what) {
  fprintf(stderr, "captree-launcher: %s: %s\n", what, strerror(errno));
  exit(111);
}

static void buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) die("realloc");
  b->p = p;
  b->cap = cap;
}

static void buf_put(struct buf *b, const void *data, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void buf_consume(struct buf *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------- outgoing frames ---------- */

static void frame_begin(char type) {
  frame_start = outbuf.len;
  uint32_t zero = 0;
  buf_put(&outbuf, &zero, 4);
  buf_put(&outbuf, &type, 1);
}

static void field(const char *name, const char *value) {
  buf_put(&outbuf, name, strlen(name));
  buf_put(&outbuf, "=", 1);
  buf_put(&outbuf, value, strlen(value));
  buf_put(&outbuf, "", 1);
}

static void fieldf(const char *name, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  field(name, tmp);
}

static void flush_out(void);

static void frame_end(void) {
  uint32_t n = (uint32_t)(outbuf.len - frame_start - 4);
  unsigned char le[4] = {n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff};
  memcpy(outbuf.p + frame_start, le, 4);
  if (cfd < 0 && outbuf.len > DETACHED_MAX) outbuf.len = frame_start; /* drop: nobody listens */
  flush_out();
}

static void flush_out(void) {
  while (cfd >= 0 && outbuf.len > 0) {
    ssize_t n = write(cfd, outbuf.p, outbuf.len);
    if (n > 0) {
      buf_consume(&outbuf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return; /* EAGAIN: poll for POLLOUT; errors show up as EOF/POLLERR on read */
  }
}

static void reply_err(const char *id, int err, const char *context) {
  char text[512];
  if (context)
    snprintf(text, sizeof text, "%s: %s", context, strerror(err));
  else
    snprintf(text, sizeof text, "%s", strerror(err));
  frame_begin('R');
  field("id", id);
  field("err", text);
  fieldf("errno", "%d", err);
  frame_end();
}

static void reply_ok(const char *id) {
  frame_begin('R');
  field("id", id);
  field("ok", "1");
  frame_end();
}

/* ---------- request fields ---------- */

struct req {
  char type;
  int n;
  char *name[MAX_FIELDS];
  char *value[MAX_FIELDS];
};

static const char *get(struct req *r, const char *name) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->name[i], name) == 0) return r->value[i];
  return NULL;
}

static int parse_int(const char *s, long *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

/* ---------- streams, handles, children ---------- */

static struct stream *stream_get(const char *key) {
  for (struct stream *s = streams; s; s = s->next)
    if (strcmp(s->key, key) == 0) return s;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return NULL;
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  struct stream *s = calloc(1, sizeof *s);
  s->key = strdup(key);
  s->rfd = p[0];
  s->wfd = p[1];
  s->next = streams;
  streams = s;
  return s;
}

/* Forwards what is readable now, at most `limit` bytes; returns 0 at EAGAIN, -1 at EOF/error. */
static int stream_pump(struct stream *s, size_t limit, int ignore_high) {
  char data[65536];
  while (limit > 0) {
    if (cfd < 0 || (outbuf.len > OUT_HIGH && !ignore_high)) return 0;
    ssize_t n = read(s->rfd, data, limit < sizeof data ? limit : sizeof data);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return (n < 0 && errno == EAGAIN) ? 0 : -1;
    frame_begin('o');
    field("key", s->key);
    buf_put(&outbuf, data, (size_t)n);
    frame_end();
    limit -= (size_t)n;
  }
  return 0;
}

/* What a child wrote before it exited is in the pipe now and goes out before its exit event
   (bounded by the pipe's capacity); a sibling still writing must not keep us here, so take only
   what is buffered at this moment. */
static void stream_drain(struct stream *s) {
  int avail = 0;
  if (ioctl(s->rfd, FIONREAD, &avail) == 0 && avail > 0) stream_pump(s, (size_t)avail, 1);
}

static void stream_close(struct stream *s) {
  struct stream **pp = &streams;
  while (*pp && *pp != s) pp = &(*pp)->next;
  if (*pp) *pp = s->next;
  close(s->rfd);
  close(s->wfd);
  free(s->key);
  free(s);
}

static struct handle *handle_find(long id) {
  for (struct handle *h = handles; h; h = h->next)
    if (h->id == id) return h;
  return NULL;
}

static void emit_pid(char type, pid_t pid) {
  frame_begin(type);
  fieldf("pid", "%d", (int)pid);
  frame_end();
}

/* s6 convention: the first newline means ready; the fd is then of no further use. */
static void notify_pump(struct child *c) {
  char data[512];
  for (;;) {
    ssize_t n = read(c->notify_fd, data, sizeof data);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n > 0 && !memchr(data, '\n', (size_t)n)) continue;
    if (n > 0) emit_pid('r', c->pid);
    close(c->notify_fd);
    c->notify_fd = -1;
    return;
  }
}

static void sd_pump(struct child *c) {
  char data[4097];
  for (;;) {
    ssize_t n = recv(c->sd_fd, data, sizeof data - 1, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    for (ssize_t i = 0; i < n; i++)
      if (data[i] == '\0') data[i] = '\n';
    data[n] = '\0';
    frame_begin('n');
    fieldf("pid", "%d", (int)c->pid);
    field("text", data);
    frame_end();
  }
}

/* The pid in its innermost PID namespace, from /proc/PID/status's NSpid line; 0 if unknown. */
static pid_t innermost_pid(pid_t pid, int *levels) {
  char path[64], data[4096];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, data, sizeof data - 1);
  close(fd);
  if (n <= 0) return 0;
  data[n] = '\0';
  char *line = strstr(data, "\nNSpid:");
  if (!line) return 0;
  line += 7;
  long last = 0;
  int count = 0;
  for (char *s = line, *end; *s && *s != '\n'; s = end) {
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\n' || !*s) break;
    long v = strtol(s, &end, 10);
    if (end == s) break;
    last = v;
    count++;
  }
  *levels = count;
  return (pid_t)last;
}

/* The pid, as we see it, of the process below `root` whose pid in its own PID namespace is
   `nspid` (a confined child's program or daemon, as its init names it); 0 if there is none. */
static pid_t host_pid_below(pid_t root, pid_t nspid, int depth) {
  char path[64], data[8192];
  if (depth > 32) return 0;
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)root, (int)root);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, data, sizeof data - 1);
  close(fd);
  data[n > 0 ? n : 0] = '\0';
  pid_t kids[256];
  int nk = 0;
  for (char *s = data, *end; *s && nk < 256; s = end) {
    long pid = strtol(s, &end, 10);
    if (end == s) break;
    kids[nk++] = (pid_t)pid;
  }
  int ours = 0;
  innermost_pid(getpid(), &ours);
  for (int i = 0; i < nk; i++) {
    int levels = 0;
    /* Deeper than our own namespace: the last NSpid field is the pid inside the child's. */
    if (innermost_pid(kids[i], &levels) == nspid && levels > ours) return kids[i];
  }
  for (int i = 0; i < nk; i++) {
    pid_t found = host_pid_below(kids[i], nspid, depth + 1);
    if (found) return found;
  }
  return 0;
}

static void emit_main(struct child *c, const char *via) {
  frame_begin('m');
  fieldf("pid", "%d", (int)c->pid);
  fieldf("main", "%d", (int)c->main);
  field("via", via);
  frame_end();
}

/* Lines "M <pid in the namespace> <how it was found>" from a confined child's init. */
static void status_pump(struct child *c) {
  char data[512];
  for (;;) {
    ssize_t n = read(c->status_fd, data, sizeof data - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      close(c->status_fd);
      c->status_fd = -1;
      return;
    }
    data[n] = '\0';
    for (char *line = data, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
      *nl = '\0';
      long nspid;
      char via[32];
      if (sscanf(line, "M %ld %31s", &nspid, via) != 2) continue;
      pid_t host = host_pid_below(c->pid, (pid_t)nspid, 0);
      if (host <= 0) continue; /* already gone: its exit follows */
      c->main = host;
      emit_main(c, via);
    }
  }
}

static void child_free(struct child *c) {
  if (c->notify_fd >= 0) close(c->notify_fd);
  if (c->sd_fd >= 0) close(c->sd_fd);
  if (c->status_fd >= 0) close(c->status_fd);
  if (c->sd_path) {
    unlink(c->sd_path);
    free(c->sd_path);
  }
  free(c->tag);
  free(c->cgroup);
  free(c);
}

static int spawner_reaped(pid_t pid);
static int is_spawner(pid_t pid);

static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    struct child **pp = &children;
    while (*pp && (*pp)->pid != pid) pp = &(*pp)->next;
    struct child *c = *pp;
    if (!c && spawner_reaped(pid)) continue;
    if (!c) continue; /* an adopted orphan: reaping it is the whole point */
    *pp = c->next;
    uint64_t t = now_ns();
    if (c->notify_fd >= 0) notify_pump(c);
    if (c->sd_fd >= 0) sd_pump(c);
    if (c->status_fd >= 0) status_pump(c);
    for (struct stream *s = streams; s; s = s->next) stream_drain(s);
    frame_begin('x');
    fieldf("pid", "%d", (int)pid);
    if (WIFSIGNALED(status))
      fieldf("sig", "%d", WTERMSIG(status));
    else
      fieldf("code", "%d", WEXITSTATUS(status));
    fieldf("t", "%llu", (unsigned long long)t);
    frame_end();
    child_free(c);
  }
}

/* SIGKILLs every process below us, then reaps. Tracked children's groups catch what they
   forked; as subreaper every other orphan (a setsid daemon, a group whose leader already
   exited) is our child, listed in /proc, so repeat until nothing is left to wait for. */
static void kill_descendants(void) {
  char path[64], data[65536];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  for (struct child *c = children; c; c = c->next) kill(-c->pid, SIGKILL);
  for (;;) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, data, sizeof data - 1);
      close(fd);
      data[n > 0 ? n : 0] = '\0';
      for (char *s = data, *end; *s; s = end) {
        long pid = strtol(s, &end, 10);
        if (end == s) break;
        if (pid > 0) {
          kill(-(pid_t)pid, SIGKILL);
          kill((pid_t)pid, SIGKILL);
        }
      }
    }
    if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD) return;
  }
}

static void kill_all_and_exit(int code) {
  /* A child stuck in uninterruptible sleep must not keep us alive forever. */
  alarm(5);
  kill_descendants();
  for (struct child *c = children; c; c = c->next)
    if (c->sd_path) unlink(c->sd_path);
  for (struct handle *h = handles; h; h = h->next)
    if (h->unix_path) unlink(h->unix_path);
  if (socket_path) unlink(socket_path);
  if (remove_runtime_dir) rmdir(runtime_dir);
  exit(code);
}

/* ---------- the child side of spawn ---------- */

struct child_report {
  int err;
  char what[256];
};

static void child_fail(int errpipe, const char *what) {
  struct child_report rep;
  rep.err = errno;
  snprintf(rep.what, sizeof rep.what, "%s", what);
  ssize_t ignored = write(errpipe, &rep, sizeof rep);
  (void)ignored;
  _exit(127);
}

static int write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Every capability out of the bounding set but those kept (caps=): what exec can ever give back. */
static void drop_privileges_bounding(int errpipe, uint64_t keep) {
  for (int cap = 0; cap <= 63; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past CAP_LAST_CAP */
      child_fail(errpipe, "drop capability bounding set");
    }
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  /* Root's caps after exec come from the inheritable set as well as the bounding set. */
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) < 0) child_fail(errpipe, "capget");
  data[0].inheritable = (uint32_t)keep;
  data[1].inheritable = (uint32_t)(keep >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) child_fail(errpipe, "capset");
  /* Kept across setuid: the granted ones are raised as ambient after it. */
  if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) child_fail(errpipe, "PR_SET_KEEPCAPS");
}

/* After the uid switch: exactly the kept capabilities, permitted, effective, inheritable and
   ambient (so they survive exec as another user, as systemd's AmbientCapabilities= does). */
static void raise_kept_capabilities(int errpipe, uint64_t keep) {
  if (!keep) return;
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = data[0].inheritable = (uint32_t)keep;
  data[1].effective = data[1].permitted = data[1].inheritable = (uint32_t)(keep >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) child_fail(errpipe, "capset (granted capabilities)");
  for (int cap = 0; cap <= 63; cap++)
    if ((keep & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      child_fail(errpipe, "raise an ambient capability");
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

/* Brings lo up in the current network namespace; on failure, returns the step that failed. */
static const char *lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return "socket for lo";
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  const char *step = NULL;
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) step = "SIOCGIFFLAGS lo";
  else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) step = "SIOCSIFFLAGS lo";
  }
  int e = errno;
  close(s);
  errno = e;
  return step;
}

static void bring_lo_up(int errpipe) {
  const char *step = lo_up();
  if (step) child_fail(errpipe, step);
}

#define MAX_MOUNTS 256

struct cred {
  const char *name;
  const char *data; /* decoded in place: binary, not NUL-terminated */
  size_t len;
};

struct spawn_plan {
  char **argv;
  char **envp;
  char *listen_pid; /* the envp entry filled in by the child with its own pid */
  const char *path; /* PATH from the child's env, for argv[0] lookup */
  const char *cwd;
  long uid, gid; /* -1: unchanged */
  char **cgroups;
  int ncgroups;
  int joined; /* forked by a spawner already in the v1 groups, into the cgroup2 one: no join */
  int nfds;
  int src[MAX_FIELDS + 8]; /* fd to place ... */
  int dst[MAX_FIELDS + 8]; /* ... at this number */
  int netns, nonewprivs, mntns;
  const char *netnspath; /* join the network namespace held at this file (a named network) */
  int view; /* a new root holding only what was granted (view=1, rw=, ro=) */
  char **hides, **binds, **ros, **rws, **delegates;
  int nhides, nbinds, nros, nrws, ndelegates;
  char *bindopt; /* per bind: skip it if the path does not exist */
  const char *sd_path; /* this child's sd_notify socket, mounted back if under a hidden dir */
  int maxdst; /* highest fd placed for the program */
  int status_wfd; /* confined: where init reports the main process (-1: nowhere) */
  const char *pidfile; /* confined: the main process of a forking daemon is named here */
  long pidfile_ms;     /* how long init waits for the pid file once the program exited 0 */
  const char *credsdir;
  struct cred *creds;
  int ncreds;
  int hascaps;      /* caps= given */
  uint64_t caps;    /* capabilities kept (CAP_* bits) */
  int protect;      /* the host's filesystem read-only but for wrs */
  char **wrs;
  int nwrs;
};

/* mkdir -p; existing components are fine. */
static int mkdir_p(const char *path, mode_t mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *s = tmp + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
      *s = c;
      if (c == '\0') return 0;
    }
  }
}

/* An empty file or directory at `path` (like `like`), to mount over. */
static int mount_point(const char *path, int dir) {
  if (dir) return mkdir_p(path, 0755);
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", path);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    if (mkdir_p(parent, 0755) < 0) return -1;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 && errno != EEXIST && errno != EISDIR) return -1;
  if (fd >= 0) close(fd);
  return 0;
}

/* The per-mount flags a bind remount must repeat (it replaces them all). */
static unsigned long mount_flags_of(const char *path) {
  struct statvfs sv;
  unsigned long f = 0;
  if (statvfs(path, &sv) < 0) return MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static int remount_bind(const char *path, int readonly) {
  return mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | mount_flags_of(path) | (readonly ? MS_RDONLY : 0), NULL);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_mountinfo(char *s) {
  char *o = s;
  while (*s) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 4;
    } else *o++ = *s++;
  }
  *o = '\0';
}

#define CGROUP_ROOT "/sys/fs/cgroup"

/* Every mount at or below /sys/fs/cgroup read-only, in one call (mount_setattr AT_RECURSIVE):
   the child reads its limits and cannot rewrite them, nor any other group's. */
static void cgroups_read_only(int errpipe) {
  struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
  if (syscall(SYS_mount_setattr, AT_FDCWD, CGROUP_ROOT, AT_RECURSIVE, &ro, sizeof ro) < 0)
    child_fail(errpipe, "cgroups read-only: mount_setattr " CGROUP_ROOT);
}

/* A supervisor child's own cgroup, writable again below a read-only /sys/fs/cgroup: what it
   creates there is its own; the files of the group itself (its limits) stay read-only, except
   those a delegatee must write (systemd's delegation rules). */
static void delegate_cgroup(const char *dir, int errpipe) {
  char what[PATH_MAX + 64], file[PATH_MAX];
  snprintf(what, sizeof what, "delegate %s: bind", dir);
  if (mount(dir, dir, NULL, MS_BIND, NULL) < 0) child_fail(errpipe, what);
  snprintf(what, sizeof what, "delegate %s: remount writable", dir);
  if (remount_bind(dir, 0) < 0) child_fail(errpipe, what);
  DIR *d = opendir(dir);
  if (!d) child_fail(errpipe, what);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_REG) continue;
    if (!strcmp(e->d_name, "cgroup.procs") || !strcmp(e->d_name, "cgroup.threads") ||
        !strcmp(e->d_name, "cgroup.subtree_control") || !strcmp(e->d_name, "tasks"))
      continue;
    snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
    snprintf(what, sizeof what, "delegate %s: keep %s read-only", dir, e->d_name);
    if (mount(file, file, NULL, MS_BIND, NULL) < 0 || remount_bind(file, 1) < 0) child_fail(errpipe, what);
  }
  closedir(d);
}

static int under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* ---------- the narrowed filesystem view (view=1) ---------- */

/* Where the new root is assembled: a tmpfs mounted over this directory of the child's own mount
   namespace (nothing of it reaches the host). Every source is opened before, so what it covers
   can still be bound in. */
#define VIEW_STAGE "/tmp"
#define MAX_VIEW (3 * MAX_MOUNTS + 64)

enum { V_KEEP, V_RO, V_RW }; /* KEEP: the mount's flags as they are in the current view */

struct vent {
  const char *path; /* the same in both views */
  int mode;
  int opt; /* absent: skipped */
  int fd;  /* O_PATH, -1 when skipped */
  int dir;
  int intent_only; /* not bound (already carried by a recursive bind), only protects from the walk */
};

static struct vent vents[MAX_VIEW];
static int nvents;

static void vent_add(const char *path, int mode, int opt, int intent_only) {
  if (nvents >= MAX_VIEW) return;
  vents[nvents++] = (struct vent){path, mode, opt, -1, 0, intent_only};
}

/* The system entries of "/": usr, etc, bin, sbin, lib* (symlinks recreated, directories bound). */
static char sysnames[32][NAME_MAX + 2];
static char syslinks[32][PATH_MAX];
static int nsys, sysislink[32];

static void find_system(void) {
  nsys = 0;
  const char *fixed[] = {"usr", "etc", "bin", "sbin"};
  DIR *d = opendir("/");
  struct dirent *e;
  char names[32][NAME_MAX + 1];
  int n = 0;
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) snprintf(names[n++], NAME_MAX + 1, "%s", fixed[i]);
  while (d && (e = readdir(d)) && n < 32)
    if (!strncmp(e->d_name, "lib", 3)) snprintf(names[n++], NAME_MAX + 1, "%s", e->d_name);
  if (d) closedir(d);
  for (int i = 0; i < n && nsys < 32; i++) {
    struct stat st;
    snprintf(sysnames[nsys], sizeof sysnames[nsys], "/%.255s", names[i]);
    if (lstat(sysnames[nsys], &st) < 0) continue;
    if (S_ISLNK(st.st_mode)) {
      ssize_t l = readlink(sysnames[nsys], syslinks[nsys], PATH_MAX - 1);
      if (l <= 0) continue;
      syslinks[nsys][l] = '\0';
      sysislink[nsys++] = 1;
    } else if (S_ISDIR(st.st_mode)) {
      sysislink[nsys++] = 0;
    }
  }
}

static int is_system(const char *path) {
  for (int i = 0; i < nsys; i++)
    if (under(path, sysnames[i])) return 1;
  return 0;
}

static int is_granted(struct spawn_plan *p, const char *path) {
  for (int i = 0; i < p->nros; i++)
    if (under(path, p->ros[i])) return 1;
  for (int i = 0; i < p->nrws; i++)
    if (under(path, p->rws[i])) return 1;
  return 0;
}

/* argv[0] as exec will find it (the child's PATH), absolute; -1 if not found or relative. */
static int find_exe(struct spawn_plan *p, char *out) {
  const char *file = p->argv[0];
  if (strchr(file, '/')) {
    if (file[0] != '/') return -1;
    snprintf(out, PATH_MAX, "%s", file);
    return 0;
  }
  const char *path = p->path ? p->path : "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t len = colon ? (size_t)(colon - path) : strlen(path);
    struct stat st;
    if (len > 0 && path[0] == '/' &&
        snprintf(out, PATH_MAX, "%.*s/%s", (int)len, path, file) < PATH_MAX &&
        stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
      return 0;
    path += len;
    if (*path == ':') path++;
  }
  return -1;
}

/* A mount point at `path` unless something is there already (a read-only bind may hold it). */
static int view_mount_point(const char *path, int dir) {
  struct stat st;
  if (lstat(path, &st) == 0) return 0;
  return mount_point(path, dir);
}

static int by_length(const void *a, const void *b) {
  size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
  return la < lb ? -1 : la > lb;
}

/* Every mount in the new root whose nearest intent is read-only becomes read-only (a recursive
   bind copies submounts writable as they were: /sys's, a granted directory's). */
static void view_read_only_walk(int errpipe) {
  char what[PATH_MAX + 64];
  size_t sl = strlen(VIEW_STAGE);
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) child_fail(errpipe, "view: open /proc/self/mountinfo");
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    /* id parent major:minor root mountpoint options ... */
    char *save = NULL, *fld = strtok_r(line, " ", &save);
    for (int i = 0; fld && i < 4; i++) fld = strtok_r(NULL, " ", &save);
    char *opts = fld ? strtok_r(NULL, " ", &save) : NULL;
    if (!fld || !opts) continue;
    unescape_mountinfo(fld);
    if (strncmp(fld, VIEW_STAGE, sl) != 0 || fld[sl] != '/') continue;
    const char *inside = fld + sl;
    int best = -1;
    size_t bestlen = 0;
    for (int i = 0; i < nvents; i++) {
      size_t l = strlen(vents[i].path);
      if (under(inside, vents[i].path) && (best < 0 || l >= bestlen)) {
        best = i;
        bestlen = l;
      }
    }
    if (best < 0 || vents[best].mode != V_RO) continue;
    if (!strncmp(opts, "ro", 2) && (opts[2] == ',' || opts[2] == '\0')) continue;
    snprintf(what, sizeof what, "view: read-only %s", inside);
    if (remount_bind(fld, 1) < 0) child_fail(errpipe, what);
  }
  free(line);
  fclose(f);
}

/* The child's whole filesystem: a new root holding the system (read-only), a fresh /dev, /tmp
   and /proc, /sys read-only, the granted paths, the runtime's own bits, then pivot_root. */
static void setup_view(struct spawn_plan *p, int errpipe) {
  char what[PATH_MAX + 64], at[PATH_MAX + 64], src[64];
  static char exe[PATH_MAX], real[PATH_MAX], exedir[2][PATH_MAX];
  static char *grants[2 * MAX_MOUNTS];
  static const char *devs[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"};
  nvents = 0;
  find_system();
  for (int i = 0; i < nsys; i++)
    if (!sysislink[i]) vent_add(sysnames[i], V_RO, 0, 0);
  vent_add("/sys", V_RO, 1, 0);
  for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) vent_add(devs[i], V_KEEP, 1, 0);
  /* The program's own directory when it lives outside the system (a node of its own...). */
  if (find_exe(p, exe) == 0) {
    int ne = 0;
    snprintf(exedir[ne], PATH_MAX, "%s", exe);
    *strrchr(exedir[ne], '/') = '\0';
    if (exedir[ne][0] && !is_system(exedir[ne]) && !is_granted(p, exedir[ne])) vent_add(exedir[ne++], V_RO, 0, 0);
    if (realpath(exe, real)) {
      snprintf(exedir[ne], PATH_MAX, "%s", real);
      *strrchr(exedir[ne], '/') = '\0';
      if (exedir[ne][0] && !is_system(exedir[ne]) && !is_granted(p, exedir[ne]) &&
          (ne == 0 || strcmp(exedir[0], exedir[ne])))
        vent_add(exedir[ne], V_RO, 0, 0);
    }
  }
  int ng = 0;
  for (int i = 0; i < p->nros; i++) grants[ng++] = p->ros[i];
  for (int i = 0; i < p->nrws; i++) grants[ng++] = p->rws[i];
  qsort(grants, (size_t)ng, sizeof *grants, by_length);
  for (int i = 0; i < ng; i++) {
    int ro = 0;
    for (int j = 0; j < p->nros && !ro; j++) ro = p->ros[j] == grants[i];
    vent_add(grants[i], ro ? V_RO : V_RW, 0, 0);
  }
  /* What the runtime mounted back for this child, as the current view has it. */
  int sd_listed = 0;
  for (int i = 0; i < p->nbinds; i++) {
    vent_add(p->binds[i], V_KEEP, p->bindopt[i], 0);
    if (p->sd_path && !strcmp(p->binds[i], p->sd_path)) sd_listed = 1;
  }
  if (p->sd_path && p->sd_path[0] == '/' && !sd_listed) vent_add(p->sd_path, V_KEEP, 0, 0);
  if (p->credsdir) vent_add(p->credsdir, V_KEEP, 0, 0);
  for (int i = 0; i < p->ndelegates; i++) vent_add(p->delegates[i], V_KEEP, 1, 1);

  for (int i = 0; i < nvents; i++) {
    struct vent *v = &vents[i];
    if (v->intent_only) continue;
    snprintf(what, sizeof what, "view: %s: open", v->path);
    v->fd = open(v->path, O_PATH | O_CLOEXEC);
    if (v->fd < 0 && v->opt && errno == ENOENT) continue;
    if (v->fd < 0) child_fail(errpipe, what);
    struct stat st;
    if (fstat(v->fd, &st) < 0) child_fail(errpipe, what);
    v->dir = S_ISDIR(st.st_mode);
  }

  const char *R = VIEW_STAGE;
  snprintf(what, sizeof what, "view: mount tmpfs for the new root on %s", R);
  if (mount("tmpfs", R, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0) child_fail(errpipe, what);
  for (int i = 0; i < nsys; i++) {
    if (!sysislink[i]) continue;
    snprintf(at, sizeof at, "%s%s", R, sysnames[i]);
    snprintf(what, sizeof what, "view: symlink %s -> %s", sysnames[i], syslinks[i]);
    if (symlink(syslinks[i], at) < 0) child_fail(errpipe, what);
  }
  /* A fresh /dev: a few host device nodes bound in, its own devpts, a tmpfs /dev/shm. */
  snprintf(at, sizeof at, "%s/dev", R);
  if (mkdir(at, 0755) < 0 || mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
    child_fail(errpipe, "view: mount tmpfs on /dev");
  snprintf(at, sizeof at, "%s/dev/pts", R);
  if (mkdir(at, 0755) < 0 ||
      mount("devpts", at, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
    child_fail(errpipe, "view: mount devpts on /dev/pts");
  snprintf(at, sizeof at, "%s/dev/shm", R);
  if (mkdir(at, 01777) < 0 || mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
    child_fail(errpipe, "view: mount tmpfs on /dev/shm");
  static const char *devlinks[][2] = {{"/dev/ptmx", "pts/ptmx"},       {"/dev/fd", "/proc/self/fd"},
                                      {"/dev/stdin", "/proc/self/fd/0"}, {"/dev/stdout", "/proc/self/fd/1"},
                                      {"/dev/stderr", "/proc/self/fd/2"}};
  for (size_t i = 0; i < sizeof devlinks / sizeof *devlinks; i++) {
    snprintf(at, sizeof at, "%s%s", R, devlinks[i][0]);
    snprintf(what, sizeof what, "view: symlink %s", devlinks[i][0]);
    if (symlink(devlinks[i][1], at) < 0) child_fail(errpipe, what);
  }
  /* A private /tmp, and where the PID namespace's init mounts a fresh /proc. */
  snprintf(at, sizeof at, "%s/tmp", R);
  if (mkdir(at, 01777) < 0 || mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
    child_fail(errpipe, "view: mount tmpfs on /tmp");
  snprintf(at, sizeof at, "%s/proc", R);
  if (mkdir(at, 0555) < 0) child_fail(errpipe, "view: create /proc");

  for (int i = 0; i < nvents; i++) {
    struct vent *v = &vents[i];
    if (v->intent_only || v->fd < 0) continue;
    snprintf(at, sizeof at, "%s%s", R, v->path);
    snprintf(what, sizeof what, "view: %s: create mount point", v->path);
    if (view_mount_point(at, v->dir) < 0) child_fail(errpipe, what);
    snprintf(src, sizeof src, "/proc/self/fd/%d", v->fd);
    snprintf(what, sizeof what, "view: %s: bind", v->path);
    if (mount(src, at, NULL, MS_BIND | MS_REC, NULL) < 0) child_fail(errpipe, what);
    close(v->fd);
    v->fd = -1;
    if (v->mode == V_RW) {
      snprintf(what, sizeof what, "view: %s: remount writable", v->path);
      if (remount_bind(at, 0) < 0) child_fail(errpipe, what);
    }
  }
  view_read_only_walk(errpipe);
  snprintf(at, sizeof at, "%s/dev", R);
  if (mount(NULL, at, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
    child_fail(errpipe, "view: remount /dev read-only");
  if (mount(NULL, R, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    child_fail(errpipe, "view: remount the new root read-only");
  if (chdir(R) < 0) child_fail(errpipe, "view: chdir to the new root");
  if (syscall(SYS_pivot_root, ".", ".") < 0) child_fail(errpipe, "view: pivot_root");
  if (umount2(".", MNT_DETACH) < 0) child_fail(errpipe, "view: unmount the old root");
  if (chdir("/") < 0) child_fail(errpipe, "view: chdir /");
}

/* The host's filesystem read-only for this child (every mount of its namespace, recursively),
   but the wr= directories: each is cloned writable first (open_tree) and moved back on top. */
static void protect_filesystem(struct spawn_plan *p, int errpipe) {
  char what[PATH_MAX + 64];
  static int trees[MAX_MOUNTS];
  for (int i = 0; i < p->nwrs; i++) {
    trees[i] = (int)syscall(SYS_open_tree, AT_FDCWD, p->wrs[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (trees[i] < 0 && errno == ENOENT) continue;
    snprintf(what, sizeof what, "protect: clone writable %s", p->wrs[i]);
    if (trees[i] < 0) child_fail(errpipe, what);
  }
  struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
  if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) < 0)
    child_fail(errpipe, "protect: make the filesystem read-only (mount_setattr)");
  for (int i = 0; i < p->nwrs; i++) {
    if (trees[i] < 0) continue;
    snprintf(what, sizeof what, "protect: mount writable %s", p->wrs[i]);
    if (syscall(SYS_move_mount, trees[i], "", AT_FDCWD, p->wrs[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
      child_fail(errpipe, what);
    close(trees[i]);
  }
}

/* A mounted-back path writable again under a protected (read-only) filesystem: a provider binds
   its socket there, a relay or a supervisor's launcher writes there. */
static void writable_again(const char *path, int errpipe) {
  char what[PATH_MAX + 64];
  struct mount_attr rw = {.attr_clr = MOUNT_ATTR_RDONLY};
  snprintf(what, sizeof what, "protect: %s writable", path);
  if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &rw, sizeof rw) < 0) child_fail(errpipe, what);
}

static void setup_mounts(struct spawn_plan *p, int errpipe) {
  char what[PATH_MAX + 64];
  if (unshare(CLONE_NEWNS) < 0) child_fail(errpipe, "unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) child_fail(errpipe, "make / private (mount MS_REC|MS_PRIVATE)");
  if (p->protect && !p->view) protect_filesystem(p, errpipe);
  /* The child's own sd_notify socket stays reachable when its directory is hidden. */
  if (p->sd_path)
    for (int i = 0; i < p->nhides; i++)
      if (under(p->sd_path, p->hides[i])) { /* binds has room for one more than requests give */
        p->bindopt[p->nbinds] = 0;
        p->binds[p->nbinds++] = (char *)p->sd_path;
        break;
      }
  /* Handles on what stays visible, taken in the original view (in this namespace, so they bind). */
  static int keep[MAX_MOUNTS + 1];
  static int keepdir[MAX_MOUNTS + 1];
  for (int i = 0; i < p->nbinds; i++) {
    snprintf(what, sizeof what, "bind %s: open", p->binds[i]);
    keep[i] = open(p->binds[i], O_PATH | O_CLOEXEC);
    if (keep[i] < 0 && p->bindopt[i] && errno == ENOENT) continue;
    if (keep[i] < 0) child_fail(errpipe, what);
    struct stat st;
    if (fstat(keep[i], &st) < 0) child_fail(errpipe, what);
    keepdir[i] = S_ISDIR(st.st_mode);
  }
  for (int i = 0; i < p->nhides; i++) {
    snprintf(what, sizeof what, "hide %s: mount tmpfs", p->hides[i]);
    if (mount("tmpfs", p->hides[i], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m") < 0)
      child_fail(errpipe, what);
  }
  for (int i = 0; i < p->nbinds; i++) {
    if (keep[i] < 0) continue;
    char src[64];
    snprintf(what, sizeof what, "bind %s: create mount point", p->binds[i]);
    if (mount_point(p->binds[i], keepdir[i]) < 0) child_fail(errpipe, what);
    snprintf(src, sizeof src, "/proc/self/fd/%d", keep[i]);
    snprintf(what, sizeof what, "bind %s: mount", p->binds[i]);
    if (mount(src, p->binds[i], NULL, MS_BIND | MS_REC, NULL) < 0) child_fail(errpipe, what);
    close(keep[i]);
    if (p->protect && !p->view) writable_again(p->binds[i], errpipe);
  }
  for (int i = 0; i < p->nros && !p->view; i++) {
    snprintf(what, sizeof what, "read-only %s: bind", p->ros[i]);
    if (mount(p->ros[i], p->ros[i], NULL, MS_BIND | MS_REC, NULL) < 0) child_fail(errpipe, what);
    snprintf(what, sizeof what, "read-only %s: remount", p->ros[i]);
    if (mount(NULL, p->ros[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
      child_fail(errpipe, what);
  }
  if (p->credsdir) {
    const char *d = p->credsdir;
    uid_t uid = p->uid >= 0 ? (uid_t)p->uid : getuid();
    gid_t gid = p->gid >= 0 ? (gid_t)p->gid : getgid();
    snprintf(what, sizeof what, "credentials %s: create mount point", d);
    if (mkdir_p(d, 0755) < 0) child_fail(errpipe, what);
    snprintf(what, sizeof what, "credentials %s: mount tmpfs", d);
    if (mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=4m") < 0) child_fail(errpipe, what);
    int dfd = open(d, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (dfd < 0) child_fail(errpipe, what);
    for (int i = 0; i < p->ncreds; i++) {
      struct cred *c = &p->creds[i];
      snprintf(what, sizeof what, "credentials %s: write %s", d, c->name);
      int fd = openat(dfd, c->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
      if (fd < 0) child_fail(errpipe, what);
      if (write_all(fd, c->data, c->len) < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, 0400) < 0)
        child_fail(errpipe, what);
      close(fd);
    }
    snprintf(what, sizeof what, "credentials %s: chown", d);
    if (fchown(dfd, uid, gid) < 0 || fchmod(dfd, 0500) < 0) child_fail(errpipe, what);
    close(dfd);
    snprintf(what, sizeof what, "credentials %s: remount read-only", d);
    if (mount(NULL, d, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      child_fail(errpipe, what);
  }
  struct stat st;
  /* Protected: already read-only with the rest of the filesystem. */
  if (!(p->protect && !p->view) && stat(CGROUP_ROOT, &st) == 0) cgroups_read_only(errpipe);
  for (int i = 0; i < p->ndelegates; i++) delegate_cgroup(p->delegates[i], errpipe);
  for (int i = 0; i < p->nhides; i++) {
    int bound = 0;
    for (int j = 0; j < p->nbinds; j++)
      if (!strcmp(p->binds[j], p->hides[i])) bound = 1;
    if (bound) continue;
    snprintf(what, sizeof what, "hide %s: remount read-only", p->hides[i]);
    if (mount(NULL, p->hides[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      child_fail(errpipe, what);
  }
  if (p->view) setup_view(p, errpipe);
}

/* ---------- the PID namespace of a confined child ---------- */

/* Every signal that can be caught and is not a fault of the process itself: SIGTERM, SIGINT,
   SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, but also SIGWINCH (Apache's graceful stop), real-time
   signals... (plus SIGCHLD, which is for us). */
static void forward_mask(sigset_t *set) {
  sigfillset(set);
  int own[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof own / sizeof *own; i++) sigdelset(set, own[i]);
}

/* Ends this process as `status` says: the same exit code, or the same signal (no core dump:
   the program already dumped one if it was going to). */
static void exit_as(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static void close_placed(int maxdst) {
  for (int fd = 0; fd <= maxdst; fd++) close(fd);
}

/* A signal's scope, carried as the value of a sigqueue()d signal from the launcher ('K' with
   scope=) through the outer process to init: every process of the namespace (systemd's
   KillMode=control-group), or the main process only (mixed). A plain kill() has no scope. */
#define SCOPE_ALL 1
#define SCOPE_MAIN 2

/* Outer process (the pid the launcher tracks): forwards signals to init, ends as the program. */
static void outer_wait(pid_t init, int link) {
  sigset_t set;
  forward_mask(&set);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) {
    kill(init, SIGKILL);
    _exit(111);
  }
  for (;;) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n != sizeof si) {
      if (n < 0 && errno == EINTR) continue;
      kill(init, SIGKILL);
      _exit(111);
    }
    if (si.ssi_signo != SIGCHLD) {
      if (si.ssi_code == SI_QUEUE) {
        union sigval v = {.sival_int = si.ssi_int};
        sigqueue(init, (int)si.ssi_signo, v);
      } else {
        kill(init, (int)si.ssi_signo);
      }
      continue;
    }
    int st;
    if (waitpid(init, &st, WNOHANG) != init) continue;
    int prog;
    ssize_t r;
    do r = read(link, &prog, sizeof prog);
    while (r < 0 && errno == EINTR);
    exit_as(r == sizeof prog ? prog : st);
  }
}

/* The pid written in a pid file (as the daemon sees pids: this namespace's), if it names a live
   process other than init; else 0. */
static pid_t pid_from_file(const char *file) {
  char data[32];
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, data, sizeof data - 1);
  close(fd);
  if (n <= 0) return 0;
  data[n] = '\0';
  char *end;
  long pid = strtol(data, &end, 10);
  if (end == data || pid <= 1 || pid > INT_MAX) return 0;
  while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r') end++;
  if (*end) return 0;
  if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) return 0;
  return (pid_t)pid;
}

/* Fields of /proc/PID/stat after the command: parent and start time; -1 when gone. */
static int stat_of(pid_t pid, pid_t *ppid, unsigned long long *start) {
  char path[64], data[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, data, sizeof data - 1);
  close(fd);
  if (n <= 0) return -1;
  data[n] = '\0';
  char *s = strrchr(data, ')');
  if (!s) return -1;
  /* ") S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
     priority nice threads itrealvalue starttime" */
  int field = 0;
  for (char *t = s + 2; *t; t++) {
    if (*t != ' ') continue;
    field++;
    if (field == 1) *ppid = (pid_t)strtol(t + 1, NULL, 10);
    if (field == 19) {
      *start = strtoull(t + 1, NULL, 10);
      return 0;
    }
  }
  return -1;
}

/* The oldest process left in the namespace besides init: the main process of a daemon that
   forked and whose starter exited (systemd's GuessMainPID=); 0 if none. */
static pid_t oldest_left(void) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  pid_t best = 0;
  unsigned long long best_start = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 1) continue;
    pid_t ppid;
    unsigned long long start;
    if (stat_of((pid_t)pid, &ppid, &start) < 0) continue;
    if (!best || start < best_start || (start == best_start && pid < best)) {
      best = (pid_t)pid;
      best_start = start;
    }
  }
  closedir(d);
  return best;
}

static long long mono_ms(void) { return (long long)(now_ns() / 1000000ull); }

/* Init's report of a new main process to the launcher (status_pump reads it). */
static void report_main(int report, pid_t main, const char *via) {
  if (report < 0) return;
  char line[64];
  int len = snprintf(line, sizeof line, "M %d %s\n", (int)main, via);
  ssize_t ignored = write(report, line, (size_t)len);
  (void)ignored;
}

/* Tells the outer process how to end (the status it exits as), then ends the namespace. */
static void init_finish(int link, int status) {
  ssize_t ignored = send(link, &status, sizeof status, MSG_NOSIGNAL);
  (void)ignored;
  _exit(0);
}

/*
 * Init, pid 1 of the namespace: reaps, forwards signals, follows the main process, reports how
 * it ended, then exits (the kernel kills whatever is left).
 *
 * The main process is the program until it exits. If it exits 0 while others remain (a daemon
 * that forked into the background), the main becomes the pid in `pidfile` (waited for up to
 * `pidfile_ms`), else the oldest process left; its exit is then the child's exit, with its status
 * when init reaps it (a process whose own parent is alive is followed through a pidfd: status 255).
 * Anything else that ends the main process ends the namespace at once, except during a stop of
 * scope "all": then init waits for every process to be gone (the engine's deadline SIGKILLs).
 */
static void init_wait(pid_t prog, int link, int report, const char *pidfile, long pidfile_ms) {
  sigset_t set;
  forward_mask(&set);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) _exit(111);
  pid_t main = prog;
  int main_status = 0, main_done = 0, forked = 0;
  int stopping = 0; /* SCOPE_ALL or SCOPE_MAIN once a scoped stop signal came */
  int pidfd = -1;
  long long pidfile_until = 0; /* while > 0, the pid file is awaited */
  for (;;) {
    struct pollfd pf[3] = {{.fd = sfd, .events = POLLIN}, {.fd = link, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    int r = poll(pf, pidfd >= 0 ? 3 : 2, pidfile_until > 0 ? 20 : -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      _exit(111);
    }
    if (pf[1].revents) _exit(111); /* the outer process is gone: take the namespace down */
    struct signalfd_siginfo si;
    int reap = 0;
    while (read(sfd, &si, sizeof si) == sizeof si) {
      int sig = (int)si.ssi_signo;
      if (sig == SIGCHLD) {
        reap = 1;
        continue;
      }
      int scope = si.ssi_code == SI_QUEUE ? si.ssi_int : 0;
      if (scope == SCOPE_ALL) {
        stopping = SCOPE_ALL;
        kill(-1, sig);
      } else if (scope == SCOPE_MAIN) {
        if (stopping != SCOPE_ALL) stopping = SCOPE_MAIN;
        if (!main_done) kill(main, sig);
      } else if (!main_done) {
        /* The main's process group (a daemon leads its own session), else the process itself. */
        if (kill(-main, sig) < 0) kill(main, sig);
      } else {
        kill(-1, sig);
      }
    }
    int left = 1;
    if (reap) {
      for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w > 0) {
          if (w == main && !main_done) {
            main_status = st;
            main_done = 1;
          }
          continue;
        }
        if (w < 0 && errno == ECHILD) left = 0;
        break;
      }
    }
    if (pidfd >= 0 && pf[2].revents && !main_done) {
      /* Not ours to reap: its status went to its own parent. */
      main_status = 255 << 8;
      main_done = 1;
    }
    if (!main_done) {
      if (!left) init_finish(link, 0); /* gone before it could be followed: nothing failed */
      if (pidfile_until > 0) {
        pid_t found = pid_from_file(pidfile);
        if (found) {
          pidfile_until = 0;
          main = found;
          report_main(report, main, "pidfile");
        } else if (mono_ms() >= pidfile_until) {
          pidfile_until = 0;
          main = oldest_left();
          if (!main) init_finish(link, 0);
          report_main(report, main, "oldest-no-pidfile");
        } else {
          continue;
        }
        pid_t ppid;
        unsigned long long start;
        if (stat_of(main, &ppid, &start) == 0 && ppid != 1) pidfd = (int)syscall(SYS_pidfd_open, main, 0);
      }
      continue;
    }
    if (!left) init_finish(link, main_status);
    if (stopping == SCOPE_ALL) continue; /* the rest had the stop signal too: let them finish */
    int ok = WIFEXITED(main_status) && WEXITSTATUS(main_status) == 0;
    if (forked || stopping || !ok) init_finish(link, main_status);
    /* The program exited 0 and left processes running: it forked a daemon; follow its main. */
    forked = 1;
    main_done = 0;
    main_status = 0;
    if (pidfile) {
      pid_t found = pid_from_file(pidfile);
      if (found) {
        main = found;
        report_main(report, main, "pidfile");
      } else {
        pidfile_until = mono_ms() + pidfile_ms;
        continue;
      }
    } else {
      main = oldest_left();
      if (!main) init_finish(link, 0);
      report_main(report, main, "oldest");
    }
    pid_t ppid;
    unsigned long long start;
    if (stat_of(main, &ppid, &start) == 0 && ppid != 1) pidfd = (int)syscall(SYS_pidfd_open, main, 0);
  }
}

/* In the forked child, after the mounts and the fds are in place: returns only in the program
   (pid 2 of a new PID namespace); the outer process and init never return. */
static int enter_pid_namespace(struct spawn_plan *p, int errpipe) {
  if (unshare(CLONE_NEWPID) < 0) child_fail(errpipe, "unshare(CLONE_NEWPID)");
  int link[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) < 0) child_fail(errpipe, "pid namespace: socketpair");
  sigset_t set, none;
  forward_mask(&set);
  sigemptyset(&none);
  /* Blocked before the forks, so nothing sent meanwhile is lost: it waits for the signalfd. */
  sigprocmask(SIG_BLOCK, &set, NULL);
  pid_t init = fork();
  if (init < 0) child_fail(errpipe, "pid namespace: fork init");
  if (init > 0) {
    close(link[1]);
    close(errpipe);
    if (p->status_wfd >= 0) close(p->status_wfd);
    close_placed(p->maxdst);
    outer_wait(init, link[0]);
  }
  close(link[0]);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) child_fail(errpipe, "pid namespace: PR_SET_PDEATHSIG");
  if (setsid() < 0) child_fail(errpipe, "pid namespace: setsid");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    child_fail(errpipe, "pid namespace: mount /proc");
  pid_t prog = fork();
  if (prog < 0) child_fail(errpipe, "pid namespace: fork program");
  if (prog > 0) {
    close(errpipe);
    close_placed(p->maxdst);
    init_wait(prog, link[1], p->status_wfd, p->pidfile, p->pidfile_ms);
  }
  close(link[1]);
  if (p->status_wfd >= 0) close(p->status_wfd);
  if (setsid() < 0) child_fail(errpipe, "setsid");
  sigprocmask(SIG_SETMASK, &none, NULL);
  return errpipe;
}

static void child_exec(struct spawn_plan *p, int errpipe) {
  char what[PATH_MAX + 64];
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGALRM, SIG_DFL);

  if (setsid() < 0) child_fail(errpipe, "setsid");

  /* Join cgroups before anything else so nothing the child runs escapes accounting. */
  char pidstr[32];
  int pidlen = snprintf(pidstr, sizeof pidstr, "%d\n", (int)getpid());
  for (int i = 0; i < p->ncgroups && !p->joined; i++) {
    snprintf(what, sizeof what, "join cgroup %s", p->cgroups[i]);
    int fd = open(p->cgroups[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0) child_fail(errpipe, what);
    if (write_all(fd, pidstr, (size_t)pidlen) < 0) child_fail(errpipe, what);
    close(fd);
  }

  if (p->netns) {
    if (unshare(CLONE_NEWNET) < 0) child_fail(errpipe, "unshare(CLONE_NEWNET)");
    bring_lo_up(errpipe);
  }
  if (p->netnspath) {
    snprintf(what, sizeof what, "join network namespace %s: open", p->netnspath);
    int nfd = open(p->netnspath, O_RDONLY | O_CLOEXEC);
    if (nfd < 0) child_fail(errpipe, what);
    snprintf(what, sizeof what, "join network namespace %s: setns", p->netnspath);
    if (setns(nfd, CLONE_NEWNET) < 0) child_fail(errpipe, what);
    close(nfd);
  }
  int confined = p->netns || p->netnspath || p->nonewprivs || p->mntns;
  if (confined) setup_mounts(p, errpipe);

  /* Lift every source above all targets first, so a dup2 never clobbers a source not yet placed. */
  int maxdst = 2;
  for (int i = 0; i < p->nfds; i++)
    if (p->dst[i] > maxdst) maxdst = p->dst[i];
  for (int i = 0; i < p->nfds; i++) {
    int hi = fcntl(p->src[i], F_DUPFD_CLOEXEC, maxdst + 1);
    if (hi < 0) child_fail(errpipe, "dup fd");
    p->src[i] = hi;
  }
  if (errpipe <= maxdst) {
    int hi = fcntl(errpipe, F_DUPFD_CLOEXEC, maxdst + 1);
    if (hi < 0) child_fail(errpipe, "dup fd");
    errpipe = hi;
  }
  if (p->status_wfd >= 0 && p->status_wfd <= maxdst) {
    int hi = fcntl(p->status_wfd, F_DUPFD_CLOEXEC, maxdst + 1);
    if (hi < 0) child_fail(errpipe, "dup fd");
    p->status_wfd = hi;
  }
  for (int i = 0; i < p->nfds; i++)
    if (dup2(p->src[i], p->dst[i]) < 0) child_fail(errpipe, "dup2");
  if (confined) {
    /* The outer process and init never exec: close for real whatever the program is not given
       (the launcher's client socket, other children's pipes...), so they hold nothing. */
    for (int fd = 3; fd <= maxdst; fd++) {
      int placed = 0;
      for (int i = 0; i < p->nfds && !placed; i++) placed = p->dst[i] == fd;
      if (!placed) close(fd);
    }
    /* Init's report pipe goes just above the error pipe; everything else of ours is closed. */
    if (p->status_wfd >= 0) {
      int hi = fcntl(p->status_wfd, F_DUPFD_CLOEXEC, errpipe + 1);
      if (hi < 0) child_fail(errpipe, "dup fd");
      p->status_wfd = hi;
    }
    if (errpipe > maxdst + 1) syscall(SYS_close_range, maxdst + 1, errpipe - 1, 0);
    if (p->status_wfd > errpipe + 1) syscall(SYS_close_range, errpipe + 1, p->status_wfd - 1, 0);
    syscall(SYS_close_range, (p->status_wfd >= 0 ? p->status_wfd : errpipe) + 1, ~0U, 0);
    p->maxdst = maxdst;
    errpipe = enter_pid_namespace(p, errpipe);
  } else {
    /* Everything of ours is O_CLOEXEC already; this catches fds inherited from whoever started us. */
    syscall(SYS_close_range, maxdst + 1, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
  }

  if (p->cwd && chdir(p->cwd) < 0) {
    snprintf(what, sizeof what, p->view ? "chdir %s (not in the child's filesystem view)" : "chdir %s", p->cwd);
    child_fail(errpipe, what);
  }
  if (p->nonewprivs || p->hascaps) drop_privileges_bounding(errpipe, p->hascaps ? p->caps : 0);
  if (p->gid >= 0) {
    gid_t g = (gid_t)p->gid;
    if (setgroups(1, &g) < 0) child_fail(errpipe, "setgroups");
    if (setgid(g) < 0) child_fail(errpipe, "setgid");
  } else if (p->uid >= 0 && getuid() == 0) {
    if (setgroups(0, NULL) < 0) child_fail(errpipe, "setgroups");
  }
  if (p->uid >= 0 && setuid((uid_t)p->uid) < 0) child_fail(errpipe, "setuid");
  if (p->hascaps) raise_kept_capabilities(errpipe, p->caps);
  if (p->nonewprivs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail(errpipe, "PR_SET_NO_NEW_PRIVS");

  /* A pid file left by an earlier instance (killed before it could remove it) must not name a
     process of this one: the daemon writes a fresh one. Removed with the program's own
     credentials, never root's: the path is the manifest's, in the child's view. */
  if (p->pidfile) unlink(p->pidfile);

  if (p->listen_pid) snprintf(p->listen_pid, 32, "LISTEN_PID=%d", (int)getpid());

  const char *file = p->argv[0];
  snprintf(what, sizeof what, "exec %s", file);
  if (strchr(file, '/')) {
    execve(file, p->argv, p->envp);
    child_fail(errpipe, what);
  }
  /* Look argv[0] up in the child's own PATH, not ours: the env given is the child's world. */
  const char *path = p->path ? p->path : "/usr/local/bin:/usr/bin:/bin";
  int saved = ENOENT;
  char full[PATH_MAX];
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t len = colon ? (size_t)(colon - path) : strlen(path);
    if (len == 0)
      snprintf(full, sizeof full, "%s", file);
    else
      snprintf(full, sizeof full, "%.*s/%s", (int)len, path, file);
    execve(full, p->argv, p->envp);
    if (errno == EACCES) saved = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR) saved = errno;
    path += len;
    if (*path == ':') path++;
  }
  errno = saved;
  child_fail(errpipe, what);
}

/* ---------- spawners: a restart forked from inside the child's v1 cgroups ----------
 *
 * The first write to any cgroup.procs file after a quiet spell waits for an RCU grace period (the
 * kernel's global cgroup_threadgroup_rwsem; 7-17 ms measured here), so a child killed after
 * running a while was replaced that much later than one restarted back to back. cgroup2 has
 * clone3(CLONE_INTO_CGROUP), which does not take that path; v1 controllers have nothing like it,
 * but a process forked by one already in the target v1 groups lands there with no write.
 *
 * So after a child's first start on a hybrid host the launcher keeps, for its set of groups, a
 * spawner: a task sharing the launcher's memory and file table (CLONE_VM | CLONE_FILES: a task
 * struct and a kernel stack, no pages or descriptors of its own but its stack's first pages)
 * that joins the child's v1 groups once, while nobody waits, and then sleeps on a futex. A later
 * spawn into the same groups is forked by it: clone3(CLONE_PARENT | CLONE_INTO_CGROUP), so the
 * program is the launcher's child like any other, inherits the v1 groups and enters the cgroup2
 * group without a cgroup.procs write. While it forks, the launcher waits (as for vfork), so the
 * program's copy of the memory is the launcher's, consistent, with the spawn plan in it.
 *
 * The spawner never joins the child's cgroup2 group, which is what emptiness (cgroup.events)
 * and cgroup.kill go by on a hybrid host; it does sit in the v1 groups, where the runtime tells
 * it apart (in the v1 groups, not in the cgroup2 one, named captree-spawner: a child's processes
 * cannot leave its cgroup2 group) and leaves it out of pids and usage, and SIGKILLs it before it
 * removes the groups. It would take one pid of the v1 pids groups, and a memory cgroup's OOM
 * killer could pick it and with it the launcher (they share memory), so a child whose pids or
 * memory group (or one above it) has a limit gets none: its restarts pay the writes. scope=all signals here
 * skip it; it dies with the launcher (PR_SET_PDEATHSIG). Only on a hybrid host (v1 groups plus
 * exactly one cgroup2 group): on v1 alone it would be a member of every group the runtime
 * counts. The spawner shares the launcher's TLS, so it makes raw system calls only (glibc's
 * would write the launcher's errno).
 */
#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_SPAWNERS 1
#include <linux/futex.h>
#define CLONE_INTO_CGROUP_FLAG 0x200000000ULL
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
/* Spawner stacks are slots of one mapping, so a thousand spawners add one mapping, not a
   thousand, to every fork of the launcher (the page tables of each are copied). A program forked
   by a spawner runs its setup on a copy of that slot and below it, deeper than the spawner ever
   goes: in its own memory, over the copies of the slots below, and the reserve under the first. */
#define SPAWNER_SLOT (16u << 10)
#define SPAWNER_SLOTS 4096u
#define SPAWNER_RESERVE (1u << 20)
static char *spawner_pool;
static unsigned char spawner_slot_used[SPAWNER_SLOTS];

static void *spawner_stack_get(void) {
  if (!spawner_pool) {
    void *m = mmap(NULL, SPAWNER_RESERVE + (size_t)SPAWNER_SLOTS * SPAWNER_SLOT, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    spawner_pool = m;
  }
  for (unsigned i = 0; i < SPAWNER_SLOTS; i++) {
    if (spawner_slot_used[i]) continue;
    spawner_slot_used[i] = 1;
    return spawner_pool + SPAWNER_RESERVE + (size_t)i * SPAWNER_SLOT;
  }
  return NULL;
}

/* Opt-in (CAPTREE_SPAWNERS=1 in the launcher's environment) until a restart forked by a spawner
   survives a launcher replacement: test/faults/launcher-loss.test.ts fails with them (the new
   launcher's restarts of a just-stopped child are SIGKILLed right after they start). */
static int spawners_wanted(void) {
  static int wanted = -1;
  if (wanted < 0) {
    const char *v = getenv("CAPTREE_SPAWNERS");
    wanted = v && !strcmp(v, "1");
  }
  return wanted;
}

static void spawner_stack_put(void *stack) {
  size_t i = (size_t)((char *)stack - spawner_pool - SPAWNER_RESERVE) / SPAWNER_SLOT;
  madvise(stack, SPAWNER_SLOT, MADV_DONTNEED);
  spawner_slot_used[i] = 0;
}

struct clone_args_v2 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static long raw6(long n, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
  register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return ret;
#else
  register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b, x2 __asm__("x2") = c,
                x3 __asm__("x3") = d, x4 __asm__("x4") = e, x5 __asm__("x5") = f;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
#endif
}
#define raw(n, a, b, c) raw6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

struct spawner {
  char *key;              /* the spawn's cgroup= fields joined by '\n': the spawns it serves */
  char **v1;              /* the v1 cgroup.procs files it joins */
  int nv1;
  char *v2dir;            /* the cgroup2 group a spawn enters */
  char *block;            /* holds the paths above */
  pid_t pid;
  int tid;                /* its pid until it exits (CLONE_CHILD_CLEARTID zeroes it and wakes us) */
  int state;              /* 0 joining, 1 ready, -1 could not join */
  int go;                 /* launcher -> spawner: fork plan now (futex) */
  int done;               /* spawner -> launcher: result is set (futex) */
  long result;            /* the program's pid, or -errno */
  int v2fd;               /* for this spawn: the cgroup2 directory (O_PATH) */
  struct spawn_plan *plan;
  int errfd;
  void *stack;
  struct spawner *next;
};
static struct spawner *spawners;

static void futex_wake(int *w) { raw6(SYS_futex, (long)w, FUTEX_WAKE, 1, 0, 0, 0); }

static int spawner_main(void *arg) {
  struct spawner *s = arg;
  uint64_t all = ~0ULL;
  raw6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0, 0);
  raw6(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0);
  raw6(SYS_prctl, PR_SET_NAME, (long)"captree-spawner", 0, 0, 0, 0);
  char digits[24], *d = digits + sizeof digits;
  long pid = raw(SYS_getpid, 0, 0, 0);
  *--d = '\n';
  do *--d = (char)('0' + pid % 10); while ((pid /= 10) > 0);
  for (int i = 0; i < s->nv1; i++) {
    long fd = raw6(SYS_openat, AT_FDCWD, (long)s->v1[i], O_WRONLY | O_CLOEXEC, 0, 0, 0);
    long w = fd < 0 ? fd : raw(SYS_write, fd, d, digits + sizeof digits - d);
    if (fd >= 0) raw(SYS_close, fd, 0, 0);
    if (w < 0) {
      __atomic_store_n(&s->state, -1, __ATOMIC_RELEASE);
      raw(SYS_exit, 1, 0, 0);
    }
  }
  __atomic_store_n(&s->state, 1, __ATOMIC_RELEASE);
  for (;;) {
    while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE)) raw6(SYS_futex, (long)&s->go, FUTEX_WAIT, 0, 0, 0, 0);
    s->go = 0;
    struct clone_args_v2 ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_PARENT | (s->v2fd >= 0 ? CLONE_INTO_CGROUP_FLAG : 0);
    ca.exit_signal = 0; /* must be 0 with CLONE_PARENT: the program inherits ours, SIGCHLD */
    ca.cgroup = (uint64_t)(s->v2fd >= 0 ? s->v2fd : 0);
    long r = raw(SYS_clone3, &ca, sizeof ca, 0);
    if (r == 0) child_exec(s->plan, s->errfd); /* the program: its own memory from here on */
    s->result = r;
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    futex_wake(&s->done);
  }
  return 0;
}

static void spawner_free(struct spawner *s) {
  spawner_stack_put(s->stack);
  free(s->key);
  free(s->v1);
  free(s->block);
  free(s);
}

/* A spawner exited (killed by the runtime removing its groups, or one that could not join). */
static int spawner_reaped(pid_t pid) {
  for (struct spawner **pp = &spawners; *pp; pp = &(*pp)->next) {
    if ((*pp)->pid != pid) continue;
    struct spawner *s = *pp;
    *pp = s->next;
    spawner_free(s);
    return 1;
  }
  return 0;
}

static int is_spawner(pid_t pid) {
  for (struct spawner *s = spawners; s; s = s->next)
    if (s->pid == pid) return 1;
  return 0;
}

static char *spawn_key(const struct spawn_plan *p) {
  size_t len = 1;
  for (int i = 0; i < p->ncgroups; i++) len += strlen(p->cgroups[i]) + 1;
  char *k = malloc(len), *o = k;
  if (!k) return NULL;
  for (int i = 0; i < p->ncgroups; i++) o += sprintf(o, "%s\n", p->cgroups[i]);
  *o = '\0';
  return k;
}

static int on_cgroup2(const char *procs_file) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", procs_file);
  char *slash = strrchr(dir, '/');
  if (!slash) return -1;
  *slash = '\0';
  struct statfs st;
  if (statfs(dir, &st) < 0) return -1;
  return st.f_type == CGROUP2_SUPER_MAGIC;
}

/* Whether a v1 group or one above it limits pids or memory. A spawner there would take one of
   the pids; and a memory cgroup's OOM killer may pick it (its badness is the launcher's memory,
   which it shares) and then kills every process sharing that memory: the launcher. */
static int limited(const char *procs_file) {
  char dir[PATH_MAX], file[PATH_MAX + 32], value[32];
  snprintf(dir, sizeof dir, "%s", procs_file);
  for (char *slash; (slash = strrchr(dir, '/')) && slash != dir;) {
    *slash = '\0';
    int found = 0;
    static const char *const knobs[] = {"pids.max", "memory.limit_in_bytes"};
    for (int k = 0; k < 2; k++) {
      snprintf(file, sizeof file, "%s/%s", dir, knobs[k]);
      int fd = open(file, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      found = 1;
      ssize_t n = read(fd, value, sizeof value - 1);
      close(fd);
      value[n > 0 ? n : 0] = '\0';
      /* unlimited: "max" (pids), PAGE_COUNTER_MAX pages in bytes (memory, 9223372036854771712) */
      if (n <= 0 || (k == 0 ? strncmp(value, "max", 3) != 0 : strncmp(value, "92233720368547", 14) != 0)) return 1;
    }
    if (!found) return 0; /* the hierarchy's root (no such files), or another controller */
  }
  return 0;
}

/* After a first start: a spawner for these groups, if the host is hybrid and there is none. */
static void spawner_make(const struct spawn_plan *p) {
  if (!spawners_wanted()) return;
  if (p->ncgroups < 2) return;
  int nv1 = 0, nv2 = 0, v2 = -1;
  size_t len = 0;
  for (int i = 0; i < p->ncgroups; i++) {
    int two = on_cgroup2(p->cgroups[i]);
    if (two < 0) return;
    if (two) { nv2++; v2 = i; }
    else if (limited(p->cgroups[i])) return;
    else nv1++;
    len += strlen(p->cgroups[i]) + 1;
  }
  if (nv1 == 0 || nv2 != 1) return;
  char *key = spawn_key(p);
  if (!key) return;
  for (struct spawner *s = spawners; s; s = s->next)
    if (!strcmp(s->key, key)) { free(key); return; }
  struct spawner *s = calloc(1, sizeof *s);
  char **v1 = calloc((size_t)nv1, sizeof *v1);
  char *block = malloc(len); /* the paths outlive this request's buffer: copies, in one block */
  void *stack = spawner_stack_get();
  if (!s || !v1 || !block || !stack) goto fail;
  char *o = block;
  for (int i = 0; i < p->ncgroups; i++) {
    strcpy(o, p->cgroups[i]);
    if (i == v2) { *strrchr(o, '/') = '\0'; s->v2dir = o; }
    else v1[s->nv1++] = o;
    o += strlen(o) + 1;
  }
  s->key = key;
  s->v1 = v1;
  s->block = block;
  s->stack = stack;
  s->v2fd = -1;
  /* tid: set before clone returns, zeroed (and futex-woken) by the kernel when the spawner exits. */
  pid_t pid = clone(spawner_main, (char *)stack + SPAWNER_SLOT,
                    CLONE_VM | CLONE_FILES | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD, s, &s->tid, NULL,
                    &s->tid);
  if (pid < 0) goto fail;
  s->pid = pid;
  s->next = spawners;
  spawners = s;
  return;
fail:
  if (stack) spawner_stack_put(stack);
  free(block);
  free(v1);
  free(key);
  free(s);
}

/* Forks plan through a ready spawner of its groups: the program's pid, or -1 (then fork as usual). */
static pid_t spawner_fork(struct spawn_plan *p, int errfd) {
  if (p->ncgroups < 2 || !spawners_wanted()) return -1;
  char *key = spawn_key(p);
  if (!key) return -1;
  struct spawner *s = spawners;
  while (s && strcmp(s->key, key)) s = s->next;
  free(key);
  if (!s || __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != 1 || !__atomic_load_n(&s->tid, __ATOMIC_ACQUIRE)) return -1;
  int v2fd = open(s->v2dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (v2fd < 0) return -1;
  p->joined = 1;
  s->plan = p;
  s->errfd = errfd;
  s->v2fd = v2fd;
  s->done = 0;
  __atomic_store_n(&s->go, 1, __ATOMIC_RELEASE);
  futex_wake(&s->go);
  /* Wait on done itself (no lost wake-up); a spawner that died instead zeroes tid, seen on the
     next timeout (it only dies when killed: rare, and then this spawn forks as usual). */
  while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) && __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE)) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    syscall(SYS_futex, &s->done, FUTEX_WAIT, 0, &ts, NULL, 0);
  }
  close(v2fd);
  s->v2fd = -1;
  if (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) || s->result <= 0) {
    p->joined = 0;
    return -1;
  }
  return (pid_t)s->result;
}
#else
static int spawner_reaped(pid_t pid) { (void)pid; return 0; }
static int is_spawner(pid_t pid) { (void)pid; return 0; }
static void spawner_make(const struct spawn_plan *p) { (void)p; }
static pid_t spawner_fork(struct spawn_plan *p, int errfd) { (void)p; (void)errfd; return -1; }
#endif

/* ---------- requests ---------- */

static void do_spawn(struct req *r, const char *id) {
  static struct spawn_plan p;
  static char *argv[MAX_FIELDS + 1], *envp[MAX_FIELDS + 8];
  static char listen_pid[32];
  static char names_env[8192 + 16];
  char fdnames[8192], listen_fds[32], notify_env[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
  memset(&p, 0, sizeof p);
  p.uid = p.gid = -1;
  p.status_wfd = -1;
  p.pidfile_ms = 10000;
  const char *tag = NULL;
  int status_pipe[2] = {-1, -1};
  p.argv = argv;
  p.envp = envp;
  int argc = 0, envc = 0, nlisten = 0;
  long notifyfd = -1;
  int sdnotify = 0, devnull = -1, notify_pipe[2] = {-1, -1}, sd_fd = -1;
  char *sd_path = NULL;
  const char *out_key = NULL, *err_key = NULL;
  static char *cgroups[MAX_FIELDS];
  static char *hides[MAX_MOUNTS], *binds[MAX_MOUNTS + 1], *ros[MAX_MOUNTS], *rws[MAX_MOUNTS], *delegates[MAX_MOUNTS];
  static char *wrs[MAX_MOUNTS];
  static char bindopt[MAX_MOUNTS + 1];
  static struct cred creds[MAX_MOUNTS];
  static char creds_env[PATH_MAX + 32];
  p.cgroups = cgroups;
  p.hides = hides;
  p.binds = binds;
  p.ros = ros;
  p.rws = rws;
  p.delegates = delegates;
  p.wrs = wrs;
  p.bindopt = bindopt;
  p.creds = creds;
  fdnames[0] = '\0';
  size_t fdnames_len = 0;
  int err = 0;
  const char *ctx = NULL;

  for (int i = 0; i < r->n; i++) {
    const char *k = r->name[i];
    char *v = r->value[i];
    long n;
    if (!strcmp(k, "arg")) argv[argc++] = v;
    else if (!strcmp(k, "env")) {
      if (!strncmp(v, "PATH=", 5)) p.path = v + 5;
      envp[envc++] = v;
    } else if (!strcmp(k, "cwd")) p.cwd = v;
    else if (!strcmp(k, "uid")) {
      if (parse_int(v, &p.uid) < 0) { err = EINVAL; ctx = "uid"; }
    } else if (!strcmp(k, "gid")) {
      if (parse_int(v, &p.gid) < 0) { err = EINVAL; ctx = "gid"; }
    } else if (!strcmp(k, "cgroup")) cgroups[p.ncgroups++] = v;
    else if (!strcmp(k, "notifyfd")) {
      if (parse_int(v, &notifyfd) < 0 || notifyfd < 3 || notifyfd > 1000) { err = EINVAL; ctx = "notifyfd"; }
    } else if (!strcmp(k, "sdnotify")) sdnotify = !strcmp(v, "1");
    else if (!strcmp(k, "stdout")) out_key = v;
    else if (!strcmp(k, "stderr")) err_key = v;
    else if (!strcmp(k, "netns")) p.netns = !strcmp(v, "1");
    else if (!strcmp(k, "netnspath")) {
      if (v[0] != '/') { err = EINVAL; ctx = "netnspath must be absolute"; continue; }
      p.netnspath = v;
    }
    else if (!strcmp(k, "nonewprivs")) p.nonewprivs = !strcmp(v, "1");
    else if (!strcmp(k, "caps")) {
      char *end;
      errno = 0;
      unsigned long long m = strtoull(v, &end, 10);
      if (errno || *end || !*v) { err = EINVAL; ctx = "caps must be a decimal mask"; continue; }
      p.caps = (uint64_t)m;
      p.hascaps = 1;
    } else if (!strcmp(k, "protect")) {
      p.protect = !strcmp(v, "1");
      if (p.protect) p.mntns = 1;
    } else if (!strcmp(k, "wr")) {
      if (v[0] != '/') { err = EINVAL; ctx = "wr paths must be absolute"; continue; }
      if (p.nwrs >= MAX_MOUNTS) { err = E2BIG; ctx = "too many mounts"; continue; }
      wrs[p.nwrs++] = v;
    }
    else if (!strcmp(k, "tag")) tag = v;
    else if (!strcmp(k, "pidfile")) {
      if (v[0] != '/') { err = EINVAL; ctx = "pidfile must be absolute"; continue; }
      p.pidfile = v;
    } else if (!strcmp(k, "pidfilems")) {
      if (parse_int(v, &p.pidfile_ms) < 0 || p.pidfile_ms < 0) { err = EINVAL; ctx = "pidfilems"; }
    }
    else if (!strcmp(k, "mntns")) p.mntns = !strcmp(v, "1");
    else if (!strcmp(k, "view")) {
      p.view = !strcmp(v, "1");
      if (p.view) p.mntns = 1;
    } else if (!strcmp(k, "rw")) {
      if (v[0] != '/') { err = EINVAL; ctx = "rw paths must be absolute"; continue; }
      if (p.nrws >= MAX_MOUNTS) { err = E2BIG; ctx = "too many mounts"; continue; }
      rws[p.nrws++] = v;
      p.view = p.mntns = 1;
    }
    else if (!strcmp(k, "hide") || !strcmp(k, "bind") || !strcmp(k, "bindopt") || !strcmp(k, "ro") ||
             !strcmp(k, "delegate")) {
      int *count = k[0] == 'h' ? &p.nhides : k[0] == 'b' ? &p.nbinds : k[0] == 'r' ? &p.nros : &p.ndelegates;
      char **list = k[0] == 'h' ? hides : k[0] == 'b' ? binds : k[0] == 'r' ? ros : delegates;
      if (v[0] != '/') { err = EINVAL; ctx = "hide/bind/ro/delegate paths must be absolute"; continue; }
      if (*count >= MAX_MOUNTS) { err = E2BIG; ctx = "too many mounts"; continue; }
      if (k[0] == 'b') bindopt[*count] = !strcmp(k, "bindopt");
      list[(*count)++] = v;
      p.mntns = 1;
    } else if (!strcmp(k, "credsdir")) {
      if (v[0] != '/') { err = EINVAL; ctx = "credsdir must be absolute"; continue; }
      p.credsdir = v;
      p.mntns = 1;
    } else if (!strcmp(k, "cred")) {
      char *colon = strchr(v, ':');
      if (!colon || colon == v || memchr(v, '/', (size_t)(colon - v)) || !strncmp(v, ".", 1)) {
        err = EINVAL; ctx = "cred must be NAME:hex with a plain file name"; continue;
      }
      if (p.ncreds >= MAX_MOUNTS) { err = E2BIG; ctx = "too many credentials"; continue; }
      *colon = '\0';
      char *hex = colon + 1, *out = hex;
      size_t hl = strlen(hex);
      if (hl % 2) { err = EINVAL; ctx = "cred value must be hex"; continue; }
      int bad = 0;
      for (size_t j = 0; j < hl; j += 2) {
        char pair[3] = {hex[j], hex[j + 1], 0}, *end;
        long b = strtol(pair, &end, 16);
        if (*end || !isxdigit((unsigned char)pair[0])) { bad = 1; break; }
        out[j / 2] = (char)b;
      }
      if (bad) { err = EINVAL; ctx = "cred value must be hex"; continue; }
      creds[p.ncreds].name = v;
      creds[p.ncreds].data = out;
      creds[p.ncreds].len = hl / 2;
      p.ncreds++;
      p.mntns = 1;
    }
    else if (!strcmp(k, "listen")) {
      char *colon = strchr(v, ':');
      if (colon) *colon = '\0';
      struct handle *h = (parse_int(v, &n) == 0) ? handle_find(n) : NULL;
      if (!h) { err = EBADF; ctx = "listen handle"; continue; }
      const char *name = colon ? colon + 1 : "unknown";
      size_t nl = strlen(name);
      if (fdnames_len + nl + 2 >= sizeof fdnames) { err = E2BIG; ctx = "listen names"; continue; }
      if (nlisten > 0) fdnames[fdnames_len++] = ':';
      memcpy(fdnames + fdnames_len, name, nl + 1);
      fdnames_len += nl;
      p.src[p.nfds] = h->fd;
      p.dst[p.nfds] = 3 + nlisten;
      p.nfds++;
      nlisten++;
    }
  }
  if (!err && argc == 0) { err = EINVAL; ctx = "argv is empty"; }
  if (!err && p.netns && p.netnspath) { err = EINVAL; ctx = "netns=1 and netnspath= exclude each other"; }
  if (!err && p.ncreds > 0 && !p.credsdir) { err = EINVAL; ctx = "cred= needs credsdir="; }
  if (!err && p.credsdir) {
    snprintf(creds_env, sizeof creds_env, "CREDENTIALS_DIRECTORY=%s", p.credsdir);
    envp[envc++] = creds_env;
  }
  if (!err && notifyfd >= 0 && notifyfd < 3 + nlisten) { err = EINVAL; ctx = "notifyfd collides with listen fds"; }
  argv[argc] = NULL;

  if (!err) {
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) { err = errno; ctx = "open /dev/null"; }
  }
  struct stream *so = NULL, *se = NULL;
  if (!err && out_key && !(so = stream_get(out_key))) { err = errno; ctx = "stdout pipe"; }
  if (!err && err_key && !(se = stream_get(err_key))) { err = errno; ctx = "stderr pipe"; }
  if (!err) {
    p.src[p.nfds] = devnull; p.dst[p.nfds++] = 0;
    p.src[p.nfds] = so ? so->wfd : devnull; p.dst[p.nfds++] = 1;
    p.src[p.nfds] = se ? se->wfd : devnull; p.dst[p.nfds++] = 2;
  }
  if (!err && notifyfd >= 0) {
    if (pipe2(notify_pipe, O_CLOEXEC) < 0) { err = errno; ctx = "notify pipe"; }
    else {
      fcntl(notify_pipe[0], F_SETFL, O_NONBLOCK);
      p.src[p.nfds] = notify_pipe[1];
      p.dst[p.nfds++] = (int)notifyfd;
    }
  }
  if (!err && sdnotify) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    int len = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/n%lu.sock", runtime_dir, ++sd_seq);
    if (len >= (int)sizeof sa.sun_path) { err = ENAMETOOLONG; ctx = "sd_notify socket path"; }
    else if ((sd_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) { err = errno; ctx = "sd_notify socket"; }
    else {
      unlink(sa.sun_path);
      if (bind(sd_fd, (struct sockaddr *)&sa, sizeof sa) < 0) { err = errno; ctx = "bind sd_notify socket"; }
      else {
        /* The child may drop to another uid and must still be able to send. */
        chmod(sa.sun_path, 0666);
        sd_path = strdup(sa.sun_path);
        p.sd_path = sd_path;
        snprintf(notify_env, sizeof notify_env, "NOTIFY_SOCKET=%s", sa.sun_path);
        envp[envc++] = notify_env;
      }
    }
  }
  if (nlisten > 0) {
    snprintf(listen_fds, sizeof listen_fds, "LISTEN_FDS=%d", nlisten);
    envp[envc++] = listen_fds;
    envp[envc++] = listen_pid;
    p.listen_pid = listen_pid;
    snprintf(names_env, sizeof names_env, "LISTEN_FDNAMES=%s", fdnames);
    envp[envc++] = names_env;
  }
  envp[envc] = NULL;

  int confined = p.netns || p.netnspath || p.nonewprivs || p.mntns;
  if (!err && p.pidfile && !confined) { err = EINVAL; ctx = "pidfile needs a confined child (its own PID namespace)"; }
  if (!err && confined) {
    if (pipe2(status_pipe, O_CLOEXEC) < 0) { err = errno; ctx = "status pipe"; }
    else {
      fcntl(status_pipe[0], F_SETFL, O_NONBLOCK);
      p.status_wfd = status_pipe[1];
    }
  }

  int errpipe[2] = {-1, -1};
  if (!err && pipe2(errpipe, O_CLOEXEC) < 0) { err = errno; ctx = "pipe"; }

  pid_t pid = -1;
  uint64_t t = 0;
  int by_spawner = 0;
  if (!err) {
    t = now_ns();
    pid = spawner_fork(&p, errpipe[1]);
    by_spawner = pid > 0;
    if (!by_spawner) pid = fork();
    if (pid < 0) { err = errno; ctx = "fork"; }
    if (pid == 0) {
      close(errpipe[0]);
      child_exec(&p, errpipe[1]);
    }
  }
  if (errpipe[1] >= 0) close(errpipe[1]);
  if (notify_pipe[1] >= 0) close(notify_pipe[1]);
  if (status_pipe[1] >= 0) close(status_pipe[1]);
  if (devnull >= 0) close(devnull);
  char ctxbuf[300];
  if (pid > 0) {
    /* Exec closes the pipe (O_CLOEXEC): EOF means the program runs; a report means it never did. */
    struct child_report rep;
    ssize_t n;
    do n = read(errpipe[0], &rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      waitpid(pid, NULL, 0);
      rep.what[sizeof rep.what - 1] = '\0';
      snprintf(ctxbuf, sizeof ctxbuf, "%s", rep.what);
      err = rep.err;
      ctx = ctxbuf;
      pid = -1;
    }
  }
  if (errpipe[0] >= 0) close(errpipe[0]);
  if (err) {
    if (notify_pipe[0] >= 0) close(notify_pipe[0]);
    if (status_pipe[0] >= 0) close(status_pipe[0]);
    if (sd_fd >= 0) close(sd_fd);
    if (sd_path) {
      unlink(sd_path);
      free(sd_path);
    }
    reply_err(id, err, ctx);
    return;
  }
  struct child *c = calloc(1, sizeof *c);
  c->pid = pid;
  c->notify_fd = notify_pipe[0];
  c->sd_fd = sd_fd;
  c->sd_path = sd_path;
  c->status_fd = status_pipe[0];
  c->confined = confined;
  c->tag = tag ? strdup(tag) : NULL;
  c->cgroup = p.ncgroups > 0 ? strdup(p.cgroups[0]) : NULL;
  /* The program has exec'd (the error pipe closed): a confined one is pid 2 of its namespace. */
  c->main = confined ? host_pid_below(pid, 2, 0) : pid;
  c->next = children;
  children = c;
  /* Off the critical path: this one paid the cgroup writes, its restarts will not. */
  if (!by_spawner) spawner_make(&p);
  frame_begin('R');
  field("id", id);
  field("ok", "1");
  fieldf("pid", "%d", (int)pid);
  if (c->main > 0) fieldf("main", "%d", (int)c->main);
  fieldf("t", "%llu", (unsigned long long)t);
  frame_end();
}

static void do_listen(struct req *r, const char *id) {
  const char *tcp = get(r, "tcp"), *upath = get(r, "unix");
  long backlog = 128;
  if (get(r, "backlog") && parse_int(get(r, "backlog"), &backlog) < 0) { reply_err(id, EINVAL, "backlog"); return; }
  int fd = -1, port = -1;
  if (tcp) {
    char host[256];
    const char *colon = strrchr(tcp, ':');
    if (!colon || (size_t)(colon - tcp) >= sizeof host) { reply_err(id, EINVAL, "tcp address must be host:port"); return; }
    size_t hl = (size_t)(colon - tcp);
    memcpy(host, tcp, hl);
    host[hl] = '\0';
    char *h = host;
    if (h[0] == '[' && hl > 1 && h[hl - 1] == ']') {
      h[hl - 1] = '\0';
      h++;
    }
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gerr = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai);
    if (gerr) {
      frame_begin('R');
      field("id", id);
      field("err", gai_strerror(gerr));
      field("errno", "22");
      frame_end();
      return;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, (int)backlog) < 0) {
      int e = errno;
      freeaddrinfo(ai);
      if (fd >= 0) close(fd);
      { reply_err(id, e, tcp); return; }
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
      port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
  } else if (upath) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(upath) >= sizeof sa.sun_path) { reply_err(id, ENAMETOOLONG, upath); return; }
    strcpy(sa.sun_path, upath);
    struct stat st;
    /* A stale socket from an earlier run would make bind fail; anything else is not ours. */
    if (lstat(upath, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(upath);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, (int)backlog) < 0) {
      int e = errno;
      if (fd >= 0) close(fd);
      { reply_err(id, e, upath); return; }
    }
  } else {
    { reply_err(id, EINVAL, "listen needs tcp= or unix="); return; }
  }
  struct handle *hd = calloc(1, sizeof *hd);
  hd->id = next_handle++;
  hd->fd = fd;
  hd->unix_path = upath ? strdup(upath) : NULL;
  hd->next = handles;
  handles = hd;
  frame_begin('R');
  field("id", id);
  field("ok", "1");
  fieldf("handle", "%d", hd->id);
  if (port >= 0) fieldf("port", "%d", port);
  frame_end();
}

#define NSFS_MAGIC_NUMBER 0x6e736673

static int is_nsfs(const char *path) {
  struct statfs sf;
  return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == NSFS_MAGIC_NUMBER;
}

/* 'N': a named network, a network namespace held by a bind mount at path= (see the protocol). */
static void do_netns(struct req *r, const char *id) {
  const char *path = get(r, "path"), *rm = get(r, "remove");
  if (!path || path[0] != '/') { reply_err(id, EINVAL, "netns needs an absolute path="); return; }
  if (rm && !strcmp(rm, "1")) {
    for (int i = 0; i < 64 && is_nsfs(path); i++)
      if (umount2(path, MNT_DETACH) < 0) { reply_err(id, errno, "netns: unmount"); return; }
    if (unlink(path) < 0 && errno != ENOENT) { reply_err(id, errno, "netns: remove the mount point"); return; }
    reply_ok(id);
    return;
  }
  int existed = is_nsfs(path);
  if (!existed) {
    int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0) { reply_err(id, errno, "netns: create the mount point"); return; }
    close(fd);
    /* The launcher is single-threaded: it steps into a fresh namespace, brings lo up there, pins
       it with a bind mount of its own ns file, and steps back. */
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) { reply_err(id, errno, "netns: open /proc/self/ns/net"); return; }
    if (unshare(CLONE_NEWNET) < 0) {
      int e = errno;
      close(self);
      unlink(path);
      reply_err(id, e, "netns: unshare(CLONE_NEWNET)");
      return;
    }
    const char *step = lo_up();
    int e = errno;
    if (!step && mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0) {
      e = errno;
      step = "netns: bind mount the namespace";
    }
    if (setns(self, CLONE_NEWNET) < 0) die("netns: setns back to the launcher's network namespace");
    close(self);
    if (step) {
      unlink(path);
      reply_err(id, e, step);
      return;
    }
  }
  frame_begin('R');
  field("id", id);
  field("ok", "1");
  field("existed", existed ? "1" : "0");
  frame_end();
}

/* 'K' with scope=: "all" signals every process of the child (its PID namespace through init, or
   every pid in its cgroup), "main" its main process only. Returns 0 or an errno. */
static int signal_scoped(pid_t pid, int sig, const char *scope) {
  int all = !strcmp(scope, "all");
  if (!all && strcmp(scope, "main")) return EINVAL;
  struct child *c = children;
  while (c && c->pid != pid) c = c->next;
  if (!c) return ESRCH;
  if (c->confined) {
    union sigval v = {.sival_int = all ? SCOPE_ALL : SCOPE_MAIN};
    return sigqueue(pid, sig, v) < 0 ? errno : 0;
  }
  if (!all) return kill(c->main > 0 ? c->main : pid, sig) < 0 ? errno : 0;
  int fd = c->cgroup ? open(c->cgroup, O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) return kill(-pid, sig) < 0 ? errno : 0;
  char data[65536];
  ssize_t n = read(fd, data, sizeof data - 1);
  close(fd);
  data[n > 0 ? n : 0] = '\0';
  for (char *s = data, *end; *s; s = end) {
    long p = strtol(s, &end, 10);
    if (end == s) break;
    if (p > 0 && !is_spawner((pid_t)p)) kill((pid_t)p, sig);
  }
  return 0;
}

static void dispatch(struct req *r) {
  const char *id = get(r, "id");
  if (!id) id = "0";
  long n, sig;
  switch (r->type) {
  case 'S':
    do_spawn(r, id);
    return;
  case 'K': {
    if (parse_int(get(r, "pid"), &n) < 0 || n <= 0 || parse_int(get(r, "sig"), &sig) < 0)
      { reply_err(id, EINVAL, "kill needs pid= and sig="); return; }
    const char *g = get(r, "group"), *scope = get(r, "scope");
    if (scope) {
      int e = signal_scoped((pid_t)n, (int)sig, scope);
      if (e) { reply_err(id, e, "kill"); return; }
      reply_ok(id);
      return;
    }
    if (kill(g && !strcmp(g, "1") ? -(pid_t)n : (pid_t)n, (int)sig) < 0) { reply_err(id, errno, "kill"); return; }
    { reply_ok(id); return; }
  }
  case 'L':
    do_listen(r, id);
    return;
  case 'N':
    do_netns(r, id);
    return;
  case 'C': {
    struct handle **pp = &handles;
    if (parse_int(get(r, "handle"), &n) < 0) { reply_err(id, EINVAL, "handle"); return; }
    while (*pp && (*pp)->id != n) pp = &(*pp)->next;
    if (!*pp) { reply_err(id, EBADF, "no such listen handle"); return; }
    struct handle *h = *pp;
    *pp = h->next;
    close(h->fd);
    if (h->unix_path) {
      unlink(h->unix_path);
      free(h->unix_path);
    }
    free(h);
    { reply_ok(id); return; }
  }
  case 'c': {
    const char *key = get(r, "key");
    for (struct stream *s = streams; key && s; s = s->next)
      if (!strcmp(s->key, key)) {
        stream_drain(s);
        stream_close(s);
        { reply_ok(id); return; }
      }
    { reply_err(id, ENOENT, "no such stream"); return; }
  }
  case 'l':
    frame_begin('R');
    field("id", id);
    field("ok", "1");
    for (struct child *c = children; c; c = c->next) {
      fieldf("child", "%d", (int)c->pid);
      if (c->tag) {
        char tagged[PATH_MAX + 32];
        snprintf(tagged, sizeof tagged, "%d:%s", (int)c->pid, c->tag);
        field("tag", tagged);
      }
      if (c->main > 0) {
        char pair[64];
        snprintf(pair, sizeof pair, "%d:%d", (int)c->pid, (int)c->main);
        field("main", pair);
      }
    }
    for (struct stream *s = streams; s; s = s->next) field("stream", s->key);
    for (struct handle *h = handles; h; h = h->next) fieldf("handle", "%d", h->id);
    frame_end();
    return;
  case 'P': {
    int nc = 0;
    for (struct child *c = children; c; c = c->next) nc++;
    frame_begin('R');
    field("id", id);
    field("ok", "1");
    fieldf("pid", "%d", (int)getpid());
    fieldf("children", "%d", nc);
    fieldf("t", "%llu", (unsigned long long)now_ns());
    frame_end();
    return;
  }
  case 'Q':
    reply_ok(id);
    if (cfd >= 0) {
      fcntl(cfd, F_SETFL, 0);
      flush_out();
    }
    kill_all_and_exit(0);
    return;
  default:
    { reply_err(id, ENOSYS, "unknown request type"); return; }
  }
}

static void client_gone(void) {
  close(cfd);
  cfd = -1;
  inbuf.len = 0;
  outbuf.len = 0; /* may hold half a frame meant for the old client */
  if (lfd < 0) kill_all_and_exit(0);
}

static void client_read(void) {
  static struct req r;
  char tmp[65536];
  ssize_t n = read(cfd, tmp, sizeof tmp);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) { client_gone(); return; }
  buf_put(&inbuf, tmp, (size_t)n);
  size_t off = 0;
  while (inbuf.len - off >= 4) {
    unsigned char *h = (unsigned char *)inbuf.p + off;
    uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (len == 0 || len > MAX_FRAME) {
      fprintf(stderr, "captree-launcher: bad frame length %u\n", len);
      { client_gone(); return; }
    }
    if (inbuf.len - off - 4 < len) break;
    char *payload = inbuf.p + off + 4;
    if (len > 1 && payload[len - 1] != '\0') {
      fprintf(stderr, "captree-launcher: unterminated field\n");
      { client_gone(); return; }
    }
    r.type = payload[0];
    r.n = 0;
    for (char *f = payload + 1, *end = payload + len; f < end && r.n < MAX_FIELDS;) {
      size_t fl = strlen(f);
      char *eq = strchr(f, '=');
      if (eq) {
        *eq = '\0';
        r.name[r.n] = f;
        r.value[r.n] = eq + 1;
        r.n++;
      }
      f += fl + 1;
    }
    dispatch(&r);
    if (cfd < 0) return; /* dispatch dropped the client */
    off += 4 + len;
  }
  buf_consume(&inbuf, off);
}

static void hello(void) {
  frame_begin('h');
  fieldf("pid", "%d", (int)getpid());
  field("version", "1");
  frame_end();
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--runtime-dir") && i + 1 < argc) runtime_dir = argv[++i];
    else if (!strcmp(argv[i], "--socket") && i + 1 < argc) socket_path = argv[++i];
    else if (!strcmp(argv[i], "--remove-runtime-dir")) remove_runtime_dir = 1;
    else {
      fprintf(stderr, "usage: %s --runtime-dir DIR [--socket PATH] [--remove-runtime-dir]\n", argv[0]);
      return 2;
    }
  }
  if (!runtime_dir) runtime_dir = "/tmp";
  signal(SIGPIPE, SIG_IGN);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) die("PR_SET_CHILD_SUBREAPER");

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
  sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) die("signalfd");

  cfd = 3;
  if (fcntl(cfd, F_SETFD, FD_CLOEXEC) < 0) die("fd 3 (the client socket) is not open");
  fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);

  if (socket_path) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(socket_path) >= sizeof sa.sun_path) {
      errno = ENAMETOOLONG;
      die(socket_path);
    }
    strcpy(sa.sun_path, socket_path);
    struct stat st;
    if (lstat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(socket_path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(077); /* the socket is full authority over the children: owner only */
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 8) < 0) die(socket_path);
    umask(old);
  }
  hello();

  struct pollfd *pfd = NULL;
  void **owner = NULL;
  char *kind = NULL;
  size_t cap = 0;
  for (;;) {
    size_t n = 0, need = 3;
    for (struct child *c = children; c; c = c->next) need += 3;
    for (struct stream *s = streams; s; s = s->next) need++;
    if (need > cap) {
      cap = need * 2;
      pfd = realloc(pfd, cap * sizeof *pfd);
      owner = realloc(owner, cap * sizeof *owner);
      kind = realloc(kind, cap);
      if (!pfd || !owner || !kind) die("realloc");
    }
#define ADD(fd_, ev_, kind_, owner_) \
  (pfd[n].fd = (fd_), pfd[n].events = (ev_), pfd[n].revents = 0, kind[n] = (kind_), owner[n] = (owner_), n++)
    int readable_streams = cfd >= 0 && outbuf.len <= OUT_HIGH;
    for (struct stream *s = streams; s && readable_streams; s = s->next) ADD(s->rfd, POLLIN, 's', s);
    for (struct child *c = children; c; c = c->next) {
      if (c->notify_fd >= 0) ADD(c->notify_fd, POLLIN, 'r', c);
      if (c->sd_fd >= 0) ADD(c->sd_fd, POLLIN, 'n', c);
      if (c->status_fd >= 0) ADD(c->status_fd, POLLIN, 'm', c);
    }
    if (cfd >= 0) ADD(cfd, POLLIN | (outbuf.len ? POLLOUT : 0), 'c', NULL);
    if (lfd >= 0) ADD(lfd, POLLIN, 'a', NULL);
    ADD(sigfd, POLLIN, 'x', NULL);
    if (poll(pfd, n, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* Order matters: client requests may free streams/handles and reaping frees children, so
       both run after every entry that points at one of those. */
    for (size_t i = 0; i < n; i++) {
      if (!pfd[i].revents) continue;
      if (kind[i] == 's') stream_pump(owner[i], 65536, 0);
      else if (kind[i] == 'r') notify_pump(owner[i]);
      else if (kind[i] == 'n') sd_pump(owner[i]);
      else if (kind[i] == 'm') status_pump(owner[i]);
    }
    for (size_t i = 0; i < n; i++) {
      if (!pfd[i].revents) continue;
      if (kind[i] == 'c') {
        if (pfd[i].revents & POLLOUT) flush_out();
        if (cfd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) client_read();
      } else if (kind[i] == 'a') {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
          /* The newest client wins: a restarted supervisor replaces a dead one. */
          if (cfd >= 0) {
            close(cfd);
            outbuf.len = 0;
            inbuf.len = 0;
          }
          cfd = fd;
          hello();
        }
      } else if (kind[i] == 'x') {
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof si) == sizeof si) {
        }
        reap();
      }
    }
  }
}
