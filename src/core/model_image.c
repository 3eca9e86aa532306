/*
 * model_image.c - a model's prediction state as one block of bytes that
 * processes map and share (see model_image.h for the layout and the
 * checks).
 */
#include "core/model_image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/crc32c.h"
#include "core/model_io.h"
#include "core/model_packed.h"
#include "core/util.h"

/* magic, version, byte order, panel, identity, image_bytes, header_len, data_offset */
#define PRELUDE_BYTES 48
#define BYTE_ORDER_MARK 0x01020304u
/* the packed kernel loads its panels 32 bytes at a time, aligned */
#define ARRAY_ALIGN 64
#define DATA_ALIGN 4096
/* a model header is a few hundred bytes a layer; MODEL_MAX_LAYERS bound it */
#define MAX_HEADER_BYTES ((uint32_t) 1 << 20)

/* Byte offsets of a layer's arrays from the layer's start. */
typedef struct LayerLayout
{
	uint64_t	attn_norm;
	uint64_t	qkv_bias;
	uint64_t	mlp_norm;
	uint64_t	qkv;
	uint64_t	o_proj;
	uint64_t	gate_up;
	uint64_t	down_proj;
} LayerLayout;

/* Byte offsets of the arrays from data_offset; all follow from the config and panel. */
typedef struct ImageLayout
{
	uint64_t	embed;
	uint64_t	layers;			/* layer 0; layer l at layers + l * layer_stride */
	uint64_t	layer_stride;
	LayerLayout in_layer;
	uint64_t	final_norm;
	bool		has_head;		/* else the head is the plain embedding */
	uint64_t	head;
	uint64_t	rope_cos;
	uint64_t	rope_sin;
	uint64_t	end;
} ImageLayout;

/* The shapes of a model's matrices, as out x in. */
typedef struct Shapes
{
	int			d_model;
	int			q_dim;			/* n_heads * head_dim */
	int			qkv_dim;		/* q_dim + 2 * n_kv_heads * head_dim */
	int			d_ff;
	int			vocab_size;
	size_t		rope_size;		/* floats of each rope table */
} Shapes;

static Shapes
shapes_of(const ModelConfig *c)
{
	int			head_dim = model_config_head_dim(c);
	Shapes		s;

	s.d_model = c->d_model;
	s.q_dim = c->n_heads * head_dim;
	s.qkv_dim = s.q_dim + 2 * c->n_kv_heads * head_dim;
	s.d_ff = c->d_ff;
	s.vocab_size = c->vocab_size;
	s.rope_size = (size_t) c->max_seq_len * (head_dim / 2);
	return s;
}

static uint64_t
align_up(uint64_t x, uint64_t to)
{
	return (x + to - 1) / to * to;
}

/* Bytes of an n_out x n_in matrix: panels of panel columns (0: plain). */
static uint64_t
matrix_bytes(int n_out, int n_in, uint32_t panel)
{
	uint64_t	rows = panel == 0 ? (uint64_t) n_out
		: ((uint64_t) n_out + panel - 1) / panel * panel;

	return rows * n_in * sizeof(float);
}

/* Room for bytes at the next aligned offset after *pos; returns that offset. */
static uint64_t
place(uint64_t *pos, uint64_t bytes)
{
	uint64_t	at = align_up(*pos, ARRAY_ALIGN);

	*pos = at + bytes;
	return at;
}

static void
lay_out(const ModelConfig *c, uint32_t panel, ImageLayout *lay)
{
	Shapes		s = shapes_of(c);
	uint64_t	vector = (uint64_t) s.d_model * sizeof(float);
	uint64_t	pos = 0;
	uint64_t	in_layer = 0;
	LayerLayout *l = &lay->in_layer;

	lay->embed = place(&pos, (uint64_t) s.vocab_size * s.d_model * sizeof(float));
	l->attn_norm = place(&in_layer, vector);
	l->qkv_bias = c->qkv_bias ? place(&in_layer, (uint64_t) s.qkv_dim * sizeof(float)) : 0;
	l->mlp_norm = place(&in_layer, vector);
	l->qkv = place(&in_layer, matrix_bytes(s.qkv_dim, s.d_model, panel));
	l->o_proj = place(&in_layer, matrix_bytes(s.d_model, s.q_dim, panel));
	l->gate_up = place(&in_layer, matrix_bytes(2 * s.d_ff, s.d_model, panel));
	l->down_proj = place(&in_layer, matrix_bytes(s.d_model, s.d_ff, panel));
	lay->layer_stride = align_up(in_layer, ARRAY_ALIGN);
	lay->layers = place(&pos, lay->layer_stride * c->n_layers);
	lay->final_norm = place(&pos, vector);
	lay->has_head = panel != 0 || !c->tied_embeddings;
	lay->head = lay->has_head
		? place(&pos, matrix_bytes(s.vocab_size, s.d_model, panel)) : 0;
	lay->rope_cos = place(&pos, s.rope_size * sizeof(float));
	lay->rope_sin = place(&pos, s.rope_size * sizeof(float));
	lay->end = pos;
}

/* The panel width of the matrices this CPU multiplies: PACKED_PANEL, or 0. */
static uint32_t
cpu_panel(void)
{
	return packed_supported() ? PACKED_PANEL : 0;
}

static uint64_t
data_offset_for(uint32_t header_len)
{
	return align_up(PRELUDE_BYTES + (uint64_t) header_len + 4, DATA_ALIGN);
}

/* ---------------------------------------------------------------- */
/* Writing */

typedef struct Emitter
{
	ModelImageSink sink;
	void	   *arg;
	uint64_t	pos;			/* bytes written so far */
	bool		ok;				/* no sink call failed */
} Emitter;

static void
emit(Emitter *e, const void *data, uint64_t len)
{
	const uint8_t *p = data;

	while (e->ok && len > 0)
	{
		size_t		n = len < MODEL_IMAGE_PIECE ? (size_t) len : MODEL_IMAGE_PIECE;

		e->ok = e->sink(e->arg, p, n);
		e->pos += n;
		p += n;
		len -= n;
	}
}

/* Zeros up to offset, then len bytes of data there. */
static void
emit_at(Emitter *e, uint64_t offset, const void *data, uint64_t len)
{
	static const uint8_t zeros[DATA_ALIGN];

	while (e->ok && e->pos < offset)
		emit(e, zeros, offset - e->pos < DATA_ALIGN ? offset - e->pos : DATA_ALIGN);
	emit(e, data, len);
}

/* A matrix as the image holds it: its panels, or its plain rows. */
static void
emit_matrix(Emitter *e, uint64_t offset, const PackedMatrix *m, uint32_t panel)
{
	emit_at(e, offset, panel != 0 ? m->panels : m->w,
			matrix_bytes(m->n_out, m->n_in, panel));
}

/* Layer l's arrays, the layer starting at offset base. */
static void
emit_layer(Emitter *e, const Model *model, int l, uint64_t base,
		   const LayerLayout *in, uint32_t panel)
{
	const LayerWeights *w = &model->w.layers[l];
	uint64_t	vector = (uint64_t) model->config.d_model * sizeof(float);
	LayerMatrices plain;
	const LayerMatrices *m = &plain;

	if (model->packed != NULL)
		m = &model->packed->layers[l];
	else
		plain_layer_matrices(model, l, &plain);
	emit_at(e, base + in->attn_norm, w->attn_norm, vector);
	if (model->config.qkv_bias)
		emit_at(e, base + in->qkv_bias, w->qkv_bias,
				(uint64_t) m->qkv.n_out * sizeof(float));
	emit_at(e, base + in->mlp_norm, w->mlp_norm, vector);
	emit_matrix(e, base + in->qkv, &m->qkv, panel);
	emit_matrix(e, base + in->o_proj, &m->o_proj, panel);
	emit_matrix(e, base + in->gate_up, &m->gate_up, panel);
	emit_matrix(e, base + in->down_proj, &m->down_proj, panel);
}

/* Everything before data_offset: the prelude, the model header, their CRC. */
static uint8_t *
build_prelude(const Model *model, const ModelImageIdentity *identity,
			  uint32_t panel, uint64_t *len, CoreError *err)
{
	size_t		header_len;
	uint8_t    *header = model_save_header(model, NULL, 0, &header_len);
	uint8_t    *p = header != NULL ? malloc(PRELUDE_BYTES + header_len + 4) : NULL;
	uint32_t	mark = BYTE_ORDER_MARK;
	ImageLayout lay;

	if (p == NULL)
	{
		free(header);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for an image header");
		return NULL;
	}
	lay_out(&model->config, panel, &lay);
	memcpy(p, MODEL_IMAGE_MAGIC, 4);
	le_put_u32(p + 4, MODEL_IMAGE_VERSION);
	memcpy(p + 8, &mark, 4);
	le_put_u32(p + 12, panel);
	le_put(p + 16, identity->model_id, 8);
	le_put_u32(p + 24, identity->scope);
	le_put_u32(p + 28, identity->weights_crc);
	le_put(p + 32, data_offset_for((uint32_t) header_len) + lay.end, 8);
	le_put_u32(p + 40, (uint32_t) header_len);
	le_put_u32(p + 44, (uint32_t) data_offset_for((uint32_t) header_len));
	memcpy(p + PRELUDE_BYTES, header, header_len);
	le_put_u32(p + PRELUDE_BYTES + header_len, crc32c(0, p, PRELUDE_BYTES + header_len));
	free(header);
	*len = PRELUDE_BYTES + header_len + 4;
	return p;
}

bool
model_image_write(const Model *model, const ModelImageIdentity *identity,
				  ModelImageSink sink, void *arg, CoreError *err)
{
	uint32_t	panel = cpu_panel();
	const ModelConfig *c = &model->config;
	Emitter		e = {sink, arg, 0, true};
	uint64_t	prelude_len;
	uint8_t    *prelude;
	uint64_t	base;
	ImageLayout lay;

	if (panel != 0 && (model->packed == NULL || model->packed->head.panels == NULL))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "a model's image is of its packed matrices: pack it for prediction first");
		return false;
	}
	prelude = build_prelude(model, identity, panel, &prelude_len, err);
	if (prelude == NULL)
		return false;
	base = data_offset_for((uint32_t) (prelude_len - PRELUDE_BYTES - 4));
	lay_out(c, panel, &lay);
	emit(&e, prelude, prelude_len);
	free(prelude);
	emit_at(&e, base + lay.embed, model->w.embed,
			(uint64_t) c->vocab_size * c->d_model * sizeof(float));
	for (int l = 0; l < c->n_layers; l++)
		emit_layer(&e, model, l, base + lay.layers + l * lay.layer_stride,
				   &lay.in_layer, panel);
	emit_at(&e, base + lay.final_norm, model->w.final_norm,
			(uint64_t) c->d_model * sizeof(float));
	if (panel != 0)
		emit_matrix(&e, base + lay.head, &model->packed->head, panel);
	else if (lay.has_head)
		emit_at(&e, base + lay.head, model->w.lm_head,
				(uint64_t) c->vocab_size * c->d_model * sizeof(float));
	emit_at(&e, base + lay.rope_cos, model->rope_cos,
			shapes_of(c).rope_size * sizeof(float));
	emit_at(&e, base + lay.rope_sin, model->rope_sin,
			shapes_of(c).rope_size * sizeof(float));
	if (!e.ok)
		core_error(err, CORE_ERR_INTERRUPTED, "writing the model's image stopped");
	return e.ok;
}

/* ---------------------------------------------------------------- */
/* Reading */

/*
 * The prelude and model header of an image of len bytes: its config and
 * where its data starts, or false with err.
 */
static bool
check_header(const uint8_t *image, size_t len, const ModelImageIdentity *expected,
			 ModelConfig *config, uint64_t *data_offset, CoreError *err)
{
	uint32_t	mark;
	uint32_t	header_len;
	uint32_t	panel;
	ImageLayout lay;
	CoreError	why;
	uint64_t	size;

	if (len < 4 || memcmp(image, MODEL_IMAGE_MAGIC, 4) != 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "not a distill prediction image (no \"%s\")",
				   MODEL_IMAGE_MAGIC);
		return false;
	}
	if (len < PRELUDE_BYTES + 4 ||
		(header_len = le_get_u32(image + 40)) > len - PRELUDE_BYTES - 4 ||
		header_len > MAX_HEADER_BYTES)
	{
		core_error(err, CORE_ERR_CORRUPT, "truncated prediction image: %zu bytes", len);
		return false;
	}
	if (le_get_u32(image + 4) != MODEL_IMAGE_VERSION)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported prediction image version %u (this build reads %d)",
				   le_get_u32(image + 4), MODEL_IMAGE_VERSION);
		return false;
	}
	if (le_get_u32(image + PRELUDE_BYTES + header_len) !=
		crc32c(0, image, PRELUDE_BYTES + header_len))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt prediction image: header checksum mismatch");
		return false;
	}
	memcpy(&mark, image + 8, 4);
	if (mark != BYTE_ORDER_MARK)
	{
		core_error(err, CORE_ERR_CORRUPT, "a prediction image of another byte order");
		return false;
	}
	if (le_get(image + 16, 8) != expected->model_id ||
		le_get_u32(image + 24) != expected->scope ||
		le_get_u32(image + 28) != expected->weights_crc)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "a prediction image of other weights (model %llu in %u, weights %08x; expected %llu in %u, %08x)",
				   (unsigned long long) le_get(image + 16, 8), le_get_u32(image + 24),
				   le_get_u32(image + 28), (unsigned long long) expected->model_id,
				   expected->scope, expected->weights_crc);
		return false;
	}
	if (!model_header_config(image + PRELUDE_BYTES, header_len, config, &why))
	{
		core_error(err, why.kind, "prediction image: %s", why.message);
		return false;
	}
	panel = le_get_u32(image + 12);
	if (panel != cpu_panel())
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "a prediction image of matrices in panels of %u, where this CPU uses %u",
				   panel, cpu_panel());
		return false;
	}
	lay_out(config, panel, &lay);
	*data_offset = data_offset_for(header_len);
	size = *data_offset + lay.end;
	if (le_get_u32(image + 44) != *data_offset || le_get(image + 32, 8) != size ||
		len != size)
	{
		core_error(err, CORE_ERR_CORRUPT, "%s prediction image: %zu bytes, its config implies %llu",
				   len < size ? "truncated" : "corrupt", len, (unsigned long long) size);
		return false;
	}
	return true;
}

/* A matrix of the image: panels, or plain rows the product reads as they are. */
static void
image_matrix(PackedMatrix *m, const float *at, int n_out, int n_in, uint32_t panel)
{
	packed_matrix_plain(m, panel != 0 ? NULL : at, n_out, n_in);
	m->panels = panel != 0 ? (float *) at : NULL;
}

/*
 * Point layer l's views at the image.  The views are not const, as a
 * model's are, but nothing writes through them (a mapping is read-only).
 */
static void
bind_layer(Model *model, const uint8_t *data, const ImageLayout *lay, int l,
		   uint32_t panel)
{
	Shapes		s = shapes_of(&model->config);
	const uint8_t *base = data + lay->layers + l * lay->layer_stride;
	const LayerLayout *in = &lay->in_layer;
	LayerWeights *w = &model->w.layers[l];
	LayerMatrices *m = &model->packed->layers[l];

	w->attn_norm = (float *) (base + in->attn_norm);
	w->qkv_bias = model->config.qkv_bias ? (float *) (base + in->qkv_bias) : NULL;
	w->mlp_norm = (float *) (base + in->mlp_norm);
	image_matrix(&m->qkv, (const float *) (base + in->qkv), s.qkv_dim, s.d_model, panel);
	image_matrix(&m->o_proj, (const float *) (base + in->o_proj), s.d_model, s.q_dim, panel);
	image_matrix(&m->gate_up, (const float *) (base + in->gate_up), 2 * s.d_ff, s.d_model,
				 panel);
	image_matrix(&m->down_proj, (const float *) (base + in->down_proj), s.d_model, s.d_ff,
				 panel);
	/* the plain matrices are there only when nothing is packed */
	w->qkv = (float *) m->qkv.w;
	w->o_proj = (float *) m->o_proj.w;
	w->gate_up = (float *) m->gate_up.w;
	w->down_proj = (float *) m->down_proj.w;
}

static void
bind_image(Model *model, const uint8_t *data, const ImageLayout *lay, uint32_t panel)
{
	const ModelConfig *c = &model->config;

	model->w.embed = (float *) (data + lay->embed);
	for (int l = 0; l < c->n_layers; l++)
		bind_layer(model, data, lay, l, panel);
	model->w.final_norm = (float *) (data + lay->final_norm);
	model->w.lm_head = c->tied_embeddings ? model->w.embed
		: panel != 0 ? NULL : (float *) (data + lay->head);
	if (panel != 0)
		image_matrix(&model->packed->head, (const float *) (data + lay->head),
					 c->vocab_size, c->d_model, panel);
	else
		packed_matrix_plain(&model->packed->head, model->w.lm_head, c->vocab_size,
							c->d_model);
	model->rope_cos = (float *) (data + lay->rope_cos);
	model->rope_sin = (float *) (data + lay->rope_sin);
}

/* The image's panels are not the model's to free. */
static void
free_image_packed(Model *model)
{
	free(model->packed->layers);
	free(model->packed);
	model->packed = NULL;
	model->free_packed = NULL;
}

/* A model of config with its own tables allocated and no weights; NULL when out of memory. */
static Model *
alloc_image_model(const ModelConfig *config)
{
	Model	   *model = calloc(1, sizeof(Model));

	if (model == NULL)
		return NULL;
	model->config = *config;
	model->head_dim = model_config_head_dim(config);
	model->config.head_dim = model->head_dim;
	model->n_tensors = model_tensor_table(config, NULL, &model->n_params);
	model->tensors = calloc(model->n_tensors, sizeof(ModelTensor));
	model->w.layers = calloc(config->n_layers, sizeof(LayerWeights));
	model->packed = calloc(1, sizeof(PackedWeights));
	model->free_packed = free_image_packed;
	if (model->packed != NULL)
		model->packed->layers = calloc(config->n_layers, sizeof(LayerMatrices));
	if (model->tensors == NULL || model->w.layers == NULL || model->packed == NULL ||
		model->packed->layers == NULL)
	{
		if (model->packed == NULL)
			model->free_packed = NULL;
		model_free(model);
		return NULL;
	}
	model_tensor_table(config, model->tensors, &model->n_params);
	model->plain_released = true;
	return model;
}

Model *
model_from_image(const void *image, size_t len, const ModelImageIdentity *expected,
				 CoreError *err)
{
	ModelConfig config;
	uint64_t	data_offset;
	ImageLayout lay;
	Model	   *model;

	if ((uintptr_t) image % ARRAY_ALIGN != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "a prediction image must start at a multiple of %d bytes", ARRAY_ALIGN);
		return NULL;
	}
	if (!check_header(image, len, expected, &config, &data_offset, err))
		return NULL;
	model = alloc_image_model(&config);
	if (model == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a model's tables");
		return NULL;
	}
	lay_out(&config, cpu_panel(), &lay);
	model->image = image;
	model->image_bytes = len;
	bind_image(model, (const uint8_t *) image + data_offset, &lay, cpu_panel());
	return model;
}

static void
unmap_image(Model *model)
{
	munmap((void *) model->image, model->image_bytes);
}

Model *
model_image_map(int fd, const ModelImageIdentity *expected, CoreError *err)
{
	struct stat st;
	void	   *map;
	Model	   *model;

	if (fstat(fd, &st) != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "cannot read a prediction image's size: %s",
				   strerror(errno));
		return NULL;
	}
	if (st.st_size == 0)		/* which cannot be mapped */
	{
		core_error(err, CORE_ERR_CORRUPT, "truncated prediction image: 0 bytes");
		return NULL;
	}
	map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
	{
		core_error(err, errno == ENOMEM ? CORE_ERR_NO_MEMORY : CORE_ERR_INVALID_INPUT,
				   "cannot map a prediction image of %lld bytes: %s",
				   (long long) st.st_size, strerror(errno));
		return NULL;
	}
	model = model_from_image(map, (size_t) st.st_size, expected, err);
	if (model == NULL)
	{
		munmap(map, (size_t) st.st_size);
		return NULL;
	}
	model->free_image = unmap_image;
	return model;
}
