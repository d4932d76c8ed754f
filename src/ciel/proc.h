/*
 * proc — process helpers for `ciel up` / `ciel down`: run a program and
 * wait, start one detached (its own session, stdin /dev/null, output
 * appended to a log), pid files, and "is pid N still that program".
 * A pid file alone proves nothing after a reboot or pid reuse, so every
 * check also compares /proc/N/comm with the expected program name.
 */
#ifndef CIEL_CLI_PROC_H
#define CIEL_CLI_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/err.h"

/* The program `name` next to this executable if it is there, else `name`
 * (for a PATH lookup). */
void proc_find(const char *name, char *out, size_t size);

/* Run argv with stdin /dev/null and stdout+stderr appended to log; wait.
 * Returns the exit status (0..255), 128+N if killed by signal N, or -1 with
 * err if it could not be started (CIEL_ENOTFOUND if the program is missing). */
int proc_run(char *const argv[], const char *log, struct ciel_err *err);

/* Start argv detached (double fork, setsid), output appended to log; *pid
 * gets the program's pid. -1 with err if the exec failed. */
int proc_spawn(char *const argv[], const char *log, pid_t *pid, struct ciel_err *err);

/* Whether pid is a live (not zombie) process whose comm is comm. */
bool proc_alive(pid_t pid, const char *comm);

/* Pid from a pid file; 0 if missing or unreadable. */
pid_t proc_read_pid(const char *file);
int proc_write_pid(const char *file, pid_t pid, struct ciel_err *err);

/* SIGTERM pid, wait up to wait_ms for it to go, then SIGKILL. Returns the
 * signal that ended it (SIGTERM/SIGKILL), 0 if it was already gone. */
int proc_stop(pid_t pid, const char *comm, int wait_ms);

/* mkdir -p with mode for new directories. */
int proc_mkdirs(const char *path, int mode, struct ciel_err *err);

/* Copy the last n lines of file to stderr, indented. */
void proc_tail(const char *file, int n);

#endif
