/*
 * dbuf — see dbuf.h.
 *
 * Growth doubles, but never allocates past max + 1: a 1 MiB body cap must
 * not turn into a 2 MiB allocation. Every size is checked against max before
 * any arithmetic that could overflow (len <= max always holds, so max - len
 * cannot wrap).
 */
#include "util/dbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DBUF_MIN_ALLOC 256

void dbuf_init(struct dbuf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

/* Make room for n more content bytes and the NUL; -1 with the state set. */
static int dbuf_grow(struct dbuf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->toobig || b->nomem)
		return -1;
	if (n > b->max - b->len) {
		b->toobig = 1;
		return -1;
	}
	if (b->len + n == SIZE_MAX) {
		/* only reachable with DBUF_NO_MAX: no room left for the NUL */
		b->nomem = 1;
		return -1;
	}
	need = b->len + n + 1;
	if (b->buf && need <= b->cap)
		return 0;
	cap = b->cap > SIZE_MAX / 2 ? need : b->cap * 2;
	if (cap < DBUF_MIN_ALLOC)
		cap = DBUF_MIN_ALLOC;
	if (cap < need)
		cap = need;
	if (b->max < SIZE_MAX && cap > b->max + 1)
		cap = b->max + 1;
	p = realloc(b->buf, cap);
	if (!p) {
		b->nomem = 1;
		return -1;
	}
	if (!b->buf)
		p[0] = '\0';
	b->buf = p;
	b->cap = cap;
	return 0;
}

int dbuf_add(struct dbuf *b, const void *p, size_t n)
{
	if (dbuf_grow(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return 0;
}

int dbuf_addstr(struct dbuf *b, const char *s)
{
	return dbuf_add(b, s, strlen(s));
}

int dbuf_printf(struct dbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->toobig || b->nomem)
		return -1;
	/* first try in the room already there; usually it fits */
	va_start(ap, fmt);
	n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n >= 0 && b->buf && (size_t)n < b->cap - b->len && (size_t)n <= b->max - b->len) {
		b->len += (size_t)n;
		return 0;
	}
	/* a truncated attempt overwrote the terminator */
	if (b->buf)
		b->buf[b->len] = '\0';
	if (n < 0) {
		/* vsnprintf fails on an output over INT_MAX, or a bad wide character */
		if (errno == EOVERFLOW)
			b->toobig = 1;
		else
			b->nomem = 1;
		return -1;
	}
	if (dbuf_grow(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void dbuf_reset(struct dbuf *b)
{
	b->len = 0;
	if (b->buf)
		b->buf[0] = '\0';
	b->toobig = 0;
	b->nomem = 0;
}

char *dbuf_detach(struct dbuf *b, size_t *len)
{
	char *p = b->buf ? b->buf : calloc(1, 1);

	if (len)
		*len = p ? b->len : 0;
	dbuf_init(b, b->max);
	return p;
}

void dbuf_release(struct dbuf *b)
{
	free(b->buf);
	dbuf_init(b, b->max);
}
