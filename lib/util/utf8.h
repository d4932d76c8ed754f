/* utf8 — the one UTF-8 well-formedness rule (Unicode's table 3-7) the modules that clean text
 * share. */
#ifndef CIEL_UTF8_H
#define CIEL_UTF8_H

#include <stddef.h>

/*
 * The UTF-8 sequence at p (n >= 1 bytes available): > 0 the length (1 to 4)
 * of a whole, valid character; 0 a valid start cut by the end of the
 * buffer; -k the first k bytes are the longest ill-formed prefix (one
 * U+FFFD for them, as Unicode recommends). Overlongs, surrogates and code
 * points above U+10FFFF are ill-formed.
 */
int utf8_seq(const unsigned char *p, size_t n);

#endif
