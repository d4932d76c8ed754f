/*
 * dbuf — a growable byte buffer with a hard maximum (curl's dynbuf).
 *
 * Everything that collects bytes of a length not known in advance goes
 * through here: HTTP request bodies, answers read back by the client, text we
 * render. The maximum is fixed at dbuf_init(); an add that would take the
 * content past it fails instead of growing, so no outside input can make us
 * allocate without bound.
 *
 * Ownership: the struct owns buf. dbuf_detach() hands it to the caller (who
 * free()s it); dbuf_release() frees it. Both leave the struct empty and ready
 * for reuse with the same max. A pointer into buf is invalidated by any add
 * (it may move), by dbuf_reset() (content cleared), detach and release.
 *
 * Invariants:
 * - len <= max; the content is buf[0..len) and may hold NUL bytes itself.
 * - buf is NULL until the first successful add (even a zero-length one);
 *   from then on len < cap and buf[len] == '\0', so the content is also a C
 *   string; cap never passes max + 1. dbuf_str() gives "" for a buffer never
 *   added to.
 * - A failed add leaves the content as it was and sets toobig (it would have
 *   passed max) or nomem (allocation failed). Either is sticky: every later
 *   add fails too until dbuf_reset(), dbuf_detach() or dbuf_release(). A run
 *   of adds can therefore be checked once, at the end.
 */
#ifndef CIEL_DBUF_H
#define CIEL_DBUF_H

#include <stddef.h>
#include <stdint.h>

/* Only for text we produce ourselves, whose size is bounded where it comes from. */
#define DBUF_NO_MAX SIZE_MAX

struct dbuf {
	char *buf;
	size_t len; /* content bytes, without the terminating NUL */
	size_t cap; /* bytes allocated at buf */
	size_t max; /* most content bytes ever accepted */
	int toobig; /* sticky: an add would have passed max */
	int nomem;  /* sticky: an allocation failed */
};

/* An empty buffer that will hold at most max bytes. Allocates nothing. */
void dbuf_init(struct dbuf *b, size_t max);

/* Append n bytes from p (p may be NULL when n is 0). 0, or -1 with toobig or
 * nomem set and the content unchanged. */
int dbuf_add(struct dbuf *b, const void *p, size_t n);
/* dbuf_add() of strlen(s) bytes. */
int dbuf_addstr(struct dbuf *b, const char *s);
/* Append formatted text, growing as needed; 0 or -1 as dbuf_add(). */
int dbuf_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Empty the content and clear toobig/nomem, keeping the allocation for reuse. */
void dbuf_reset(struct dbuf *b);

/*
 * Take the content: a NUL-terminated string the caller free()s, its length in
 * *len when len is not NULL. A buffer never added to gives a new "". The
 * content is handed over whatever the state, so check toobig and nomem first:
 * after a failed add it is short. NULL only when allocating that "" fails.
 * The buffer is left empty, with the same max and the state cleared.
 */
char *dbuf_detach(struct dbuf *b, size_t *len);

/* Free the content; the buffer is left empty, as dbuf_detach() leaves it. */
void dbuf_release(struct dbuf *b);

/* The content as a C string, "" for a buffer never added to. Valid until the
 * next add, reset, detach or release. */
static inline const char *dbuf_str(const struct dbuf *b)
{
	return b->buf ? b->buf : "";
}

#endif
