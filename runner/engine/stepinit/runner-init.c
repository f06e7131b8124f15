/*
 * runner-init: PID 1 of every runner step container.
 *
 * Why C, in a Python project: this program runs inside a hardened container whose image
 * holds only the job's allowed tools (often just `sh`), so it cannot need an interpreter
 * or a shared library: it is one static executable, as tini (Docker's init) and Tekton's
 * entrypoint are. It is small on purpose: every line runs before the step, with the
 * step's privileges, and must add nothing to them.
 *
 * What it does, in order (runner's side is runner/engine/stepinit/contract.py):
 *   1. with --env-stdin, reads the step's environment from stdin ("RNIE", a 32-bit
 *      big-endian length, then NAME=VALUE entries each ended by a NUL), sent by runner
 *      over the engine's attach stream, so that no value (secrets included) is ever in
 *      the container's configuration on the host's disk; then reopens stdin on /dev/null;
 *   2. reads /proc/self/mountinfo and refuses (exit 122, one line on stderr) when a mount
 *      is writable by this user (access(W_OK), as the kernel decides) and not noexec,
 *      except the mount points named by --exec-mount: SPEC 6 checked before the step can
 *      execute anything, on every engine, never raced;
 *   3. forks the step (execvp of the words after "--", with the received environment
 *      over the image's), forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it,
 *      reaps every zombie, and exits with the step's status (128+N when signal N killed
 *      it), killing whatever the step left behind;
 *   4. with --deadline S, kills every process of the container (kill(-1, SIGKILL)) and
 *      exits 137 once S seconds have passed since it started, so that a step outlives
 *      a killed runner by its timeout and a grace at most;
 *   5. with --trailer (and --env-stdin), takes the reserved entry TRAILER_ENTRY=<nonce>
 *      out of the environment it received, keeps its original stdin (the attach
 *      connection) on a close-on-exec descriptor, and makes itself non-dumpable (so the
 *      step, its child with the same uid, cannot read the nonce from /proc/1/mem).
 *      Whenever it exits after that (the step's status, a refusal, the deadline), it first
 *      kills and reaps everything else (so nothing else holds stdout or stderr), then
 *      writes TRAILER_PREFIX and the nonce last on stdout and on stderr, and waits for
 *      runner's acknowledgement (a byte or end of file on that stdin, ACK_WAIT_MS at
 *      most): the container is still alive while the engine delivers the last bytes, and
 *      runner knows a stream that does not end with the trailer is incomplete.
 *
 * It adds no capability to a step that runs it by hand: it opens no file but
 * /proc/self/mountinfo (which it only reports mount points of) and /dev/null, runs only
 * the command it is given (which the step could run itself), and kills only processes
 * the step could kill itself (kill(-1) only as PID 1, i.e. inside its own PID namespace).
 *
 * Exit codes: the step's; 122 refused (a writable, executable mount); 125 runner-init
 * could not set the step up (bad arguments, no or malformed environment); 126/127 the
 * command cannot be executed / was not found; 137 the deadline passed.
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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_REFUSED 122
#define EXIT_SETUP 125
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND 127
#define EXIT_DEADLINE (128 + SIGKILL)
#define ENV_MAGIC "RNIE"
#define ENV_MAX (4u * 1024u * 1024u)
#define MOUNTINFO_MAX (4u * 1024u * 1024u)
#define MAX_EXEC_MOUNTS 16
#define TRAILER_ENTRY "runner-init-trailer"
#define TRAILER_PREFIX "\0runner-init-end:"
#define NONCE_HEX 32
#define ACK_WAIT_MS 5000
#define REAP_WAIT_MS 5000

extern char **environ;

static double deadline_s = 0; /* 0: none */
static struct timespec started;
static int trailer_wanted = 0;                      /* --trailer */
static char trailer[sizeof TRAILER_PREFIX + NONCE_HEX]; /* prefix (with its NUL) + nonce */
static size_t trailer_size = 0;                     /* 0: no nonce received (yet) */
static int ack_fd = -1;                             /* the original stdin, for the ack */

static double elapsed(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - started.tv_sec) + (double)(now.tv_nsec - started.tv_nsec) / 1e9;
}

/* milliseconds left until `until` (seconds since start), 0 when it passed */
static int ms_until(double until) {
    double left = until - elapsed();
    return left <= 0 ? 0 : (int)(left * 1000.0) + 1;
}

/* with --trailer, once nothing but runner-init is left: every child reaped (SIGKILLed
   processes die at once; one stuck in the kernel is waited for REAP_WAIT_MS at most) */
static void reap_all(void) {
    sigset_t child;
    sigemptyset(&child);
    sigaddset(&child, SIGCHLD);
    double until = elapsed() + REAP_WAIT_MS / 1000.0;
    for (;;) {
        pid_t reaped = waitpid(-1, NULL, WNOHANG);
        if (reaped > 0 || (reaped < 0 && errno == EINTR))
            continue;
        if (reaped < 0)
            return; /* ECHILD: none left */
        int left = ms_until(until);
        if (left == 0)
            return;
        struct timespec wait = {.tv_sec = left / 1000, .tv_nsec = (long)(left % 1000) * 1000000L};
        sigtimedwait(&child, NULL, &wait); /* SIGCHLD is blocked: taken here */
    }
}

/* write all of `data` to `fd` before `until`; what cannot be written is left unwritten */
static void write_before(int fd, const char *data, size_t size, double until) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return; /* closed: there is no stream to end */
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n > 0) {
            data += n;
            size -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return;
        struct pollfd out = {.fd = fd, .events = POLLOUT};
        int left = ms_until(until);
        if (left == 0 || poll(&out, 1, left) <= 0)
            return;
    }
}

/* exit with `code`: with --trailer and its nonce received, end both streams with the
   trailer first and wait (ACK_WAIT_MS at most) for runner to say it has read them */
__attribute__((noreturn)) static void finish(int code) {
    if (trailer_size > 0) {
        signal(SIGPIPE, SIG_IGN); /* a closed stream: EPIPE, never a signal */
        double until = elapsed() + ACK_WAIT_MS / 1000.0;
        write_before(1, trailer, trailer_size, until);
        write_before(2, trailer, trailer_size, until);
        while (ack_fd >= 0) {
            struct pollfd in = {.fd = ack_fd, .events = POLLIN};
            int ready = poll(&in, 1, ms_until(until));
            if (ready < 0 && errno == EINTR)
                continue;
            if (ready > 0) {
                char byte;
                ssize_t ignored = read(ack_fd, &byte, 1); /* the ack, or end of file */
                (void)ignored;
            }
            break;
        }
    }
    exit(code);
}

__attribute__((noreturn)) static void fail(int code, const char *what) {
    fprintf(stderr, "runner-init: %s\n", what);
    finish(code);
}

/* milliseconds left before the deadline (-1: no deadline; 0: passed) */
static int remaining_ms(void) {
    if (deadline_s <= 0)
        return -1;
    double left = deadline_s - elapsed();
    if (left <= 0)
        return 0;
    return left > 3600.0 ? 3600 * 1000 : (int)(left * 1000.0) + 1;
}

static void deadline_passed(void) {
    if (getpid() == 1)
        kill(-1, SIGKILL); /* every other process of this PID namespace */
    if (trailer_size > 0)
        reap_all();
    fprintf(stderr, "runner-init: the step's deadline (%.0f s) passed: its processes were killed\n",
            deadline_s);
    finish(EXIT_DEADLINE);
}

/* the trailer's nonce, from the reserved entry's value: NONCE_HEX lowercase hex digits */
static void take_nonce(const char *value) {
    size_t length = strlen(value);
    if (length != NONCE_HEX || strspn(value, "0123456789abcdef") != NONCE_HEX)
        fail(EXIT_SETUP, "the trailer nonce received is malformed");
    memcpy(trailer, TRAILER_PREFIX, sizeof TRAILER_PREFIX - 1);
    memcpy(trailer + sizeof TRAILER_PREFIX - 1, value, NONCE_HEX);
    trailer_size = sizeof TRAILER_PREFIX - 1 + NONCE_HEX;
}

/* read exactly n bytes from stdin before the deadline; 0 on success */
static int read_exactly(unsigned char *buffer, size_t n) {
    size_t got = 0;
    while (got < n) {
        struct pollfd in = {.fd = 0, .events = POLLIN};
        int ready = poll(&in, 1, remaining_ms());
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0)
            deadline_passed();
        if (ready < 0)
            return -1;
        ssize_t r = read(0, buffer + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* the image's environment with the received entries over it */
static char **receive_environment(void) {
    unsigned char header[8];
    if (read_exactly(header, sizeof header) != 0 || memcmp(header, ENV_MAGIC, 4) != 0)
        fail(EXIT_SETUP, "no environment was received on stdin");
    uint32_t size = ((uint32_t)header[4] << 24) | ((uint32_t)header[5] << 16) |
                    ((uint32_t)header[6] << 8) | (uint32_t)header[7];
    if (size > ENV_MAX)
        fail(EXIT_SETUP, "the environment received is too large");
    char *blob = malloc((size_t)size + 1);
    if (blob == NULL)
        fail(EXIT_SETUP, "out of memory");
    if (read_exactly((unsigned char *)blob, size) != 0)
        fail(EXIT_SETUP, "the environment received was cut short");
    if (size > 0 && blob[size - 1] != '\0')
        fail(EXIT_SETUP, "the environment received is malformed");
    blob[size] = '\0';

    size_t inherited = 0, received = 0;
    while (environ != NULL && environ[inherited] != NULL)
        inherited++;
    for (size_t at = 0; at < size; at += strlen(blob + at) + 1)
        received++;
    char **env = calloc(inherited + received + 1, sizeof *env);
    if (env == NULL)
        fail(EXIT_SETUP, "out of memory");
    size_t count = 0;
    for (size_t i = 0; i < inherited; i++)
        env[count++] = environ[i];
    const char *nonce = NULL;
    for (size_t at = 0; at < size; at += strlen(blob + at) + 1) {
        char *entry = blob + at;
        char *equals = strchr(entry, '=');
        if (equals == NULL || equals == entry)
            fail(EXIT_SETUP, "the environment received is malformed");
        size_t name = (size_t)(equals - entry) + 1; /* with the '=' */
        if (trailer_wanted && name == sizeof TRAILER_ENTRY &&
            strncmp(entry, TRAILER_ENTRY "=", name) == 0) {
            nonce = equals + 1; /* runner-init's own: never the step's */
            continue;
        }
        size_t i = 0;
        while (i < count && strncmp(env[i], entry, name) != 0)
            i++;
        env[i == count ? count++ : i] = entry;
    }
    env[count] = NULL;

    if (trailer_wanted) {
        if (nonce == NULL)
            fail(EXIT_SETUP, "no trailer nonce was received on stdin");
        ack_fd = fcntl(0, F_DUPFD_CLOEXEC, 3); /* the step never gets it */
        if (ack_fd < 0)
            fail(EXIT_SETUP, "cannot keep stdin for runner's acknowledgement");
        take_nonce(nonce);
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0)
        fail(EXIT_SETUP, "cannot reopen stdin on /dev/null");
    if (null != 0)
        close(null);
    return env;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *text) {
    char *out = text;
    for (char *in = text; *in != '\0'; in++) {
        if (in[0] == '\\' && in[1] >= '0' && in[1] <= '7' && in[2] >= '0' && in[2] <= '7' &&
            in[3] >= '0' && in[3] <= '7') {
            *out++ = (char)(((in[1] - '0') << 6) | ((in[2] - '0') << 3) | (in[3] - '0'));
            in += 3;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
}

static int has_option(const char *options, const char *wanted) {
    size_t length = strlen(wanted);
    for (const char *at = options; at != NULL && *at != '\0';) {
        const char *comma = strchr(at, ',');
        size_t size = comma != NULL ? (size_t)(comma - at) : strlen(at);
        if (size == length && strncmp(at, wanted, length) == 0)
            return 1;
        at = comma != NULL ? comma + 1 : NULL;
    }
    return 0;
}

/* SPEC 6: no mount both writable by this user and executable, but the granted ones */
static void check_mounts(char *const *exec_mounts, int exec_count) {
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail(EXIT_SETUP, "cannot read /proc/self/mountinfo");
    size_t capacity = 65536, size = 0;
    char *text = malloc(capacity);
    for (;;) {
        if (text == NULL)
            fail(EXIT_SETUP, "out of memory");
        ssize_t r = read(fd, text + size, capacity - size - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail(EXIT_SETUP, "cannot read /proc/self/mountinfo");
        if (r == 0)
            break;
        size += (size_t)r;
        if (size + 1 == capacity) {
            if (capacity >= MOUNTINFO_MAX)
                fail(EXIT_SETUP, "/proc/self/mountinfo is too large");
            capacity *= 2;
            text = realloc(text, capacity);
        }
    }
    close(fd);
    text[size] = '\0';

    char report[8192];
    size_t used = 0;
    int found = 0;
    uid_t uid = getuid();
    char *save_line = NULL;
    for (char *line = strtok_r(text, "\n", &save_line); line != NULL;
         line = strtok_r(NULL, "\n", &save_line)) {
        char *fields[64];
        int count = 0;
        char *save_field = NULL;
        for (char *field = strtok_r(line, " ", &save_field); field != NULL && count < 64;
             field = strtok_r(NULL, " ", &save_field))
            fields[count++] = field;
        int dash = 6;
        while (dash < count && strcmp(fields[dash], "-") != 0)
            dash++;
        if (count < 7 || dash >= count)
            continue;
        char *point = fields[4];
        const char *options = fields[5]; /* per-mount options */
        const char *fstype = dash + 1 < count ? fields[dash + 1] : "";
        if (has_option(options, "ro") || has_option(options, "noexec"))
            continue;
        unescape(point);
        int granted = 0;
        for (int i = 0; i < exec_count; i++)
            granted |= strcmp(point, exec_mounts[i]) == 0;
        if (granted)
            continue;
        struct stat info;
        if (stat(point, &info) != 0)
            continue; /* hidden or gone: nothing the step can reach there */
        if (!S_ISDIR(info.st_mode) && !S_ISREG(info.st_mode))
            continue; /* a device (masked /proc files are /dev/null): nothing to run */
        if (access(point, W_OK) != 0)
            continue;
        int n = snprintf(report + used, sizeof report - used,
                         "%s%s (%s) is writable by uid %u and not noexec", found ? "; " : "",
                         point, fstype, (unsigned)uid);
        if (n > 0 && (size_t)n < sizeof report - used)
            used += (size_t)n;
        found++;
    }
    free(text);
    if (found) {
        fprintf(stderr, "runner-init: refused: %s\n", report);
        finish(EXIT_REFUSED);
    }
}

static void usage(void) {
    fail(EXIT_SETUP, "usage: runner-init [--env-stdin [--trailer]] [--deadline SECONDS] "
                     "[--exec-mount PATH]... -- COMMAND [ARG]...");
}

int main(int argc, char **argv) {
    clock_gettime(CLOCK_MONOTONIC, &started);
    int env_stdin = 0, exec_count = 0, at = 1;
    char *exec_mounts[MAX_EXEC_MOUNTS];
    for (; at < argc && strcmp(argv[at], "--") != 0; at++) {
        if (strcmp(argv[at], "--env-stdin") == 0) {
            env_stdin = 1;
        } else if (strcmp(argv[at], "--trailer") == 0) {
            trailer_wanted = 1;
        } else if (strcmp(argv[at], "--deadline") == 0 && at + 1 < argc) {
            char *end = NULL;
            deadline_s = strtod(argv[++at], &end);
            if (end == argv[at] || *end != '\0' || !(deadline_s > 0) || deadline_s > 1e9)
                usage();
        } else if (strcmp(argv[at], "--exec-mount") == 0 && at + 1 < argc &&
                   exec_count < MAX_EXEC_MOUNTS) {
            exec_mounts[exec_count++] = argv[++at];
        } else {
            usage();
        }
    }
    if (at + 1 >= argc || (trailer_wanted && !env_stdin))
        usage();
    char **command = argv + at + 1;
    if (trailer_wanted && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail(EXIT_SETUP, "cannot make runner-init non-dumpable");

    /* the signals to forward and SIGCHLD are taken synchronously, never by a handler */
    sigset_t handled, original;
    sigemptyset(&handled);
    int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&handled, forwarded[i]);
    sigaddset(&handled, SIGCHLD);
    sigprocmask(SIG_BLOCK, &handled, &original);

    char **env = env_stdin ? receive_environment() : environ;
    check_mounts(exec_mounts, exec_count);

    pid_t child = fork();
    if (child < 0)
        fail(EXIT_SETUP, "cannot fork the step");
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &original, NULL);
        environ = env;
        execvp(command[0], command);
        int error = errno;
        fprintf(stderr, "runner-init: cannot run %s: %s\n", command[0], strerror(error));
        _exit(error == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE);
    }

    int status = 0;
    for (;;) {
        int left = remaining_ms();
        if (left == 0)
            deadline_passed();
        struct timespec wait = {.tv_sec = 1, .tv_nsec = 0};
        if (left > 0 && left < 1000)
            wait = (struct timespec){.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        int signal_number = sigtimedwait(&handled, NULL, &wait);
        if (signal_number > 0 && signal_number != SIGCHLD)
            kill(child, signal_number);
        int done = 0;
        pid_t reaped;
        while ((reaped = waitpid(-1, &status, WNOHANG)) > 0 || (reaped < 0 && errno == EINTR)) {
            if (reaped == child) {
                done = 1;
                break;
            }
        }
        if (done)
            break;
    }
    if (getpid() == 1)
        kill(-1, SIGKILL); /* nothing outlives the step */
    if (trailer_size > 0)
        reap_all(); /* nothing but runner-init holds stdout or stderr now */
    else
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    finish(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
    return 0; /* not reached */
}
