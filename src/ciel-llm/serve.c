/* serve.c — placeholder, being written. */
#include <stdio.h>

#include "cmd.h"

int cmd_serve(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "ciel-llm: not built yet\n");
	return 1;
}
