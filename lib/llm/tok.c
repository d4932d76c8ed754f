/*
 * tok — see tok.h.
 *
 * One struct serves both kinds. Pieces live in one arena, found by an
 * open-addressing hash of their bytes (first id wins for a duplicate piece);
 * BPE merges live in a second hash keyed by the (left id, right id) pair.
 * Both encoders run the same lazy-deletion heap over a linked list of
 * symbols, so a hostile input (100 KB of one letter) costs n log n, not n².
 * Each token's decoded bytes are computed once at load, so decode is a copy.
 */
#include "llm/tok.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/uni.h"
#include "util/dbuf.h"

enum tok_type {
	TT_NORMAL = 1,
	TT_UNKNOWN = 2,
	TT_CONTROL = 3,
	TT_USER = 4,
	TT_UNUSED = 5,
	TT_BYTE = 6,
};

enum tok_pre { PRE_GPT2 = 0, PRE_LLAMA3, PRE_QWEN2 };

#define TOK_MAX_VOCAB (1 << 22)
#define TOK_MAX_PIECES_BYTES (256u << 20)

struct tok_merge {
	int32_t left, right; /* -1: empty slot */
	int32_t rank, id;
};

struct tok {
	enum tok_kind kind;
	enum tok_pre pre;
	int32_t n;
	struct dbuf text;    /* pieces, each NUL-terminated */
	struct dbuf dec;     /* decoded bytes of each token */
	uint32_t *off, *len; /* piece i: text.buf + off[i], len[i] bytes */
	uint32_t *doff, *dlen;
	float *score;
	uint8_t *type;
	int32_t *htab; /* piece hash -> id, -1 empty; hmask + 1 slots */
	uint32_t hmask;
	struct tok_merge *mtab; /* (left, right) -> rank, id */
	uint32_t mmask;
	int32_t *mlist; /* merges in rank order as left, right pairs (for tok_to_gguf) */
	int32_t n_merges;
	int ignore_merges, add_bos, add_space_prefix;
	int32_t bos, eos, eot, unk, pad;
	int32_t byte_id[256]; /* the token a lone byte becomes, -1 if none */
	int32_t *special;     /* ids matched as whole strings, by first byte then length */
	uint32_t sp_start[257];
	int has_user; /* some special is user-defined (matched even without TOK_SPECIAL) */
	int32_t eog[16];
	int n_eog;
	char *chat_template;
};

/* ---- hashing ---------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

static uint32_t hash_pair(int32_t a, int32_t b)
{
	uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32);
}

static const char *piece(const struct tok *t, int32_t id)
{
	return t->text.buf + t->off[id];
}

static int32_t find_piece(const struct tok *t, const char *s, size_t n)
{
	uint32_t i = (uint32_t)hash_bytes(s, n) & t->hmask;

	for (;; i = (i + 1) & t->hmask) {
		int32_t id = t->htab[i];

		if (id < 0)
			return -1;
		if (t->len[id] == n && !memcmp(piece(t, id), s, n))
			return id;
	}
}

static const struct tok_merge *find_merge(const struct tok *t, int32_t a, int32_t b)
{
	if (!t->mtab)
		return NULL;
	for (uint32_t i = hash_pair(a, b) & t->mmask;; i = (i + 1) & t->mmask) {
		const struct tok_merge *m = &t->mtab[i];

		if (m->left < 0)
			return NULL;
		if (m->left == a && m->right == b)
			return m;
	}
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t c = 16;

	while (c < n)
		c <<= 1;
	return c;
}

/* ---- building --------------------------------------------------------- */

static struct tok *tok_new(int32_t n, enum tok_kind kind, struct ciel_err *err)
{
	struct tok *t;

	if (n <= 0)
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer: the vocabulary is empty"), NULL;
	if (n > TOK_MAX_VOCAB)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer: %d tokens is more than the %d allowed", n,
				    TOK_MAX_VOCAB),
		       NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	t->kind = kind;
	t->n = n;
	t->bos = t->eos = t->eot = t->unk = t->pad = -1;
	t->add_space_prefix = kind == TOK_SPM;
	t->add_bos = kind == TOK_SPM;
	dbuf_init(&t->text, TOK_MAX_PIECES_BYTES);
	dbuf_init(&t->dec, TOK_MAX_PIECES_BYTES);
	t->off = calloc((size_t)n, sizeof(*t->off));
	t->len = calloc((size_t)n, sizeof(*t->len));
	t->doff = calloc((size_t)n, sizeof(*t->doff));
	t->dlen = calloc((size_t)n, sizeof(*t->dlen));
	t->score = calloc((size_t)n, sizeof(*t->score));
	t->type = malloc((size_t)n);
	if (!t->off || !t->len || !t->doff || !t->dlen || !t->score || !t->type)
		goto nomem;
	memset(t->type, TT_UNUSED, (size_t)n);
	/* Reserve offset 0 as the empty piece of ids never given one. */
	if (dbuf_add(&t->text, "", 1) < 0)
		goto nomem;
	return t;
nomem:
	tok_free(t);
	ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	return NULL;
}

void tok_free(struct tok *t)
{
	if (!t)
		return;
	dbuf_release(&t->text);
	dbuf_release(&t->dec);
	free(t->off);
	free(t->len);
	free(t->doff);
	free(t->dlen);
	free(t->score);
	free(t->type);
	free(t->htab);
	free(t->mtab);
	free(t->mlist);
	free(t->special);
	free(t->chat_template);
	free(t);
}

static int set_piece(struct tok *t, int32_t id, const char *s, size_t n, int type,
		     struct ciel_err *err)
{
	if (n > UINT32_MAX / 2)
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer: token %d is too long", id);
	t->off[id] = (uint32_t)t->text.len;
	t->len[id] = (uint32_t)n;
	t->type[id] = (uint8_t)type;
	if (dbuf_add(&t->text, s, n) < 0 || dbuf_add(&t->text, "", 1) < 0)
		return ciel_err_set(err, t->text.toobig ? CIEL_EINVAL : CIEL_ENOMEM,
				    "tokenizer: the pieces pass %u bytes", TOK_MAX_PIECES_BYTES);
	return 0;
}

static int build_hash(struct tok *t, struct ciel_err *err)
{
	uint32_t cap = pow2_at_least((uint64_t)t->n * 2);

	t->htab = malloc((size_t)cap * sizeof(*t->htab));
	if (!t->htab)
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	memset(t->htab, 0xff, (size_t)cap * sizeof(*t->htab));
	t->hmask = cap - 1;
	for (int32_t id = 0; id < t->n; id++) {
		uint32_t i = (uint32_t)hash_bytes(piece(t, id), t->len[id]) & t->hmask;

		if (t->type[id] == TT_UNUSED && !t->len[id])
			continue;
		for (;; i = (i + 1) & t->hmask) {
			int32_t o = t->htab[i];

			if (o < 0) {
				t->htab[i] = id;
				break;
			}
			/* A duplicate piece: the first id keeps it. */
			if (t->len[o] == t->len[id] &&
			    !memcmp(piece(t, o), piece(t, id), t->len[id]))
				break;
		}
	}
	return 0;
}

static int merges_alloc(struct tok *t, size_t n, struct ciel_err *err)
{
	uint32_t cap;

	if (n > (size_t)GGUF_MAX_ARRAY)
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer: %zu merges is too many", n);
	cap = pow2_at_least((uint64_t)n * 2);
	t->mtab = malloc((size_t)cap * sizeof(*t->mtab));
	t->mlist = malloc((n ? n : 1) * 2 * sizeof(*t->mlist));
	if (!t->mtab || !t->mlist)
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	memset(t->mtab, 0xff, (size_t)cap * sizeof(*t->mtab));
	t->mmask = cap - 1;
	return 0;
}

/* Merge number rank: pieces a and b (and a+b) must be in the vocabulary. */
static int add_merge(struct tok *t, const char *a, size_t an, const char *b, size_t bn,
		     struct ciel_err *err)
{
	int32_t l = find_piece(t, a, an), r = find_piece(t, b, bn), id;
	char buf[512];
	uint32_t i;

	if (l < 0 || r < 0)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer: merge %d ('%.*s %.*s') names a piece not in the "
				    "vocabulary",
				    t->n_merges, (int)(an > 64 ? 64 : an), a,
				    (int)(bn > 64 ? 64 : bn), b);
	if (an + bn > sizeof(buf))
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer: merge %d is too long",
				    t->n_merges);
	memcpy(buf, a, an);
	memcpy(buf + an, b, bn);
	id = find_piece(t, buf, an + bn);
	if (id < 0)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer: merge %d ('%.*s %.*s') makes a piece not in the "
				    "vocabulary",
				    t->n_merges, (int)(an > 64 ? 64 : an), a,
				    (int)(bn > 64 ? 64 : bn), b);
	t->mlist[2 * t->n_merges] = l;
	t->mlist[2 * t->n_merges + 1] = r;
	for (i = hash_pair(l, r) & t->mmask;; i = (i + 1) & t->mmask) {
		struct tok_merge *m = &t->mtab[i];

		if (m->left < 0) {
			*m = (struct tok_merge){l, r, t->n_merges, id};
			break;
		}
		if (m->left == l && m->right == r)
			break; /* a repeated merge keeps its first (lowest) rank */
	}
	t->n_merges++;
	return 0;
}

/* "a b" as GGUF and tokenizer.json write a merge. Pieces never hold a space
 * (byte-level BPE maps it to U+0120, SentencePiece to U+2581), but a first
 * piece that is itself " " may: split at the first space after byte 0. */
static int add_merge_str(struct tok *t, const char *s, size_t n, struct ciel_err *err)
{
	const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;

	if (!sp)
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer: merge %d ('%.*s') is not 'a b'",
				    t->n_merges, (int)(n > 64 ? 64 : n), s);
	return add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, err);
}

/* GPT-2's reversible map of bytes to printable code points: printable
 * bytes stand for themselves, the 68 others (0-32, 127-160, 173) take
 * U+0100 on in order. Computed, not cached, so it needs no lock. */
static uint32_t byte_to_cp(unsigned b)
{
	if (b <= 32)
		return 256 + b;
	if (b >= 127 && b <= 160)
		return 256 + 33 + (b - 127);
	if (b == 173)
		return 256 + 67;
	return b;
}

static int cp_to_byte(uint32_t cp)
{
	if (cp < 256) {
		int keep = (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || cp >= 174;

		return keep ? (int)cp : -1;
	}
	if (cp < 256 + 68) {
		for (unsigned b = 0; b < 256; b++)
			if (byte_to_cp(b) == cp)
				return (int)b;
	}
	return -1;
}

static int is_byte_piece(const char *s, size_t n, unsigned *b)
{
	char hex[3];
	char *end;

	if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
		return 0;
	hex[0] = s[3];
	hex[1] = s[4];
	hex[2] = 0;
	*b = (unsigned)strtoul(hex, &end, 16);
	return end == hex + 2;
}

/* The bytes id stands for in text (specials aside). */
static int build_decoded(struct tok *t, struct ciel_err *err)
{
	for (int32_t id = 0; id < t->n; id++) {
		const char *s = piece(t, id);
		size_t n = t->len[id];
		unsigned b;

		t->doff[id] = (uint32_t)t->dec.len;
		if (t->type[id] == TT_BYTE && is_byte_piece(s, n, &b)) {
			char c = (char)b;

			dbuf_add(&t->dec, &c, 1);
		} else if (t->type[id] == TT_CONTROL || t->type[id] == TT_UNKNOWN ||
			   t->type[id] == TT_UNUSED) {
			/* nothing: text only with TOK_SPECIAL, from the piece itself */
		} else if (t->type[id] == TT_USER) {
			dbuf_add(&t->dec, s, n);
		} else if (t->kind == TOK_SPM) {
			for (size_t i = 0; i < n; i++) {
				if (i + 2 < n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
					dbuf_add(&t->dec, " ", 1);
					i += 2;
				} else {
					dbuf_add(&t->dec, s + i, 1);
				}
			}
		} else {
			for (size_t i = 0; i < n;) {
				size_t adv;
				uint32_t cp = uni_next((const unsigned char *)s + i, n - i, &adv);
				int byte = cp == UNI_BAD ? -1 : cp_to_byte(cp);

				if (byte >= 0) {
					char c = (char)byte;

					dbuf_add(&t->dec, &c, 1);
				} else {
					dbuf_add(&t->dec, s + i,
						 adv); /* not a mapped byte: as is */
				}
				i += adv;
			}
		}
		t->dlen[id] = (uint32_t)(t->dec.len - t->doff[id]);
	}
	if (t->dec.toobig || t->dec.nomem)
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: decoded pieces too large");
	return 0;
}

static int cmp_special(const void *pa, const void *pb, void *arg)
{
	const struct tok *t = arg;
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
	unsigned char fa = (unsigned char)piece(t, a)[0], fb = (unsigned char)piece(t, b)[0];

	if (fa != fb)
		return fa < fb ? -1 : 1;
	if (t->len[a] != t->len[b])
		return t->len[a] > t->len[b] ? -1 : 1; /* longest first */
	return a < b ? -1 : a > b;
}

static int is_special_type(int type)
{
	return type == TT_CONTROL || type == TT_USER || type == TT_UNKNOWN;
}

static void add_eog(struct tok *t, int32_t id)
{
	if (id < 0 || t->n_eog >= (int)(sizeof(t->eog) / sizeof(t->eog[0])))
		return;
	for (int i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id)
			return;
	t->eog[t->n_eog++] = id;
}

/* Everything derived from the pieces, types and ids, once they are set. */
static int tok_finish(struct tok *t, struct ciel_err *err)
{
	static const char *const eog_pieces[] = {
	    "<|eot_id|>",      "<|im_end|>", "<|end|>",	      "<|endoftext|>",
	    "<|end_of_text|>", "<|eom_id|>", "<end_of_turn>", "</s>"};
	size_t ns = 0;
	uint32_t j = 0;

	if (!t->htab && build_hash(t, err) < 0)
		return -1;
	if (build_decoded(t, err) < 0)
		return -1;
	for (unsigned b = 0; b < 256; b++) {
		char buf[8];
		size_t n;

		if (t->kind == TOK_SPM) {
			n = (size_t)snprintf(buf, sizeof(buf), "<0x%02X>", b);
		} else {
			n = uni_put(byte_to_cp(b), buf);
		}
		t->byte_id[b] = find_piece(t, buf, n);
	}
	for (int32_t id = 0; id < t->n; id++)
		if (is_special_type(t->type[id]) && t->len[id])
			ns++;
	t->special = malloc((ns ? ns : 1) * sizeof(*t->special));
	if (!t->special)
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	ns = 0;
	for (int32_t id = 0; id < t->n; id++) {
		if (is_special_type(t->type[id]) && t->len[id]) {
			t->special[ns++] = id;
			t->has_user |= t->type[id] == TT_USER;
		}
	}
	qsort_r(t->special, ns, sizeof(*t->special), cmp_special, t);
	for (unsigned b = 0; b <= 256; b++) {
		while (j < ns && (unsigned char)piece(t, t->special[j])[0] < b)
			j++;
		t->sp_start[b] = j;
	}
	t->n_eog = 0;
	add_eog(t, t->eos);
	add_eog(t, t->eot);
	for (size_t i = 0; i < sizeof(eog_pieces) / sizeof(eog_pieces[0]); i++) {
		int32_t id = find_piece(t, eog_pieces[i], strlen(eog_pieces[i]));

		if (id >= 0 && t->type[id] != TT_NORMAL)
			add_eog(t, id);
	}
	if (t->eot < 0) {
		t->eot = find_piece(t, "<|eot_id|>", 10);
		if (t->eot < 0)
			t->eot = find_piece(t, "<|im_end|>", 10);
	}
	return 0;
}

/* ---- pre-tokenizers ----------------------------------------------------- */

/* The text of one fragment as code points, for the regex matchers. */
struct cps {
	uint32_t *cp;
	uint32_t *pos; /* byte offset of cp[i]; pos[n] = the fragment's length */
	uint8_t *cls;
	size_t n, cap;
};

static int cps_fill(struct cps *c, const char *s, size_t len)
{
	if (len + 1 > c->cap) {
		size_t cap = len + 1;
		uint32_t *cp = realloc(c->cp, cap * sizeof(*cp));

		if (cp)
			c->cp = cp;
		uint32_t *pos = realloc(c->pos, cap * sizeof(*pos));

		if (pos)
			c->pos = pos;
		uint8_t *cls = realloc(c->cls, cap);

		if (cls)
			c->cls = cls;
		if (!cp || !pos || !cls)
			return -1;
		c->cap = cap;
	}
	c->n = 0;
	for (size_t i = 0; i < len;) {
		size_t adv;
		uint32_t cp = uni_next((const unsigned char *)s + i, len - i, &adv);

		c->cp[c->n] = cp;
		c->pos[c->n] = (uint32_t)i;
		c->cls[c->n] = cp == UNI_BAD ? UNI_OTHER : (uint8_t)uni_class(cp);
		c->n++;
		i += adv;
	}
	c->pos[c->n] = (uint32_t)len;
	return 0;
}

#define CLS(i) (c->cls[i])
#define IS_CRLF(i) (c->cp[i] == '\r' || c->cp[i] == '\n')

/* Case-insensitive contraction at i ('s 't 're 've 'm 'll 'd): its end or 0. */
static size_t match_contraction(const struct cps *c, size_t i, int fold)
{
	uint32_t a, b;

	if (c->cp[i] != '\'' || i + 1 >= c->n)
		return 0;
	a = c->cp[i + 1];
	if (fold) {
		/* (?i) folds with Unicode simple case folding: only U+017F (long s)
		 * folds onto one of these letters besides the ASCII capitals. */
		if (a == 0x17f)
			a = 's';
		if (a < 0x80)
			a |= 0x20;
	}
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return i + 2;
	if (i + 2 >= c->n)
		return 0;
	b = c->cp[i + 2];
	if (fold && b < 0x80)
		b |= 0x20;
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return i + 3;
	return 0;
}

/* The whitespace alternatives shared by all three: \s*[\r\n]+ (if crlf),
 * then \s+(?!\S), then \s+. c->cls[i] is UNI_SPACE. */
static size_t match_space(const struct cps *c, size_t i, int crlf)
{
	size_t r = i;

	while (r < c->n && CLS(r) == UNI_SPACE)
		r++;
	if (crlf) {
		for (size_t k = r; k > i; k--)
			if (IS_CRLF(k - 1))
				return k;
	}
	if (r == c->n || r - i < 2)
		return r;
	return r - 1; /* leave the last space to lead the next word */
}

/*
 * Llama-3 / Qwen2:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (Qwen2 takes \p{N} one at a time.) Returns the end of the match at i.
 */
static size_t match_llama3(const struct cps *c, size_t i, size_t max_digits)
{
	size_t j;

	if ((j = match_contraction(c, i, 1)))
		return j;
	if (CLS(i) == UNI_LETTER ||
	    (!IS_CRLF(i) && CLS(i) != UNI_NUMBER && i + 1 < c->n && CLS(i + 1) == UNI_LETTER)) {
		for (j = i + 1; j < c->n && CLS(j) == UNI_LETTER; j++)
			;
		return j;
	}
	if (CLS(i) == UNI_NUMBER) {
		for (j = i + 1; j < c->n && j - i < max_digits && CLS(j) == UNI_NUMBER; j++)
			;
		return j;
	}
	j = i;
	if (c->cp[j] == ' ' && j + 1 < c->n && CLS(j + 1) == UNI_OTHER)
		j++;
	if (CLS(j) == UNI_OTHER) {
		while (j < c->n && CLS(j) == UNI_OTHER)
			j++;
		while (j < c->n && IS_CRLF(j))
			j++;
		return j;
	}
	return match_space(c, i, 1);
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const struct cps *c, size_t i)
{
	size_t j;
	int k;

	if ((j = match_contraction(c, i, 0)))
		return j;
	for (k = UNI_LETTER; k <= UNI_OTHER + 3; k++) {
		int want = k == UNI_OTHER + 3 ? UNI_OTHER : k;

		if (want == UNI_SPACE)
			continue;
		j = i;
		if (c->cp[j] == ' ' && j + 1 < c->n && CLS(j + 1) == want)
			j++;
		if (CLS(j) == want) {
			while (j < c->n && CLS(j) == want)
				j++;
			return j;
		}
	}
	return match_space(c, i, 0);
}

#undef CLS
#undef IS_CRLF

/* ---- encoding ------------------------------------------------------------ */

struct sym {
	int32_t prev, next;
	uint32_t start, n;
	int32_t id;
};

struct cand {
	double key; /* larger first */
	int32_t left, a, b, id;
};

struct scratch {
	struct sym *sym;
	size_t sym_cap;
	struct cand *heap;
	size_t heap_n, heap_cap;
	struct cps cps;
	char *buf;
	size_t buf_cap;
	int32_t *out;
	size_t out_n, out_cap;
	int nomem;
};

static int cand_before(const struct cand *x, const struct cand *y)
{
	return x->key > y->key || (x->key == y->key && x->left < y->left);
}

static void heap_push(struct scratch *s, struct cand c)
{
	size_t i;

	if (s->heap_n == s->heap_cap) {
		size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
		struct cand *h = realloc(s->heap, cap * sizeof(*h));

		if (!h) {
			s->nomem = 1;
			return;
		}
		s->heap = h;
		s->heap_cap = cap;
	}
	i = s->heap_n++;
	while (i > 0 && cand_before(&c, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = c;
}

static struct cand heap_pop(struct scratch *s)
{
	struct cand top = s->heap[0], last = s->heap[--s->heap_n];
	size_t i = 0;

	for (;;) {
		size_t k = 2 * i + 1;

		if (k >= s->heap_n)
			break;
		if (k + 1 < s->heap_n && cand_before(&s->heap[k + 1], &s->heap[k]))
			k++;
		if (!cand_before(&s->heap[k], &last))
			break;
		s->heap[i] = s->heap[k];
		i = k;
	}
	if (s->heap_n)
		s->heap[i] = last;
	return top;
}

static void out_push(struct scratch *s, int32_t id)
{
	if (s->out_n == s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap * 2 : 64;
		int32_t *o = realloc(s->out, cap * sizeof(*o));

		if (!o) {
			s->nomem = 1;
			return;
		}
		s->out = o;
		s->out_cap = cap;
	}
	s->out[s->out_n++] = id;
}

static int syms_reserve(struct scratch *s, size_t n)
{
	if (n > s->sym_cap) {
		struct sym *p = realloc(s->sym, n * sizeof(*p));

		if (!p)
			return s->nomem = 1, -1;
		s->sym = p;
		s->sym_cap = n;
	}
	return 0;
}

static size_t spm_char_len(unsigned char b)
{
	static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

	return lut[b >> 4];
}

static void spm_try(const struct tok *t, struct scratch *s, const char *text, int32_t l, int32_t r)
{
	size_t n;
	int32_t id;

	if (l < 0 || r < 0)
		return;
	n = s->sym[l].n + s->sym[r].n;
	id = find_piece(t, text + s->sym[l].start, n);
	if (id < 0)
		return;
	heap_push(s, (struct cand){t->score[id], l, (int32_t)n, 0, id});
}

/* llama.cpp's llm_tokenizer_spm: merge the best-scoring adjacent pair until none is a piece. */
static void spm_encode(const struct tok *t, struct scratch *s, const char *text, size_t len)
{
	int32_t ns = 0;

	if (syms_reserve(s, len) < 0)
		return;
	for (size_t i = 0; i < len; ns++) {
		size_t n = spm_char_len((unsigned char)text[i]);

		if (n > len - i)
			n = len - i;
		s->sym[ns] = (struct sym){ns - 1, ns + 1, (uint32_t)i, (uint32_t)n, -1};
		i += n;
	}
	if (!ns)
		return;
	s->sym[ns - 1].next = -1;
	s->heap_n = 0;
	for (int32_t i = 1; i < ns; i++)
		spm_try(t, s, text, i - 1, i);
	while (s->heap_n) {
		struct cand c = heap_pop(s);
		struct sym *l = &s->sym[c.left], *r;

		if (l->n == 0 || l->next < 0)
			continue;
		r = &s->sym[l->next];
		if (r->n == 0 || l->n + r->n != (uint32_t)c.a)
			continue;
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			s->sym[r->next].prev = c.left;
		spm_try(t, s, text, l->prev, c.left);
		spm_try(t, s, text, c.left, l->next);
	}
	for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
		const struct sym *y = &s->sym[i];
		int32_t id = find_piece(t, text + y->start, y->n);

		if (id >= 0) {
			out_push(s, id);
			continue;
		}
		for (uint32_t k = 0; k < y->n; k++) {
			id = t->byte_id[(unsigned char)text[y->start + k]];
			if (id < 0)
				id = t->unk;
			if (id >= 0)
				out_push(s, id);
		}
	}
}

static void bpe_try(const struct tok *t, struct scratch *s, int32_t l, int32_t r)
{
	const struct tok_merge *m;

	if (l < 0 || r < 0 || s->sym[l].id < 0 || s->sym[r].id < 0)
		return;
	m = find_merge(t, s->sym[l].id, s->sym[r].id);
	if (m)
		heap_push(s, (struct cand){-(double)m->rank, l, m->left, m->right, m->id});
}

/* One pre-tokenized word of bytes: lowest-rank merge first, leftmost on ties. */
static void bpe_word(const struct tok *t, struct scratch *s, const char *w, size_t len)
{
	int32_t ns = (int32_t)len;

	if (t->ignore_merges && len * 2 <= s->buf_cap) {
		size_t n = 0;
		int32_t id;

		for (size_t i = 0; i < len; i++)
			n += uni_put(byte_to_cp((unsigned char)w[i]), s->buf + n);
		id = find_piece(t, s->buf, n);
		if (id >= 0 && t->type[id] == TT_NORMAL) {
			out_push(s, id);
			return;
		}
	}
	if (syms_reserve(s, len) < 0)
		return;
	for (int32_t i = 0; i < ns; i++)
		s->sym[i] =
		    (struct sym){i - 1, i + 1, (uint32_t)i, 1, t->byte_id[(unsigned char)w[i]]};
	s->sym[ns - 1].next = -1;
	s->heap_n = 0;
	for (int32_t i = 1; i < ns; i++)
		bpe_try(t, s, i - 1, i);
	while (s->heap_n) {
		struct cand c = heap_pop(s);
		struct sym *l = &s->sym[c.left], *r;

		if (l->n == 0 || l->next < 0 || l->id != c.a)
			continue;
		r = &s->sym[l->next];
		if (r->id != c.b)
			continue;
		l->id = c.id;
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			s->sym[r->next].prev = c.left;
		bpe_try(t, s, l->prev, c.left);
		bpe_try(t, s, c.left, l->next);
	}
	for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
		int32_t id = s->sym[i].id;

		if (id < 0)
			id = t->unk; /* a byte the vocabulary lacks: only hostile ones do */
		if (id >= 0)
			out_push(s, id);
	}
}

static void bpe_encode(const struct tok *t, struct scratch *s, const char *text, size_t len)
{
	struct cps *c = &s->cps;

	if (cps_fill(c, text, len) < 0) {
		s->nomem = 1;
		return;
	}
	for (size_t i = 0; i < c->n && !s->nomem;) {
		size_t e;

		if (t->pre == PRE_LLAMA3)
			e = match_llama3(c, i, 3);
		else if (t->pre == PRE_QWEN2)
			e = match_llama3(c, i, 1);
		else
			e = match_gpt2(c, i);
		if (e <= i)
			e = i + 1; /* cannot happen: every class matches something */
		bpe_word(t, s, text + c->pos[i], c->pos[e] - c->pos[i]);
		i = e;
	}
}

/* A raw-text fragment (between special tokens). */
static void encode_fragment(const struct tok *t, struct scratch *s, const char *text, size_t len,
			    int prev_special)
{
	if (t->kind == TOK_BPE) {
		bpe_encode(t, s, text, len);
		return;
	}
	/* SentencePiece: spaces become U+2581, one more in front of the first
	 * fragment and after each special token (llama.cpp's rule). */
	size_t n = 0, need = (len + 1) * 3;

	if (need > s->buf_cap) {
		char *b = realloc(s->buf, need);

		if (!b) {
			s->nomem = 1;
			return;
		}
		s->buf = b;
		s->buf_cap = need;
	}
	if (t->add_space_prefix && prev_special) {
		memcpy(s->buf, "\xe2\x96\x81", 3);
		n = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(s->buf + n, "\xe2\x96\x81", 3);
			n += 3;
		} else {
			s->buf[n++] = text[i];
		}
	}
	/* spm_encode reads s->buf while it works: hand it a stable copy. */
	char *norm = malloc(n ? n : 1);

	if (!norm) {
		s->nomem = 1;
		return;
	}
	memcpy(norm, s->buf, n);
	spm_encode(t, s, norm, n);
	free(norm);
}

/* The special token starting at text (len bytes left), or -1. */
static int32_t match_special(const struct tok *t, const char *text, size_t len, int flags)
{
	unsigned char b = (unsigned char)text[0];

	for (uint32_t k = t->sp_start[b]; k < t->sp_start[b + 1]; k++) {
		int32_t id = t->special[k];

		if (t->len[id] > len)
			continue;
		if (!(flags & TOK_SPECIAL) && t->type[id] != TT_USER)
			continue;
		if (!memcmp(piece(t, id), text, t->len[id]))
			return id;
	}
	return -1;
}

int tok_encode(const struct tok *t, const char *text, size_t len, int flags, int32_t **ids,
	       size_t *n, struct ciel_err *err)
{
	struct scratch s = {0};
	int prev_special = 1;
	size_t start = 0;
	int scan = (flags & TOK_SPECIAL) || t->has_user;

	*ids = NULL;
	*n = 0;
	if (len > TOK_MAX_INPUT)
		return ciel_err_field(err, CIEL_EINVAL, "text",
				      "text of %zu bytes is over the tokenizer's limit of %u", len,
				      TOK_MAX_INPUT);
	/* bpe_word maps a word's bytes to 2-byte code points for ignore_merges. */
	s.buf_cap = t->kind == TOK_BPE ? 2 * len + 8 : 0;
	if (s.buf_cap && !(s.buf = malloc(s.buf_cap)))
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	if ((flags & TOK_BOS) && t->add_bos && t->bos >= 0)
		out_push(&s, t->bos);
	for (size_t i = 0; scan && i < len; i++) {
		int32_t id = match_special(t, text + i, len - i, flags);

		if (id < 0)
			continue;
		if (i > start)
			encode_fragment(t, &s, text + start, i - start, prev_special);
		out_push(&s, id);
		prev_special = 1;
		i += t->len[id] - 1;
		start = i + 1;
	}
	if (len > start)
		encode_fragment(t, &s, text + start, len - start, prev_special);
	free(s.sym);
	free(s.heap);
	free(s.cps.cp);
	free(s.cps.pos);
	free(s.cps.cls);
	free(s.buf);
	if (s.nomem) {
		free(s.out);
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	}
	*ids = s.out;
	*n = s.out_n;
	if (!*ids && !(*ids = malloc(sizeof(int32_t))))
		return ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
	return 0;
}

int tok_decode(const struct tok *t, int32_t id, int flags, char *buf, size_t cap)
{
	const char *src;
	size_t n;

	if (id < 0 || id >= t->n)
		return -1;
	if (t->type[id] == TT_CONTROL || t->type[id] == TT_UNKNOWN) {
		if (!(flags & TOK_SPECIAL))
			return 0;
		src = piece(t, id);
		n = t->len[id];
	} else {
		src = t->dec.buf + t->doff[id];
		n = t->dlen[id];
	}
	if (cap)
		memcpy(buf, src, n < cap ? n : cap);
	return (int)n;
}

/* ---- getters ------------------------------------------------------------- */

enum tok_kind tok_kind(const struct tok *t)
{
	return t->kind;
}

int32_t tok_n_vocab(const struct tok *t)
{
	return t->n;
}

int32_t tok_bos(const struct tok *t)
{
	return t->bos;
}

int32_t tok_eos(const struct tok *t)
{
	return t->eos;
}

int tok_is_eog(const struct tok *t, int32_t id)
{
	/* a model that samples BOS has begun a new document (stories260K ends
	 * each story so, and llama2.c stops there): nothing after it answers */
	if (id == t->bos && id >= 0)
		return 1;
	for (int i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id)
			return 1;
	return 0;
}

int32_t tok_lookup(const struct tok *t, const char *p)
{
	return find_piece(t, p, strlen(p));
}

const char *tok_piece(const struct tok *t, int32_t id, size_t *len)
{
	if (id < 0 || id >= t->n)
		return NULL;
	if (len)
		*len = t->len[id];
	return piece(t, id);
}

int tok_add_bos(const struct tok *t)
{
	return t->add_bos && t->bos >= 0;
}

const char *tok_chat_template(const struct tok *t)
{
	return t->chat_template;
}

static const char *pre_name(enum tok_pre p)
{
	return p == PRE_LLAMA3 ? "llama-bpe" : p == PRE_QWEN2 ? "qwen2" : "gpt2";
}

const char *tok_pre_name(const struct tok *t)
{
	return t->kind == TOK_BPE ? pre_name(t->pre) : NULL;
}

/* ---- GGUF ---------------------------------------------------------------- */

static int pre_from_name(const char *s, enum tok_pre *out)
{
	static const struct {
		const char *name;
		enum tok_pre pre;
	} names[] = {
	    {"default", PRE_GPT2},     {"gpt2", PRE_GPT2},	  {"gpt-2", PRE_GPT2},
	    {"llama3", PRE_LLAMA3},    {"llama-bpe", PRE_LLAMA3}, {"llama-v3", PRE_LLAMA3},
	    {"smaug-bpe", PRE_LLAMA3}, {"qwen2", PRE_QWEN2},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i].name)) {
			*out = names[i].pre;
			return 0;
		}
	}
	return -1;
}

/* An optional id key: absent leaves *out, present must be a token. */
static int gguf_opt_id(const struct gguf *g, const char *key, int32_t n, int32_t *out,
		       struct ciel_err *err)
{
	uint32_t v;
	struct ciel_err e = {0};

	if (gguf_get_u32(g, key, &v, &e) < 0) {
		if (e.code == CIEL_ENOTFOUND)
			return 0;
		if (err)
			*err = e;
		return -1;
	}
	/* Some converters write -1 (as u32 max) for "none". */
	if (v == UINT32_MAX) {
		*out = -1;
		return 0;
	}
	if (v >= (uint32_t)n)
		return ciel_err_set(err, CIEL_EINVAL, "%s: %u is not a token (vocabulary of %d)",
				    key, v, n);
	*out = (int32_t)v;
	return 0;
}

static int gguf_opt_bool(const struct gguf *g, const char *key, int *out, struct ciel_err *err)
{
	struct ciel_err e = {0};
	int v;

	if (gguf_get_bool(g, key, &v, &e) < 0) {
		if (e.code == CIEL_ENOTFOUND)
			return 0;
		if (err)
			*err = e;
		return -1;
	}
	*out = v;
	return 0;
}

/* Array key: its index, checked to hold n elements of a numeric type (or absent: -1). */
static int gguf_num_arr(const struct gguf *g, const char *key, int32_t n, int *idx,
			struct ciel_err *err)
{
	int i = gguf_find(g, key);

	*idx = -1;
	if (i < 0)
		return 0;
	if (gguf_kv_type(g, i) != GGUF_ARRAY || gguf_arr_type(g, i) == GGUF_STRING ||
	    gguf_arr_type(g, i) == GGUF_ARRAY)
		return ciel_err_set(err, CIEL_EINVAL, "%s: not an array of numbers", key);
	if (gguf_arr_len(g, i) != (uint64_t)n)
		return ciel_err_set(err, CIEL_EINVAL, "%s: %llu entries for %d tokens", key,
				    (unsigned long long)gguf_arr_len(g, i), n);
	*idx = i;
	return 0;
}

int tok_from_gguf(struct tok **out, const struct gguf *g, struct ciel_err *err)
{
	struct gguf_str model, s;
	enum tok_kind kind;
	struct tok *t = NULL;
	int ti, si, yi, mi;
	uint64_t n;

	*out = NULL;
	if (gguf_get_str(g, "tokenizer.ggml.model", &model, err) < 0) {
		ciel_err_prefix(err, "tokenizer: ");
		return -1;
	}
	if (!strcmp(model.s, "llama"))
		kind = TOK_SPM;
	else if (!strcmp(model.s, "gpt2"))
		kind = TOK_BPE;
	else
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.ggml.model '%.64s' is not supported (llama, gpt2)",
				    model.s);
	ti = gguf_find(g, "tokenizer.ggml.tokens");
	if (ti < 0 || gguf_kv_type(g, ti) != GGUF_ARRAY || gguf_arr_type(g, ti) != GGUF_STRING)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.ggml.tokens: missing or not an array of strings");
	n = gguf_arr_len(g, ti);
	if (n > TOK_MAX_VOCAB)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.ggml.tokens: %llu tokens, at most %d",
				    (unsigned long long)n, TOK_MAX_VOCAB);
	t = tok_new((int32_t)n, kind, err);
	if (!t)
		return -1;
	if (gguf_num_arr(g, "tokenizer.ggml.scores", t->n, &si, err) < 0 ||
	    gguf_num_arr(g, "tokenizer.ggml.token_type", t->n, &yi, err) < 0)
		goto fail;
	for (int32_t id = 0; id < t->n; id++) {
		int type = TT_NORMAL;

		if (gguf_arr_str(g, ti, (uint64_t)id, &s) < 0) {
			ciel_err_set(err, CIEL_EINVAL, "tokenizer.ggml.tokens[%d]: unreadable", id);
			goto fail;
		}
		if (yi >= 0) {
			double v = gguf_arr_num(g, yi, (uint64_t)id);

			type = v >= TT_NORMAL && v <= TT_BYTE ? (int)v : TT_NORMAL;
		}
		if (set_piece(t, id, s.s, s.len, type, err) < 0)
			goto fail;
		if (si >= 0)
			t->score[id] = (float)gguf_arr_num(g, si, (uint64_t)id);
	}
	if (build_hash(t, err) < 0)
		goto fail;
	if (kind == TOK_SPM) {
		/* llama.cpp's defaults for a SentencePiece vocabulary */
		t->unk = t->n > 0 ? 0 : -1;
		t->bos = t->n > 1 ? 1 : -1;
		t->eos = t->n > 2 ? 2 : -1;
	}
	if (gguf_opt_id(g, "tokenizer.ggml.bos_token_id", t->n, &t->bos, err) < 0 ||
	    gguf_opt_id(g, "tokenizer.ggml.eos_token_id", t->n, &t->eos, err) < 0 ||
	    gguf_opt_id(g, "tokenizer.ggml.eot_token_id", t->n, &t->eot, err) < 0 ||
	    gguf_opt_id(g, "tokenizer.ggml.unknown_token_id", t->n, &t->unk, err) < 0 ||
	    gguf_opt_id(g, "tokenizer.ggml.padding_token_id", t->n, &t->pad, err) < 0 ||
	    gguf_opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err) < 0 ||
	    gguf_opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err) < 0)
		goto fail;
	if (kind == TOK_BPE) {
		struct ciel_err e = {0};

		t->pre = PRE_GPT2;
		if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &e) == 0) {
			if (pre_from_name(s.s, &t->pre) < 0) {
				ciel_err_set(
				    err, CIEL_EINVAL,
				    "tokenizer.ggml.pre '%.64s' is not supported (llama-bpe, "
				    "qwen2, gpt2)",
				    s.s);
				goto fail;
			}
		} else if (e.code != CIEL_ENOTFOUND) {
			if (err)
				*err = e;
			goto fail;
		}
		/* llama.cpp skips merges for a word that is a whole token with Llama-3's
		 * pre-tokenizer, as its tokenizer.json says (ignore_merges). */
		t->ignore_merges = t->pre == PRE_LLAMA3;
		if (gguf_opt_bool(g, "tokenizer.ggml.ignore_merges", &t->ignore_merges, err) < 0)
			goto fail;
		mi = gguf_find(g, "tokenizer.ggml.merges");
		if (mi >= 0) {
			uint64_t nm = gguf_arr_len(g, mi);

			if (gguf_kv_type(g, mi) != GGUF_ARRAY ||
			    gguf_arr_type(g, mi) != GGUF_STRING) {
				ciel_err_set(err, CIEL_EINVAL,
					     "tokenizer.ggml.merges: not an array of strings");
				goto fail;
			}
			if (merges_alloc(t, nm, err) < 0)
				goto fail;
			for (uint64_t k = 0; k < nm; k++) {
				if (gguf_arr_str(g, mi, k, &s) < 0 ||
				    add_merge_str(t, s.s, s.len, err) < 0)
					goto fail;
			}
		}
	}
	{
		struct ciel_err e = {0};

		if (gguf_get_str(g, "tokenizer.chat_template", &s, &e) == 0 &&
		    !(t->chat_template = strndup(s.s, s.len))) {
			ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
			goto fail;
		}
	}
	if (tok_finish(t, err) < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	tok_free(t);
	return -1;
}

int tok_to_gguf(const struct tok *t, struct gguf_writer *w)
{
	const char **pieces = NULL, **merges = NULL;
	int32_t *types = NULL;
	struct dbuf mb;
	int rc = -1;

	dbuf_init(&mb, DBUF_NO_MAX);
	pieces = malloc((size_t)t->n * sizeof(*pieces));
	types = malloc((size_t)t->n * sizeof(*types));
	merges = malloc(((size_t)t->n_merges + 1) * sizeof(*merges));
	if (!pieces || !types || !merges)
		goto out;
	for (int32_t id = 0; id < t->n; id++) {
		pieces[id] = piece(t, id);
		types[id] = t->type[id];
	}
	if (gguf_w_str(w, "tokenizer.ggml.model", t->kind == TOK_SPM ? "llama" : "gpt2") < 0 ||
	    gguf_w_arr_str(w, "tokenizer.ggml.tokens", pieces, (size_t)t->n) < 0 ||
	    gguf_w_arr_f32(w, "tokenizer.ggml.scores", t->score, (size_t)t->n) < 0 ||
	    gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (size_t)t->n) < 0)
		goto out;
	if (t->kind == TOK_BPE) {
		size_t *offs = malloc(((size_t)t->n_merges + 1) * sizeof(*offs));

		if (!offs)
			goto out;
		for (int32_t k = 0; k < t->n_merges; k++) {
			offs[k] = mb.len;
			dbuf_add(&mb, piece(t, t->mlist[2 * k]), t->len[t->mlist[2 * k]]);
			dbuf_add(&mb, " ", 1);
			dbuf_add(&mb, piece(t, t->mlist[2 * k + 1]), t->len[t->mlist[2 * k + 1]]);
			dbuf_add(&mb, "", 1);
		}
		if (mb.nomem) {
			free(offs);
			goto out;
		}
		for (int32_t k = 0; k < t->n_merges; k++)
			merges[k] = mb.buf + offs[k];
		free(offs);
		if (gguf_w_arr_str(w, "tokenizer.ggml.merges", merges, (size_t)t->n_merges) < 0 ||
		    gguf_w_str(w, "tokenizer.ggml.pre", pre_name(t->pre)) < 0 ||
		    gguf_w_bool(w, "tokenizer.ggml.ignore_merges", t->ignore_merges) < 0)
			goto out;
	}
	if ((t->bos >= 0 && gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos) < 0) ||
	    (t->eos >= 0 && gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos) < 0) ||
	    (t->eot >= 0 && gguf_w_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)t->eot) < 0) ||
	    (t->unk >= 0 &&
	     gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk) < 0) ||
	    (t->pad >= 0 &&
	     gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad) < 0) ||
	    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos) < 0 ||
	    gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix) < 0 ||
	    (t->chat_template && gguf_w_str(w, "tokenizer.chat_template", t->chat_template) < 0))
		goto out;
	rc = 0;
out:
	free(pieces);
	free(types);
	free(merges);
	dbuf_release(&mb);
	return rc;
}

/* ---- tokenizer.json -------------------------------------------------------- */

#define HF_MAX_JSON (64u << 20)

static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
			       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* The text of a token field: "x" or {"content": "x"} (AddedToken). */
static const char *hf_token_text(json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "content");
	return json_string_value(v);
}

/* Does any Replace/Prepend/Metaspace in this (possibly Sequence) node use U+2581? */
static int hf_mentions_metaspace(json_t *node)
{
	const char *type = json_string_value(json_object_get(node, "type"));
	json_t *seq, *v;
	size_t i;

	if (!type)
		return 0;
	if (!strcmp(type, "Metaspace"))
		return 1;
	if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
		const char *c = json_string_value(json_object_get(node, "content"));
		const char *p = json_string_value(json_object_get(node, "prepend"));

		return (c && strstr(c, "\xe2\x96\x81")) || (p && strstr(p, "\xe2\x96\x81"));
	}
	seq = json_object_get(node, "normalizers");
	if (!seq)
		seq = json_object_get(node, "pretokenizers");
	if (!seq)
		seq = json_object_get(node, "decoders");
	json_array_foreach(seq, i, v) if (hf_mentions_metaspace(v)) return 1;
	return 0;
}

/* The pre-tokenizer of a byte-level BPE: 1 and *pre set, 0 if not byte-level, -1 error. */
static int hf_byte_level(json_t *pt, enum tok_pre *pre, struct ciel_err *err)
{
	const char *type = json_string_value(json_object_get(pt, "type"));
	json_t *v;
	size_t i;
	int byte_level = 0, have_re = 0;

	if (!type)
		return 0;
	if (!strcmp(type, "ByteLevel")) {
		*pre = PRE_GPT2;
		return 1;
	}
	if (strcmp(type, "Sequence"))
		return 0;
	json_array_foreach(json_object_get(pt, "pretokenizers"), i, v)
	{
		const char *vt = json_string_value(json_object_get(v, "type"));

		if (vt && !strcmp(vt, "ByteLevel")) {
			byte_level = 1;
			if (!have_re && !json_is_false(json_object_get(v, "use_regex")))
				*pre = PRE_GPT2, have_re = 1;
		} else if (vt && !strcmp(vt, "Split")) {
			const char *re = json_string_value(
			    json_object_get(json_object_get(v, "pattern"), "Regex"));

			if (!re)
				return ciel_err_set(err, CIEL_EINVAL,
						    "tokenizer.json: pre_tokenizer Split without a "
						    "Regex pattern");
			if (!strcmp(re, LLAMA3_RE))
				*pre = PRE_LLAMA3;
			else if (!strcmp(re, QWEN2_RE))
				*pre = PRE_QWEN2;
			else if (!strcmp(re, GPT2_RE))
				*pre = PRE_GPT2;
			else
				return ciel_err_set(
				    err, CIEL_EINVAL,
				    "tokenizer.json: pre-tokenizer regex '%.200s' is "
				    "not one we know (Llama-3, Qwen2, GPT-2)",
				    re);
			have_re = 1;
		} else {
			return ciel_err_set(
			    err, CIEL_EINVAL,
			    "tokenizer.json: pre-tokenizer '%.64s' is not supported",
			    vt ? vt : "?");
		}
	}
	return byte_level;
}

/* Does the post-processor (TemplateProcessing, maybe in a Sequence) start with bos? */
static int hf_post_bos(json_t *pp, const char *bos)
{
	const char *type = json_string_value(json_object_get(pp, "type"));
	json_t *v;
	size_t i;

	if (!type)
		return 0;
	if (!strcmp(type, "Sequence")) {
		json_array_foreach(json_object_get(pp, "processors"), i,
				   v) if (hf_post_bos(v, bos)) return 1;
		return 0;
	}
	if (strcmp(type, "TemplateProcessing"))
		return 0;
	v = json_object_get(
	    json_object_get(json_array_get(json_object_get(pp, "single"), 0), "SpecialToken"),
	    "id");
	return json_is_string(v) && !strcmp(json_string_value(v), bos);
}

/* Vocabulary, added tokens and merges of a tokenizer.json into a new tok. */
static int hf_load(struct tok **out, json_t *root, json_t *cfg, struct ciel_err *err)
{
	json_t *model = json_object_get(root, "model");
	json_t *vocab = json_object_get(model, "vocab");
	json_t *added = json_object_get(root, "added_tokens");
	json_t *merges = json_object_get(model, "merges");
	json_t *pt = json_object_get(root, "pre_tokenizer");
	const char *mtype = json_string_value(json_object_get(model, "type"));
	const char *key;
	json_t *v;
	enum tok_pre pre = PRE_GPT2;
	enum tok_kind kind;
	struct tok *t = NULL;
	int64_t max_id = -1;
	size_t i, count;
	int bl;

	if (!json_is_object(model) || !json_is_object(vocab))
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer.json: no model.vocab object");
	if (mtype && strcmp(mtype, "BPE"))
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.json: model type '%.64s' is not supported (BPE)",
				    mtype);
	if (added && !json_is_array(added))
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.json: added_tokens is not an array");
	if (merges && !json_is_array(merges))
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.json: model.merges is not an array");
	bl = hf_byte_level(pt, &pre, err);
	if (bl < 0)
		return -1;
	if (bl)
		kind = TOK_BPE;
	else if (hf_mentions_metaspace(pt) ||
		 hf_mentions_metaspace(json_object_get(root, "normalizer")) ||
		 hf_mentions_metaspace(json_object_get(root, "decoder")))
		kind = TOK_SPM;
	else
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.json: neither a ByteLevel nor a Metaspace "
				    "(SentencePiece) layout");
	count = json_object_size(vocab);
	json_object_foreach(vocab, key, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= TOK_MAX_VOCAB)
			return ciel_err_set(
			    err, CIEL_EINVAL,
			    "tokenizer.json: model.vocab['%.64s'] is not a token id", key);
		if (json_integer_value(v) > max_id)
			max_id = json_integer_value(v);
	}
	json_array_foreach(added, i, v)
	{
		json_t *id = json_object_get(v, "id");

		if (!json_is_integer(id) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= TOK_MAX_VOCAB ||
		    !json_is_string(json_object_get(v, "content")))
			return ciel_err_set(
			    err, CIEL_EINVAL,
			    "tokenizer.json: added_tokens[%zu] needs an id and content", i);
		if (json_integer_value(id) > max_id)
			max_id = json_integer_value(id);
		count++;
	}
	/* Ids are dense in real tokenizers; a few holes are tolerated, not a
	 * hostile id that would make us allocate millions of empty entries. */
	if (max_id + 1 > (int64_t)count + 1024)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tokenizer.json: token id %lld leaves too many ids unused",
				    (long long)max_id);
	t = tok_new((int32_t)(max_id + 1), kind, err);
	if (!t)
		return -1;
	t->pre = pre;
	json_object_foreach(vocab, key, v)
	{
		int32_t id = (int32_t)json_integer_value(v);
		size_t n = strlen(key);
		unsigned b;

		if (t->type[id] != TT_UNUSED) {
			ciel_err_set(err, CIEL_EINVAL,
				     "tokenizer.json: id %d is given to both '%.64s' and '%.64s'",
				     id, piece(t, id), key);
			goto fail;
		}
		if (set_piece(t, id, key, n,
			      kind == TOK_SPM && is_byte_piece(key, n, &b) ? TT_BYTE : TT_NORMAL,
			      err) < 0)
			goto fail;
	}
	json_array_foreach(added, i, v)
	{
		int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
		const char *c = json_string_value(json_object_get(v, "content"));
		int special = json_is_true(json_object_get(v, "special"));

		/* An added token may restate a vocab entry; its content and kind win. */
		if (set_piece(t, id, c, json_string_length(json_object_get(v, "content")),
			      special ? TT_CONTROL : TT_USER, err) < 0)
			goto fail;
		if (kind == TOK_SPM && !special) {
			unsigned b;

			if (is_byte_piece(c, strlen(c), &b))
				t->type[id] = TT_BYTE;
		}
	}
	if (build_hash(t, err) < 0)
		goto fail;
	if (merges_alloc(t, json_array_size(merges), err) < 0)
		goto fail;
	json_array_foreach(merges, i, v)
	{
		int rc;

		if (json_is_string(v)) {
			rc = add_merge_str(t, json_string_value(v), json_string_length(v), err);
		} else if (json_is_array(v) && json_array_size(v) == 2 &&
			   json_is_string(json_array_get(v, 0)) &&
			   json_is_string(json_array_get(v, 1))) {
			json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);

			rc = add_merge(t, json_string_value(a), json_string_length(a),
				       json_string_value(b), json_string_length(b), err);
		} else {
			rc = ciel_err_set(
			    err, CIEL_EINVAL,
			    "tokenizer.json: model.merges[%zu] is not 'a b' or [a, b]", i);
		}
		if (rc < 0)
			goto fail;
	}
	if (kind == TOK_SPM) {
		/* SentencePiece merges by score: rank order is the score order. */
		for (int32_t id = 0; id < t->n; id++)
			t->score[id] = -1e9f;
		for (int32_t k = t->n_merges - 1; k >= 0; k--) {
			const struct tok_merge *m =
			    find_merge(t, t->mlist[2 * k], t->mlist[2 * k + 1]);

			if (m)
				t->score[m->id] = -(float)m->rank;
		}
		free(t->mtab); /* the SPM encoder merges by score, not by pair */
		t->mtab = NULL;
		t->ignore_merges = 0;
	} else {
		t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
	}
	{
		const char *unk = json_string_value(json_object_get(model, "unk_token"));

		if (unk)
			t->unk = find_piece(t, unk, strlen(unk));
	}
	t->add_space_prefix = kind == TOK_SPM;
	t->add_bos = kind == TOK_SPM;
	t->bos =
	    find_piece(t, kind == TOK_SPM ? "<s>" : "<|begin_of_text|>", kind == TOK_SPM ? 3 : 17);
	t->eos =
	    find_piece(t, kind == TOK_SPM ? "</s>" : "<|end_of_text|>", kind == TOK_SPM ? 4 : 15);
	if (t->eos < 0)
		t->eos = find_piece(t, "<|endoftext|>", 13);
	/* A post-processor that writes BOS itself means add_bos, whatever the kind. */
	if (t->bos >= 0 && hf_post_bos(json_object_get(root, "post_processor"), piece(t, t->bos)))
		t->add_bos = 1;
	if (cfg) {
		const char *b = hf_token_text(json_object_get(cfg, "bos_token"));
		const char *e = hf_token_text(json_object_get(cfg, "eos_token"));
		json_t *ab = json_object_get(cfg, "add_bos_token");
		json_t *ct = json_object_get(cfg, "chat_template");

		if (b && (t->bos = find_piece(t, b, strlen(b))) < 0) {
			ciel_err_set(err, CIEL_EINVAL,
				     "tokenizer_config.json: bos_token '%.64s' is not a token", b);
			goto fail;
		}
		if (e && (t->eos = find_piece(t, e, strlen(e))) < 0) {
			ciel_err_set(err, CIEL_EINVAL,
				     "tokenizer_config.json: eos_token '%.64s' is not a token", e);
			goto fail;
		}
		if (json_is_boolean(ab))
			t->add_bos = json_is_true(ab);
		if (json_is_array(ct)) {
			json_t *x, *pick = NULL;

			json_array_foreach(ct, i, x)
			{
				const char *name = json_string_value(json_object_get(x, "name"));

				if (name && !strcmp(name, "default"))
					pick = json_object_get(x, "template");
			}
			ct = pick;
		}
		if (json_is_string(ct) && !(t->chat_template = strdup(json_string_value(ct)))) {
			ciel_err_set(err, CIEL_ENOMEM, "tokenizer: out of memory");
			goto fail;
		}
	}
	if (tok_finish(t, err) < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	tok_free(t);
	return -1;
}

int tok_from_hf_buf(struct tok **out, const char *json, size_t len, const char *config,
		    size_t config_len, struct ciel_err *err)
{
	json_error_t je;
	json_t *root, *cfg = NULL;
	int rc;

	*out = NULL;
	if (len > HF_MAX_JSON || config_len > HF_MAX_JSON)
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer.json: over %u bytes", HF_MAX_JSON);
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return ciel_err_set(err, CIEL_EINVAL, "tokenizer.json: line %d column %d: %s",
				    je.line, je.column, je.text);
	if (config) {
		cfg = json_loadb(config, config_len, JSON_DECODE_INT_AS_REAL, &je);
		if (!cfg || !json_is_object(cfg)) {
			json_decref(root);
			json_decref(cfg);
			return ciel_err_set(err, CIEL_EINVAL,
					    "tokenizer_config.json: line %d column %d: %s", je.line,
					    je.column, cfg ? "not an object" : je.text);
		}
	}
	rc = hf_load(out, root, cfg, err);
	json_decref(root);
	json_decref(cfg);
	return rc;
}

static int read_file(const char *path, char **buf, size_t *len, struct ciel_err *err)
{
	FILE *f = fopen(path, "rb");
	struct dbuf b;
	char chunk[65536];
	size_t n;

	if (!f)
		return ciel_err_sys(err, CIEL_EINVAL, errno, "open %s", path);
	dbuf_init(&b, HF_MAX_JSON);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (dbuf_add(&b, chunk, n) < 0)
			break;
	if (ferror(f) || b.toobig || b.nomem) {
		int toobig = b.toobig;

		fclose(f);
		dbuf_release(&b);
		return ciel_err_set(err, toobig ? CIEL_EINVAL : CIEL_EIO, "read %s: %s", path,
				    toobig ? "file too large" : "read error");
	}
	fclose(f);
	*buf = dbuf_detach(&b, len);
	return *buf ? 0 : ciel_err_set(err, CIEL_ENOMEM, "out of memory");
}

int tok_from_hf(struct tok **out, const char *tokenizer_json, const char *config_json,
		struct ciel_err *err)
{
	char *a = NULL, *b = NULL;
	size_t an = 0, bn = 0;
	int rc;

	*out = NULL;
	if (read_file(tokenizer_json, &a, &an, err) < 0)
		return -1;
	if (config_json && read_file(config_json, &b, &bn, err) < 0) {
		free(a);
		return -1;
	}
	rc = tok_from_hf_buf(out, a, an, b, bn, err);
	free(a);
	free(b);
	return rc;
}
