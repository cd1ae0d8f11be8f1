/*
 * nginx: a stand-in for the nginx master process in the offline critest
 * images. critest never talks nginx-specific HTTP; it needs
 *   - a process named "nginx" (pidof nginx, from a hostPID container),
 *   - "master process" in that process's /proc/PID/cmdline,
 *   - its pid in /var/run/nginx.pid,
 *   - an HTTP 200 on the port from /etc/nginx/conf.d/default.conf
 *     ("listen N;", 80 by default; the hostnet image uses 12003).
 * The HTTP part is busybox httpd, started as the single "worker".
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "nginx: master process nginx -g daemon off;"
#define PIDFILE "/var/run/nginx.pid"
#define CONF "/etc/nginx/conf.d/default.conf"
#define HTDOCS "/usr/share/nginx/html"
#define HTTPD "/bin/httpd"

/* listen_port returns the first "listen N" in CONF, or "80". */
static const char *listen_port(void)
{
	static char port[16] = "80";
	char buf[4096];
	FILE *f = fopen(CONF, "r");
	size_t n;
	char *p;

	if (f == NULL)
		return port;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (p = strstr(buf, "listen"); p != NULL; p = strstr(p + 1, "listen")) {
		char *q = p + strlen("listen");
		size_t len = 0;

		while (*q == ' ' || *q == '\t')
			q++;
		while (q[len] >= '0' && q[len] <= '9' && len < sizeof(port) - 1)
			len++;
		if (len > 0) {
			memcpy(port, q, len);
			port[len] = '\0';
			break;
		}
	}
	return port;
}

static int write_pidfile(void)
{
	FILE *f;

	mkdir("/var/run", 0755);
	f = fopen(PIDFILE, "w");
	if (f == NULL) {
		perror("nginx: open " PIDFILE);
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	return fclose(f);
}

int main(int argc, char **argv, char **envp)
{
	sigset_t set, old;
	pid_t worker;
	const char *port;
	char exe[4096];
	ssize_t n;

	(void)argc;
	/*
	 * Re-exec under the title real nginx gives itself, so cmdline says
	 * "master process". Exec'ing the real path (not /proc/self/exe) keeps
	 * the kernel's comm "nginx" for pidof.
	 */
	if (strncmp(argv[0], "nginx: ", 7) != 0) {
		char *title[] = {TITLE, NULL};

		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			execve(exe, title, envp);
		}
		perror("nginx: re-exec");
		/* Carry on under the original title rather than not serving. */
	}

	port = listen_port();
	if (write_pidfile() < 0)
		return 1;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &old);

	worker = fork();
	if (worker < 0) {
		perror("nginx: fork");
		return 1;
	}
	if (worker == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		execl(HTTPD, "httpd", "-f", "-p", port, "-h", HTDOCS, (char *)NULL);
		perror("nginx: exec " HTTPD);
		_exit(127);
	}
	fprintf(stderr, "nginx (noded test stand-in): master %d, worker %d serving " HTDOCS " on :%s\n",
		(int)getpid(), (int)worker, port);

	for (;;) {
		int sig, status;
		pid_t pid;

		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig != SIGCHLD) {
			kill(worker, SIGTERM);
			while (waitpid(worker, NULL, 0) < 0 && errno == EINTR)
				;
			unlink(PIDFILE);
			return 0;
		}
		/* As PID 1 we also reap whatever exec'd processes leave behind. */
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == worker) {
				fprintf(stderr, "nginx: worker exited (status %d)\n", status);
				unlink(PIDFILE);
				return 1;
			}
		}
	}
}
