/*
 * uni — the little Unicode the tokenizers need: UTF-8 decoding that never
 * fails (an invalid byte comes back as itself, flagged) and the classes the
 * pre-tokenizer regexes test: \p{L}, \p{N} and \s.
 *
 * The class table is generated from Unicode data by tests/llm/tok_unicode.py
 * (ranges, binary-searched), so no regex or ICU library is needed.
 */
#ifndef CIEL_UNI_H
#define CIEL_UNI_H

#include <stddef.h>
#include <stdint.h>

enum uni_class { UNI_OTHER = 0, UNI_LETTER = 1, UNI_NUMBER = 2, UNI_SPACE = 3 };

/* Returned for a byte that does not start a valid UTF-8 sequence (class other). */
#define UNI_BAD 0x110000u

/*
 * Decode the code point at s[0..len) (len > 0), strictly: overlong forms,
 * surrogates and values past U+10FFFF are invalid. Sets *adv to the bytes
 * used (1 for an invalid byte, which returns UNI_BAD).
 */
uint32_t uni_next(const unsigned char *s, size_t len, size_t *adv);
enum uni_class uni_class(uint32_t cp);
/* Encode cp (< 0x110000) as UTF-8 into out[4]; returns the length. */
size_t uni_put(uint32_t cp, char *out);

#endif
