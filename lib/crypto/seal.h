/*
 * seal — authenticated encryption of small secrets at rest (access key
 * secrets, join tokens, later tenant data keys) under a 32-byte key: the
 * region master key, or a tenant's data key wrapped by it.
 *
 * Format of a sealed value: "v1." + base64url(nonce[12] || ciphertext || tag[16]),
 * AES-256-GCM, fresh random nonce each time. The associated data binds a
 * sealed value to its place (e.g. the store key it lives under), so a value
 * copied elsewhere does not decrypt.
 */
#ifndef CIEL_SEAL_H
#define CIEL_SEAL_H

#include <stddef.h>

#include "util/err.h"

#define SEAL_KEY_LEN 32

/* Encrypt; returns a malloc'd string (caller frees) or NULL with err set. */
char *seal_encrypt(const unsigned char key[SEAL_KEY_LEN], const void *plain, size_t plain_len,
		   const char *aad, struct ciel_err *err);
/* Decrypt into a malloc'd buffer (NUL-terminated for convenience; caller
 * frees, after explicit_bzero). -1 with CIEL_EPERM if the tag does not verify
 * (wrong key, wrong aad, tampered), CIEL_EINVAL if malformed. */
int seal_decrypt(const unsigned char key[SEAL_KEY_LEN], const char *sealed, const char *aad,
		 unsigned char **plain, size_t *plain_len, struct ciel_err *err);

/* Load a 32-byte key file, creating it (mode 0600, random, fsync'd) if missing.
 * Refuses a file readable by group or others, or of the wrong size. */
int seal_key_load_or_create(const char *path, unsigned char key[SEAL_KEY_LEN],
			    struct ciel_err *err);

#endif
