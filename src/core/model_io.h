/*
 * model_io.h - the student model as bytes (stored in bytea columns).
 *
 * Two formats.  Version 1 is one blob, header and data together (a model
 * up to a few hundred MB); model_serialize() writes it and
 * model_deserialize() reads it.  It cannot say head_dim or rope scaling:
 * a model with head_dim != d_model / n_heads or a rope scaling needs
 * version 2.  Version 2 is a header and the data apart, so that a
 * pretrained model of gigabytes can be stored as a small header row and
 * data chunk rows (PostgreSQL caps one value at 1 GB), written and read a
 * chunk at a time, never the whole model twice in memory, and each tensor
 * in its own dtype (float32, float16 or bfloat16).
 *
 * Version 1, all integers and floats little-endian:
 *
 *   "DSTM"                      magic
 *   u32 format_version          1
 *   u32 vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff, max_seq_len
 *   u32 flags                   1 tied_embeddings, 2 prefix_lm, 4 qkv_bias
 *   f32 dropout, rope_theta, norm_eps, logit_scale
 *   u32 n_tensors
 *   n_tensors times:
 *     u16 name_len, name        Hugging Face name, not NUL-terminated
 *     u8  dtype                 1 = float32
 *     u8  ndim, u32 shape[ndim]
 *     u64 offset                bytes from the start of the data
 *   u64 data_bytes
 *   data                        float32 parameters
 *   u32 crc32c                  CRC-32C of every byte before it
 *
 * Reading checks everything before it allocates or trusts anything: magic,
 * version, each read against the length, the config's ranges, the tensor
 * table against the one the config implies, the data size, the checksum,
 * and that every parameter is a finite number (a blob with the right
 * checksum can still hold NaN or infinity, on which prediction's
 * arithmetic is undefined).  A truncated, corrupted or foreign blob gives
 * NULL and a clear message, never a crash or a read out of bounds.
 */
/*
 * Version 2, the header:
 *
 *   "DSTM"                      magic
 *   u32 format_version          2
 *   u32 vocab_size, d_model, n_layers, n_heads, n_kv_heads, head_dim, d_ff,
 *       max_seq_len
 *   u32 flags                   as in version 1
 *   f32 dropout, rope_theta, norm_eps, logit_scale
 *   u32 rope_scaling kind       0 none, 1 llama3
 *   f32 factor, low_freq_factor, high_freq_factor
 *   u32 original_max_position
 *   u32 n_tensors
 *   n_tensors times:
 *     u16 name_len, name
 *     u8  dtype                 ModelDtype
 *     u8  ndim, u32 shape[ndim]
 *     u64 offset                bytes from the start of the data
 *   u64 data_bytes
 *   u32 data_crc32c             CRC-32C of the data bytes
 *   u32 header_crc32c           CRC-32C of every header byte before it
 *
 * and the data: the tensors in table order, each in its dtype,
 * little-endian, nothing between them.  The loader checks the header
 * completely before it allocates the model (checksum first, so a flipped
 * bit is always caught), then converts the data into the parameters as
 * chunks of any size arrive, and at the end checks the byte count, the
 * data checksum and that every parameter is finite.
 */
#ifndef DISTILL_CORE_MODEL_IO_H
#define DISTILL_CORE_MODEL_IO_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define MODEL_IO_MAGIC "DSTM"
#define MODEL_IO_VERSION 1
#define MODEL_IO_VERSION_CHUNKED 2

/* Bytes model_serialize() writes. */
extern size_t model_serialized_size(const Model *model);

/* At least model_serialized_size() of any model of this config. */
extern size_t model_serialized_size_bound(const ModelConfig *config);

/* Write exactly model_serialized_size(model) bytes to buf. */
extern void model_serialize(const Model *model, void *buf);

/* A new model from version 1 bytes, or NULL with the error in err. */
extern Model *model_deserialize(const void *data, size_t len,
								CoreError *err);

/* Version 2. */
typedef enum ModelDtype
{
	MODEL_DTYPE_F32 = 1,
	MODEL_DTYPE_F16 = 2,
	MODEL_DTYPE_BF16 = 3
} ModelDtype;

/*
 * Bytes of the stored data with these per-tensor dtypes (dtypes: one per
 * tensor in table order; NULL = all F32).
 */
extern uint64_t model_data_bytes(const Model *model, const uint8_t *dtypes);

/*
 * Write bytes [offset, offset+len) of the stored data (tensors in table
 * order, each in its dtype, little-endian), converting from model->params
 * (to f16 and bf16 rounding to nearest even).  The range must lie inside
 * model_data_bytes().
 */
extern void model_data_read(const Model *model, const uint8_t *dtypes,
							uint64_t offset, void *buf, size_t len);

/*
 * The header: config (all fields incl. head_dim, rope scaling), tensor
 * table with each tensor's dtype, data byte count, data CRC-32C (crc32c
 * over the data bytes, which the caller computed while writing chunks),
 * then CRC-32C of the header itself.  malloc'd, *len bytes; NULL when out
 * of memory.
 */
extern void *model_save_header(const Model *model, const uint8_t *dtypes,
							   uint32_t data_crc, size_t *len);

/*
 * The config of a version 2 header, checked as model_loader_begin() checks
 * the whole header, without allocating a model.  False with err when it
 * does not pass.
 */
extern bool model_header_config(const void *header, size_t len,
								ModelConfig *config, CoreError *err);

typedef struct ModelLoader ModelLoader;

/*
 * Parse and check a header (everything validated before allocating:
 * magic, version, checksum, ranges, table vs config, sizes), allocate the
 * model.  NULL with the error in err.
 */
extern ModelLoader *model_loader_begin(const void *header, size_t len,
									   CoreError *err);

/*
 * Feed the next data bytes (any chunking, any sizes); converts into params
 * as it goes; error if more than announced (the loader stays usable only
 * for model_loader_free()).
 */
extern bool model_loader_feed(ModelLoader *loader, const void *data,
							  size_t len, CoreError *err);

/*
 * After the last chunk: checks the byte count, the data CRC and that every
 * parameter is finite; returns the model and frees the loader (on error
 * returns NULL and frees everything).
 */
extern Model *model_loader_finish(ModelLoader *loader, CoreError *err);

/* Abandon mid-way; NULL ok. */
extern void model_loader_free(ModelLoader *loader);

/*
 * The dtypes array the loaded model was stored with (per tensor), for
 * saving it again unchanged; valid until finish/free.  A 0 byte follows
 * the last tensor's dtype (no dtype is 0), so strlen() of it is the number
 * of tensors, for a copy taken before model_loader_finish().
 */
extern const uint8_t *model_loader_dtypes(const ModelLoader *loader);

#endif
