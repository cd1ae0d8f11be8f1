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
 * Build (static, so the built-in image needs no libc):
 *   gcc -Os -static -o bin/noded-pause internal/pause/pause.c
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
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

	/* Reap anything that died before the handler was installed. */
	sigreap(SIGCHLD);

	for (;;)
		pause();
	/* not reached */
	return 42;
}
