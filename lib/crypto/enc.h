/*
 * enc — encodings, hashes and randomness used all over ciel: hex, base64
 * (standard and URL-safe, unpadded), SHA-256, HMAC-SHA256, OS randomness,
 * random identifiers. Thin over OpenSSL; hand-written only where OpenSSL has
 * no helper (hex, base64url).
 */
#ifndef CIEL_ENC_H
#define CIEL_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void enc_hex(const unsigned char *in, size_t n, char *out);
/* Value of one hex digit (either case), -1 if c is not one. */
int enc_hexval(int c);
/* Parse exactly 2n hex chars into n bytes; -1 on anything else. */
int enc_unhex(const char *in, unsigned char *out, size_t n);

/* Base64 (RFC 4648 §4, padded) / base64url (§5, unpadded). Returns a malloc'd
 * NUL-terminated string the caller frees, NULL on allocation failure. */
char *enc_b64(const unsigned char *in, size_t n);
char *enc_b64url(const unsigned char *in, size_t n);
/* Decode into a malloc'd buffer (caller frees); -1 on invalid input. Accepts
 * both alphabets, with or without padding. */
int enc_unb64(const char *in, unsigned char **out, size_t *out_len);

void enc_sha256(const void *data, size_t n, unsigned char out[32]);
/* SHA-256 as 64 hex chars + NUL. */
void enc_sha256_hex(const void *data, size_t n, char out[65]);
void enc_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
		     unsigned char out[32]);
/* Constant-time equality of n bytes. */
int enc_equal(const void *a, const void *b, size_t n);

/* Fill buf from the OS CSPRNG; -1 (CIEL_EIO) only if the kernel refuses. */
int enc_random(void *buf, size_t n, struct ciel_err *err);
/* prefix + n characters of [A-Z2-7] (RFC 4648 base32 alphabet) into out (size
 * out_size); e.g. enc_random_id("CK", 16, ...) → "CK4F2..." */
int enc_random_id(const char *prefix, size_t n, char *out, size_t out_size, struct ciel_err *err);

#endif
