/*
 * pki — the region's own certificates and signing keys, made with OpenSSL:
 * a region CA (EC P-256, self-signed), a server certificate for cield signed
 * by it (SANs for the names and addresses cield answers on), and the region's
 * Ed25519 key that signs audit checkpoints. Everything is PEM on disk, private
 * keys mode 0600.
 */
#ifndef CIEL_PKI_H
#define CIEL_PKI_H

#include <stddef.h>

#include "util/err.h"

struct evp_pkey_st; /* OpenSSL's EVP_PKEY */

/* Create ca.pem/ca.key in dir unless both exist. */
int pki_ensure_ca(const char *dir, const char *region_name, struct ciel_err *err);
/* Create server.pem/server.key in dir, signed by dir/ca.*, with the given
 * SANs (each a DNS name or an IP literal), unless both exist and the cert is
 * still valid for 30 days. */
int pki_ensure_server_cert(const char *dir, const char *const *sans, size_t n_sans,
			   struct ciel_err *err);

/* Ed25519: load the private key at path, creating it (0600) if missing.
 * Caller frees with EVP_PKEY_free. */
int pki_ed25519_load_or_create(const char *path, struct evp_pkey_st **out, struct ciel_err *err);
/* Sign msg; sig gets 64 bytes. */
int pki_ed25519_sign(struct evp_pkey_st *key, const void *msg, size_t n, unsigned char sig[64],
		     struct ciel_err *err);
/* Verify with the public half of key (or a public-only key); 0 if valid,
 * -1 with CIEL_EPERM if not. */
int pki_ed25519_verify(struct evp_pkey_st *key, const void *msg, size_t n,
		       const unsigned char sig[64], struct ciel_err *err);
/* Raw 32-byte public key, for printing and export. */
int pki_ed25519_public(struct evp_pkey_st *key, unsigned char pub[32], struct ciel_err *err);

/* Read a whole (small) file into a malloc'd NUL-terminated buffer. */
int pki_read_file(const char *path, char **out, size_t *len, struct ciel_err *err);

#endif
