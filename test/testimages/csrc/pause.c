/*
 * pause: the infra-container process of the pause image.
 *
 * It holds the pod's namespaces open and does nothing else: exit cleanly on
 * SIGINT/SIGTERM (so StopPodSandbox is quick) and reap children, because
 * with a shared PID namespace it is PID 1 and inherits orphans.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction stop = {.sa_handler = on_stop};
	struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (noded test image)");
		return 0;
	}
	if (getpid() != 1)
		fputs("Warning: pause should be the first process\n", stderr);

	if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &child, NULL) < 0) {
		perror("sigaction");
		return 1;
	}
	for (;;)
		pause();
}
