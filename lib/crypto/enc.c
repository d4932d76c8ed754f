/*
 * enc — see enc.h.
 *
 * Decoders are strict on purpose: a value has exactly one accepted spelling
 * per alphabet (no whitespace, no stray padding, no non-zero trailing bits),
 * so flipping a character of a sealed value or a signature always changes the
 * decoded bytes instead of being silently ignored.
 */
#include "crypto/enc.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char hexdig[] = "0123456789abcdef";
static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

void enc_hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[in[i] >> 4];
		out[2 * i + 1] = hexdig[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int enc_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Reads exactly 2n characters and nothing past them, so it also decodes a
 * "%XX" escape in place; a caller that needs the whole string to be hex
 * checks its length.
 */
int enc_unhex(const char *in, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		/* enc_hexval('\0') is -1, so a short string stops here */
		hi = enc_hexval((unsigned char)in[2 * i]);
		if (hi < 0)
			return -1;
		lo = enc_hexval((unsigned char)in[2 * i + 1]);
		if (lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static char *b64_encode(const unsigned char *in, size_t n, const char *alpha, int pad)
{
	size_t groups = n / 3 + (n % 3 != 0);
	char *out, *p;

	if (groups > (SIZE_MAX - 1) / 4)
		return NULL;
	out = malloc(groups * 4 + 1);
	if (!out)
		return NULL;
	p = out;
	for (size_t i = 0; i < n; i += 3) {
		size_t left = n - i;
		uint32_t v = (uint32_t)in[i] << 16;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		*p++ = alpha[v >> 18 & 63];
		*p++ = alpha[v >> 12 & 63];
		if (left > 1)
			*p++ = alpha[v >> 6 & 63];
		else if (pad)
			*p++ = '=';
		if (left > 2)
			*p++ = alpha[v & 63];
		else if (pad)
			*p++ = '=';
	}
	*p = '\0';
	return out;
}

char *enc_b64(const unsigned char *in, size_t n)
{
	return b64_encode(in, n, b64std, 1);
}

char *enc_b64url(const unsigned char *in, size_t n)
{
	return b64_encode(in, n, b64url, 0);
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int enc_unb64(const char *in, unsigned char **out, size_t *out_len)
{
	size_t len = strlen(in), n = len, o = 0;
	unsigned char *buf;
	uint32_t acc = 0;
	int bits = 0;

	/* padding is optional, but when present it must complete the last quantum */
	if (n > 0 && in[n - 1] == '=') {
		if (len % 4 != 0)
			return -1;
		n--;
		if (n > 0 && in[n - 1] == '=')
			n--;
	}
	/* one leftover character carries only 6 bits: never a whole byte */
	if (n % 4 == 1)
		return -1;
	buf = malloc(n / 4 * 3 + 3);
	if (!buf)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)in[i]);

		if (v < 0)
			goto fail;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		goto fail; /* non-zero trailing bits: not the canonical spelling */
	*out = buf;
	*out_len = o;
	return 0;
fail:
	free(buf);
	return -1;
}

void enc_sha256(const void *data, size_t n, unsigned char out[32])
{
	static const unsigned char empty;
	unsigned int len = 0;

	if (!EVP_Digest(n ? data : &empty, n, out, &len, EVP_sha256(), NULL) || len != 32)
		BUG("EVP_Digest(sha256) failed");
}

void enc_sha256_hex(const void *data, size_t n, char out[65])
{
	unsigned char md[32];

	enc_sha256(data, n, md);
	enc_hex(md, sizeof(md), out);
}

void enc_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
		     unsigned char out[32])
{
	static const unsigned char empty;
	unsigned int len = 0;

	/* HMAC() wants non-NULL pointers even for empty inputs */
	if (key_len > INT_MAX ||
	    !HMAC(EVP_sha256(), key_len ? key : &empty, (int)key_len,
		  n ? (const unsigned char *)data : &empty, n, out, &len) ||
	    len != 32)
		BUG("HMAC(sha256) failed");
}

int enc_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

int enc_random(void *buf, size_t n, struct ciel_err *err)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			return ciel_err_sys(err, CIEL_EIO, errno, "getrandom");
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

int enc_random_id(const char *prefix, size_t n, char *out, size_t out_size, struct ciel_err *err)
{
	size_t plen = strlen(prefix);
	unsigned char rnd[64];

	if (plen > out_size || n >= out_size - plen)
		return ciel_err_set(err, CIEL_EINTERNAL,
				    "random id: %zu+%zu chars do not fit in %zu", plen, n,
				    out_size);
	memmove(out, prefix, plen);
	for (size_t done = 0; done < n;) {
		size_t chunk = n - done < sizeof(rnd) ? n - done : sizeof(rnd);

		if (enc_random(rnd, chunk, err) < 0)
			return -1;
		/* 32 divides 256, so masking keeps every character equally likely */
		for (size_t i = 0; i < chunk; i++)
			out[plen + done + i] = b32[rnd[i] & 31];
		done += chunk;
	}
	out[plen + n] = '\0';
	explicit_bzero(rnd, sizeof(rnd));
	return 0;
}
