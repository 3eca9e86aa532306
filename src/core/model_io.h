/*
 * model_io.h - the student model as bytes (stored in a bytea column).
 *
 * Format version 1, all integers and floats little-endian:
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
#ifndef DISTILL_CORE_MODEL_IO_H
#define DISTILL_CORE_MODEL_IO_H

#include <stddef.h>

#include "core/model.h"

#define MODEL_IO_MAGIC "DSTM"
#define MODEL_IO_VERSION 1

/* Bytes model_serialize() writes. */
extern size_t model_serialized_size(const Model *model);

/* At least model_serialized_size() of any model of this config. */
extern size_t model_serialized_size_bound(const ModelConfig *config);

/* Write exactly model_serialized_size(model) bytes to buf. */
extern void model_serialize(const Model *model, void *buf);

/* A new model from bytes, or NULL with the error in err. */
extern Model *model_deserialize(const void *data, size_t len,
								CoreError *err);

#endif
