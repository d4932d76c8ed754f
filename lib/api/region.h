/*
 * region — creating a region's state on disk (`cield init`): data directory,
 * master key, region CA and server certificate, audit signing key, store with
 * zones and the operator's access key. Idempotent: a second run keeps
 * everything and only re-writes a missing credentials file... which it
 * cannot (the secret is shown once), so it says so.
 */
#ifndef CIEL_REGION_H
#define CIEL_REGION_H

#include "util/err.h"

struct region_init_opts {
	const char *data_dir;
	const char *name;   /* region name, default "local" */
	int zones;	    /* az1..azN */
	const char *listen; /* "127.0.0.1:7443", for the endpoint and certificate SANs */
	int insecure_http;  /* endpoint scheme http:// */
};

/* 0 created, 1 already initialised, -1 error. */
int region_init(const struct region_init_opts *o, struct ciel_err *err);

#endif
