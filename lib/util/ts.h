/* ts — wall and monotonic time in milliseconds, RFC 3339 formatting/parsing (UTC). */
#ifndef CIEL_TS_H
#define CIEL_TS_H

#include <stdint.h>

#define TS_RFC3339_LEN 25 /* "2026-11-23T10:55:00.123Z" + NUL */

int64_t ts_now_ms(void);  /* wall clock */
int64_t ts_mono_ms(void); /* monotonic, for intervals */
int64_t ts_mono_us(void);
/* Format ms since epoch as "2026-11-23T10:55:00.123Z". */
void ts_format(int64_t ms, char out[TS_RFC3339_LEN]);
/* Parse "2026-11-23T10:55:00Z", with optional ".fff" and "+hh:mm"/"-hh:mm"
 * offset, or a plain date "2026-11-23" (midnight UTC); -1 if malformed. */
int ts_parse(const char *s, int64_t *ms);

#endif
