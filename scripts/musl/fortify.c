/*
 * conmon-go-runtime is linked with musl (see scripts/musl-sysroot.sh), but
 * the libseccomp.a it links is Debian's, compiled against glibc with
 * _FORTIFY_SOURCE. Its only glibc-only symbol is __fprintf_chk (from the
 * PFC export, which noded never calls); musl has the rest (__errno_location,
 * __assert_fail, __stack_chk_fail). The FILE it gets is musl's own, from
 * musl's fdopen.
 */
#include <stdarg.h>
#include <stdio.h>

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	va_list ap;
	int n;

	(void)flag;
	va_start(ap, fmt);
	n = vfprintf(f, fmt, ap);
	va_end(ap);
	return n;
}
