/*
 * train_state.c - where training stands, as a stream of named sections
 * (trainer.h: trainer_save_state()), and back.
 *
 * Layout, little-endian:
 *
 *   header    "DSTS", u32 format version (1), u32 sections, u32 flags (0)
 *   sections  each: its name (16 bytes, NUL-padded), u64 size, size bytes,
 *             u32 CRC-32C of those bytes
 *   trailer   u32 CRC-32C of the header and of every section's name, size
 *             and CRC: of everything, through the sections' CRCs, without
 *             a second pass over gigabytes of weights
 *
 * The sections of version 1, in this order:
 *
 *   model         named values: the model's configuration
 *   params        named values: the training parameters
 *   examples      named values: counts and a fingerprint of the token rows
 *   progress      counters, generators, the best epoch, the meters
 *   order         u32 per training row: their order in this epoch
 *   weights       f32 per parameter of the model; or, with LoRA,
 *   adapters      f32 per parameter of the adapters, which alone train
 *                 (the frozen base is not in the state: it is restored
 *                 onto the same base, which the caller sees to)
 *   adam          u64 updates made, f32 last learning rate, u32 0, then
 *                 the first and the second moments, f32 per trained
 *                 parameter
 *   best_weights  f32 per trained parameter: the best epoch's; only with
 *                 validation, once an epoch has ended
 *
 * A section of named values is a list of entries: u8 length of the name,
 * the name, u8 type ('i' integer, 'f' double, 'x' 64 bits shown in hex),
 * 8 bytes of value.  The reader compares them in order with the trainer's
 * own, so that a state of other parameters or other rows is refused by the
 * name of what differs.  Every size is known from the trainer before a
 * byte of a section is read, so damaged sizes cannot ask for memory, and
 * the progress is checked for consistency (an order that is a
 * permutation, counters that agree) before it is used.  A new kind of
 * state (another block of parameters, another optimizer) comes as a
 * further section, in a new format version.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/train_internal.h"
#include "core/util.h"

#define STATE_MAGIC "DSTS"
#define STATE_VERSION 1
#define HEADER_BYTES 16
#define SECTION_NAME_LEN 16
#define SECTION_HEAD_BYTES (SECTION_NAME_LEN + 8)
#define SECTION_TAIL_BYTES 4
#define TRAILER_BYTES 4

/* Sections every state has; best_weights comes on top. */
#define BASE_SECTIONS 7

/* A section of named values fits in this many bytes. */
#define NAMED_MAX_BYTES 2048
#define NAMED_MAX 32

/* progress: 8 u32, a f64, 3 u64, two meters of 4 f64 and 2 u32 */
#define METER_BYTES (4 * 8 + 2 * 4)
#define PROGRESS_BYTES (8 * 4 + 8 + 3 * 8 + 2 * METER_BYTES)
/* adam's scalars before the moments */
#define ADAM_HEAD_BYTES 16

/* The phase numbers are part of the format. */
_Static_assert(PHASE_STEPS == 0 && PHASE_VALIDATION == 1 && PHASE_EPOCH_END == 2,
			   "a state's phases are 0, 1, 2");

/* ---------------------------------------------------------------- */
/* Named values */

typedef struct Named
{
	const char *name;
	char		type;			/* 'i', 'f', 'x' */
	uint64_t	bits;
} Named;

typedef struct NamedList
{
	Named		v[NAMED_MAX];
	int			n;
} NamedList;

static void
add_named(NamedList *l, const char *name, char type, uint64_t bits)
{
	l->v[l->n++] = (Named) {name, type, bits};
}

static void
add_int(NamedList *l, const char *name, int64_t value)
{
	add_named(l, name, 'i', (uint64_t) value);
}

static void
add_real(NamedList *l, const char *name, double value)
{
	uint64_t	bits;

	memcpy(&bits, &value, sizeof(bits));
	add_named(l, name, 'f', bits);
}

/* Parameters that train: the model's, or its LoRA adapters'. */
static size_t
trained_count(const StudentTrainer *t)
{
	size_t		n;

	(void) trained_params(t, &n);
	return n;
}

static const char *
trained_section(const StudentTrainer *t)
{
	return t->model->lora != NULL ? "adapters" : "weights";
}

static void
model_values(const StudentTrainer *t, NamedList *l)
{
	const ModelConfig *c = &t->model->config;

	add_int(l, "vocab_size", c->vocab_size);
	add_int(l, "d_model", c->d_model);
	add_int(l, "layers", c->n_layers);
	add_int(l, "heads", c->n_heads);
	add_int(l, "head_dim", t->model->head_dim);
	add_int(l, "kv_heads", c->n_kv_heads);
	add_int(l, "d_ff", c->d_ff);
	add_int(l, "max_seq_len", c->max_seq_len);
	add_int(l, "tied_embeddings", c->tied_embeddings);
	add_int(l, "prefix_lm", c->prefix_lm);
	add_int(l, "qkv_bias", c->qkv_bias);
	add_real(l, "dropout", c->dropout);
	add_real(l, "rope_theta", c->rope_theta);
	add_int(l, "rope_scaling", c->rope_scaling.kind);
	add_real(l, "rope_factor", c->rope_scaling.factor);
	add_real(l, "rope_low_freq_factor", c->rope_scaling.low_freq_factor);
	add_real(l, "rope_high_freq_factor", c->rope_scaling.high_freq_factor);
	add_int(l, "rope_original_max_position", c->rope_scaling.original_max_position);
	add_real(l, "norm_eps", c->norm_eps);
	add_real(l, "logit_scale", c->logit_scale);
	add_int(l, "tensors", t->model->n_tensors);
	add_int(l, "parameters", (int64_t) t->model->n_params);
	add_int(l, "lora_rank", t->lora.rank);
	add_real(l, "lora_alpha", t->lora.alpha);
	add_int(l, "lora_targets", t->lora.targets);
	add_int(l, "trained parameters", (int64_t) trained_count(t));
}

/*
 * Every parameter but memory_mb, work_mem_mb and log_every, which change
 * no result.
 */
static void
params_values(const StudentTrainer *t, NamedList *l)
{
	const StudentParams *p = &t->params;

	add_int(l, "d_model", p->d_model);
	add_int(l, "layers", p->n_layers);
	add_int(l, "heads", p->n_heads);
	add_int(l, "d_ff", p->d_ff);
	add_int(l, "vocab_size", p->vocab_size);
	add_int(l, "epochs", p->epochs);
	add_int(l, "batch_size", p->batch_size);
	add_int(l, "max_input_tokens", p->max_input_tokens);
	add_int(l, "max_target_tokens", p->max_target_tokens);
	add_real(l, "lr", p->lr);
	add_real(l, "weight_decay", p->weight_decay);
	add_real(l, "warmup_fraction", p->warmup_fraction);
	add_real(l, "grad_clip", p->grad_clip);
	add_real(l, "dropout", p->dropout);
	add_real(l, "validation_fraction", p->validation_fraction);
	add_real(l, "rationale_weight", p->rationale_weight);
	add_int(l, "validation_metric", p->validation_metric);
	add_int(l, "prefix_lm", p->prefix_lm);
	add_int(l, "tied_embeddings", p->tied_embeddings);
	add_named(l, "seed", 'x', p->seed);
	add_int(l, "lora_rank", p->lora_rank);
	add_real(l, "lora_alpha", p->lora_alpha);
	add_int(l, "lora_targets", p->lora_targets);
}

/* CRC-32C of n 4-byte words, as little-endian bytes. */
static uint32_t
crc_words(uint32_t crc, const void *words, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return crc32c(crc, words, n * 4);
#else
	const uint32_t *w = words;

	for (size_t i = 0; i < n; i++)
	{
		uint8_t		le[4];

		le_put_u32(le, w[i]);
		crc = crc32c(crc, le, 4);
	}
	return crc;
#endif
}

static uint32_t
crc_u64(uint32_t crc, uint64_t value)
{
	uint8_t		le[8];

	le_put(le, value, 8);
	return crc32c(crc, le, 8);
}

static uint32_t
crc_span(uint32_t crc, Span s)
{
	return crc_u64(crc_u64(crc, s.offset), (uint64_t) s.len);
}

/*
 * A fingerprint of what the trainer trains and validates on: the token
 * pool, how the rows cut it, the validation rows' answers and indices.
 * Equal rows give equal pools (the tokenizer's training is deterministic),
 * so it tells whether a source query still returns the same rows.
 */
static uint32_t
examples_fingerprint(const StudentTrainer *t)
{
	uint32_t	crc = crc_words(0, t->pool, t->pool_used);

	crc = crc_span(crc_span(crc, t->tag[0]), t->tag[1]);
	for (int i = 0; i < t->n_train; i++)
		crc = crc_span(crc_span(crc_span(crc, t->train[i].input), t->train[i].label),
					   t->train[i].rationale);
	crc = crc_words(crc, t->valid_index, t->n_valid);
	for (int i = 0; i < t->n_valid; i++)
	{
		const ValidRow *row = &t->valid[i];

		crc = crc_u64(crc_u64(crc_span(crc, row->input), (uint64_t) row->gold),
					  (uint64_t) row->n_choices);
		for (int k = 0; row->choices != NULL && k < row->n_choices; k++)
			crc = crc_span(crc, row->choices[k]);
		if (row->label != NULL)
			crc = crc32c(crc, row->label, strlen(row->label) + 1);
	}
	for (int k = 0; k < t->n_label_set; k++)
		crc = crc_span(crc, t->label_set[k]);
	return crc;
}

static void
examples_values(const StudentTrainer *t, NamedList *l)
{
	add_int(l, "training rows", t->n_train);
	add_int(l, "validation rows", t->n_valid);
	add_int(l, "tokens", (int64_t) t->pool_used);
	add_named(l, "fingerprint", 'x', examples_fingerprint(t));
}

/* The list as bytes in out (NAMED_MAX_BYTES); returns their number. */
static size_t
encode_named(const NamedList *l, uint8_t *out)
{
	size_t		len = 0;

	for (int i = 0; i < l->n; i++)
	{
		size_t		name_len = strlen(l->v[i].name);

		out[len++] = (uint8_t) name_len;
		memcpy(out + len, l->v[i].name, name_len);
		len += name_len;
		out[len++] = (uint8_t) l->v[i].type;
		le_put(out + len, l->v[i].bits, 8);
		len += 8;
	}
	return len;
}

static void
format_value(char *buf, size_t len, char type, uint64_t bits)
{
	double		real;

	memcpy(&real, &bits, sizeof(real));
	if (type == 'f')
		snprintf(buf, len, "%g", real);
	else if (type == 'x')
		snprintf(buf, len, "%016llx", (unsigned long long) bits);
	else
		snprintf(buf, len, "%lld", (long long) (int64_t) bits);
}

/* ---------------------------------------------------------------- */
/* The progress section */

typedef struct Position
{
	uint32_t	phase;
	uint32_t	epoch;
	uint32_t	step_in_epoch;
	uint32_t	step;
	uint32_t	skipped_steps;
	uint32_t	next_valid;
	uint32_t	valid_correct;
	uint32_t	best_epoch;
	double		best_accuracy;
	uint64_t	shuffle_state;
	uint64_t	dropout_seed;
	uint64_t	dropout_step;
	Meter		since_log;
	Meter		this_epoch;
} Position;

static uint8_t *
put_f64(uint8_t *p, double value)
{
	uint64_t	bits;

	memcpy(&bits, &value, sizeof(bits));
	le_put(p, bits, 8);
	return p + 8;
}

static uint8_t *
put_u64(uint8_t *p, uint64_t value)
{
	le_put(p, value, 8);
	return p + 8;
}

static const uint8_t *
get_f64(const uint8_t *p, double *value)
{
	uint64_t	bits = le_get(p, 8);

	memcpy(value, &bits, sizeof(bits));
	return p + 8;
}

static const uint8_t *
get_u64(const uint8_t *p, uint64_t *value)
{
	*value = le_get(p, 8);
	return p + 8;
}

static const uint8_t *
get_u32(const uint8_t *p, uint32_t *value)
{
	*value = le_get_u32(p);
	return p + 4;
}

static uint8_t *
put_meter(uint8_t *p, const Meter *m)
{
	p = put_f64(p, m->label_loss);
	p = put_f64(p, m->rationale_loss);
	p = put_f64(p, m->tokens);
	p = put_f64(p, m->seconds);
	p = le_put_u32(p, (uint32_t) m->label_steps);
	return le_put_u32(p, (uint32_t) m->rationale_steps);
}

static const uint8_t *
get_meter(const uint8_t *p, Meter *m)
{
	uint32_t	label_steps,
				rationale_steps;

	p = get_f64(p, &m->label_loss);
	p = get_f64(p, &m->rationale_loss);
	p = get_f64(p, &m->tokens);
	p = get_f64(p, &m->seconds);
	p = get_u32(p, &label_steps);
	p = get_u32(p, &rationale_steps);
	/* checked against the step count before use */
	m->label_steps = label_steps > INT32_MAX ? -1 : (int) label_steps;
	m->rationale_steps = rationale_steps > INT32_MAX ? -1 : (int) rationale_steps;
	return p;
}

static void
encode_progress(const StudentTrainer *t, uint8_t *out)
{
	uint8_t    *p = out;

	p = le_put_u32(p, (uint32_t) t->phase);
	p = le_put_u32(p, (uint32_t) t->epoch);
	p = le_put_u32(p, (uint32_t) t->step_in_epoch);
	p = le_put_u32(p, (uint32_t) t->step);
	p = le_put_u32(p, (uint32_t) t->skipped_steps);
	p = le_put_u32(p, (uint32_t) t->next_valid);
	p = le_put_u32(p, (uint32_t) t->valid_correct);
	p = le_put_u32(p, (uint32_t) t->best_epoch);
	p = put_f64(p, t->best_accuracy);
	p = put_u64(p, t->shuffle_state);
	p = put_u64(p, t->model->dropout_seed);
	p = put_u64(p, t->model->dropout_step);
	p = put_meter(p, &t->since_log);
	put_meter(p, &t->this_epoch);
}

static void
decode_progress(const uint8_t *in, Position *pos)
{
	const uint8_t *p = in;

	p = get_u32(p, &pos->phase);
	p = get_u32(p, &pos->epoch);
	p = get_u32(p, &pos->step_in_epoch);
	p = get_u32(p, &pos->step);
	p = get_u32(p, &pos->skipped_steps);
	p = get_u32(p, &pos->next_valid);
	p = get_u32(p, &pos->valid_correct);
	p = get_u32(p, &pos->best_epoch);
	p = get_f64(p, &pos->best_accuracy);
	p = get_u64(p, &pos->shuffle_state);
	p = get_u64(p, &pos->dropout_seed);
	p = get_u64(p, &pos->dropout_step);
	p = get_meter(p, &pos->since_log);
	get_meter(p, &pos->this_epoch);
}

static bool
meter_consistent(const Meter *m, uint32_t steps)
{
	return m->label_steps >= 0 && (uint32_t) m->label_steps <= steps &&
		m->rationale_steps >= 0 && (uint32_t) m->rationale_steps <= steps &&
		isfinite(m->label_loss) && isfinite(m->rationale_loss) &&
		isfinite(m->tokens) && m->tokens >= 0.0 &&
		isfinite(m->seconds) && m->seconds >= 0.0;
}

/*
 * Could a trainer of t's rows and params stand where pos says?  The
 * phase, the counters and the best epoch must agree with each other and
 * with the trainer, as trainer_advance() would have left them.
 */
static const char *
position_problem(const StudentTrainer *t, const Position *pos)
{
	uint32_t	epochs = (uint32_t) t->params.epochs;
	uint32_t	per_epoch = (uint32_t) t->steps_per_epoch;
	bool		epoch_over = pos->step_in_epoch == per_epoch;

	if (pos->phase > PHASE_EPOCH_END)
		return "its phase is unknown";
	if (pos->epoch < 1 || pos->epoch > epochs || pos->step_in_epoch > per_epoch ||
		pos->step != (pos->epoch - 1) * per_epoch + pos->step_in_epoch)
		return "its epoch and step counts disagree";
	if ((pos->phase == PHASE_STEPS) == epoch_over ||
		(pos->phase == PHASE_VALIDATION && t->n_valid == 0) ||
		(pos->phase == PHASE_EPOCH_END && t->n_valid > 0))
		return "its phase does not fit its step count";
	if (pos->skipped_steps > pos->step)
		return "it skipped more steps than it made";
	if (pos->next_valid > (uint32_t) t->n_valid || pos->valid_correct > pos->next_valid ||
		(pos->phase != PHASE_VALIDATION && pos->next_valid > 0))
		return "its validation counts disagree";
	if (pos->epoch == 1 ? pos->best_epoch != 0
		: pos->best_epoch < 1 || pos->best_epoch >= pos->epoch ||
		(t->n_valid == 0 && pos->best_epoch != pos->epoch - 1))
		return "its best epoch is not one that ended";
	if (t->n_valid > 0 && pos->best_epoch > 0
		? !(pos->best_accuracy >= 0.0 && pos->best_accuracy <= 1.0)
		: !isnan(pos->best_accuracy))
		return "its best accuracy is not one";
	if (pos->dropout_seed != t->model->dropout_seed)
		return "its dropout seed is not that of the seed";
	if (!meter_consistent(&pos->since_log, pos->step) ||
		!meter_consistent(&pos->this_epoch, pos->step_in_epoch))
		return "its meters do not add up";
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Writing */

typedef struct Out
{
	TrainerStateWrite write;
	void	   *ctx;
	const StopCheck *stop;
	CoreError  *err;
	uint32_t	toc_crc;		/* the trailer's */
	uint32_t	crc;			/* of the section's bytes */
	bool		ok;
} Out;

/* len bytes of a piece (at most TRAINER_STATE_PIECE). */
static void
out_piece(Out *o, const void *data, size_t len)
{
	if (!o->ok)
		return;
	if (stop_requested(o->stop))
	{
		core_error(o->err, CORE_ERR_INTERRUPTED, "training was interrupted");
		o->ok = false;
	}
	else
		o->ok = o->write(o->ctx, data, len, o->err);
}

/* Bytes of the header, a section's head or tail: counted in the trailer. */
static void
out_frame(Out *o, const void *data, size_t len)
{
	o->toc_crc = crc32c(o->toc_crc, data, len);
	out_piece(o, data, len);
}

static void
out_payload(Out *o, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (o->ok && len > 0)
	{
		size_t		piece = len < TRAINER_STATE_PIECE ? len : TRAINER_STATE_PIECE;

		o->crc = crc32c(o->crc, p, piece);
		out_piece(o, p, piece);
		p += piece;
		len -= piece;
	}
}

/* n 4-byte words (floats, ints) as little-endian bytes. */
static void
out_words(Out *o, const void *words, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	out_payload(o, words, n * 4);
#else
	const uint32_t *w = words;
	uint8_t		buf[4096];

	for (size_t i = 0; o->ok && i < n;)
	{
		size_t		k = 0;

		for (; k < sizeof(buf) / 4 && i < n; k++, i++)
			le_put_u32(buf + 4 * k, w[i]);
		out_payload(o, buf, 4 * k);
	}
#endif
}

static void
out_begin(Out *o, const char *name, uint64_t size)
{
	uint8_t		head[SECTION_HEAD_BYTES] = {0};

	memcpy(head, name, strlen(name));
	le_put(head + SECTION_NAME_LEN, size, 8);
	out_frame(o, head, sizeof(head));
	o->crc = 0;
}

static void
out_end(Out *o)
{
	uint8_t		tail[SECTION_TAIL_BYTES];

	le_put_u32(tail, o->crc);
	out_frame(o, tail, sizeof(tail));
}

static void
out_named(Out *o, const char *name, const NamedList *l)
{
	uint8_t		bytes[NAMED_MAX_BYTES];
	size_t		len = encode_named(l, bytes);

	out_begin(o, name, len);
	out_payload(o, bytes, len);
	out_end(o);
}

static bool
has_best_weights(const StudentTrainer *t)
{
	return t->best_params != NULL && t->best_epoch > 0;
}

static size_t
named_bytes(const StudentTrainer *t, void (*values) (const StudentTrainer *, NamedList *))
{
	NamedList	l = {.n = 0};
	uint8_t		bytes[NAMED_MAX_BYTES];

	values(t, &l);
	return encode_named(&l, bytes);
}

uint64_t
trainer_state_bytes(const StudentTrainer *t)
{
	uint64_t	frame = SECTION_HEAD_BYTES + SECTION_TAIL_BYTES;
	uint64_t	weights = (uint64_t) trained_count(t) * 4;
	int			sections = BASE_SECTIONS + has_best_weights(t);

	return HEADER_BYTES + sections * frame + TRAILER_BYTES +
		named_bytes(t, model_values) + named_bytes(t, params_values) +
		named_bytes(t, examples_values) + PROGRESS_BYTES +
		(uint64_t) t->n_train * 4 + weights + ADAM_HEAD_BYTES + 2 * weights +
		(has_best_weights(t) ? weights : 0);
}

bool
trainer_save_state(const StudentTrainer *t, TrainerStateWrite write, void *ctx,
				   CoreError *err)
{
	Out			o = {write, ctx, &t->stop, err, 0, 0, true};
	NamedList	model = {.n = 0},
				params = {.n = 0},
				examples = {.n = 0};
	uint8_t		header[HEADER_BYTES];
	uint8_t		progress[PROGRESS_BYTES];
	uint8_t		adam[ADAM_HEAD_BYTES] = {0};
	uint32_t	lr_bits;
	size_t		n;
	const float *trained;

	if (t->failed || t->phase == PHASE_DONE || t->model == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "training has ended: there is no state to save");
		return false;
	}
	trained = trained_params(t, &n);
	memcpy(header, STATE_MAGIC, 4);
	le_put_u32(header + 4, STATE_VERSION);
	le_put_u32(header + 8, BASE_SECTIONS + has_best_weights(t));
	le_put_u32(header + 12, 0);
	out_frame(&o, header, sizeof(header));

	model_values(t, &model);
	params_values(t, &params);
	examples_values(t, &examples);
	out_named(&o, "model", &model);
	out_named(&o, "params", &params);
	out_named(&o, "examples", &examples);

	encode_progress(t, progress);
	out_begin(&o, "progress", sizeof(progress));
	out_payload(&o, progress, sizeof(progress));
	out_end(&o);

	out_begin(&o, "order", (uint64_t) t->n_train * 4);
	out_words(&o, t->order, t->n_train);
	out_end(&o);

	out_begin(&o, trained_section(t), (uint64_t) n * 4);
	out_words(&o, trained, n);
	out_end(&o);

	memcpy(&lr_bits, &t->optim->last_lr, 4);
	le_put(adam, (uint64_t) t->optim->step, 8);
	le_put_u32(adam + 8, lr_bits);
	out_begin(&o, "adam", ADAM_HEAD_BYTES + (uint64_t) n * 8);
	out_payload(&o, adam, sizeof(adam));
	out_words(&o, t->optim->m, n);
	out_words(&o, t->optim->v, n);
	out_end(&o);

	if (has_best_weights(t))
	{
		out_begin(&o, "best_weights", (uint64_t) n * 4);
		out_words(&o, t->best_params, n);
		out_end(&o);
	}
	{
		uint8_t		trailer[TRAILER_BYTES];

		le_put_u32(trailer, o.toc_crc);
		out_piece(&o, trailer, sizeof(trailer));
	}
	return o.ok;
}

/* ---------------------------------------------------------------- */
/* Reading */

typedef struct In
{
	TrainerStateRead read;
	void	   *ctx;
	const StopCheck *stop;
	CoreError  *err;
	uint32_t	toc_crc;
	uint32_t	crc;
	const char *where;			/* for messages: the section being read */
	uint8_t    *scratch;		/* TRAINER_STATE_PIECE bytes, to check only */
	bool		touched;		/* restoring: the trainer's arrays are being
								 * overwritten */
} In;

/* Where restored arrays go; all NULL to check only. */
typedef struct Targets
{
	float	   *params;
	float	   *m;
	float	   *v;
	float	   *best;
} Targets;

/* What is applied once the whole state has passed. */
typedef struct Restored
{
	Position	pos;
	int		   *order;
	int64_t		optim_step;
	float		last_lr;
} Restored;

static bool
corrupt(In *in, const char *fmt, const char *arg)
{
	char		what[160];

	snprintf(what, sizeof(what), fmt, arg);
	core_error(in->err, CORE_ERR_CORRUPT, "damaged training state: %s", what);
	return false;
}

/* Exactly len bytes, a piece at a time, asking the stop check between. */
static bool
in_raw(In *in, void *buf, size_t len)
{
	uint8_t    *p = buf;

	while (len > 0)
	{
		size_t		piece = len < TRAINER_STATE_PIECE ? len : TRAINER_STATE_PIECE;
		int64_t		got;

		if (stop_requested(in->stop))
		{
			core_error(in->err, CORE_ERR_INTERRUPTED, "training was interrupted");
			return false;
		}
		got = in->read(in->ctx, p, piece, in->err);
		if (got < 0)
			return false;
		if ((size_t) got < piece)
			return corrupt(in, "it ends early, in %s", in->where);
		p += piece;
		len -= piece;
	}
	return true;
}

static bool
in_frame(In *in, void *buf, size_t len)
{
	if (!in_raw(in, buf, len))
		return false;
	in->toc_crc = crc32c(in->toc_crc, buf, len);
	return true;
}

/* len bytes of the section into buf, or through scratch when buf is NULL. */
static bool
in_payload(In *in, void *buf, size_t len)
{
	uint8_t    *p = buf;

	while (len > 0)
	{
		size_t		piece = len < TRAINER_STATE_PIECE ? len : TRAINER_STATE_PIECE;
		uint8_t    *into = p != NULL ? p : in->scratch;

		if (!in_raw(in, into, piece))
			return false;
		in->crc = crc32c(in->crc, into, piece);
		if (p != NULL)
			p += piece;
		len -= piece;
	}
	return true;
}

/* n little-endian 4-byte words into words (NULL: read and check only). */
static bool
in_words(In *in, void *words, size_t n)
{
	if (!in_payload(in, words, n * 4))
		return false;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
	for (size_t i = 0; words != NULL && i < n; i++)
		((uint32_t *) words)[i] = le_get_u32((uint8_t *) words + 4 * i);
#endif
	return true;
}

/*
 * A section's head: its name must be name, its size expected (or, when
 * max_size is not 0, at most max_size); the size goes to *size.
 */
static bool
in_begin(In *in, const char *name, uint64_t expected, uint64_t max_size,
		 uint64_t *size)
{
	uint8_t		head[SECTION_HEAD_BYTES];
	size_t		name_len = strlen(name);
	char		found[SECTION_NAME_LEN + 1];
	bool		padded = true;

	in->where = name;
	if (!in_frame(in, head, sizeof(head)))
		return false;
	for (int i = (int) name_len; i < SECTION_NAME_LEN; i++)
		padded = padded && head[i] == 0;
	if (memcmp(head, name, name_len) != 0 || !padded)
	{
		char		what[96];

		for (int i = 0; i < SECTION_NAME_LEN; i++)
			found[i] = head[i] >= 0x20 && head[i] < 0x7F ? (char) head[i] : '?';
		found[SECTION_NAME_LEN] = '\0';
		snprintf(what, sizeof(what), "section \"%s\" where \"%s\" belongs", found, name);
		return corrupt(in, "%s", what);
	}
	*size = le_get(head + SECTION_NAME_LEN, 8);
	if (max_size != 0 ? *size > max_size : *size != expected)
		return corrupt(in, "section \"%s\" has the wrong size", name);
	in->crc = 0;
	return true;
}

static bool
in_end(In *in)
{
	uint8_t		tail[SECTION_TAIL_BYTES];
	uint32_t	crc = in->crc;

	if (!in_frame(in, tail, sizeof(tail)))
		return false;
	if (le_get_u32(tail) != crc)
		return corrupt(in, "section \"%s\" fails its checksum", in->where);
	return true;
}

/*
 * A section of named values, compared with the trainer's: a value that
 * differs is CORE_ERR_INVALID_INPUT, saying what differs (what: whose).
 */
static bool
in_named(In *in, const char *name, const NamedList *expected, const char *what)
{
	uint8_t		bytes[NAMED_MAX_BYTES];
	uint64_t	size;
	size_t		at = 0;

	if (!in_begin(in, name, 0, sizeof(bytes), &size) || !in_payload(in, bytes, size) ||
		!in_end(in))
		return false;
	for (int i = 0; i < expected->n; i++)
	{
		const Named *e = &expected->v[i];
		size_t		name_len = strlen(e->name);
		uint64_t	bits;
		char		ours[40],
					theirs[40];

		if (at + 1 + name_len + 9 > size || bytes[at] != name_len ||
			memcmp(bytes + at + 1, e->name, name_len) != 0 ||
			bytes[at + 1 + name_len] != (uint8_t) e->type)
			return corrupt(in, "its \"%s\" section does not list what this build's does", name);
		bits = le_get(bytes + at + 1 + name_len + 1, 8);
		at += 1 + name_len + 9;
		if (bits == e->bits)
			continue;
		format_value(theirs, sizeof(theirs), e->type, bits);
		format_value(ours, sizeof(ours), e->type, e->bits);
		core_error(in->err, CORE_ERR_INVALID_INPUT, "%s: %s %s there, %s here",
				   what, e->name, theirs, ours);
		return false;
	}
	if (at != size)
		return corrupt(in, "its \"%s\" section lists more than this build's", name);
	return true;
}

static bool
in_progress(In *in, const StudentTrainer *t, Position *pos)
{
	uint8_t		bytes[PROGRESS_BYTES];
	uint64_t	size;
	const char *problem;

	if (!in_begin(in, "progress", sizeof(bytes), 0, &size) ||
		!in_payload(in, bytes, sizeof(bytes)) || !in_end(in))
		return false;
	decode_progress(bytes, pos);
	if ((problem = position_problem(t, pos)) != NULL)
		return corrupt(in, "%s", problem);
	return true;
}

/* The order: every training row once. */
static bool
in_order(In *in, const StudentTrainer *t, int *order)
{
	uint64_t	size;
	uint8_t    *seen;
	bool		ok = true;

	if (!in_begin(in, "order", (uint64_t) t->n_train * 4, 0, &size) ||
		!in_words(in, order, t->n_train) || !in_end(in))
		return false;
	if ((seen = calloc(t->n_train, 1)) == NULL)
	{
		core_error(in->err, CORE_ERR_NO_MEMORY, "out of memory checking a training state");
		return false;
	}
	for (int i = 0; ok && i < t->n_train; i++)
	{
		ok = order[i] >= 0 && order[i] < t->n_train && !seen[order[i]];
		if (ok)
			seen[order[i]] = 1;
	}
	free(seen);
	return ok || corrupt(in, "%s", "its order of the training rows is not one");
}

static bool
in_floats(In *in, const char *name, float *into, size_t n)
{
	uint64_t	size;

	return in_begin(in, name, (uint64_t) n * 4, 0, &size) && in_words(in, into, n) &&
		in_end(in);
}

static bool
in_adam(In *in, const StudentTrainer *t, const Targets *into, Restored *r)
{
	size_t		n = trained_count(t);
	uint8_t		head[ADAM_HEAD_BYTES];
	uint64_t	size;
	uint64_t	step;
	uint32_t	lr_bits;

	if (!in_begin(in, "adam", ADAM_HEAD_BYTES + (uint64_t) n * 8, 0, &size) ||
		!in_payload(in, head, sizeof(head)) ||
		!in_words(in, into->m, n) || !in_words(in, into->v, n) || !in_end(in))
		return false;
	step = le_get(head, 8);
	lr_bits = le_get_u32(head + 8);
	memcpy(&r->last_lr, &lr_bits, 4);
	if (step != (uint64_t) r->pos.step - r->pos.skipped_steps || !isfinite(r->last_lr) ||
		le_get_u32(head + 12) != 0)
		return corrupt(in, "%s", "its optimizer's step count is not the trainer's");
	r->optim_step = (int64_t) step;
	return true;
}

static bool
in_header(In *in, uint32_t *n_sections)
{
	uint8_t		header[HEADER_BYTES];

	in->where = "its header";
	if (!in_frame(in, header, sizeof(header)))
		return false;
	if (memcmp(header, STATE_MAGIC, 4) != 0)
		return corrupt(in, "%s", "it is not a training state");
	if (le_get_u32(header + 4) != STATE_VERSION)
	{
		core_error(in->err, CORE_ERR_CORRUPT,
				   "training state of format version %u: this build reads version %d",
				   le_get_u32(header + 4), STATE_VERSION);
		return false;
	}
	*n_sections = le_get_u32(header + 8);
	if (le_get_u32(header + 12) != 0)
		return corrupt(in, "%s", "its header has flags this build does not know");
	return true;
}

/* The trailer, and nothing after it. */
static bool
in_trailer(In *in)
{
	uint8_t		trailer[TRAILER_BYTES];
	uint8_t		more;
	int64_t		got;

	in->where = "its trailer";
	if (!in_raw(in, trailer, sizeof(trailer)))
		return false;
	if (le_get_u32(trailer) != in->toc_crc)
		return corrupt(in, "%s", "it fails its checksum");
	if ((got = in->read(in->ctx, &more, 1, in->err)) < 0)
		return false;
	return got == 0 || corrupt(in, "%s", "bytes follow its end");
}

/* Read and check a whole state; its arrays go to into (when not NULL). */
static bool
read_state(const StudentTrainer *t, In *in, const Targets *into, Restored *r)
{
	NamedList	model = {.n = 0},
				params = {.n = 0},
				examples = {.n = 0};
	size_t		n = trained_count(t);
	uint32_t	n_sections;
	bool		best;

	model_values(t, &model);
	params_values(t, &params);
	examples_values(t, &examples);
	if (!in_header(in, &n_sections) ||
		!in_named(in, "model", &model, "the state is of another model") ||
		!in_named(in, "params", &params, "the state was saved with other training parameters") ||
		!in_named(in, "examples", &examples, "the state was saved from other training rows") ||
		!in_progress(in, t, &r->pos) || !in_order(in, t, r->order))
		return false;
	best = t->n_valid > 0 && r->pos.best_epoch > 0;
	if (n_sections != BASE_SECTIONS + (uint32_t) best)
		return corrupt(in, "%s", "its number of sections does not fit its progress");
	in->touched = into->params != NULL;
	return in_floats(in, trained_section(t), into->params, n) &&
		in_adam(in, t, into, r) &&
		(!best || in_floats(in, "best_weights", into->best, n)) &&
		in_trailer(in);
}

static bool
begin_reading(const StudentTrainer *t, TrainerStateRead read, void *ctx,
			  CoreError *err, In *in, Restored *r)
{
	*in = (In) {read, ctx, &t->stop, err, 0, 0, "its header", NULL, false};
	memset(r, 0, sizeof(*r));
	if (t->failed || t->model == NULL || t->step > 0 || t->phase != PHASE_STEPS)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "a training state can only be restored into a trainer that has not started");
		return false;
	}
	r->order = malloc((t->n_train > 0 ? t->n_train : 1) * sizeof(int));
	if (r->order == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory reading a training state");
		return false;
	}
	return true;
}

bool
trainer_check_state(const StudentTrainer *t, TrainerStateRead read, void *ctx,
					CoreError *err)
{
	In			in;
	Restored	r;
	Targets		none = {NULL, NULL, NULL, NULL};
	bool		ok;

	if (!begin_reading(t, read, ctx, err, &in, &r))
		return false;
	in.scratch = malloc(TRAINER_STATE_PIECE);
	ok = in.scratch != NULL;
	if (!ok)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory reading a training state");
	ok = ok && read_state(t, &in, &none, &r);
	free(in.scratch);
	free(r.order);
	return ok;
}

static void
apply_position(StudentTrainer *t, const Restored *r)
{
	const Position *pos = &r->pos;

	t->phase = (Phase) pos->phase;
	t->epoch = (int) pos->epoch;
	t->step_in_epoch = (int) pos->step_in_epoch;
	t->step = (int) pos->step;
	t->skipped_steps = (int) pos->skipped_steps;
	t->next_valid = (int) pos->next_valid;
	t->valid_correct = (int) pos->valid_correct;
	t->best_epoch = (int) pos->best_epoch;
	t->best_accuracy = pos->best_accuracy;
	t->shuffle_state = pos->shuffle_state;
	t->model->dropout_step = pos->dropout_step;
	t->since_log = pos->since_log;
	t->this_epoch = pos->this_epoch;
	memcpy(t->order, r->order, t->n_train * sizeof(int));
	t->optim->step = r->optim_step;
	t->optim->last_lr = r->last_lr;
}

bool
trainer_restore_state(StudentTrainer *t, TrainerStateRead read, void *ctx,
					  CoreError *err)
{
	In			in;
	Restored	r;
	Targets		into;
	CoreError	why;
	size_t		n;
	bool		ok;

	if (!begin_reading(t, read, ctx, err, &in, &r))
		return false;
	into = (Targets) {trained_params(t, &n), t->optim->m, t->optim->v, t->best_params};
	in.err = &why;
	ok = read_state(t, &in, &into, &r);
	if (ok)
		apply_position(t, &r);
	else
	{
		if (in.touched)
		{
			/* the weights are half overwritten: this trainer is done */
			t->failed = true;
			t->phase = PHASE_DONE;
			t->error = why;
		}
		if (err != NULL)
			*err = why;
	}
	free(r.order);
	return ok;
}
