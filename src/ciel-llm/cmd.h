/*
 * ciel-llm subcommands: each takes the arguments after its name (argv[0] is
 * the subcommand) and returns the exit status: 0 ok, 1 failure, 2 usage.
 */
#ifndef CIEL_LLM_CMD_H
#define CIEL_LLM_CMD_H

int cmd_gen(int argc, char **argv);	 /* gen.c: write a random-weight GGUF in a real shape */
int cmd_info(int argc, char **argv);	 /* gen.c: print a GGUF's metadata and tensors */
int cmd_tokenize(int argc, char **argv); /* tokenize.c: text -> ids (and back) */
int cmd_logits(int argc, char **argv);	 /* run.c: logits for a token list (tests) */
int cmd_run(int argc, char **argv);	 /* run.c: generate from a prompt */
int cmd_serve(int argc, char **argv);	 /* serve.c: the OpenAI-compatible worker */

#endif
