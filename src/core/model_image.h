/*
 * model_image.h - a model's prediction state as one read-only block of
 * bytes that several processes can map and predict from at once.
 *
 * A loaded model holds its weights packed for prediction (packed.h), its
 * embedding, norms, biases and rope tables: hundreds of MB for a model of
 * 135M parameters, once in each process that loads it.  Its image is all
 * of that laid out at fixed offsets from the image's start, so that a
 * model can be made of an image mapped anywhere (model_from_image()) with
 * every tensor a view into it and nothing copied: processes that map the
 * same file share its pages.  The glue writes an image to a file once
 * per model version and every backend maps it (src/pg/shared_models.c).
 *
 * The image, native byte order and floats (it is for this machine):
 *
 *   0   "DSTI"                  magic
 *   4   u32 version             1
 *   8   u32 0x01020304          as this machine writes it (byte order)
 *   12  u32 panel               PACKED_PANEL, or 0 for plain matrices
 *   16  u64 model_id            ModelImageIdentity
 *   24  u32 scope
 *   28  u32 weights_crc
 *   32  u64 image_bytes         the whole image
 *   40  u32 header_len          of the model header after this prelude
 *   44  u32 data_offset         where the arrays start (a page boundary)
 *   48  model header            model_io.h's version 2 header (config and
 *                               tensor table, all float32)
 *       u32 crc32c              of every byte before it
 *   data_offset: the arrays, each at a multiple of 64 bytes, zeros between:
 *       embedding [vocab, d_model]
 *       each layer: attention norm, q/k/v biases (qkv_bias), MLP norm,
 *                   the q/k/v, o_proj, gate/up and down_proj matrices
 *       final norm
 *       head matrix (none when it is the embedding, tied and plain)
 *       rope cos, rope sin [max_seq_len, head_dim / 2]
 *
 * A matrix is in packed.h's panels when panel is PACKED_PANEL (the CPU
 * runs the packed kernel), else row-major as the model stores it.  The
 * offsets follow from the config and panel alone.
 *
 * Reading checks everything but the arrays' values: magic, version, byte
 * order, the header checksum, the identity, the model header (as
 * model_io.h checks it), that panel is what this CPU runs, and that the
 * size is exactly what the config implies.  A truncated, foreign, damaged
 * or stale image is refused with a message, never read out of bounds.  The
 * arrays are not checksummed: checking them would read every page of a
 * big model in each process that maps it, which the identity and sizes
 * make unneeded for an image written whole and renamed into place.
 *
 * Plain C, no PostgreSQL headers.
 */
#ifndef DISTILL_CORE_MODEL_IMAGE_H
#define DISTILL_CORE_MODEL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define MODEL_IMAGE_MAGIC "DSTI"
#define MODEL_IMAGE_VERSION 1

/* The largest piece model_image_write() hands its sink. */
#define MODEL_IMAGE_PIECE ((size_t) 8 << 20)

/*
 * Which weights an image holds, as its writer names them: reading refuses
 * an image of other weights.  src/pg: the model row's id, the database's
 * OID, and student_weights_checksum() of the stored weights.
 */
typedef struct ModelImageIdentity
{
	uint64_t	model_id;
	uint32_t	scope;
	uint32_t	weights_crc;
} ModelImageIdentity;

/*
 * Write the image of model through sink, in order, pieces of at most
 * MODEL_IMAGE_PIECE bytes, so that a big model is never copied whole.
 * The model must be packed for prediction when the CPU runs the packed
 * kernel (a loaded model is; CORE_ERR_INVALID_INPUT otherwise).  False
 * with err when a sink call returns false (CORE_ERR_INTERRUPTED; the sink
 * knows why) or memory runs out.
 */
typedef bool (*ModelImageSink) (void *arg, const void *data, size_t len);

extern bool model_image_write(const Model *model,
							  const ModelImageIdentity *identity,
							  ModelImageSink sink, void *arg, CoreError *err);

/*
 * A model of the image at image[0, len), which must stay there, unchanged,
 * until model_free(); image must be aligned to 64 bytes (a mapping is).
 * Only its small tables are the model's own (model_memory_bytes()).  It
 * predicts like the model the image was written from, bit for bit, and
 * cannot be trained or saved.  NULL with err (CORE_ERR_CORRUPT) when the
 * image does not pass the checks above, or is of other weights than
 * expected.
 */
extern Model *model_from_image(const void *image, size_t len,
							   const ModelImageIdentity *expected,
							   CoreError *err);

/*
 * model_from_image() of the whole file open as fd, mapped read-only and
 * shared: model_free() unmaps it.  The caller may close fd at once.  A
 * file that cannot be mapped is CORE_ERR_NO_MEMORY (no room for the
 * mapping) or CORE_ERR_INVALID_INPUT (not a regular file), not
 * CORE_ERR_CORRUPT.
 */
extern Model *model_image_map(int fd, const ModelImageIdentity *expected,
							  CoreError *err);

#endif
