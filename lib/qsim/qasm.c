/*
 * qasm — OpenQASM 2.0 and the OpenQASM 3 subset Qiskit emits, parsed into a
 * struct circ.
 *
 * One pass and no token array: a lexer with one token of lookahead feeds a
 * recursive-descent parser that executes top-level statements as it reads
 * them. Gate definitions are kept as small trees (parameter expressions and
 * calls on argument numbers) and expanded at each call site.
 *
 * The text comes from tenants. Every definition carries what one expansion
 * costs (operations emitted, work done; saturating), computed once when it is
 * defined, and a call is checked against the limits before anything is
 * expanded: gates calling gates calling gates are refused at once instead of
 * hanging or allocating without bound. Expression trees and definition
 * nesting have fixed depths, so the recursion in here is bounded too.
 *
 * The first error wins (p->failed): later ones, raised while unwinding, are
 * dropped so the message points at the cause.
 */
#include "qsim/qasm.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dbuf.h"

#define ID_MAX 64	     /* identifier length */
#define EXPR_DEPTH_MAX 64    /* parentheses, unary signs, function calls */
#define EXPR_HEIGHT_MAX 1024 /* of a stored tree: bounds eval()'s recursion */
#define GATE_PARAMS_MAX 64
#define GATE_ARGS_MAX CIRC_MAX_QUBITS
#define GATE_DEPTH_MAX 100 /* definitions calling definitions */
#define CALL_QUBITS_MAX (GATE_ARGS_MAX + CIRC_MAX_CTRL)
#define WORK_MAX ((uint64_t)1 << 26) /* expansion steps + expression nodes */

enum tok_type {
	T_EOF,
	T_ERR,
	T_ID,
	T_INT,
	T_REAL,
	T_STR,
	T_PHYS, /* $3 */
	T_SEMI,
	T_COMMA,
	T_LP,
	T_RP,
	T_LB,
	T_RB,
	T_LC,
	T_RC,
	T_PLUS,
	T_MINUS,
	T_STAR,
	T_SLASH,
	T_CARET,
	T_POW, /* ** */
	T_AT,
	T_ASSIGN,
	T_EQ,
	T_NE,
	T_ARROW,
	T_NOT,
	T_COLON,
};

struct tok {
	int type;
	const char *s;
	size_t len;
	int line, col;
	uint64_t iv; /* T_INT (when !big), T_PHYS */
	int big;     /* T_INT past uint64_t */
	double v;    /* T_INT, T_REAL */
};

enum { E_NUM, E_PARAM, E_NEG, E_ADD, E_SUB, E_MUL, E_DIV, E_POW, E_FN };

struct enode {
	uint8_t op, fn;
	uint16_t h;    /* height of the tree below, this node included */
	uint32_t size; /* nodes in that tree (saturating): what eval() costs */
	int a, b;      /* children; a is the parameter number for E_PARAM */
	double v;
};

enum { G_STD, G_USER, G_OPAQUE, G_GPHASE };

struct gdef {
	char name[ID_MAX + 1];
	uint8_t kind;
	int nparams, nargs;
	size_t body, nbody; /* statements p->st[body .. body + nbody) */
	uint64_t ops;	    /* operations one expansion emits (saturating) */
	uint64_t work;	    /* steps one expansion takes (saturating) */
	int depth;	    /* 1 for a standard gate, 1 + deepest callee otherwise */
	int line;	    /* of the definition; 0 for built-in ones */
	const char *from;   /* "qelib1.inc", "stdgates.inc", "the language" */
};

/* Modifiers, normalised: the first nctl operands are controls (bit i of
 * negmask: operand i is a negctrl), then inv, then the gate to the pow. */
struct mods {
	int nctl;
	uint32_t negmask;
	int inv;
	long pow;
};

enum { S_CALL, S_BARRIER };

struct gstmt {
	uint8_t kind;
	int gate;
	struct mods m;
	int nparams, nargs;
	size_t params, args; /* in p->pool: expression nodes, argument numbers */
	int line, col;
};

struct parser {
	/* lexer */
	const char *s, *end, *lstart;
	int line, line_toks;
	struct tok t, pk;
	int have_pk;

	struct circ *c;
	struct ciel_err *err;
	int failed;
	int version; /* 0 (no header), 2 or 3 */
	int nstmt;
	int incl_qelib, incl_std;
	const char *builtin; /* reading an include's own definitions: its name */

	struct gdef *g;
	size_t ng, capg;
	uint32_t *hash; /* open addressing: gate index + 1, 0 free */
	size_t hcap;
	struct gstmt *st;
	size_t nst, capst;
	int *pool;
	size_t npool, cappool;
	struct enode *en;
	size_t nen, capen;

	/* the definition being read: its parameter and argument names */
	int in_gate;
	const char *gname;
	size_t gname_len;
	char pnames[GATE_PARAMS_MAX][ID_MAX + 1];
	char anames[GATE_ARGS_MAX][ID_MAX + 1];
	int npnames, nanames;

	/* the `if` around the statement being executed */
	int in_if;
	int cond_off, cond_len;
	uint64_t cond_val;

	uint64_t work;
	int stmt_line, stmt_col; /* of the top-level statement, for limit errors */
	int phys_max;		 /* highest $k in the text, -1 if none */
	int phys_reg;		 /* index of the register made for $k, -1 if none */
};

/* ---- errors ---- */

/* Messages quote the tenant's text and end up in JSON: keep them valid
 * UTF-8 without control characters, '?' in place of anything else. */
static void sanitize(char *s)
{
	unsigned char *u = (unsigned char *)s;

	while (*u) {
		int n = *u < 0x80	      ? 1
			: (*u & 0xe0) == 0xc0 ? 2
			: (*u & 0xf0) == 0xe0 ? 3
			: (*u & 0xf8) == 0xf0 ? 4
					      : 0;
		int ok = n > 0 && !(n == 1 && *u < 0x20) && !(n == 2 && *u < 0xc2);

		for (int i = 1; ok && i < n; i++)
			ok = (u[i] & 0xc0) == 0x80;
		if (!ok) {
			*u++ = '?';
			continue;
		}
		u += n;
	}
}

static int fail(struct parser *p, int code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(struct parser *p, int code, int line, int col, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (p->failed)
		return -1;
	p->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sanitize(msg);
	ciel_err_field(p->err, code, "qasm", "line %d, column %d: %s", line, col, msg);
	return -1;
}

#define perr(p, line, col, ...) fail(p, CIEL_EINVAL, line, col, __VA_ARGS__)
#define perr_tok(p, tk, ...) fail(p, CIEL_EINVAL, (tk)->line, (tk)->col, __VA_ARGS__)

static int nomem(struct parser *p)
{
	return fail(p, CIEL_ENOMEM, p->t.line, p->t.col, "out of memory");
}

/* Grow *arr to hold n + 1 elements. */
static int grow(struct parser *p, void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *a;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	a = realloc(*arr, ncap * size);
	if (!a)
		return nomem(p);
	*arr = a;
	*cap = ncap;
	return 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* ---- lexer ---- */

/* Bytes past ASCII are letters: OpenQASM 3 names may be Unicode (θ). */
static int is_id0(int ch)
{
	return isalpha(ch) || ch == '_' || ch >= 0x80;
}

static int is_id(int ch)
{
	return isalnum(ch) || ch == '_' || ch >= 0x80;
}

/* π, τ and ℇ standing alone: OpenQASM 3's constants; the byte length or 0. */
static int utf8_const(const char *s, const char *e, double *v)
{
	const unsigned char *u = (const unsigned char *)s;
	int n = 0;

	if (e - s >= 2 && u[0] == 0xcf && (u[1] == 0x80 || u[1] == 0x84)) {
		n = 2;
		*v = u[1] == 0x80 ? M_PI : 2 * M_PI;
	} else if (e - s >= 3 && u[0] == 0xe2 && u[1] == 0x84 && u[2] == 0x87) {
		n = 3;
		*v = M_E;
	}
	if (n && s + n < e && is_id((unsigned char)s[n]))
		return 0;
	return n;
}

static void lex_fail(struct parser *p, struct tok *t, const char *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void lex_fail(struct parser *p, struct tok *t, const char *s, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	perr(p, p->line, (int)(s - p->lstart) + 1, "%s", msg);
	t->type = T_ERR;
}

static void skip_line(struct parser *p)
{
	while (p->s < p->end && *p->s != '\n')
		p->s++;
}

/* A number: 12, 1.5, .5, 2e-3, 1_000; 0x1f, 0b101, 0o17 in OpenQASM 3 style. */
static void lex_number(struct parser *p, struct tok *t)
{
	const char *s = p->s, *e = p->end;
	char buf[128];
	size_t n = 0;
	int base = 10, real = 0;

	if (s[0] == '0' && s + 1 < e && s[1] && strchr("xXbBoO", s[1])) {
		base = s[1] == 'x' || s[1] == 'X' ? 16 : s[1] == 'b' || s[1] == 'B' ? 2 : 8;
		s += 2;
		while (s < e && (isxdigit((unsigned char)*s) || *s == '_')) {
			if (*s != '_' && n + 1 < sizeof(buf))
				buf[n++] = *s;
			s++;
		}
	} else {
		while (s < e && (isdigit((unsigned char)*s) || *s == '_')) {
			if (*s != '_' && n + 1 < sizeof(buf))
				buf[n++] = *s;
			s++;
		}
		if (s < e && *s == '.') {
			real = 1;
			if (n + 1 < sizeof(buf))
				buf[n++] = *s;
			s++;
			while (s < e && isdigit((unsigned char)*s)) {
				if (n + 1 < sizeof(buf))
					buf[n++] = *s;
				s++;
			}
		}
		if (s < e && (*s == 'e' || *s == 'E')) {
			const char *x = s + 1;

			if (x < e && (*x == '+' || *x == '-'))
				x++;
			if (x < e && isdigit((unsigned char)*x)) {
				real = 1;
				while (s < x) {
					if (n + 1 < sizeof(buf))
						buf[n++] = *s;
					s++;
				}
				while (s < e && isdigit((unsigned char)*s)) {
					if (n + 1 < sizeof(buf))
						buf[n++] = *s;
					s++;
				}
			}
		}
	}
	t->len = (size_t)(s - p->s);
	if (n + 1 >= sizeof(buf) || n == 0) {
		lex_fail(p, t, p->s, n ? "number too long" : "malformed number");
		return;
	}
	buf[n] = '\0';
	if (s < e && (is_id(*s) || *s == '.')) {
		lex_fail(p, t, s, "malformed number");
		return;
	}
	p->s = s;
	if (real) {
		t->type = T_REAL;
		t->v = strtod(buf, NULL);
		return;
	}
	t->type = T_INT;
	errno = 0;
	{
		char *end;

		t->iv = strtoull(buf, &end, base);
		if (*end) {
			lex_fail(p, t, t->s, "malformed number");
			return;
		}
	}
	t->big = errno == ERANGE;
	t->v = base == 10 ? strtod(buf, NULL) : (double)t->iv;
	if (base != 10 && t->big) {
		lex_fail(p, t, t->s, "number too large");
		return;
	}
}

static int lex_punct(struct parser *p, struct tok *t)
{
	static const struct {
		char s[3];
		int type;
	} ps[] = {
	    {"->", T_ARROW}, {"==", T_EQ},   {"!=", T_NE},  {"**", T_POW},   {";", T_SEMI},
	    {",", T_COMMA},  {"(", T_LP},    {")", T_RP},   {"[", T_LB},     {"]", T_RB},
	    {"{", T_LC},     {"}", T_RC},    {"+", T_PLUS}, {"-", T_MINUS},  {"*", T_STAR},
	    {"/", T_SLASH},  {"^", T_CARET}, {"@", T_AT},   {"=", T_ASSIGN}, {"!", T_NOT},
	    {":", T_COLON},
	};

	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		size_t n = strlen(ps[i].s);

		if ((size_t)(p->end - p->s) >= n && memcmp(p->s, ps[i].s, n) == 0) {
			t->type = ps[i].type;
			t->len = n;
			p->s += n;
			return 0;
		}
	}
	return -1;
}

static void lex(struct parser *p, struct tok *t)
{
	const char *e = p->end;
	unsigned char ch;
	int k;

	memset(t, 0, sizeof(*t));
	if (p->failed) {
		t->type = T_ERR;
		return;
	}
	for (;;) {
		while (p->s < e) {
			ch = (unsigned char)*p->s;
			if (ch == '\n') {
				p->s++;
				p->line++;
				p->lstart = p->s;
				p->line_toks = 0;
			} else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' ||
				   ch == '\v') {
				p->s++;
			} else if (ch == '/' && p->s + 1 < e && p->s[1] == '/') {
				skip_line(p);
			} else if (ch == '/' && p->s + 1 < e && p->s[1] == '*') {
				int line = p->line, col = (int)(p->s - p->lstart) + 1;

				p->s += 2;
				while (p->s + 1 < e && !(p->s[0] == '*' && p->s[1] == '/')) {
					if (*p->s == '\n') {
						p->line++;
						p->lstart = p->s + 1;
					}
					p->s++;
				}
				if (p->s + 1 >= e) {
					perr(p, line, col, "unterminated /* comment");
					t->type = T_ERR;
					return;
				}
				p->s += 2;
			} else if (ch == '#' || (ch == '@' && !p->line_toks && p->s + 1 < e &&
						 is_id0((unsigned char)p->s[1]))) {
				/* #pragma and @annotation lines: nothing we act on */
				skip_line(p);
			} else {
				break;
			}
		}
		t->line = p->line;
		t->col = (int)(p->s - p->lstart) + 1;
		t->s = p->s;
		if (p->s >= e) {
			t->type = T_EOF;
			return;
		}
		ch = (unsigned char)*p->s;
		if (ch >= 0x80 && (k = utf8_const(p->s, e, &t->v))) {
			t->type = T_REAL;
			t->len = (size_t)k;
			p->s += k;
			break;
		}
		if (is_id0(ch)) {
			const char *s = p->s;

			while (s < e && is_id((unsigned char)*s))
				s++;
			if (!p->line_toks && s - p->s == 6 && memcmp(p->s, "pragma", 6) == 0) {
				skip_line(p);
				continue;
			}
			t->type = T_ID;
			t->len = (size_t)(s - p->s);
			if (t->len > ID_MAX) {
				lex_fail(p, t, p->s, "identifier longer than %d characters",
					 ID_MAX);
				return;
			}
			p->s = s;
			break;
		}
		if (isdigit(ch) || (ch == '.' && p->s + 1 < e && isdigit((unsigned char)p->s[1]))) {
			lex_number(p, t);
			if (t->type == T_ERR)
				return;
			break;
		}
		if (ch == '"' || ch == '\'') {
			const char *s = p->s + 1;

			while (s < e && *s != (char)ch && *s != '\n')
				s++;
			if (s >= e || *s != (char)ch) {
				lex_fail(p, t, p->s, "unterminated string");
				return;
			}
			t->type = T_STR;
			t->s = p->s + 1;
			t->len = (size_t)(s - p->s - 1);
			p->s = s + 1;
			break;
		}
		if (ch == '$') {
			const char *s = p->s + 1;
			uint64_t v = 0;

			while (s < e && isdigit((unsigned char)*s) && v < 1000000)
				v = v * 10 + (uint64_t)(*s++ - '0');
			if (s == p->s + 1 || (s < e && is_id((unsigned char)*s))) {
				lex_fail(p, t, p->s, "malformed physical qubit");
				return;
			}
			t->type = T_PHYS;
			t->iv = v;
			t->len = (size_t)(s - p->s);
			p->s = s;
			break;
		}
		if (lex_punct(p, t) == 0)
			break;
		if (isprint(ch))
			lex_fail(p, t, p->s, "unexpected character '%c'", ch);
		else
			lex_fail(p, t, p->s, "unexpected byte 0x%02x", ch);
		return;
	}
	p->line_toks++;
}

static void next(struct parser *p)
{
	if (p->have_pk) {
		p->t = p->pk;
		p->have_pk = 0;
	} else {
		lex(p, &p->t);
	}
}

static const struct tok *peek(struct parser *p)
{
	if (!p->have_pk) {
		lex(p, &p->pk);
		p->have_pk = 1;
	}
	return &p->pk;
}

static int is_kw(const struct tok *t, const char *kw)
{
	return t->type == T_ID && t->len == strlen(kw) && memcmp(t->s, kw, t->len) == 0;
}

static void tok_name(const struct tok *t, char *buf, size_t n)
{
	snprintf(buf, n, "%.*s", (int)t->len, t->s);
}

/* "'foo'", "end of input": for "expected X, found Y" */
static const char *tok_desc(const struct tok *t, char *buf, size_t n)
{
	switch (t->type) {
	case T_EOF:
		return "end of input";
	case T_STR:
		snprintf(buf, n, "string \"%.*s\"", (int)(t->len > 20 ? 20 : t->len), t->s);
		return buf;
	default:
		snprintf(buf, n, "'%.*s'", (int)(t->len > 20 ? 20 : t->len), t->s);
		return buf;
	}
}

static int expect(struct parser *p, int type, const char *what)
{
	char d[48];

	if (p->t.type != type)
		return perr_tok(p, &p->t, "expected %s, found %s", what,
				tok_desc(&p->t, d, sizeof(d)));
	next(p);
	return 0;
}

/* ---- gate table ---- */

static uint32_t hash_name(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static int find_gate(const struct parser *p, const char *s, size_t n)
{
	uint32_t i;

	if (!p->hcap || n > ID_MAX)
		return -1;
	for (i = hash_name(s, n) & (uint32_t)(p->hcap - 1); p->hash[i];
	     i = (i + 1) & (uint32_t)(p->hcap - 1)) {
		const struct gdef *g = &p->g[p->hash[i] - 1];

		if (strlen(g->name) == n && memcmp(g->name, s, n) == 0)
			return (int)p->hash[i] - 1;
	}
	return -1;
}

static void hash_insert(struct parser *p, size_t idx)
{
	const char *name = p->g[idx].name;
	uint32_t i = hash_name(name, strlen(name)) & (uint32_t)(p->hcap - 1);

	while (p->hash[i])
		i = (i + 1) & (uint32_t)(p->hcap - 1);
	p->hash[i] = (uint32_t)idx + 1;
}

/* Append a gate (its name not yet in the table); its index, or -1. */
static int add_gate(struct parser *p, const struct gdef *g)
{
	if (grow(p, (void **)&p->g, &p->capg, p->ng, sizeof(*p->g)))
		return -1;
	if (2 * (p->ng + 1) > p->hcap) {
		size_t cap = p->hcap ? p->hcap * 2 : 256;
		uint32_t *h = calloc(cap, sizeof(*h));

		if (!h)
			return nomem(p);
		free(p->hash);
		p->hash = h;
		p->hcap = cap;
		for (size_t i = 0; i < p->ng; i++)
			hash_insert(p, i);
	}
	p->g[p->ng] = *g;
	hash_insert(p, p->ng);
	return (int)p->ng++;
}

static int add_std(struct parser *p, const char *name, const char *from)
{
	struct gdef g = {.kind = G_STD, .ops = 1, .work = 1, .depth = 1, .from = from};
	int np = circ_std_nparams(name), nq = circ_std_nqubits(name);

	if (np < 0 || nq < 0)
		return fail(p, CIEL_EINTERNAL, p->t.line, p->t.col, "no standard gate %s", name);
	snprintf(g.name, sizeof(g.name), "%s", name);
	g.nparams = np;
	g.nargs = nq;
	return add_gate(p, &g);
}

/* The names each include brings, as the files define them. */
static const char *const qelib1_names[] = {
    "u3",  "u2",   "u1",  "cx",	 "id",	  "u0",	     "u",   "p",   "x",	  "y",	  "z",
    "h",   "s",	   "sdg", "t",	 "tdg",	  "rx",	     "ry",  "rz",  "sx",  "sxdg", "cz",
    "cy",  "swap", "ch",  "ccx", "cswap", "crx",     "cry", "crz", "cu1", "cp",	  "cu3",
    "csx", "cu",   "rxx", "rzz", "c3x",	  "c3sqrtx", "c4x", NULL,
};

/* qelib1.inc gates that are not one matrix under controls: their definitions */
static const char qelib1_defs[] =
    "gate rccx a,b,c { u2(0,pi) c; u1(pi/4) c; cx b,c; u1(-pi/4) c; cx a,c; u1(pi/4) c;"
    " cx b,c; u1(-pi/4) c; u2(0,pi) c; }\n"
    "gate rc3x a,b,c,d { u2(0,pi) d; u1(pi/4) d; cx c,d; u1(-pi/4) d; u2(0,pi) d; cx a,d;"
    " u1(pi/4) d; cx b,d; u1(-pi/4) d; cx a,d; u1(pi/4) d; cx b,d; u1(-pi/4) d; u2(0,pi) d;"
    " u1(pi/4) d; cx c,d; u1(-pi/4) d; u2(0,pi) d; }\n";

static const char *const stdgates_names[] = {
    "p",   "x",	    "y",  "z",	"h",	 "s",	   "sdg", "t",	 "tdg", "sx", "rx",
    "ry",  "rz",    "cx", "cy", "cz",	 "cp",	   "crx", "cry", "crz", "ch", "swap",
    "ccx", "cswap", "cu", "CX", "phase", "cphase", "id",  "u1",	 "u2",	"u3", NULL,
};

static int in_list(const char *const *list, const char *s, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && memcmp(*list, s, n) == 0)
			return 1;
	return 0;
}

static int parse_program(struct parser *p);

/* Read definitions from built-in text with the same parser: the lexer is
 * swapped for the text and put back. */
static int parse_builtin_text(struct parser *p, const char *text)
{
	const char *s = p->s, *end = p->end, *lstart = p->lstart;
	int line = p->line, line_toks = p->line_toks, have_pk = p->have_pk, r;
	struct tok t = p->t, pk = p->pk;

	p->s = text;
	p->end = text + strlen(text);
	p->lstart = text;
	p->line = 1;
	p->line_toks = 0;
	p->have_pk = 0;
	p->builtin = "qelib1.inc";
	next(p);
	r = parse_program(p);
	p->builtin = NULL;
	p->s = s;
	p->end = end;
	p->lstart = lstart;
	p->line = line;
	p->line_toks = line_toks;
	p->have_pk = have_pk;
	p->t = t;
	p->pk = pk;
	return r;
}

static int include(struct parser *p, const struct tok *at, const char *const *names,
		   const char *from)
{
	for (const char *const *n = names; *n; n++) {
		int gi = find_gate(p, *n, strlen(*n));

		if (gi >= 0 && p->g[gi].line)
			return perr_tok(p, at, "gate %s is defined on line %d and in %s", *n,
					p->g[gi].line, from);
		if (gi < 0 && add_std(p, *n, from) < 0)
			return -1;
	}
	return 0;
}

/* ---- expressions ---- */

static int new_node(struct parser *p, int op, int a, int b, double v)
{
	struct enode *n;
	int h = 0;
	uint64_t size = 1;

	if (grow(p, (void **)&p->en, &p->capen, p->nen, sizeof(*p->en)))
		return -1;
	if (p->nen >= INT32_MAX)
		return nomem(p);
	if (op != E_NUM && op != E_PARAM) {
		h = p->en[a].h;
		size += p->en[a].size;
		if (b >= 0 && p->en[b].h > h)
			h = p->en[b].h;
		if (b >= 0)
			size += p->en[b].size;
	}
	if (h + 1 > EXPR_HEIGHT_MAX)
		return perr_tok(p, &p->t, "expression too long");
	n = &p->en[p->nen];
	n->op = (uint8_t)op;
	n->fn = 0;
	n->h = (uint16_t)(h + 1);
	n->size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
	n->a = a;
	n->b = b;
	n->v = v;
	return (int)p->nen++;
}

static const char *const fn_names[] = {
    "sin", "cos", "tan", "exp", "ln", "sqrt", "arcsin", "arccos", "arctan", "log", NULL,
};

static double apply_fn(int fn, double x)
{
	switch (fn) {
	case 0:
		return sin(x);
	case 1:
		return cos(x);
	case 2:
		return tan(x);
	case 3:
		return exp(x);
	case 4:
	case 9:
		return log(x);
	case 5:
		return sqrt(x);
	case 6:
		return asin(x);
	case 7:
		return acos(x);
	default:
		return atan(x);
	}
}

static double eval(const struct parser *p, int n, const double *env)
{
	const struct enode *e = &p->en[n];

	switch (e->op) {
	case E_NUM:
		return e->v;
	case E_PARAM:
		return env[e->a];
	case E_NEG:
		return -eval(p, e->a, env);
	case E_ADD:
		return eval(p, e->a, env) + eval(p, e->b, env);
	case E_SUB:
		return eval(p, e->a, env) - eval(p, e->b, env);
	case E_MUL:
		return eval(p, e->a, env) * eval(p, e->b, env);
	case E_DIV:
		return eval(p, e->a, env) / eval(p, e->b, env);
	case E_POW:
		return pow(eval(p, e->a, env), eval(p, e->b, env));
	default:
		return apply_fn(e->fn, eval(p, e->a, env));
	}
}

/* A node for op on a and b, folded to a number when both are numbers: keeps
 * top-level expressions one node deep however long they are. */
static int binary(struct parser *p, int op, int a, int b)
{
	if (p->en[a].op == E_NUM && (b < 0 || p->en[b].op == E_NUM)) {
		int n = new_node(p, op, a, b, 0);
		double v;

		if (n < 0)
			return -1;
		v = eval(p, n, NULL);
		p->nen = (size_t)a + 1; /* a, b and n were the last nodes made */
		p->en[a].op = E_NUM;
		p->en[a].h = 1;
		p->en[a].size = 1;
		p->en[a].v = v;
		return a;
	}
	return new_node(p, op, a, b, 0);
}

static int expr(struct parser *p, int depth);

static int primary(struct parser *p, int depth)
{
	struct tok t = p->t;
	char d[48];

	if (t.type == T_INT || t.type == T_REAL) {
		next(p);
		return new_node(p, E_NUM, -1, -1, t.v);
	}
	if (t.type == T_LP) {
		int n;

		next(p);
		n = expr(p, depth + 1);
		if (n < 0 || expect(p, T_RP, "')'"))
			return -1;
		return n;
	}
	if (t.type == T_ID) {
		next(p);
		for (int i = 0; p->in_gate && i < p->npnames; i++)
			if (strlen(p->pnames[i]) == t.len && memcmp(p->pnames[i], t.s, t.len) == 0)
				return new_node(p, E_PARAM, i, -1, 0);
		if (is_kw(&t, "pi"))
			return new_node(p, E_NUM, -1, -1, M_PI);
		if (is_kw(&t, "tau"))
			return new_node(p, E_NUM, -1, -1, 2 * M_PI);
		if (is_kw(&t, "euler"))
			return new_node(p, E_NUM, -1, -1, M_E);
		for (int f = 0; fn_names[f]; f++) {
			int a, n;

			if (!is_kw(&t, fn_names[f]))
				continue;
			if (expect(p, T_LP, "'(' after a function name"))
				return -1;
			a = expr(p, depth + 1);
			if (a < 0 || expect(p, T_RP, "')'"))
				return -1;
			if (p->en[a].op == E_NUM) {
				p->en[a].v = apply_fn(f, p->en[a].v);
				return a;
			}
			n = new_node(p, E_FN, a, -1, 0);
			if (n >= 0)
				p->en[n].fn = (uint8_t)f;
			return n;
		}
		tok_name(&t, d, sizeof(d));
		if (p->in_gate)
			return perr_tok(p, &t, "unknown parameter %s in gate %.*s", d,
					(int)p->gname_len, p->gname);
		return perr_tok(p, &t, "unknown identifier %s in an expression", d);
	}
	return perr_tok(p, &t, "expected an expression, found %s", tok_desc(&t, d, sizeof(d)));
}

static int unary(struct parser *p, int depth);

static int power(struct parser *p, int depth)
{
	int a = primary(p, depth), b;
	struct tok op = p->t;

	if (a < 0)
		return -1;
	if (op.type != T_CARET && op.type != T_POW)
		return a;
	if (op.type == T_CARET && p->version == 3)
		return perr_tok(p, &op, "'^' is xor in OpenQASM 3: write ** for a power");
	next(p);
	b = unary(p, depth + 1);
	if (b < 0)
		return -1;
	return binary(p, E_POW, a, b);
}

static int unary(struct parser *p, int depth)
{
	if (depth > EXPR_DEPTH_MAX)
		return perr_tok(p, &p->t, "expression nested more than %d deep", EXPR_DEPTH_MAX);
	if (p->t.type == T_MINUS || p->t.type == T_PLUS) {
		int neg = p->t.type == T_MINUS, a;

		next(p);
		a = unary(p, depth + 1);
		if (a < 0 || !neg)
			return a;
		return binary(p, E_NEG, a, -1);
	}
	return power(p, depth);
}

static int term(struct parser *p, int depth)
{
	int a = unary(p, depth);

	while (a >= 0 && (p->t.type == T_STAR || p->t.type == T_SLASH)) {
		int op = p->t.type == T_STAR ? E_MUL : E_DIV, b;

		next(p);
		b = unary(p, depth);
		if (b < 0)
			return -1;
		a = binary(p, op, a, b);
	}
	return a;
}

static int expr(struct parser *p, int depth)
{
	int a;

	if (depth > EXPR_DEPTH_MAX)
		return perr_tok(p, &p->t, "expression nested more than %d deep", EXPR_DEPTH_MAX);
	a = term(p, depth);
	while (a >= 0 && (p->t.type == T_PLUS || p->t.type == T_MINUS)) {
		int op = p->t.type == T_PLUS ? E_ADD : E_SUB, b;

		next(p);
		b = term(p, depth);
		if (b < 0)
			return -1;
		a = binary(p, op, a, b);
	}
	return a;
}

/* A constant expression's value; the nodes are dropped again. */
static int const_expr(struct parser *p, double *v)
{
	size_t mark = p->nen;
	int in_gate = p->in_gate, n;

	p->in_gate = 0; /* gate parameters are not constants */
	n = expr(p, 0);
	p->in_gate = in_gate;
	if (n < 0)
		return -1;
	*v = eval(p, n, NULL);
	p->nen = mark;
	return 0;
}

/* A constant non-negative integer expression at most max ([3], ctrl(2), pow(-1) uses lo). */
static int int_expr(struct parser *p, long lo, long hi, const char *what, long *out)
{
	struct tok at = p->t;
	double v;

	if (const_expr(p, &v))
		return -1;
	if (!isfinite(v) || v != floor(v))
		return perr_tok(p, &at, "%s must be an integer", what);
	if (v < (double)lo || v > (double)hi)
		return perr_tok(p, &at, "%s %.0f out of range (%ld to %ld)", what, v, lo, hi);
	*out = (long)v;
	return 0;
}

/* ---- emitting operations ---- */

static int push(struct parser *p, struct circ_op *op)
{
	struct ciel_err e = {0};

	if (p->c->n >= QASM_MAX_OPS)
		return perr(p, p->stmt_line, p->stmt_col,
			    "more than %u operations after expanding gates", QASM_MAX_OPS);
	op->cond_off = p->cond_off;
	op->cond_len = p->cond_len;
	op->cond_val = p->cond_val;
	if (circ_push(p->c, op, &e))
		return fail(p, e.code, p->stmt_line, p->stmt_col, "%s", e.msg);
	return 0;
}

static int mat_equal(const struct circ_op *a, const struct circ_op *b)
{
	int n = a->ntgt == 2 ? 32 : 8;

	if (a->ntgt != b->ntgt)
		return 0;
	for (int i = 0; i < n; i++)
		if (fabs(a->m[i] - b->m[i]) > 1e-12)
			return 0;
	return 1;
}

/* Name and parameters of a standard gate's inverse where one exists, so
 * inv @ s shows as sdg and the transpiler sees a gate it knows. */
static int std_inverse(const struct circ_op *op, char *name, double *par)
{
	static const char *const self[] = {
	    "id", "x",	  "y",	 "z",	    "h",   "cx",    "CX",      "cnot", "cy",  "cz",
	    "ch", "swap", "ccx", "toffoli", "ccz", "cswap", "fredkin", "c3x",  "c4x", NULL};
	static const char *const negate[] = {"rx",  "ry",  "rz",  "p",	 "u1",	"phase",
					     "crx", "cry", "crz", "cp",	 "cu1", "cphase",
					     "rxx", "ryy", "rzz", "rzx", "u0",	NULL};
	static const char *const pairs[][2] = {{"s", "sdg"}, {"t", "tdg"}, {"sx", "sxdg"}};
	const char *n = op->name;
	const double *q = op->params;

	memcpy(par, q, sizeof(op->params));
	if (in_list(self, n, strlen(n)) || in_list(negate, n, strlen(n))) {
		snprintf(name, CIRC_NAME_MAX, "%s", n);
		if (in_list(negate, n, strlen(n)))
			par[0] = -q[0];
		return op->nparams;
	}
	for (size_t i = 0; i < 3; i++)
		for (int k = 0; k < 2; k++)
			if (strcmp(n, pairs[i][k]) == 0) {
				snprintf(name, CIRC_NAME_MAX, "%s", pairs[i][!k]);
				return 0;
			}
	if (!strcmp(n, "u3") || !strcmp(n, "u") || !strcmp(n, "U") || !strcmp(n, "cu3") ||
	    !strcmp(n, "cu")) {
		snprintf(name, CIRC_NAME_MAX, "%s", n);
		par[0] = -q[0];
		par[1] = -q[2];
		par[2] = -q[1];
		if (op->nparams == 4)
			par[3] = -q[3];
		return op->nparams;
	}
	if (!strcmp(n, "u2")) {
		snprintf(name, CIRC_NAME_MAX, "u3");
		par[0] = -M_PI / 2;
		par[1] = -q[1];
		par[2] = -q[0];
		return 3;
	}
	if (!strcmp(n, "r") || !strcmp(n, "prx")) {
		snprintf(name, CIRC_NAME_MAX, "%s", n);
		par[0] = -q[0];
		return 2;
	}
	return -1;
}

/* The uncontrolled gate a standard controlled name stands for. */
static const char *std_root(const char *n)
{
	static const char *const map[][2] = {
	    {"cx", "x"},       {"CX", "x"},	    {"cnot", "x"},	 {"ccx", "x"},
	    {"toffoli", "x"},  {"c3x", "x"},	    {"c4x", "x"},	 {"cz", "z"},
	    {"ccz", "z"},      {"cy", "y"},	    {"ch", "h"},	 {"csx", "sx"},
	    {"c3sqrtx", "sx"}, {"crx", "rx"},	    {"cry", "ry"},	 {"crz", "rz"},
	    {"cp", "p"},       {"cu1", "u1"},	    {"cphase", "phase"}, {"cu3", "u3"},
	    {"cswap", "swap"}, {"fredkin", "swap"}, {"cu", "u"},	 {"U", "u"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(n, map[i][0]) == 0)
			return map[i][1];
	return n;
}

/* After ctrl @ added controls: the standard name for the result when there
 * is one with the same matrix (ctrl @ x is cx, ctrl @ ctrl @ x is ccx),
 * else c<k><root> for display ("c2h"). */
static void rename_controlled(struct circ_op *op)
{
	char cand[CIRC_NAME_MAX * 2];
	const char *root = std_root(op->name);
	int k = op->nctrl;
	double par[4];
	int np = op->nparams;
	struct circ_op t;

	memcpy(par, op->params, sizeof(par));
	if (!strcmp(root, "u") && k == 1) {
		/* cu carries a fourth parameter, the phase under the control */
		if (np == 3) {
			par[3] = 0;
			np = 4;
		}
		snprintf(cand, sizeof(cand), "cu");
	} else if (!strcmp(root, "sx") && k == 3) {
		snprintf(cand, sizeof(cand), "c3sqrtx");
	} else if (k == 1) {
		snprintf(cand, sizeof(cand), "c%s", root);
	} else if (k == 2) {
		snprintf(cand, sizeof(cand), "cc%s", root);
	} else {
		snprintf(cand, sizeof(cand), "c%d%s", k, root);
	}
	if (circ_std_nqubits(cand) == k + op->ntgt && circ_std_gate(cand, par, np, &t, NULL) == 0 &&
	    t.nctrl == k && mat_equal(&t, op)) {
		memcpy(op->params, par, sizeof(par));
		op->nparams = (uint8_t)np;
	} else if (k >= 2) {
		snprintf(cand, sizeof(cand), "c%d%s", k, root);
	}
	snprintf(op->name, sizeof(op->name), "%.*s", CIRC_NAME_MAX - 1, cand);
}

struct xctx {
	int ctl[CIRC_MAX_CTRL];
	int nctl;
	int inv;
};

/* One standard gate on q (its own qubits), under x's controls and inversion. */
static int emit_std(struct parser *p, const char *name, const double *par, int np, const int *q,
		    const struct xctx *x, int line, int col)
{
	struct circ_op op;
	struct ciel_err e = {0};

	if (circ_std_gate(name, par, np, &op, &e))
		return fail(p, CIEL_EINTERNAL, line, col, "%s", e.msg);
	for (int i = 0; i < op.nctrl + op.ntgt; i++)
		op.q[i] = q[i];
	if (x->inv) {
		char iname[CIRC_NAME_MAX];
		double ipar[4];
		int inp = std_inverse(&op, iname, ipar);
		struct circ_op t, want = op;

		circ_op_invert(&want);
		if (inp >= 0 && circ_std_gate(iname, ipar, inp, &t, NULL) == 0 &&
		    t.nctrl == op.nctrl && mat_equal(&t, &want)) {
			memcpy(t.q, op.q, sizeof(op.q));
			op = t;
		} else {
			op = want;
			snprintf(op.name, sizeof(op.name), "%.*sdg", CIRC_NAME_MAX - 3, name);
		}
	}
	for (int i = x->nctl - 1; i >= 0; i--)
		if (circ_op_control(&op, x->ctl[i], &e))
			return perr(p, line, col, "%s", e.msg);
	if (x->nctl)
		rename_controlled(&op);
	return push(p, &op);
}

static int emit_x(struct parser *p, int q, int line, int col)
{
	struct xctx x = {.nctl = 0};

	return emit_std(p, "x", NULL, 0, &q, &x, line, col);
}

/* Barrier ops over q[0..n) (duplicates dropped), eight qubits each as
 * circ_op holds no more: the qubits in q[0..ntgt), the other slots -1. */
static int emit_barrier(struct parser *p, const int *q, int n)
{
	const int slots = (int)(sizeof(((struct circ_op *)0)->q) / sizeof(int));
	uint64_t seen = 0;
	struct circ_op op;

	memset(&op, 0, sizeof(op));
	op.kind = CIRC_BARRIER;
	snprintf(op.name, sizeof(op.name), "barrier");
	for (int i = 0; i < slots; i++)
		op.q[i] = -1;
	for (int i = 0; i < n; i++) {
		if (seen & (1ULL << q[i]))
			continue;
		seen |= 1ULL << q[i];
		op.q[op.ntgt++] = q[i];
		if (op.ntgt == slots) {
			if (push(p, &op))
				return -1;
			for (int k = 0; k < slots; k++)
				op.q[k] = -1;
			op.ntgt = 0;
		}
	}
	return op.ntgt ? push(p, &op) : 0;
}

static int apply(struct parser *p, int gate, const struct mods *m, const double *par, const int *q,
		 const struct xctx *x, int line, int col);

static int check_finite(struct parser *p, const double *par, int n, int line, int col)
{
	for (int i = 0; i < n; i++)
		if (!isfinite(par[i]))
			return perr(p, line, col, "parameter %d is not a finite number", i + 1);
	return 0;
}

/* One expansion of gate on its qubits q, under x. Recursion is as deep as
 * definitions nest: GATE_DEPTH_MAX. */
static int expand(struct parser *p, int gate, const double *par, const int *q, const struct xctx *x,
		  int line, int col)
{
	const struct gdef *g = &p->g[gate];

	switch (g->kind) {
	case G_STD:
		return emit_std(p, g->name, par, g->nparams, q, x, line, col);
	case G_OPAQUE:
		return perr(p, line, col, "opaque gate %s cannot be simulated", g->name);
	case G_GPHASE: {
		/* a global phase, unless controlled: then a phase on the controls */
		struct xctx y = *x;
		double th = x->inv ? -par[0] : par[0];

		if (!x->nctl)
			return 0;
		y.nctl--;
		y.inv = 0;
		return emit_std(p, "p", &th, 1, &x->ctl[x->nctl - 1], &y, line, col);
	}
	default:
		break;
	}
	for (size_t k = 0; k < g->nbody; k++) {
		const struct gstmt *s = &p->st[g->body + (x->inv ? g->nbody - 1 - k : k)];
		double par2[GATE_PARAMS_MAX];
		int q2[CALL_QUBITS_MAX];

		for (int i = 0; i < s->nargs; i++)
			q2[i] = q[p->pool[s->args + (size_t)i]];
		if (s->kind == S_BARRIER) {
			if (emit_barrier(p, q2, s->nargs))
				return -1;
			continue;
		}
		for (int i = 0; i < s->nparams; i++)
			par2[i] = eval(p, p->pool[s->params + (size_t)i], par);
		if (check_finite(p, par2, s->nparams, s->line, s->col) ||
		    apply(p, s->gate, &s->m, par2, q2, x, s->line, s->col))
			return -1;
	}
	return 0;
}

static int apply(struct parser *p, int gate, const struct mods *m, const double *par, const int *q,
		 const struct xctx *x, int line, int col)
{
	struct xctx y = *x;
	long rep = m->pow;

	if (rep < 0) {
		rep = -rep;
		y.inv ^= 1;
	}
	y.inv ^= m->inv;
	for (int i = 0; i < m->nctl; i++) {
		if (y.nctl >= CIRC_MAX_CTRL)
			return perr(p, line, col, "more than %d controls on one gate",
				    CIRC_MAX_CTRL);
		y.ctl[y.nctl++] = q[i];
	}
	for (int i = 0; i < m->nctl; i++)
		if ((m->negmask >> i & 1) && emit_x(p, q[i], line, col))
			return -1;
	for (long r = 0; r < rep; r++)
		if (expand(p, gate, par, q + m->nctl, &y, line, col))
			return -1;
	for (int i = 0; i < m->nctl; i++)
		if ((m->negmask >> i & 1) && emit_x(p, q[i], line, col))
			return -1;
	return 0;
}

/* Operations and work one call with m costs (saturating). */
static void call_cost(const struct gdef *g, const struct mods *m, uint64_t *ops, uint64_t *work)
{
	uint64_t rep = (uint64_t)(m->pow < 0 ? -m->pow : m->pow);
	uint64_t neg = (uint64_t)__builtin_popcount(m->negmask);

	*ops = sat_add(sat_mul(rep, g->ops), 2 * neg);
	*work = sat_add(sat_mul(rep, g->work), 1 + 2 * neg);
}

/* ---- statements ---- */

/* ctrl @, negctrl @, inv @, pow(k) @ in front of a gate name. */
static int is_modifier(struct parser *p)
{
	const struct tok *n;

	if (!(is_kw(&p->t, "ctrl") || is_kw(&p->t, "negctrl") || is_kw(&p->t, "inv") ||
	      is_kw(&p->t, "pow")))
		return 0;
	if (find_gate(p, p->t.s, p->t.len) >= 0)
		return 0;
	n = peek(p);
	return n->type == T_AT || n->type == T_LP;
}

static int parse_mods(struct parser *p, struct mods *m)
{
	memset(m, 0, sizeof(*m));
	m->pow = 1;
	while (is_modifier(p)) {
		struct tok t = p->t;
		long k = 1;

		next(p);
		if (is_kw(&t, "pow")) {
			if (expect(p, T_LP, "'(' after pow") ||
			    int_expr(p, -(long)QASM_MAX_OPS, QASM_MAX_OPS, "pow() exponent", &k) ||
			    expect(p, T_RP, "')'"))
				return -1;
			if (labs(m->pow * k) > (long)QASM_MAX_OPS)
				return perr_tok(p, &t, "pow() exponents multiply past %u",
						QASM_MAX_OPS);
			m->pow *= k;
		} else if (is_kw(&t, "inv")) {
			m->inv ^= 1;
		} else {
			if (p->t.type == T_LP) {
				next(p);
				if (int_expr(p, 1, CIRC_MAX_CTRL, "number of controls", &k) ||
				    expect(p, T_RP, "')'"))
					return -1;
			}
			if (m->nctl + k > CIRC_MAX_CTRL)
				return perr_tok(p, &t, "more than %d controls on one gate",
						CIRC_MAX_CTRL);
			if (is_kw(&t, "negctrl"))
				m->negmask |= ((1u << k) - 1) << m->nctl;
			m->nctl += (int)k;
		}
		if (expect(p, T_AT, "'@' after a modifier"))
			return -1;
	}
	return 0;
}

/* The gate named by the current token, or -1 with a helpful error. */
static int gate_ref(struct parser *p)
{
	const struct tok *t = &p->t;
	char n[ID_MAX + 1];
	int gi;

	if (t->type != T_ID) {
		char d[48];

		return perr_tok(p, t, "expected a gate name, found %s", tok_desc(t, d, sizeof(d)));
	}
	gi = find_gate(p, t->s, t->len);
	if (gi >= 0)
		return gi;
	tok_name(t, n, sizeof(n));
	if (p->in_gate && t->len == p->gname_len && memcmp(t->s, p->gname, t->len) == 0)
		return perr_tok(p, t, "gate %s cannot call itself", n);
	if (!p->incl_qelib && !p->incl_std && p->version != 3 &&
	    in_list(qelib1_names, t->s, t->len))
		return perr_tok(p, t, "unknown gate %s — did you forget include \"qelib1.inc\"?",
				n);
	if (!p->incl_qelib && !p->incl_std && in_list(stdgates_names, t->s, t->len))
		return perr_tok(p, t, "unknown gate %s — did you forget include \"stdgates.inc\"?",
				n);
	return perr_tok(p, t, "unknown gate %s", n);
}

/* A parenthesised list of expressions (kept as trees); count in *n. */
static int param_list(struct parser *p, int *nodes, int *n)
{
	*n = 0;
	if (p->t.type != T_LP)
		return 0;
	next(p);
	if (p->t.type == T_RP) {
		next(p);
		return 0;
	}
	for (;;) {
		int e;

		if (*n >= GATE_PARAMS_MAX)
			return perr_tok(p, &p->t, "more than %d parameters", GATE_PARAMS_MAX);
		e = expr(p, 0);
		if (e < 0)
			return -1;
		nodes[(*n)++] = e;
		if (p->t.type == T_COMMA) {
			next(p);
			continue;
		}
		return expect(p, T_RP, "',' or ')'");
	}
}

static int check_counts(struct parser *p, const struct tok *at, const struct gdef *g,
			const struct mods *m, int nparams, int nargs)
{
	if (nparams != g->nparams)
		return perr_tok(p, at, "gate %s takes %d parameter%s, not %d", g->name, g->nparams,
				g->nparams == 1 ? "" : "s", nparams);
	if (nargs != m->nctl + g->nargs) {
		if (m->nctl)
			return perr_tok(p, at, "gate %s with %d control%s takes %d qubits, not %d",
					g->name, m->nctl, m->nctl == 1 ? "" : "s",
					m->nctl + g->nargs, nargs);
		return perr_tok(p, at, "gate %s takes %d qubit%s, not %d", g->name, g->nargs,
				g->nargs == 1 ? "" : "s", nargs);
	}
	return 0;
}

/* A qubit or register operand at top level: q, q[3], $2. */
struct qref {
	int off, len; /* qubits [off, off + len) */
	int whole;    /* a register: broadcast over it */
	int reg;      /* index in c->qregs / c->cregs, -1 for $k */
	struct tok at;
};

static int phys_qubit(struct parser *p, struct qref *r)
{
	if (p->phys_reg < 0) {
		struct ciel_err e = {0};

		if (p->c->nqregs)
			return perr_tok(
			    p, &p->t, "physical qubits ($%d) cannot be mixed with declared qubits",
			    (int)p->t.iv);
		if (p->phys_max >= CIRC_MAX_QUBITS)
			return perr_tok(p, &p->t, "physical qubit $%d: at most %d qubits",
					p->phys_max, CIRC_MAX_QUBITS);
		if (circ_add_qreg(p->c, "q", p->phys_max + 1, &e))
			return perr_tok(p, &p->t, "%s", e.msg);
		p->phys_reg = (int)p->c->nqregs - 1;
	}
	if (p->t.iv >= (uint64_t)p->c->qregs[p->phys_reg].len)
		return perr_tok(p, &p->t, "physical qubit $%d out of range", (int)p->t.iv);
	r->off = (int)p->t.iv;
	r->len = 1;
	r->whole = 0;
	r->reg = -1;
	next(p);
	return 0;
}

static int reg_ref(struct parser *p, int classical, struct qref *r)
{
	const struct circ_reg *reg, *other;
	char n[ID_MAX + 1], d[48];
	long idx;

	r->at = p->t;
	if (!classical && p->t.type == T_PHYS)
		return phys_qubit(p, r);
	if (p->t.type != T_ID)
		return perr_tok(p, &p->t, "expected a %s, found %s", classical ? "bit" : "qubit",
				tok_desc(&p->t, d, sizeof(d)));
	tok_name(&p->t, n, sizeof(n));
	reg = classical ? circ_find_creg(p->c, n) : circ_find_qreg(p->c, n);
	if (!reg) {
		other = classical ? circ_find_qreg(p->c, n) : circ_find_creg(p->c, n);
		if (other)
			return perr_tok(p, &p->t, "%s is a %s register, not a %s register", n,
					classical ? "qubit" : "classical",
					classical ? "classical" : "qubit");
		return perr_tok(p, &p->t, "unknown %s register %s",
				classical ? "classical" : "qubit", n);
	}
	r->reg = (int)(reg - (classical ? p->c->cregs : p->c->qregs));
	next(p);
	if (p->t.type != T_LB) {
		r->off = reg->off;
		r->len = reg->len;
		r->whole = 1;
		return 0;
	}
	next(p);
	{
		struct tok at = p->t;

		if (int_expr(p, 0, INT32_MAX, "index", &idx))
			return -1;
		if (idx >= reg->len)
			return perr_tok(p, &at, "index %ld out of range for %s[%d]", idx, n,
					reg->len);
	}
	r->off = reg->off + (int)idx;
	r->len = 1;
	r->whole = 0;
	return expect(p, T_RB, "']'");
}

static void qubit_name(const struct parser *p, int q, char *buf, size_t n)
{
	for (size_t i = 0; i < p->c->nqregs; i++) {
		const struct circ_reg *r = &p->c->qregs[i];

		if (q >= r->off && q < r->off + r->len) {
			snprintf(buf, n, "%s[%d]", r->name, q - r->off);
			return;
		}
	}
	snprintf(buf, n, "$%d", q);
}

/* Broadcast size of operands: 1, or the common size of the registers. */
static int broadcast(struct parser *p, const struct qref *r, int n, int *size)
{
	const struct qref *first = NULL;

	*size = 1;
	for (int i = 0; i < n; i++) {
		if (!r[i].whole)
			continue;
		if (first && r[i].len != first->len) {
			char a[ID_MAX + 1], b[ID_MAX + 1];

			tok_name(&first->at, a, sizeof(a));
			tok_name(&r[i].at, b, sizeof(b));
			return perr_tok(p, &r[i].at, "registers %s (%d) and %s (%d) differ in size",
					a, first->len, b, r[i].len);
		}
		first = &r[i];
		*size = r[i].len;
	}
	return 0;
}

/* The qubits of broadcast step k, all different. */
static int step_qubits(struct parser *p, const struct qref *r, int n, int k, int *q)
{
	for (int i = 0; i < n; i++) {
		q[i] = r[i].off + (r[i].whole ? k : 0);
		for (int j = 0; j < i; j++)
			if (q[j] == q[i]) {
				char b[ID_MAX + 16];

				qubit_name(p, q[i], b, sizeof(b));
				return perr_tok(p, &r[i].at, "qubit %s used twice in one gate call",
						b);
			}
	}
	return 0;
}

static int gate_call(struct parser *p)
{
	struct mods m;
	struct tok at;
	int gi, nparams, nodes[GATE_PARAMS_MAX], nr = 0, size;
	double par[GATE_PARAMS_MAX];
	struct qref r[CALL_QUBITS_MAX];
	size_t mark = p->nen;
	uint64_t ops, work;
	const struct gdef *g;

	if (parse_mods(p, &m))
		return -1;
	at = p->t;
	gi = gate_ref(p);
	if (gi < 0)
		return -1;
	next(p);
	if (param_list(p, nodes, &nparams))
		return -1;
	for (int i = 0; i < nparams; i++)
		par[i] = eval(p, nodes[i], NULL);
	p->nen = mark;
	while (p->t.type != T_SEMI) {
		if (nr == CALL_QUBITS_MAX)
			return perr_tok(p, &p->t, "more than %d operands", CALL_QUBITS_MAX);
		if (reg_ref(p, 0, &r[nr++]))
			return -1;
		if (p->t.type == T_COMMA)
			next(p);
		else if (p->t.type != T_SEMI)
			return expect(p, T_SEMI, "',' or ';'");
	}
	next(p);
	g = &p->g[gi];
	if (check_counts(p, &at, g, &m, nparams, nr) || broadcast(p, r, nr, &size) ||
	    check_finite(p, par, nparams, at.line, at.col))
		return -1;
	call_cost(g, &m, &ops, &work);
	if (sat_add(sat_mul(ops, (uint64_t)size), p->c->n) > QASM_MAX_OPS)
		return perr_tok(p, &at, "gate %s expands to more than %u operations", g->name,
				QASM_MAX_OPS);
	if (sat_mul(work, (uint64_t)size) > WORK_MAX - p->work)
		return perr_tok(p, &at, "gate %s takes too long to expand", g->name);
	p->work += work * (uint64_t)size;
	for (int k = 0; k < size; k++) {
		int q[CALL_QUBITS_MAX];
		struct xctx x = {.nctl = 0};

		if (step_qubits(p, r, nr, k, q) || apply(p, gi, &m, par, q, &x, at.line, at.col))
			return -1;
	}
	return 0;
}

static int measure_op(struct parser *p, int q, int cl)
{
	struct circ_op op;

	memset(&op, 0, sizeof(op));
	op.kind = CIRC_MEASURE;
	op.ntgt = 1;
	op.q[0] = q;
	op.clbit = cl;
	snprintf(op.name, sizeof(op.name), "measure");
	return push(p, &op);
}

static int measure_pair(struct parser *p, const struct qref *q, const struct qref *c)
{
	if (q->len != c->len)
		return perr_tok(p, &q->at,
				"measure needs one qubit and one bit, or two registers of the "
				"same size (%d qubit%s, %d bit%s)",
				q->len, q->len == 1 ? "" : "s", c->len, c->len == 1 ? "" : "s");
	for (int i = 0; i < q->len; i++)
		if (measure_op(p, q->off + i, c->off + i))
			return -1;
	return 0;
}

/* measure q -> c; */
static int stmt_measure(struct parser *p)
{
	struct qref q, c;

	next(p);
	if (reg_ref(p, 0, &q))
		return -1;
	if (p->t.type != T_ARROW) {
		if (p->t.type == T_SEMI)
			return perr_tok(
			    p, &p->t, "measure needs a target: measure q -> c; or c = measure q;");
		return expect(p, T_ARROW, "'->'");
	}
	next(p);
	if (reg_ref(p, 1, &c) || expect(p, T_SEMI, "';'"))
		return -1;
	return measure_pair(p, &q, &c);
}

/* c = measure q; c[0] = measure q[0]; */
static int stmt_assign(struct parser *p)
{
	struct qref q, c;

	if (reg_ref(p, 1, &c) || expect(p, T_ASSIGN, "'='"))
		return -1;
	if (!is_kw(&p->t, "measure"))
		return perr_tok(p, &p->t, "only c = measure q; assignments are supported");
	next(p);
	if (reg_ref(p, 0, &q) || expect(p, T_SEMI, "';'"))
		return -1;
	return measure_pair(p, &q, &c);
}

static int stmt_reset(struct parser *p)
{
	next(p);
	for (;;) {
		struct qref q;

		if (reg_ref(p, 0, &q))
			return -1;
		for (int i = 0; i < q.len; i++) {
			struct circ_op op;

			memset(&op, 0, sizeof(op));
			op.kind = CIRC_RESET;
			op.ntgt = 1;
			op.q[0] = q.off + i;
			snprintf(op.name, sizeof(op.name), "reset");
			if (push(p, &op))
				return -1;
		}
		if (p->t.type != T_COMMA)
			return expect(p, T_SEMI, "',' or ';'");
		next(p);
	}
}

static int stmt_barrier(struct parser *p)
{
	int q[CIRC_MAX_QUBITS], n = 0;
	uint64_t seen = 0;

	next(p);
	if (p->t.type == T_SEMI) {
		/* barrier; in OpenQASM 3: every qubit */
		next(p);
		for (int i = 0; i < p->c->nq; i++)
			q[n++] = i;
		return emit_barrier(p, q, n);
	}
	for (;;) {
		struct qref r;

		if (reg_ref(p, 0, &r))
			return -1;
		for (int i = r.off; i < r.off + r.len; i++)
			if (!(seen & (1ULL << i))) {
				seen |= 1ULL << i;
				q[n++] = i;
			}
		if (p->t.type != T_COMMA)
			break;
		next(p);
	}
	if (expect(p, T_SEMI, "',' or ';'"))
		return -1;
	return emit_barrier(p, q, n);
}

/* qreg q[3]; creg c[3]; qubit[3] q; qubit q; bit[2] c; bit c; */
static int stmt_decl(struct parser *p, int classical, int v3)
{
	struct tok at = p->t, name;
	long size = 1;
	char n[ID_MAX + 1];
	struct ciel_err e = {0};
	int r;

	next(p);
	if (v3 && p->t.type == T_LB) {
		next(p);
		if (int_expr(p, 1, classical ? CIRC_MAX_CLBITS : CIRC_MAX_QUBITS, "register size",
			     &size) ||
		    expect(p, T_RB, "']'"))
			return -1;
	}
	name = p->t;
	if (expect(p, T_ID, "a register name"))
		return -1;
	if (!v3) {
		if (expect(p, T_LB, "'['") ||
		    int_expr(p, 1, classical ? CIRC_MAX_CLBITS : CIRC_MAX_QUBITS, "register size",
			     &size) ||
		    expect(p, T_RB, "']'"))
			return -1;
	}
	if (p->t.type == T_ASSIGN)
		return perr_tok(p, &p->t, "initialised declarations are not supported");
	if (expect(p, T_SEMI, "';'"))
		return -1;
	if (!classical && p->phys_reg >= 0)
		return perr_tok(p, &at,
				"declared qubits cannot be mixed with physical qubits ($k)");
	tok_name(&name, n, sizeof(n));
	r = classical ? circ_add_creg(p->c, n, (int)size, &e)
		      : circ_add_qreg(p->c, n, (int)size, &e);
	if (r)
		return fail(p, e.code == CIEL_ENOMEM ? CIEL_ENOMEM : CIEL_EINVAL, name.line,
			    name.col, "%s", e.msg);
	return 0;
}

/* Argument and parameter names of a definition; distinct. */
static int name_list(struct parser *p, char (*names)[ID_MAX + 1], int max, int *n, const char *what)
{
	*n = 0;
	while (p->t.type == T_ID) {
		if (*n == max)
			return perr_tok(p, &p->t, "more than %d %ss", max, what);
		tok_name(&p->t, names[*n], ID_MAX + 1);
		for (int i = 0; i < *n; i++)
			if (!strcmp(names[i], names[*n]))
				return perr_tok(p, &p->t, "%s %s declared twice", what, names[i]);
		if (p->version == 3 && (is_kw(&p->t, "pi") || is_kw(&p->t, "tau")))
			return perr_tok(p, &p->t, "%s %s shadows a constant", what, names[*n]);
		(*n)++;
		next(p);
		if (p->t.type != T_COMMA)
			break;
		next(p);
		if (p->t.type != T_ID)
			return expect(p, T_ID, "a name");
	}
	return 0;
}

static int body_arg(struct parser *p, int *out)
{
	char d[48];

	if (p->t.type == T_ID)
		for (int i = 0; i < p->nanames; i++)
			if (strlen(p->anames[i]) == p->t.len &&
			    memcmp(p->anames[i], p->t.s, p->t.len) == 0) {
				*out = i;
				next(p);
				if (p->t.type == T_LB)
					return perr_tok(p, &p->t,
							"gate arguments are single qubits and "
							"cannot be indexed");
				return 0;
			}
	if (p->t.type == T_ID) {
		tok_name(&p->t, d, sizeof(d));
		return perr_tok(p, &p->t, "%s is not an argument of gate %.*s", d,
				(int)p->gname_len, p->gname);
	}
	return perr_tok(p, &p->t, "expected a gate argument, found %s",
			tok_desc(&p->t, d, sizeof(d)));
}

static int pool_add(struct parser *p, int v)
{
	if (grow(p, (void **)&p->pool, &p->cappool, p->npool, sizeof(*p->pool)))
		return -1;
	p->pool[p->npool++] = v;
	return 0;
}

/* One statement of a gate body, appended to p->st. */
static int body_stmt(struct parser *p, struct gdef *def)
{
	struct gstmt s;
	struct tok at = p->t;
	int nodes[GATE_PARAMS_MAX], args[CALL_QUBITS_MAX];
	uint64_t ops, work;

	memset(&s, 0, sizeof(s));
	s.line = at.line;
	s.col = at.col;
	if (is_kw(&p->t, "barrier") && find_gate(p, p->t.s, p->t.len) < 0) {
		s.kind = S_BARRIER;
		next(p);
		while (p->t.type != T_SEMI) {
			if (s.nargs == CALL_QUBITS_MAX)
				return perr_tok(p, &p->t, "too many operands");
			if (body_arg(p, &args[s.nargs++]))
				return -1;
			if (p->t.type == T_COMMA)
				next(p);
			else if (p->t.type != T_SEMI)
				return expect(p, T_SEMI, "',' or ';'");
		}
		ops = (uint64_t)(s.nargs + 7) / 8;
		work = 1;
	} else {
		const struct gdef *g;

		if (p->t.type == T_ID &&
		    (is_kw(&p->t, "measure") || is_kw(&p->t, "reset") || is_kw(&p->t, "if") ||
		     is_kw(&p->t, "qreg") || is_kw(&p->t, "creg") || is_kw(&p->t, "gate")) &&
		    find_gate(p, p->t.s, p->t.len) < 0) {
			char n[ID_MAX + 1];

			tok_name(&p->t, n, sizeof(n));
			return perr_tok(p, &p->t,
					"%s is not allowed in a gate body (only gate calls and "
					"barriers)",
					n);
		}
		s.kind = S_CALL;
		if (parse_mods(p, &s.m))
			return -1;
		at = p->t;
		s.line = at.line;
		s.col = at.col;
		s.gate = gate_ref(p);
		if (s.gate < 0)
			return -1;
		next(p);
		if (param_list(p, nodes, &s.nparams))
			return -1;
		while (p->t.type != T_SEMI) {
			struct tok arg = p->t;

			if (s.nargs == CALL_QUBITS_MAX)
				return perr_tok(p, &p->t, "too many operands");
			if (body_arg(p, &args[s.nargs]))
				return -1;
			for (int j = 0; j < s.nargs; j++)
				if (args[j] == args[s.nargs])
					return perr_tok(p, &arg,
							"argument %s used twice in one gate call",
							p->anames[args[j]]);
			s.nargs++;
			if (p->t.type == T_COMMA)
				next(p);
			else if (p->t.type != T_SEMI)
				return expect(p, T_SEMI, "',' or ';'");
		}
		g = &p->g[s.gate];
		if (check_counts(p, &at, g, &s.m, s.nparams, s.nargs))
			return -1;
		call_cost(g, &s.m, &ops, &work);
		for (int i = 0; i < s.nparams; i++)
			work = sat_add(work, p->en[nodes[i]].size);
		if (g->depth + 1 > def->depth)
			def->depth = g->depth + 1;
	}
	next(p); /* ';' */
	if (def->depth > GATE_DEPTH_MAX)
		return perr_tok(p, &at, "gate definitions nested more than %d deep",
				GATE_DEPTH_MAX);
	s.params = p->npool;
	for (int i = 0; i < s.nparams; i++)
		if (pool_add(p, nodes[i]))
			return -1;
	s.args = p->npool;
	for (int i = 0; i < s.nargs; i++)
		if (pool_add(p, args[i]))
			return -1;
	if (grow(p, (void **)&p->st, &p->capst, p->nst, sizeof(*p->st)))
		return -1;
	p->st[p->nst++] = s;
	def->nbody++;
	def->ops = sat_add(def->ops, ops);
	def->work = sat_add(def->work, work);
	return 0;
}

static const char *const reserved[] = {
    "OPENQASM", "include", "qreg", "creg", "qubit",   "bit", "gate", "opaque", "measure", "reset",
    "barrier",	"if",	   "else", "ctrl", "negctrl", "inv", "pow",  "pi",     NULL,
};

/* gate name(params) args { body } and opaque name(params) args; */
static int stmt_gate(struct parser *p, int opaque)
{
	struct gdef def;
	struct tok name;
	int gi;

	memset(&def, 0, sizeof(def));
	next(p);
	name = p->t;
	if (expect(p, T_ID, "a gate name"))
		return -1;
	tok_name(&name, def.name, sizeof(def.name));
	gi = find_gate(p, name.s, name.len);
	if (gi >= 0) {
		if (p->g[gi].line)
			return perr_tok(p, &name, "gate %s is already defined on line %d", def.name,
					p->g[gi].line);
		return perr_tok(p, &name, "gate %s is already defined by %s", def.name,
				p->g[gi].from);
	}
	if (in_list(reserved, name.s, name.len))
		return perr_tok(p, &name, "%s is a keyword, not a gate name", def.name);
	def.kind = opaque ? G_OPAQUE : G_USER;
	def.line = p->builtin ? 0 : name.line;
	def.from = p->builtin;
	def.depth = 1;
	def.work = 1;
	p->in_gate = 1;
	p->gname = name.s;
	p->gname_len = name.len;
	p->npnames = p->nanames = 0;
	if (p->t.type == T_LP) {
		next(p);
		if (name_list(p, p->pnames, GATE_PARAMS_MAX, &p->npnames, "parameter") ||
		    expect(p, T_RP, "')'"))
			goto fail;
	}
	if (name_list(p, p->anames, GATE_ARGS_MAX, &p->nanames, "argument"))
		goto fail;
	def.nparams = p->npnames;
	def.nargs = p->nanames;
	if (!def.nargs) {
		perr_tok(p, &p->t, "gate %s needs at least one qubit argument", def.name);
		goto fail;
	}
	if (opaque) {
		if (expect(p, T_SEMI, "';'"))
			goto fail;
	} else {
		def.body = p->nst;
		if (expect(p, T_LC, "'{'"))
			goto fail;
		while (p->t.type != T_RC) {
			if (p->t.type == T_EOF || p->t.type == T_ERR) {
				perr_tok(p, &p->t, "gate %s: missing '}'", def.name);
				goto fail;
			}
			if (body_stmt(p, &def))
				goto fail;
		}
		next(p);
	}
	p->in_gate = 0;
	return add_gate(p, &def) < 0 ? -1 : 0;
fail:
	p->in_gate = 0;
	return -1;
}

static int stmt(struct parser *p);

/* if (c == 3) stmt, if (c[0]) { ... } else { ... } */
static int stmt_if(struct parser *p)
{
	struct tok at = p->t;
	struct qref c;
	int neg = 0, ne = 0, r;
	uint64_t val = 1;

	if (p->cond_len)
		return perr_tok(p, &at, "nested if is not supported");
	next(p);
	if (expect(p, T_LP, "'('"))
		return -1;
	if (p->t.type == T_NOT) {
		neg = 1;
		next(p);
	}
	if (reg_ref(p, 1, &c))
		return -1;
	if (p->t.type == T_EQ || p->t.type == T_NE) {
		struct tok v;

		ne = p->t.type == T_NE;
		next(p);
		v = p->t;
		if (is_kw(&v, "true") || is_kw(&v, "false")) {
			val = is_kw(&v, "true");
		} else if (v.type == T_INT && !v.big) {
			val = v.iv;
		} else {
			char d[48];

			return perr_tok(p, &v, "expected an integer to compare with, found %s",
					tok_desc(&v, d, sizeof(d)));
		}
		if (c.len < 64 && val >> c.len)
			return perr_tok(p, &v, "%llu does not fit in %d bit%s",
					(unsigned long long)val, c.len, c.len == 1 ? "" : "s");
		next(p);
	} else if (c.len != 1) {
		return perr_tok(p, &p->t, "expected '==' after a register in a condition");
	}
	if (expect(p, T_RP, "')'"))
		return -1;
	if (neg ^ ne) {
		if (c.len != 1)
			return perr_tok(p, &at,
					"only == conditions on a register are supported (!= "
					"and ! need a single bit)");
		val ^= 1;
	}
	p->cond_off = c.off;
	p->cond_len = c.len;
	p->cond_val = val;
	r = stmt(p);
	if (!r && is_kw(&p->t, "else")) {
		if (c.len != 1) {
			r = perr_tok(p, &p->t, "else is only supported on a single-bit condition");
		} else {
			next(p);
			p->cond_val ^= 1;
			r = stmt(p);
		}
	}
	p->cond_off = p->cond_len = 0;
	p->cond_val = 0;
	return r;
}

static const char *const unsupported[] = {
    "const",  "input",	  "output",   "float",	 "int",	  "uint",	   "angle",
    "bool",   "duration", "stretch",  "complex", "let",	  "def",	   "for",
    "while",  "defcal",	  "cal",      "box",	 "delay", "return",	   "extern",
    "switch", "break",	  "continue", "end",	 "array", "defcalgrammar", NULL,
};

static int stmt(struct parser *p)
{
	const struct tok *t = &p->t;
	const struct tok *n;
	char d[48];
	int top = !p->cond_len && !p->in_if;
	int r;

	p->stmt_line = t->line;
	p->stmt_col = t->col;
	if (t->type == T_SEMI) {
		next(p);
		return 0;
	}
	if (t->type == T_LC) {
		/* a block: scoping is not needed for what we accept */
		int in_if = p->in_if;

		p->in_if = !top || in_if;
		next(p);
		while (p->t.type != T_RC) {
			if (p->t.type == T_EOF || p->t.type == T_ERR) {
				p->in_if = in_if;
				return perr_tok(p, &p->t, "missing '}'");
			}
			if (stmt(p)) {
				p->in_if = in_if;
				return -1;
			}
		}
		p->in_if = in_if;
		next(p);
		return 0;
	}
	if (t->type != T_ID)
		return perr_tok(p, t, "expected a statement, found %s", tok_desc(t, d, sizeof(d)));
	n = peek(p);
	if (top && (is_kw(t, "qubit") || is_kw(t, "bit")) && (n->type == T_LB || n->type == T_ID))
		return stmt_decl(p, is_kw(t, "bit"), 1);
	/* a gate name is never followed by = or [ */
	if (n->type == T_ASSIGN || n->type == T_LB)
		return stmt_assign(p);
	if (find_gate(p, t->s, t->len) >= 0 || is_modifier(p))
		return gate_call(p);
	if (is_kw(t, "measure"))
		return stmt_measure(p);
	if (is_kw(t, "reset"))
		return stmt_reset(p);
	if (is_kw(t, "barrier"))
		return stmt_barrier(p);
	if (is_kw(t, "if"))
		return stmt_if(p);
	if (!top) {
		if (is_kw(t, "OPENQASM") || is_kw(t, "include") || is_kw(t, "qreg") ||
		    is_kw(t, "creg") || is_kw(t, "qubit") || is_kw(t, "bit") || is_kw(t, "gate") ||
		    is_kw(t, "opaque")) {
			tok_name(t, d, sizeof(d));
			return perr_tok(p, t, "%s is not allowed inside if", d);
		}
	}
	if (is_kw(t, "OPENQASM")) {
		struct tok at = *t;

		if (p->nstmt > 1)
			return perr_tok(p, &at, "OPENQASM must be the first statement");
		next(p);
		if (p->t.type != T_INT && p->t.type != T_REAL)
			return expect(p, T_REAL, "a version number");
		if (p->t.v >= 2 && p->t.v < 3)
			p->version = 2;
		else if (p->t.v >= 3 && p->t.v < 4)
			p->version = 3;
		else
			return perr_tok(p, &p->t, "unsupported OpenQASM version %.*s (2.0 or 3)",
					(int)p->t.len, p->t.s);
		next(p);
		return expect(p, T_SEMI, "';'");
	}
	if (is_kw(t, "include")) {
		struct tok at = *t, f;

		next(p);
		f = p->t;
		if (expect(p, T_STR, "a file name in quotes") || expect(p, T_SEMI, "';'"))
			return -1;
		if (f.len == 10 && memcmp(f.s, "qelib1.inc", 10) == 0) {
			if (p->incl_qelib++)
				return 0;
			if (include(p, &at, qelib1_names, "qelib1.inc"))
				return -1;
			return parse_builtin_text(p, qelib1_defs);
		}
		if (f.len == 12 && memcmp(f.s, "stdgates.inc", 12) == 0) {
			if (p->incl_std++)
				return 0;
			return include(p, &at, stdgates_names, "stdgates.inc");
		}
		return perr_tok(p, &f,
				"cannot include \"%.*s\": only \"qelib1.inc\" and "
				"\"stdgates.inc\" are built in (no files are read)",
				(int)(f.len > 64 ? 64 : f.len), f.s);
	}
	if (is_kw(t, "qreg") || is_kw(t, "creg"))
		return stmt_decl(p, is_kw(t, "creg"), 0);
	if (is_kw(t, "gate"))
		return stmt_gate(p, 0);
	if (is_kw(t, "opaque"))
		return stmt_gate(p, 1);
	if (in_list(unsupported, t->s, t->len)) {
		tok_name(t, d, sizeof(d));
		return perr_tok(p, t, "'%s' is not supported (plain circuits only)", d);
	}
	r = gate_ref(p); /* the best message for an unknown name */
	return r < 0 ? -1 : 0;
}

static int parse_program(struct parser *p)
{
	while (p->t.type != T_EOF) {
		p->nstmt++;
		if (p->t.type == T_ERR || stmt(p))
			return -1;
	}
	return 0;
}

/* Highest $k in the text, so the register for physical qubits can be sized
 * at its first use. */
static int scan_phys(const char *text, size_t len)
{
	struct parser q;
	int max = -1;

	if (!memchr(text, '$', len))
		return -1;
	memset(&q, 0, sizeof(q));
	q.s = q.lstart = text;
	q.end = text + len;
	q.line = 1;
	for (;;) {
		lex(&q, &q.t);
		if (q.t.type == T_EOF || q.t.type == T_ERR)
			break;
		if (q.t.type == T_PHYS && (int)q.t.iv > max)
			max = (int)q.t.iv;
	}
	return max;
}

int qasm_parse(const char *text, size_t len, struct circ *out, struct ciel_err *err)
{
	struct parser p;
	struct gdef u = {.name = "U",
			 .kind = G_STD,
			 .nparams = 3,
			 .nargs = 1,
			 .ops = 1,
			 .work = 1,
			 .depth = 1,
			 .from = "the language"};
	struct gdef cx = u, gphase = u;
	int r;

	memset(&p, 0, sizeof(p));
	p.err = err;
	p.c = out;
	p.phys_reg = -1;
	if (!text)
		text = "";
	if (len > QASM_MAX_BYTES)
		return ciel_err_field(err, CIEL_EINVAL, "qasm",
				      "line 1, column 1: program of %zu bytes; the limit is %u",
				      len, QASM_MAX_BYTES);
	p.phys_max = scan_phys(text, len);
	p.s = p.lstart = text;
	p.end = text + len;
	p.line = 1;
	snprintf(cx.name, sizeof(cx.name), "CX");
	cx.nparams = 0;
	cx.nargs = 2;
	/* OpenQASM 3's global phase: only matters under ctrl @ */
	snprintf(gphase.name, sizeof(gphase.name), "gphase");
	gphase.kind = G_GPHASE;
	gphase.nparams = 1;
	gphase.nargs = 0;
	r = add_gate(&p, &u) < 0 || add_gate(&p, &cx) < 0 || add_gate(&p, &gphase) < 0 ? -1 : 0;
	if (!r) {
		next(&p);
		r = parse_program(&p);
	}
	free(p.g);
	free(p.hash);
	free(p.st);
	free(p.pool);
	free(p.en);
	return r;
}

/* ---- emit ---- */

/* v as "pi/2", "-3*pi/4" when it is a small multiple of pi, else exactly. */
static void fmt_angle(double v, char *buf, size_t n)
{
	static const int dens[] = {1, 2, 3, 4, 6, 8, 16, 32, 64};

	if (v == 0) {
		snprintf(buf, n, "0");
		return;
	}
	for (size_t i = 0; i < sizeof(dens) / sizeof(dens[0]); i++) {
		double k = round(v * dens[i] / M_PI);
		long num = (long)k;

		if (fabs(k) > 64 * dens[i] || k == 0 || fabs(v - k * M_PI / dens[i]) > 1e-14)
			continue;
		char mul[32] = "", div[16] = "";

		if (labs(num) != 1)
			snprintf(mul, sizeof(mul), "%ld*", labs(num));
		if (dens[i] != 1)
			snprintf(div, sizeof(div), "/%d", dens[i]);
		snprintf(buf, n, "%s%spi%s", num < 0 ? "-" : "", mul, div);
		return;
	}
	snprintf(buf, n, "%.17g", v);
}

/* U(theta, phi, lambda) e^{i gamma} = m, for a 2x2 unitary. */
static void u3_of(const double *m, double *th, double *ph, double *la, double *ga)
{
	double a00 = hypot(m[0], m[1]), a10 = hypot(m[4], m[5]);

	*th = 2 * atan2(a10, a00);
	if (a00 > 1e-12) {
		*ga = atan2(m[1], m[0]);
		if (a10 > 1e-12) {
			*ph = atan2(m[5], m[4]) - *ga;
			*la = atan2(-m[3], -m[2]) - *ga;
		} else {
			*ph = 0;
			*la = atan2(m[7], m[6]) - *ga;
		}
	} else {
		*la = 0;
		*ga = atan2(-m[3], -m[2]);
		*ph = atan2(m[5], m[4]) - *ga;
	}
}

static void emit_qubits(struct dbuf *b, const char *qn, const int *q, int n)
{
	for (int i = 0; i < n; i++)
		dbuf_printf(b, "%s%s[%d]", i ? "," : " ", qn, q[i]);
}

static const struct circ_reg *creg_of(const struct circ *c, int bit)
{
	for (size_t i = 0; i < c->ncregs; i++)
		if (bit >= c->cregs[i].off && bit < c->cregs[i].off + c->cregs[i].len)
			return &c->cregs[i];
	return NULL;
}

static void emit_cond(struct dbuf *b, const struct circ *c, const struct circ_op *op)
{
	const struct circ_reg *r = creg_of(c, op->cond_off);

	if (!op->cond_len)
		return;
	if (r && r->off == op->cond_off && r->len == op->cond_len)
		dbuf_printf(b, "if(%s==%llu) ", r->name, (unsigned long long)op->cond_val);
	else if (r && op->cond_len == 1)
		dbuf_printf(b, "if(%s[%d]==%llu) ", r->name, op->cond_off - r->off,
			    (unsigned long long)op->cond_val);
	else
		dbuf_printf(b, "// if bits %d..%d == %llu:\n", op->cond_off,
			    op->cond_off + op->cond_len - 1, (unsigned long long)op->cond_val);
}

static void emit_params(struct dbuf *b, const double *par, int n)
{
	char a[64];

	if (!n)
		return;
	for (int i = 0; i < n; i++) {
		fmt_angle(par[i], a, sizeof(a));
		dbuf_printf(b, "%s%s", i ? "," : "(", a);
	}
	dbuf_addstr(b, ")");
}

static void emit_gate(struct dbuf *b, const struct circ *c, const char *qn,
		      const struct circ_op *op)
{
	int nq = op->nctrl + op->ntgt, dim = op->ntgt == 2 ? 4 : 2;
	double th, ph, la, ga;

	if (circ_std_nparams(op->name) == op->nparams && circ_std_nqubits(op->name) == nq) {
		emit_cond(b, c, op);
		dbuf_addstr(b, op->name);
		emit_params(b, op->params, op->nparams);
		emit_qubits(b, qn, op->q, nq);
		dbuf_addstr(b, ";\n");
		return;
	}
	dbuf_printf(b, "// unitary %s on", op->name);
	emit_qubits(b, qn, op->q, nq);
	dbuf_printf(b, " (%d control%s):", op->nctrl, op->nctrl == 1 ? "" : "s");
	for (int r = 0; r < dim; r++) {
		dbuf_addstr(b, r ? "," : " [");
		for (int k = 0; k < dim; k++)
			dbuf_printf(b, "%s%.17g%+.17gi", k ? "," : "[", op->m[2 * (r * dim + k)],
				    op->m[2 * (r * dim + k) + 1]);
		dbuf_addstr(b, "]");
	}
	dbuf_addstr(b, "]\n");
	if (op->ntgt != 1 || op->nctrl > 1)
		return;
	u3_of(op->m, &th, &ph, &la, &ga);
	emit_cond(b, c, op);
	if (op->nctrl == 0) {
		double par[3] = {th, ph, la};

		dbuf_addstr(b, "u3");
		emit_params(b, par, 3);
	} else {
		double par[4] = {th, ph, la, ga};

		dbuf_addstr(b, "cu");
		emit_params(b, par, 4);
	}
	emit_qubits(b, qn, op->q, nq);
	dbuf_addstr(b, ";\n");
}

char *qasm_emit(const struct circ *c)
{
	struct dbuf b;
	char qn[CIRC_REG_NAME_MAX + 8] = "q";

	/* one register for all qubits; its name must not clash with a creg */
	for (int i = 0; circ_find_creg(c, qn); i++)
		snprintf(qn, sizeof(qn), "q%d", i);
	dbuf_init(&b, DBUF_NO_MAX);
	dbuf_addstr(&b, "OPENQASM 2.0;\ninclude \"qelib1.inc\";\n");
	if (c->nq)
		dbuf_printf(&b, "qreg %s[%d];\n", qn, c->nq);
	for (size_t i = 0; i < c->ncregs; i++)
		dbuf_printf(&b, "creg %s[%d];\n", c->cregs[i].name, c->cregs[i].len);
	for (size_t i = 0; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];
		const struct circ_reg *r;
		int n = 0;

		switch (op->kind) {
		case CIRC_GATE:
			emit_gate(&b, c, qn, op);
			break;
		case CIRC_MEASURE:
			r = creg_of(c, op->clbit);
			emit_cond(&b, c, op);
			if (r)
				dbuf_printf(&b, "measure %s[%d] -> %s[%d];\n", qn, op->q[0],
					    r->name, op->clbit - r->off);
			else
				dbuf_printf(&b, "// measure %s[%d] -> bit %d\n", qn, op->q[0],
					    op->clbit);
			break;
		case CIRC_RESET:
			emit_cond(&b, c, op);
			dbuf_printf(&b, "reset %s[%d];\n", qn, op->q[0]);
			break;
		default:
			/* no qubits named: a barrier on all of them */
			n = op->nctrl + op->ntgt;
			if (n > (int)(sizeof(op->q) / sizeof(op->q[0])))
				n = (int)(sizeof(op->q) / sizeof(op->q[0]));
			if (!n) {
				dbuf_printf(&b, "barrier %s;\n", qn);
				break;
			}
			dbuf_addstr(&b, "barrier");
			emit_qubits(&b, qn, op->q, n);
			dbuf_addstr(&b, ";\n");
		}
	}
	if (b.nomem) {
		dbuf_release(&b);
		return NULL;
	}
	return dbuf_detach(&b, NULL);
}
