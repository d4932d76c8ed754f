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

/*
 * A listening TCP socket on *ss (close-on-exec): SO_REUSEADDR so a restart
 * after a crash binds at once despite connections in TIME_WAIT, but no
 * SO_REUSEPORT, so a second server on the same port fails loudly instead of
 * sharing it. On success *ss holds the address bound (the port the kernel
 * chose for port 0). Returns the fd, or -1 naming addr_text in err.
 */
int netaddr_listen(struct sockaddr_storage *ss, const char *addr_text, int backlog,
		   struct ciel_err *err);

#endif
