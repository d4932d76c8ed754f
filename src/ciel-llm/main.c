/*
 * ciel-llm — ciel's LLM engine as a program: the model worker the agent
 * runs (serve), and tools for direct use, tests and benchmarks.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
    {"serve", cmd_serve, "serve a model over the OpenAI-compatible HTTP API"},
    {"run", cmd_run, "generate text from a prompt"},
    {"tokenize", cmd_tokenize, "encode text with a model's tokenizer"},
    {"logits", cmd_logits, "print the logits for a list of token ids (JSON)"},
    {"info", cmd_info, "show a GGUF file's metadata and tensors"},
    {"gen", cmd_gen, "write a GGUF with random weights in a real model's shape"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ciel-llm COMMAND [options]   (ciel-llm COMMAND --help for more)\n\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "ciel-llm: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
