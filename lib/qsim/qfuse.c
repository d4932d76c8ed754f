/*
 * qfuse — greedy gate fusion.
 *
 * Gates are gathered into blocks of at most maxk qubits. A gate joins the
 * latest block that shares a qubit with it when the union still fits; it
 * moves earlier only past blocks it shares no qubit with, so the product is
 * exact. A gate on qubits no block has touched yet may join any block; it
 * joins the last one. A controlled gate becomes a full matrix on its
 * controls and targets; a gate on more than maxk qubits stays as it is,
 * controls and all, and closes the qubits it touches. Diagonal gates
 * multiply into a diagonal block of up to QSIM_MAX_FUSED qubits whatever
 * maxk is: a diagonal costs one multiply per amplitude on any width.
 *
 * A block of one gate keeps that gate's own form (controls, 1 or 2
 * targets), which the kernels apply to fewer amplitudes; a block whose
 * matrix is diagonal is applied by the diagonal kernel.
 */
#include "qsim/qfuse.h"

#include <stdlib.h>
#include <string.h>

/* gates applied in one cache-blocked pass at most */
#define QFUSE_RUN_MAX 256

struct blk {
	int nq, q[QSIM_MAX_FUSED]; /* bit j of a matrix index is qubit q[j] */
	int closed;		   /* a gate kept as it is: nothing joins it */
	int diag;		   /* every gate so far diagonal: the product is too */
	size_t ngates;
	const struct circ_op *first;
	double *m; /* 2^nq x 2^nq complex; NULL when closed */
};

static int pos_of(const int *q, int n, int x)
{
	for (int i = 0; i < n; i++)
		if (q[i] == x)
			return i;
	return -1;
}

/*
 * Left-multiply the dim x dim matrix m by op, whose qubits sit at bit
 * positions pos[] (controls first) of the row index.
 */
static void mul_op(double *m, int dim, const struct circ_op *op, const int *pos)
{
	int nc = op->nctrl, nt = op->ntgt, tdim = 1 << nt;
	int cmask = 0, tmask = 0, toff[4];

	for (int i = 0; i < nc; i++)
		cmask |= 1 << pos[i];
	for (int t = 0; t < tdim; t++) {
		toff[t] = 0;
		for (int j = 0; j < nt; j++)
			if (t >> j & 1)
				toff[t] |= 1 << pos[nc + j];
	}
	for (int j = 0; j < nt; j++)
		tmask |= 1 << pos[nc + j];
	for (int col = 0; col < dim; col++)
		for (int i = 0; i < dim; i++) {
			double vr[4], vi[4];

			if ((i & tmask) || (i & cmask) != cmask)
				continue;
			for (int t = 0; t < tdim; t++) {
				vr[t] = m[2 * ((i | toff[t]) * dim + col)];
				vi[t] = m[2 * ((i | toff[t]) * dim + col) + 1];
			}
			for (int r = 0; r < tdim; r++) {
				double sr = 0, si = 0;

				for (int t = 0; t < tdim; t++) {
					double gr = op->m[2 * (r * tdim + t)];
					double gi = op->m[2 * (r * tdim + t) + 1];

					sr += gr * vr[t] - gi * vi[t];
					si += gr * vi[t] + gi * vr[t];
				}
				m[2 * ((i | toff[r]) * dim + col)] = sr;
				m[2 * ((i | toff[r]) * dim + col) + 1] = si;
			}
		}
}

static int is_diag(const double *m, int dim)
{
	for (int r = 0; r < dim; r++)
		for (int c = 0; c < dim; c++)
			if (r != c && (m[2 * (r * dim + c)] != 0 || m[2 * (r * dim + c) + 1] != 0))
				return 0;
	return 1;
}

static int blk_start(struct blk *b, const struct circ_op *op, int closed)
{
	int n = op->nctrl + op->ntgt;

	b->closed = closed;
	b->diag = is_diag(op->m, 1 << op->ntgt);
	b->ngates = 1;
	b->first = op;
	b->nq = closed ? 0 : n;
	b->m = NULL;
	if (closed)
		return 0;
	memcpy(b->q, op->q, (size_t)n * sizeof(int));
	b->m = calloc((size_t)2 << (2 * n), sizeof(double));
	if (!b->m)
		return -1;
	for (int i = 0; i < (1 << n); i++)
		b->m[2 * (i * (1 << n) + i)] = 1;
	mul_op(b->m, 1 << n, op, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
	return 0;
}

/* Qubits of op that b lacks. */
static int blk_missing(const struct blk *b, const struct circ_op *op, int *add)
{
	int n = 0;

	for (int i = 0; i < op->nctrl + op->ntgt; i++)
		if (pos_of(b->q, b->nq, op->q[i]) < 0)
			add[n++] = op->q[i];
	return n;
}

static int blk_merge(struct blk *b, const struct circ_op *op, const int *add, int nadd)
{
	int odim = 1 << b->nq, ndim = odim << nadd, pos[CIRC_MAX_CTRL + CIRC_MAX_TGT];

	if (nadd) {
		/* the new qubits are the high bits: the old matrix repeats down the diagonal */
		double *t = calloc(2 * (size_t)ndim * ndim, sizeof(double));

		if (!t)
			return -1;
		for (int a = 0; a < (1 << nadd); a++)
			for (int r = 0; r < odim; r++)
				memcpy(&t[2 * ((a * odim + r) * ndim + a * odim)],
				       &b->m[2 * (r * odim)], sizeof(double) * 2 * odim);
		free(b->m);
		b->m = t;
		memcpy(b->q + b->nq, add, (size_t)nadd * sizeof(int));
		b->nq += nadd;
	}
	for (int i = 0; i < op->nctrl + op->ntgt; i++)
		pos[i] = pos_of(b->q, b->nq, op->q[i]);
	mul_op(b->m, ndim, op, pos);
	b->diag = b->diag && is_diag(op->m, 1 << op->ntgt);
	b->ngates++;
	return 0;
}

static int emit(struct qfuse_prog *p, const struct blk *b, struct ciel_err *err)
{
	struct qfuse_gate *g;
	const double *m;
	int dim;

	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		struct qfuse_gate *ng = realloc(p->g, cap * sizeof(*ng));

		if (!ng)
			return ciel_err_set(err, CIEL_ENOMEM, "qfuse: out of memory");
		p->g = ng;
		p->cap = cap;
	}
	g = &p->g[p->n];
	memset(g, 0, sizeof(*g));
	if (b->ngates == 1) {
		g->nctrl = b->first->nctrl;
		g->ntgt = b->first->ntgt;
		memcpy(g->q, b->first->q, (size_t)(g->nctrl + g->ntgt) * sizeof(int));
		m = b->first->m;
	} else {
		g->ntgt = b->nq;
		memcpy(g->q, b->q, (size_t)b->nq * sizeof(int));
		m = b->m;
	}
	dim = 1 << g->ntgt;
	g->diag = is_diag(m, dim);
	g->m = malloc(sizeof(double) * 2 * (g->diag ? (size_t)dim : (size_t)dim * dim));
	if (!g->m)
		return ciel_err_set(err, CIEL_ENOMEM, "qfuse: out of memory");
	if (g->diag)
		for (int i = 0; i < dim; i++) {
			g->m[2 * i] = m[2 * (i * dim + i)];
			g->m[2 * i + 1] = m[2 * (i * dim + i) + 1];
		}
	else
		memcpy(g->m, m, sizeof(double) * 2 * (size_t)dim * dim);
	p->n++;
	return 0;
}

int qfuse_build(const struct circ_op *ops, size_t n, int maxk, struct qfuse_prog *prog,
		struct ciel_err *err)
{
	struct blk *b = NULL;
	size_t nb = 0, cap = 0;
	long last[CIRC_MAX_QUBITS];
	int rc = -1, lim = QSIM_MAX_FUSED;

	if (maxk < 1 || maxk > QSIM_MAX_FUSED)
		return ciel_err_set(err, CIEL_EINVAL, "qfuse: maxk %d not in 1..%d", maxk,
				    QSIM_MAX_FUSED);
	for (int q = 0; q < CIRC_MAX_QUBITS; q++)
		last[q] = -1;
	for (size_t i = 0; i < n; i++) {
		const struct circ_op *op = &ops[i];
		int nq = op->nctrl + op->ntgt, add[CIRC_MAX_CTRL + CIRC_MAX_TGT], nadd = 0;
		long at = -1;

		if (op->kind != CIRC_GATE || op->cond_len || op->ntgt < 1 ||
		    op->ntgt > CIRC_MAX_TGT || op->nctrl > CIRC_MAX_CTRL) {
			ciel_err_set(err, CIEL_EINVAL,
				     "qfuse: operation %zu (%s) is not a plain gate", i, op->name);
			goto out;
		}
		for (int k = 0; k < nq; k++) {
			if (op->q[k] < 0 || op->q[k] >= CIRC_MAX_QUBITS) {
				ciel_err_set(err, CIEL_EINVAL, "qfuse: operation %zu: qubit %d", i,
					     op->q[k]);
				goto out;
			}
			if (last[op->q[k]] > at)
				at = last[op->q[k]];
		}
		/* untouched qubits commute with every open block: try the last one */
		if (at < 0 && nb)
			at = (long)nb - 1;
		if (nq <= lim && at >= 0 && !b[at].closed) {
			int dg = b[at].diag && is_diag(op->m, 1 << op->ntgt);

			nadd = blk_missing(&b[at], op, add);
			/* a diagonal costs the same on any number of qubits: let it grow */
			if (b[at].nq + nadd > (dg ? QSIM_MAX_FUSED : maxk))
				at = -1;
		} else {
			at = -1;
		}
		if (at < 0) {
			if (nb == cap) {
				size_t nc = cap ? 2 * cap : 16;
				struct blk *t = realloc(b, nc * sizeof(*t));

				if (!t) {
					ciel_err_set(err, CIEL_ENOMEM, "qfuse: out of memory");
					goto out;
				}
				b = t;
				cap = nc;
			}
			at = (long)nb++;
			if (blk_start(
				&b[at], op,
				nq > (is_diag(op->m, 1 << op->ntgt) ? QSIM_MAX_FUSED : maxk)) < 0) {
				ciel_err_set(err, CIEL_ENOMEM, "qfuse: out of memory");
				goto out;
			}
		} else if (blk_merge(&b[at], op, add, nadd) < 0) {
			ciel_err_set(err, CIEL_ENOMEM, "qfuse: out of memory");
			goto out;
		}
		for (int k = 0; k < nq; k++)
			last[op->q[k]] = at;
	}
	for (size_t i = 0; i < nb; i++)
		if (emit(prog, &b[i], err) < 0)
			goto out;
	prog->n_in += n;
	rc = 0;
out:
	for (size_t i = 0; i < nb; i++)
		free(b[i].m);
	free(b);
	return rc;
}

void qfuse_release(struct qfuse_prog *prog)
{
	for (size_t i = 0; i < prog->n; i++)
		free(prog->g[i].m);
	free(prog->g);
	memset(prog, 0, sizeof(*prog));
}

static uint64_t gate_mask(const struct qfuse_gate *g)
{
	uint64_t m = 0;

	for (int k = 0; k < g->nctrl + g->ntgt; k++)
		m |= 1ull << g->q[k];
	return m;
}

/* End of the run of gates from i on that fits one cache-blocked pass of s. */
static size_t run_end(const struct qfuse_prog *prog, size_t i, const struct qsim *s)
{
	uint64_t used = 0;
	size_t e;

	for (e = i; e < prog->n && e - i < QFUSE_RUN_MAX; e++) {
		uint64_t u = used | gate_mask(&prog->g[e]);

		if (!qsim_batch_fits(s, u))
			break;
		used = u;
	}
	return e > i ? e : i + 1;
}

void qfuse_run(const struct qfuse_prog *prog, struct qsim *s)
{
	struct qsim_op ops[QFUSE_RUN_MAX];

	for (size_t i = 0, e; i < prog->n; i = e) {
		size_t n = 0;

		e = run_end(prog, i, s);
		for (size_t k = i; k < e; k++, n++) {
			const struct qfuse_gate *g = &prog->g[k];

			ops[n] = (struct qsim_op){g->nctrl, g->ntgt, g->diag, g->q, g->m};
		}
		qsim_apply_batch(s, ops, n);
	}
}

size_t qfuse_passes(const struct qfuse_prog *prog, const struct qsim *s)
{
	size_t n = 0;

	for (size_t i = 0; i < prog->n; i = run_end(prog, i, s), n++)
		;
	return n;
}
