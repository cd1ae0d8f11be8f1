//go:build ignore

// This file is C, built by the Makefile (not by the go tool: the build tag
// above keeps it out of the Go package, which has no cgo).

/*
 * noded-pause: the infrastructure ("pause") process of a noded pod sandbox.
 *
 * It holds the pod's namespaces open and otherwise does nothing: it sleeps in
 * pause(2) forever. When the pod shares one PID namespace it is PID 1 there,
 * so it reaps every zombie re-parented to it (SIGCHLD). SIGINT and SIGTERM end
 * it with status 0. "-v" prints the version and exits.
 *
 * Once its signal handlers are set it confines itself with a seccomp filter
 * that allows only the handful of system calls it still makes (see
 * confine()). The filter is tighter than any runtime default profile, and
 * since pause installs it itself noded need not give the built-in pause
 * container the default profile: compiling that profile (libseccomp, in
 * libcontainer's init) was the largest single CPU cost of starting a pod.
 *
 * Build (static, so the built-in image needs no libc):
 *   gcc -Os -static -o bin/noded-pause internal/pause/pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef NODED_PAUSE_VERSION
#define NODED_PAUSE_VERSION "1.0"
#endif

/* say writes a string to fd. write(2) rather than stdio keeps the static
 * binary, and so the resident set of every pod, small. */
static void say(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static void sigdown(int signo)
{
	(void)signo;
	/* _exit is async-signal-safe; there is nothing to flush. */
	_exit(0);
}

static void sigreap(int signo)
{
	int saved = errno;
	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int on(int signo, void (*handler)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(signo, &sa, NULL);
}

/*
 * The seccomp filter ABI (linux/filter.h, linux/seccomp.h, linux/audit.h),
 * spelled out here because musl-gcc does not see the kernel headers. These
 * values are kernel ABI and never change.
 */
struct bpf_insn {
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};
struct bpf_prog {
	unsigned short len;
	struct bpf_insn *filter;
};
#define LD_ABS_W 0x20 /* BPF_LD | BPF_W | BPF_ABS */
#define JEQ_K 0x15    /* BPF_JMP | BPF_JEQ | BPF_K */
#define JGE_K 0x35    /* BPF_JMP | BPF_JGE | BPF_K */
#define RET_K 0x06    /* BPF_RET | BPF_K */
#define RET_KILL_PROCESS 0x80000000U
#define RET_ERRNO 0x00050000U
#define RET_ALLOW 0x7fff0000U
#define DATA_NR 0   /* offsetof(struct seccomp_data, nr) */
#define DATA_ARCH 4 /* offsetof(struct seccomp_data, arch) */
#define MODE_FILTER 2

#if defined(__x86_64__)
#define PAUSE_AUDIT_ARCH 0xc000003eU /* AUDIT_ARCH_X86_64 */
#define X32_BIT 0x40000000U          /* x32 calls share the arch: refuse them */
#elif defined(__aarch64__)
#define PAUSE_AUDIT_ARCH 0xc00000b7U /* AUDIT_ARCH_AARCH64 */
#endif

#define STMT(c, v) { (c), 0, 0, (v) }
#define ALLOW_NR(nr) { JEQ_K, 0, 1, (nr) }, STMT(RET_K, RET_ALLOW)

/*
 * confine makes this process unable to gain privileges and lets it make only
 * the system calls of its loop: sleeping, reaping, returning from a signal
 * handler and exiting. Anything else fails with EPERM; a system call of
 * another architecture kills it. It returns -1 (and pause carries on
 * unconfined) when the kernel has no seccomp.
 */
static int confine(void)
{
#ifdef PAUSE_AUDIT_ARCH
	struct bpf_insn filter[] = {
		STMT(LD_ABS_W, DATA_ARCH),
		{ JEQ_K, 1, 0, PAUSE_AUDIT_ARCH },
		STMT(RET_K, RET_KILL_PROCESS),
		STMT(LD_ABS_W, DATA_NR),
#ifdef X32_BIT
		{ JGE_K, 0, 1, X32_BIT },
		STMT(RET_K, RET_ERRNO | EPERM),
#endif
#ifdef SYS_pause
		ALLOW_NR(SYS_pause),
#endif
		ALLOW_NR(SYS_ppoll), /* pause(2) where there is no SYS_pause */
		ALLOW_NR(SYS_wait4),
		ALLOW_NR(SYS_rt_sigreturn),
		ALLOW_NR(SYS_restart_syscall),
		ALLOW_NR(SYS_rt_sigprocmask),
		ALLOW_NR(SYS_exit_group),
		ALLOW_NR(SYS_exit),
		STMT(RET_K, RET_ERRNO | EPERM),
	};
	struct bpf_prog prog = { sizeof(filter) / sizeof(filter[0]), filter };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, MODE_FILTER, &prog, 0, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0) {
			say(1, "noded-pause " NODED_PAUSE_VERSION "\n");
			return 0;
		}
	}

	if (getpid() != 1)
		/* Not an error: runtimes that do not share the PID namespace
		 * still use pause to hold the other namespaces. */
		say(2, "noded-pause: warning: not PID 1\n");

	if (on(SIGINT, sigdown, 0) < 0 || on(SIGTERM, sigdown, 0) < 0) {
		say(2, "noded-pause: sigaction SIGINT/SIGTERM failed\n");
		return 1;
	}
	if (on(SIGCHLD, sigreap, SA_NOCLDSTOP | SA_RESTART) < 0) {
		say(2, "noded-pause: sigaction SIGCHLD failed\n");
		return 2;
	}

	if (confine() < 0)
		say(2, "noded-pause: warning: no seccomp filter; running unconfined\n");

	/* Reap anything that died before the handler was installed. */
	sigreap(SIGCHLD);

	for (;;)
		pause();
	/* not reached */
	return 42;
}
