/*
 * sigtool — sign one request and print the headers as curl arguments, one
 * per line, so integration tests can send requests a well-behaved client
 * never would: stale dates, replays, wrong scopes, forged signatures.
 *   sigtool KEY_ID SECRET SCOPE METHOD PATH QUERY HOST BODY_FILE [DATE_OFFSET_S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sign.h"
#include "crypto/pki.h"

int main(int argc, char **argv)
{
	char date[17], sha[65], auth[512];
	struct ciel_err err = {0};
	char *body = NULL;
	size_t len = 0;
	long off = 0;

	if (argc < 9) {
		fprintf(stderr,
			"usage: sigtool KEY_ID SECRET SCOPE METHOD PATH QUERY HOST BODY_FILE "
			"[DATE_OFFSET_S]\n");
		return 2;
	}
	if (argc > 9)
		off = strtol(argv[9], NULL, 10);
	if (strcmp(argv[8], "-") != 0 && pki_read_file(argv[8], &body, &len, &err) < 0) {
		fprintf(stderr, "sigtool: %s\n", err.msg);
		return 1;
	}
	if (sign_client(argv[4], argv[5], argv[6], argv[7], body ? body : "", len, argv[1], argv[3],
			argv[2], strlen(argv[2]), time(NULL) + off, date, sha, auth, sizeof(auth),
			&err) < 0) {
		fprintf(stderr, "sigtool: %s\n", err.msg);
		return 1;
	}
	printf("X-Ciel-Date: %s\nX-Ciel-Content-Sha256: %s\nAuthorization: %s\n", date, sha, auth);
	free(body);
	return 0;
}
