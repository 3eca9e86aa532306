/*
 * checkpoint_safetensors.c - Hugging Face directories: config.json, the
 * weights in model.safetensors or in the shards that
 * model.safetensors.index.json's weight_map names, and the tokenizer's
 * JSON files, passed on as they are.
 *
 * A safetensors file is u64 n, a JSON header of n bytes
 * {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin,
 * end]}, ..., "__metadata__": {...}}, then the data, offsets counted from
 * its start.  Tensor names are the model's own (model.layers.N.self_attn.
 * q_proj.weight ...); Llama and Qwen2 rotate halves, as the model does, so
 * nothing is permuted.  JSON is parsed with json-c.
 */
#include "core/checkpoint_internal.h"

#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* safetensors' own limit on its JSON header, and ours on any JSON here */
#define MAX_JSON_BYTES (100 << 20)

/* A parsed JSON object (the whole text must be one), NULL with a message. */
static json_object *
parse_json(const uint8_t *text, size_t len, const char *what, CoreError *err)
{
	json_tokener *tok;
	json_object *obj = NULL;
	size_t		end;

	if (len > MAX_JSON_BYTES)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%s: %zu bytes of JSON is too much", what, len);
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory parsing %s", what);
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, (const char *) text, (int) len);
	end = json_tokener_get_parse_end(tok);
	while (end < len && (text[end] == ' ' || text[end] == '\n' ||
						 text[end] == '\r' || text[end] == '\t'))
		end++;
	if (json_tokener_get_error(tok) != json_tokener_success || end != len ||
		!json_object_is_type(obj, json_type_object))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%s: not a JSON object%s%s", what,
				   json_tokener_get_error(tok) != json_tokener_success ? ": " : "",
				   json_tokener_get_error(tok) != json_tokener_success
				   ? json_tokener_error_desc(json_tokener_get_error(tok)) : "");
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* The member key of obj, NULL when absent or JSON null. */
static json_object *
member(json_object *obj, const char *key)
{
	json_object *value = NULL;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &value))
		return NULL;
	return value;
}

/* ---------------------------------------------------------------- */
/* config.json */

static bool
cfg_int(json_object *cfg, const char *key, bool required, int64_t min,
		int64_t max, int64_t *out, CoreError *err)
{
	json_object *v = member(cfg, key);
	int64_t		x;

	if (v == NULL)
	{
		if (required)
			core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s is missing", key);
		return !required;
	}
	if (!json_object_is_type(v, json_type_int))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s is not an integer", key);
		return false;
	}
	x = json_object_get_int64(v);
	if (x < min || x > max)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s = %lld is outside %lld..%lld",
				   key, (long long) x, (long long) min, (long long) max);
		return false;
	}
	*out = x;
	return true;
}

static bool
cfg_number(json_object *obj, const char *what, const char *key, bool required,
		   double *out, CoreError *err)
{
	json_object *v = member(obj, key);

	if (v == NULL)
	{
		if (required)
			core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s%s is missing", what, key);
		return !required;
	}
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s%s is not a number", what, key);
		return false;
	}
	*out = json_object_get_double(v);
	if (!isfinite(*out))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s%s is not finite", what, key);
		return false;
	}
	return true;
}

static bool
cfg_bool(json_object *cfg, const char *key, bool *out, CoreError *err)
{
	json_object *v = member(cfg, key);

	if (v == NULL)
		return true;
	if (!json_object_is_type(v, json_type_boolean))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s is not true or false", key);
		return false;
	}
	*out = json_object_get_boolean(v);
	return true;
}

/* bos_token_id / eos_token_id: an integer, or a list whose first counts. */
static bool
cfg_token_id(json_object *cfg, const char *key, int32_t *out, CoreError *err)
{
	json_object *v = member(cfg, key);

	if (v != NULL && json_object_is_type(v, json_type_array))
		v = json_object_array_length(v) > 0 ? json_object_array_get_idx(v, 0) : NULL;
	if (v == NULL)
		return true;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		json_object_get_int64(v) > INT32_MAX)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s is not a token id", key);
		return false;
	}
	*out = (int32_t) json_object_get_int64(v);
	return true;
}

static const char *
cfg_string(json_object *obj, const char *key)
{
	json_object *v = member(obj, key);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* "llama" or "qwen2" from model_type, else from architectures[0]. */
static const char *
architecture(json_object *cfg, CoreError *err)
{
	const char *type = cfg_string(cfg, "model_type");
	json_object *archs = member(cfg, "architectures");
	const char *arch = NULL;

	if (json_object_is_type(archs, json_type_array) && json_object_array_length(archs) > 0)
		arch = json_object_get_string(json_object_array_get_idx(archs, 0));
	if (type != NULL ? strcmp(type, "llama") == 0
		: arch != NULL && strcmp(arch, "LlamaForCausalLM") == 0)
		return "llama";
	if (type != NULL ? strcmp(type, "qwen2") == 0
		: arch != NULL && strcmp(arch, "Qwen2ForCausalLM") == 0)
		return "qwen2";
	core_error(err, CORE_ERR_INVALID_INPUT,
			   "config.json: architecture \"%s\" is not supported (llama and qwen2 are)",
			   type ? type : arch ? arch : "(none given)");
	return NULL;
}

/* rope_scaling: null, "default", or "llama3" with its four numbers. */
static bool
read_rope_scaling(json_object *rs, ModelConfig *c, CoreError *err)
{
	const char *type = cfg_string(rs, "rope_type");
	double		factor = 0,
				low = 0,
				high = 0,
				original = 0;

	if (type == NULL)
		type = cfg_string(rs, "type");
	if (rs == NULL || type == NULL || strcmp(type, "default") == 0)
	{
		if (rs != NULL && type == NULL)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "config.json: rope_scaling has no rope_type");
			return false;
		}
		return true;
	}
	if (strcmp(type, "llama3") != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "config.json: rope scaling \"%s\" is not supported (llama3 is)", type);
		return false;
	}
	if (!cfg_number(rs, "rope_scaling.", "factor", true, &factor, err) ||
		!cfg_number(rs, "rope_scaling.", "low_freq_factor", true, &low, err) ||
		!cfg_number(rs, "rope_scaling.", "high_freq_factor", true, &high, err) ||
		!cfg_number(rs, "rope_scaling.", "original_max_position_embeddings", true, &original, err))
		return false;
	if (!(original >= 1 && original <= INT32_MAX && original == floor(original)))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "config.json: rope_scaling.original_max_position_embeddings is not a positive integer");
		return false;
	}
	c->rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, (float) factor, (float) low,
	(float) high, (int) original};
	return true;
}

static bool
check_unsupported(json_object *cfg, CoreError *err)
{
	const char *act = cfg_string(cfg, "hidden_act");
	bool		mlp_bias = false;
	bool		sliding = false;

	if (act != NULL && strcmp(act, "silu") != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "config.json: hidden_act \"%s\" is not supported (silu is)", act);
		return false;
	}
	if (!cfg_bool(cfg, "mlp_bias", &mlp_bias, err) ||
		!cfg_bool(cfg, "use_sliding_window", &sliding, err))
		return false;
	if (mlp_bias || sliding)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s is not supported",
				   mlp_bias ? "mlp_bias" : "use_sliding_window");
		return false;
	}
	return true;
}

static bool
read_config(Checkpoint *ckpt, json_object *cfg, const char *arch,
			CheckpointPlan *plan, CoreError *err)
{
	ModelConfig *c = &plan->config;
	json_object *rope = member(cfg, "rope_parameters");
	int64_t		vocab = 0,
				d = 0,
				d_ff = 0,
				n_layers = 0,
				n_heads = 0,
				n_kv_heads = 0,
				head_dim = 0,
				context = 0;
	double		eps = 1e-6,
				theta = 10000.0;
	bool		tied = false;
	bool		bias = strcmp(arch, "qwen2") == 0;

	if (!cfg_int(cfg, "vocab_size", true, 1, INT32_MAX, &vocab, err) ||
		!cfg_int(cfg, "hidden_size", true, 1, INT32_MAX, &d, err) ||
		!cfg_int(cfg, "intermediate_size", true, 1, INT32_MAX, &d_ff, err) ||
		!cfg_int(cfg, "num_hidden_layers", true, 1, INT32_MAX, &n_layers, err) ||
		!cfg_int(cfg, "num_attention_heads", true, 1, INT32_MAX, &n_heads, err) ||
		!cfg_int(cfg, "num_key_value_heads", false, 1, INT32_MAX, &n_kv_heads, err) ||
		!cfg_int(cfg, "head_dim", false, 1, INT32_MAX, &head_dim, err) ||
		!cfg_int(cfg, "max_position_embeddings", false, 1, INT32_MAX, &context, err) ||
		!cfg_number(cfg, "", "rms_norm_eps", false, &eps, err) ||
		!cfg_number(cfg, "", "rope_theta", false, &theta, err) ||
		!cfg_number(rope, "rope_parameters.", "rope_theta", false, &theta, err) ||
		!cfg_bool(cfg, "tie_word_embeddings", &tied, err) ||
		(!bias && !cfg_bool(cfg, "attention_bias", &bias, err)) ||
		!cfg_token_id(cfg, "bos_token_id", &ckpt->tokenizer.bos_id, err) ||
		!cfg_token_id(cfg, "eos_token_id", &ckpt->tokenizer.eos_id, err) ||
		!check_unsupported(cfg, err))
		return false;
	ckpt_config_init(c);
	c->vocab_size = (int) vocab;
	c->d_model = (int) d;
	c->d_ff = (int) d_ff;
	c->n_layers = (int) n_layers;
	c->n_heads = (int) n_heads;
	c->n_kv_heads = (int) (n_kv_heads > 0 ? n_kv_heads : n_heads);
	c->head_dim = (int) head_dim;
	c->norm_eps = (float) eps;
	c->rope_theta = (float) theta;
	c->tied_embeddings = tied;
	c->qkv_bias = bias;
	plan->context_length = (int) context;
	return read_rope_scaling(member(cfg, "rope_scaling") ? member(cfg, "rope_scaling") : rope,
							 c, err);
}

/* ---------------------------------------------------------------- */
/* safetensors */

static bool
dtype_of(const char *name, DequantType *type)
{
	if (strcmp(name, "F32") == 0)
		*type = DEQUANT_F32;
	else if (strcmp(name, "F16") == 0)
		*type = DEQUANT_F16;
	else if (strcmp(name, "BF16") == 0)
		*type = DEQUANT_BF16;
	else
		return false;
	return true;
}

/* Tensors of no use to the model that checkpoints may carry. */
static bool
ignored(const char *name, const ModelConfig *c)
{
	size_t		len = strlen(name);
	const char *inv_freq = "rotary_emb.inv_freq";

	return (len >= strlen(inv_freq) && strcmp(name + len - strlen(inv_freq), inv_freq) == 0) ||
		(c->tied_embeddings && strcmp(name, "lm_head.weight") == 0);
}

static bool
json_uint(json_object *v, uint64_t max, uint64_t *out)
{
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		(uint64_t) json_object_get_int64(v) > max)
		return false;
	*out = (uint64_t) json_object_get_int64(v);
	return true;
}

/* One entry of a safetensors header into src; data_len bytes follow it. */
static bool
source_tensor(const char *file, const char *name, json_object *entry,
			  const uint8_t *data, uint64_t data_len, SourceTensor *src,
			  CoreError *err)
{
	json_object *shape = member(entry, "shape");
	json_object *offsets = member(entry, "data_offsets");
	const char *dtype = cfg_string(entry, "dtype");
	uint64_t	begin,
				end;

	snprintf(src->source_name, sizeof(src->source_name), "%s", name);
	if (strlen(name) < sizeof(src->hf_name))
		snprintf(src->hf_name, sizeof(src->hf_name), "%s", name);
	if (dtype == NULL || !json_object_is_type(shape, json_type_array) ||
		!json_object_is_type(offsets, json_type_array) ||
		json_object_array_length(offsets) != 2 ||
		json_object_array_length(shape) < 1 || json_object_array_length(shape) > 4)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "%s: tensor \"%s\" lacks a dtype, a shape of 1 to 4 dimensions or two data_offsets",
				   file, src->source_name);
		return false;
	}
	if (!dtype_of(dtype, &src->type))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "%s: tensor \"%s\" has dtype %.16s, which is not supported (F32, F16, BF16 are)",
				   file, src->source_name, dtype);
		return false;
	}
	src->ndim = (int) json_object_array_length(shape);
	for (int k = 0; k < src->ndim; k++)
	{
		uint64_t	dim;

		if (!json_uint(json_object_array_get_idx(shape, k), INT32_MAX, &dim))
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "%s: tensor \"%s\" has a bad shape",
					   file, src->source_name);
			return false;
		}
		src->shape[k] = (int64_t) dim;
	}
	if (!json_uint(json_object_array_get_idx(offsets, 0), data_len, &begin) ||
		!json_uint(json_object_array_get_idx(offsets, 1), data_len, &end) || begin > end)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "%s: tensor \"%s\" has data_offsets outside the file's %llu bytes of data",
				   file, src->source_name, (unsigned long long) data_len);
		return false;
	}
	src->data = data + begin;
	src->bytes = end - begin;
	return true;
}

/* Add the tensors of one safetensors file to plan (room for all is there). */
static bool
read_safetensors(const char *file, const uint8_t *bytes, size_t len,
				 CheckpointPlan *plan, int room, CoreError *err)
{
	uint64_t	header_len;
	json_object *header;
	struct json_object_iter it;
	bool		ok = true;

	if (len < 8 || (header_len = le_get(bytes, 8)) > len - 8 || header_len > MAX_JSON_BYTES)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "%s: truncated safetensors file (%zu bytes, header of %llu)", file, len,
				   len < 8 ? 0ULL : (unsigned long long) le_get(bytes, 8));
		return false;
	}
	header = parse_json(bytes + 8, header_len, file, err);
	if (header == NULL)
		return false;
	json_object_object_foreachC(header, it)
	{
		if (strcmp(it.key, "__metadata__") == 0 || ignored(it.key, &plan->config))
			continue;
		if (plan->n_tensors == room)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "%s: more tensors than a model of this config has",
					   file);
			ok = false;
			break;
		}
		memset(&plan->tensors[plan->n_tensors], 0, sizeof(SourceTensor));
		if (!source_tensor(file, it.key, it.val, bytes + 8 + header_len, len - 8 - header_len,
						   &plan->tensors[plan->n_tensors], err))
		{
			ok = false;
			break;
		}
		plan->n_tensors++;
	}
	json_object_put(header);
	return ok;
}

/* A shard's name from the index: a plain file name of the directory. */
static bool
safe_shard_name(const char *name, CoreError *err)
{
	if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL ||
		strchr(name, '\\') != NULL || strlen(name) > 255)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model.safetensors.index.json: \"%.64s\" is not a file name of the directory", name);
		return false;
	}
	return true;
}

/* Every distinct shard the index's weight_map names, each read once. */
static bool
read_shards(Checkpoint *ckpt, const CheckpointFiles *files, json_object *index,
			CheckpointPlan *plan, int room, CoreError *err)
{
	json_object *map = member(index, "weight_map");
	json_object *seen;
	struct json_object_iter it;
	bool		ok = true;

	if (!json_object_is_type(map, json_type_object))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "model.safetensors.index.json: no weight_map");
		return false;
	}
	seen = json_object_new_object();
	if (seen == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
		return false;
	}
	json_object_object_foreachC(map, it)
	{
		json_object *shard = it.val;
		const char *name = json_object_get_string(shard);
		const uint8_t *bytes;
		size_t		len;

		if (!json_object_is_type(shard, json_type_string) || !safe_shard_name(name, err))
		{
			if (!json_object_is_type(shard, json_type_string))
				core_error(err, CORE_ERR_INVALID_INPUT,
						   "model.safetensors.index.json: weight_map has a value that is not a file name");
			ok = false;
			break;
		}
		if (json_object_object_get_ex(seen, name, NULL))
			continue;
		json_object_object_add(seen, name, NULL);
		if (stop_requested(ckpt->stop))
		{
			core_error(err, CORE_ERR_INTERRUPTED, "interrupted");
			ok = false;
			break;
		}
		bytes = ckpt_open(files, name, true, &len, err);
		if (bytes == NULL || !read_safetensors(name, bytes, len, plan, room, err))
		{
			ok = false;
			break;
		}
	}
	json_object_put(seen);
	return ok;
}

static bool
read_weights(Checkpoint *ckpt, const CheckpointFiles *files,
			 CheckpointPlan *plan, CoreError *err)
{
	size_t		n_params;
	int			room = model_tensor_table(&plan->config, NULL, &n_params) + 1;
	size_t		len;
	const uint8_t *bytes;
	json_object *index;
	bool		ok;

	plan->tensors = ckpt_alloc(ckpt, (size_t) room * sizeof(SourceTensor), err);
	if (plan->tensors == NULL)
		return false;
	bytes = ckpt_open(files, "model.safetensors.index.json", false, &len, err);
	if (bytes == NULL)
	{
		if (err != NULL && err->kind != CORE_OK)
			return false;
		bytes = ckpt_open(files, "model.safetensors", true, &len, err);
		return bytes != NULL &&
			read_safetensors("model.safetensors", bytes, len, plan, room, err);
	}
	index = parse_json(bytes, len, "model.safetensors.index.json", err);
	if (index == NULL)
		return false;
	ok = read_shards(ckpt, files, index, plan, room, err);
	json_object_put(index);
	return ok;
}

static bool
read_tokenizer_files(Checkpoint *ckpt, const CheckpointFiles *files,
					 CoreError *err)
{
	TokenizerSource *t = &ckpt->tokenizer;

	t->kind = TOKSRC_HF;
	t->data = ckpt_open(files, "tokenizer.json", true, &t->len, err);
	if (t->data == NULL)
		return false;
	t->config = ckpt_open(files, "tokenizer_config.json", false, &t->config_len, err);
	if (t->config == NULL && err != NULL && err->kind != CORE_OK)
		return false;
	t->generation_config = ckpt_open(files, "generation_config.json", false,
									 &t->generation_config_len, err);
	return t->generation_config != NULL || err == NULL || err->kind == CORE_OK;
}

bool
ckpt_read_hf(Checkpoint *ckpt, const CheckpointFiles *files, int max_seq_len,
			 CoreError *err)
{
	CheckpointPlan plan = {0};
	CoreError	why;
	size_t		len;
	const uint8_t *text = ckpt_open(files, "config.json", true, &len, err);
	json_object *cfg;
	const char *arch;
	bool		ok;

	if (text == NULL || (cfg = parse_json(text, len, "config.json", err)) == NULL)
		return false;
	arch = architecture(cfg, err);
	ok = arch != NULL && read_config(ckpt, cfg, arch, &plan, err) &&
		ckpt_set_names(ckpt, "hf", arch, err);
	json_object_put(cfg);
	plan.config.max_seq_len = 2;	/* checked here for the table only */
	if (ok && !model_config_validate(&plan.config, &why))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "config.json: %s", why.message);
		ok = false;
	}
	return ok && read_weights(ckpt, files, &plan, err) &&
		read_tokenizer_files(ckpt, files, err) &&
		ckpt_build(ckpt, &plan, max_seq_len, err);
}
