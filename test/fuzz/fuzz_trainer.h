/*
 * fuzz_trainer.h - the trainer whose saved states fuzz_trainer_state reads,
 * made the same way by make_seeds (its seeds) and by the target.
 */
#ifndef DISTILL_FUZZ_TRAINER_H
#define DISTILL_FUZZ_TRAINER_H

#include "core/trainer.h"

/* Eight rows, three labels, a rationale each; two of them held out. */
static const StudentExample fuzz_state_rows[] = {
	{"red apple", "fruit", "an apple is a fruit", NULL, 0},
	{"green pear", "fruit", "a pear is a fruit", NULL, 0},
	{"big dog", "animal", "a dog is an animal", NULL, 0},
	{"small cat", "animal", "a cat is an animal", NULL, 0},
	{"fast car", "vehicle", "a car is a vehicle", NULL, 0},
	{"old bus", "vehicle", "a bus is a vehicle", NULL, 0},
	{"ripe plum", "fruit", "a plum is a fruit", NULL, 0},
	{"wild horse", "animal", "a horse is an animal", NULL, 0},
};

static const char *const fuzz_state_labels[] = {"fruit", "animal", "vehicle"};

/* The smallest model and vocabulary there are, two short epochs. */
static StudentTrainer *
fuzz_state_trainer(CoreError *err)
{
	StudentParams p;

	student_params_default(&p);
	p.d_model = 16;
	p.n_layers = 1;
	p.n_heads = 2;
	p.d_ff = 16;
	p.vocab_size = 260;
	p.epochs = 2;
	p.batch_size = 4;
	p.max_input_tokens = 8;
	p.max_target_tokens = 4;
	p.validation_fraction = 0.25;
	p.dropout = 0.1;
	p.log_every = 1;
	p.memory_mb = 32;
	return trainer_create(&p, fuzz_state_rows, 8, fuzz_state_labels, 3, NULL, err);
}

#endif
