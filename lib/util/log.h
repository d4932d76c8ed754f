/*
 * log — one level-checked logger for every program (redis serverLog style).
 * Messages are lower-case key=value lines without a trailing period and never
 * carry a secret. Audit events are not logs: they go to the audit chain.
 */
#ifndef CIEL_LOG_H
#define CIEL_LOG_H

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_OFF };

extern int log_level;

/* Parse "debug|info|warn|error|off"; returns -1 if unknown. */
int log_parse_level(const char *s);
void log_set_prog(const char *prog);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                             \
	do {                                         \
		if ((lvl) >= log_level)              \
			log_write(lvl, __VA_ARGS__); \
	} while (0)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOG_LVL_ERROR, __VA_ARGS__)

#endif
