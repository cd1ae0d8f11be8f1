/*
 * nnp: the no-new-privileges probe. The image installs it setuid root, so
 * when a non-root container may gain privileges its effective uid is 0, and
 * under no_new_privs the kernel ignores the setuid bit. critest matches the
 * exact line "Effective uid: N\n" in the container log.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
