/*
 * oai — the OpenAI-compatible wire format: request parsing and validation,
 * answer and SSE chunk JSON, OpenAI-shaped errors. (Placeholder: the server
 * helper defines this header.)
 */
#ifndef CIEL_OAI_H
#define CIEL_OAI_H
#endif
