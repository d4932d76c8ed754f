/*
 * netaddr — the listen addresses ciel's servers accept: IPV4:PORT,
 * [IPV6]:PORT or localhost:PORT (meaning 127.0.0.1), parsed strictly so a
 * typo is an error rather than a server bound somewhere unexpected.
 */
#ifndef CIEL_NETADDR_H
#define CIEL_NETADDR_H

#include <sys/socket.h>

#include "util/err.h"

/* Parse listen into *ss; *loopback tells whether it is a loopback address.
 * Port 0 (the kernel picks) only with allow_port0. Errors name field "listen". */
int netaddr_parse(const char *listen, int allow_port0, struct sockaddr_storage *ss, int *loopback,
		  struct ciel_err *err);

#endif
