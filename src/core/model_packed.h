/*
 * model_packed.h - a model's matrices as prediction multiplies them: what
 * model_infer.c packs (model_pack_for_prediction()) and model_image.c
 * points into a prediction image.  Internal to those two files.
 */
#ifndef DISTILL_CORE_MODEL_PACKED_H
#define DISTILL_CORE_MODEL_PACKED_H

#include "core/model.h"
#include "core/packed.h"

typedef struct LayerMatrices
{
	PackedMatrix qkv;
	PackedMatrix o_proj;
	PackedMatrix gate_up;
	PackedMatrix down_proj;
} LayerMatrices;

struct PackedWeights
{
	LayerMatrices *layers;		/* [n_layers] */
	PackedMatrix head;
};

/* Views of layer l's plain weights, in packed.h's terms. */
extern void plain_layer_matrices(const Model *model, int l,
								 LayerMatrices *plain);

#endif
