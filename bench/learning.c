/*
 * learning.c - does fine-tuning a pretrained base learn faster and end
 * better than training a random init of the same shape?  (bench/learning
 * runs it; bench/README.md has the design and the figures.)
 *
 * The base is stories260K, the one real pretrained model here.  The task
 * is judged on text the model writes itself:
 *
 *   data   stories260K writes stories: each starts with a prompt of ours
 *          ("Once upon a time, there was a little girl named Lily. She
 *          had a dog. One day, they went to the park."), then sentences it
 *          writes greedily (student_continue()), each after the prompt, the
 *          sentence before it and an opener of ours (a subject and a verb,
 *          sometimes after an adverb: "Then Lily found"), up to its first
 *          . ! or ?.  The openers vary what greedy decoding would otherwise
 *          repeat.  Kept: sentences without quotes, commas dropped, of 5 to
 *          24 words.  Stories go wholly to training, dev or test, and a
 *          dev or test sentence never occurs in training, not even with
 *          another name in it.
 *   task   like GLUE's CoLA: is the input a sentence as written ("real"),
 *          or its words shuffled ("shuffled": all words but the first
 *          randomly permuted, the final mark staying last)?  Both labels
 *          have the same words, so only their order tells them apart: what
 *          a language model's pretraining is about, and what a random
 *          init must learn from the rows.
 *   runs   {pretrained, random init} x {200, 2000 rows} x seeds.  The
 *          random init is stories260K's model (same shape, tokenizer,
 *          layout) with its weights drawn again by model_init_weights()
 *          and the logit scale of distill's from-scratch students
 *          (d_model^-0.5); both train with trainer_create_on_base() and
 *          the same hyperparameters.  The learning rate is each arm's
 *          best of LRS on the dev set with seed 1.  A seed draws the
 *          training rows, their labels and shuffles, the order of batches
 *          and the random init.
 *   eval   the same TEST_ROWS rows (balanced) after every epoch, and
 *          before the first, by student_choose() with the model in
 *          training; no epoch is selected (the last one is the result).
 *
 * Environment: STORIES (1000), SEEDS (3), LRS ("1e-4 3e-4 1e-3 3e-3 1e-2"),
 * EPOCHS_200 (30), EPOCHS_2000 (15), BATCH (8), THREADS (1).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/student.h"
#include "core/trainer.h"
#include "core/util.h"

#include "bench.h"
#include "../test/unit/stories.h"

#define SENTENCES_PER_STORY 8
#define MIN_WORDS 5
#define MAX_WORDS 24
#define MAX_SENTENCE 512		/* bytes */
#define TEST_ROWS 500
#define DEV_ROWS 300
#define DATA_SEED 20261201
#define MAX_EPOCHS 64
#define MAX_SEEDS 10
#define MAX_LRS 8

static const char *const labels[] = {"real", "shuffled"};

static const char *const girls[] = {"Lily", "Sue", "Mia", "Anna", "Lucy", "Amy",
"Sara", "Kate", "Emma", "Jane", "Zoe", "Ella"};
static const char *const boys[] = {"Tom", "Ben", "Max", "Sam", "Jack", "Tim",
"Bob", "Leo", "Joe", "Jim", "Dan", "Timmy"};
static const char *const animals[] = {"dog", "cat", "bird", "fish", "bunny", "frog",
"duck", "horse", "bear", "puppy", "kitten", "lion"};
static const char *const places[] = {"park", "garden", "forest", "house", "river",
"school", "beach", "farm", "zoo", "store", "lake", "hill"};
static const char *const adverbs[] = {"One day", "Then", "Suddenly", "Later", "Soon",
"After that", "That night", "The next day"};
static const char *const verbs[] = {"saw", "wanted", "found", "liked", "loved", "was",
	"had", "went", "ran", "looked", "played", "felt", "asked", "took", "gave",
"did not", "could", "tried", "heard", "thought", "smiled", "jumped", "put", "made"};

#define COUNT(a) ((int) (sizeof(a) / sizeof((a)[0])))

static uint32_t
pick(uint64_t *rng, int n)
{
	return (uint32_t) (splitmix64_next(rng) % (uint64_t) n);
}

static int
env_int(const char *name, int fallback)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? atoi(v) : fallback;
}

/* ---------------------------------------------------------------- */
/* Sentences: a growable list and a set of strings */

typedef struct List
{
	char	  **items;
	int			n;
	int			cap;
} List;

static void
list_add(List *l, char *s)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? 2 * l->cap : 256;
		l->items = realloc(l->items, l->cap * sizeof(char *));
		if (l->items == NULL)
		{
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
	}
	l->items[l->n++] = s;
}

static void
list_free(List *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* Open addressing over the strings' hashes; it never shrinks. */
typedef struct Set
{
	char	  **slots;
	size_t		cap;
	size_t		n;
} Set;

static uint64_t
hash_string(const char *s)
{
	uint64_t	h = 0x243F6A8885A308D3ull;

	while (*s)
		h = splitmix64_mix(h ^ (unsigned char) *s++);
	return h;
}

static bool
set_contains(const Set *set, const char *s)
{
	if (set->cap == 0)
		return false;
	for (size_t i = hash_string(s) & (set->cap - 1); set->slots[i]; i = (i + 1) & (set->cap - 1))
		if (strcmp(set->slots[i], s) == 0)
			return true;
	return false;
}

static void
set_insert(Set *set, char *s)
{
	size_t		i = hash_string(s) & (set->cap - 1);

	while (set->slots[i])
		i = (i + 1) & (set->cap - 1);
	set->slots[i] = s;
	set->n++;
}

/* Twice the slots (at least 1024), the strings moved over. */
static void
set_grow(Set *set)
{
	Set			bigger = {0};

	bigger.cap = set->cap ? 2 * set->cap : 1024;
	bigger.slots = calloc(bigger.cap, sizeof(char *));
	if (bigger.slots == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < set->cap; i++)
		if (set->slots[i])
			set_insert(&bigger, set->slots[i]);
	free(set->slots);
	*set = bigger;
}

/* Adds a copy of s; false when it was there already. */
static bool
set_add(Set *set, const char *s)
{
	if (set_contains(set, s))
		return false;
	if (2 * (set->n + 1) > set->cap)
		set_grow(set);
	set_insert(set, strdup(s));
	return true;
}

static void
set_free(Set *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slots[i]);
	free(set->slots);
	memset(set, 0, sizeof(*set));
}

/* ---------------------------------------------------------------- */
/* Words */

/* Splits s (modified) at spaces into words[]; their count, at most max. */
static int
split_words(char *s, char **words, int max)
{
	int			n = 0;

	for (char *w = strtok(s, " "); w != NULL; w = strtok(NULL, " "))
	{
		if (n == max)
			return max + 1;
		words[n++] = w;
	}
	return n;
}

static void
join_words(char *const *words, int n, char *out, size_t len)
{
	out[0] = '\0';
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			strncat(out, " ", len - strlen(out) - 1);
		strncat(out, words[i], len - strlen(out) - 1);
	}
}

static bool
is_name(const char *w)
{
	for (int i = 0; i < COUNT(girls); i++)
		if (strcmp(w, girls[i]) == 0 || strcmp(w, boys[i]) == 0)
			return true;
	return false;
}

/*
 * A sentence the model wrote as a row's text, or false: printable ASCII
 * without quotes (the model's dialogue rarely closes within one
 * sentence), commas dropped (a shuffle would strand them), MIN_WORDS to
 * MAX_WORDS words ending in . ! or ?, at least two distinct words after
 * the first (so that a shuffle can differ).  Its key is the sentence with
 * the characters' names as NAME: two sentences that differ only in a name
 * count as one.
 */
static bool
clean_sentence(const char *raw, char *out, char *key)
{
	char		copy[MAX_SENTENCE];
	char	   *words[MAX_WORDS + 1];
	size_t		n = 0;
	int			n_words;
	bool		distinct = false;

	for (const char *c = raw; *c && n + 1 < sizeof(copy); c++)
	{
		if (*c == '"' || *c < 0x20 || *c > 0x7e)
			return false;
		if (*c != ',')
			copy[n++] = *c;
	}
	copy[n] = '\0';
	n_words = split_words(copy, words, MAX_WORDS);
	if (n_words < MIN_WORDS || n_words > MAX_WORDS ||
		strchr(".!?", words[n_words - 1][strlen(words[n_words - 1]) - 1]) == NULL)
		return false;
	for (int i = 2; i < n_words; i++)
		distinct |= strcmp(words[i], words[1]) != 0;
	if (!distinct)
		return false;
	join_words(words, n_words, out, MAX_SENTENCE);
	for (int i = 0; i < n_words; i++)
		if (is_name(words[i]))
			words[i] = "NAME";
	join_words(words, n_words, key, MAX_SENTENCE);
	return true;
}

/*
 * The sentence with all words but the first in a random order that
 * differs from the original; the final mark stays last.
 */
static char *
shuffle_sentence(const char *sentence, uint64_t *rng)
{
	char		copy[MAX_SENTENCE];
	char		out[MAX_SENTENCE];
	char	   *words[MAX_WORDS + 1];
	int			n;
	size_t		len;
	char		mark;

	snprintf(copy, sizeof(copy), "%s", sentence);
	len = strlen(copy);
	mark = copy[len - 1];
	copy[len - 1] = '\0';
	n = split_words(copy, words, MAX_WORDS);
	do
	{
		for (int i = n - 1; i > 1; i--)
		{
			int			j = 1 + pick(rng, i);
			char	   *w = words[i];

			words[i] = words[j];
			words[j] = w;
		}
		join_words(words, n, out, sizeof(out) - 1);
		len = strlen(out);
		out[len] = mark;
		out[len + 1] = '\0';
	} while (strcmp(out, sentence) == 0);
	return strdup(out);
}

/* ---------------------------------------------------------------- */
/* Stories stories260K writes */

/* "Then Lily found": a subject and a verb, sometimes after an adverb. */
static void
make_opener(uint64_t *rng, const char *name, bool girl, const char *animal,
			char *out, size_t len)
{
	char		subject[64];

	switch (pick(rng, 7))
	{
		case 0:
		case 1:
			snprintf(subject, sizeof(subject), "%s", name);
			break;
		case 2:
			snprintf(subject, sizeof(subject), "%s", girl ? "She" : "He");
			break;
		case 3:
			snprintf(subject, sizeof(subject), "They");
			break;
		case 4:
			snprintf(subject, sizeof(subject), "The %s", animal);
			break;
		case 5:
			snprintf(subject, sizeof(subject), "%s %s", girl ? "Her" : "His", animal);
			break;
		default:
			snprintf(subject, sizeof(subject), "%s", pick(rng, 2) ? "Mom" : "The little bird");
	}
	if (pick(rng, 10) < 3)
	{
		/* "After that, she" */
		if (strcmp(subject, name) != 0 && strcmp(subject, "Mom") != 0)
			subject[0] += 'a' - 'A';
		snprintf(out, len, "%s, %s %s", adverbs[pick(rng, COUNT(adverbs))], subject,
				 verbs[pick(rng, COUNT(verbs))]);
	}
	else
		snprintf(out, len, "%s %s", subject, verbs[pick(rng, COUNT(verbs))]);
}

/*
 * The raw sentence that opener starts after the context: opener and the
 * model's greedy continuation up to its first . ! or ?; false when the
 * continuation has none before a line ends.
 */
static bool
write_sentence(const Student *base, const char *context, const char *opener,
			   char *out, size_t len)
{
	char		prompt[3 * MAX_SENTENCE];
	CoreError	err;
	char	   *text;
	char	   *end;
	bool		ok;

	snprintf(prompt, sizeof(prompt), "%s %s", context, opener);
	text = student_continue(base, prompt, 40, &err);
	if (text == NULL)
	{
		fprintf(stderr, "student_continue: %s\n", err.message);
		exit(1);
	}
	end = strpbrk(text, ".!?\n");
	ok = end != NULL && *end != '\n';
	if (ok)
	{
		end[1] = '\0';
		snprintf(out, len, "%s%s", opener, text);
	}
	free(text);
	return ok;
}

/* One story's sentences (raw), added to out. */
static void
write_story(const Student *base, uint64_t *rng, List *out)
{
	bool		girl = pick(rng, 2);
	const char *name = girl ? girls[pick(rng, COUNT(girls))] : boys[pick(rng, COUNT(boys))];
	const char *animal = animals[pick(rng, COUNT(animals))];
	char		prompt[MAX_SENTENCE];
	char		last[MAX_SENTENCE] = "";

	snprintf(prompt, sizeof(prompt),
			 "Once upon a time, there was a little %s named %s. %s had a %s. One day, they went to the %s.",
			 girl ? "girl" : "boy", name, girl ? "She" : "He", animal,
			 places[pick(rng, COUNT(places))]);
	for (int k = 0; k < SENTENCES_PER_STORY; k++)
	{
		char		context[2 * MAX_SENTENCE];
		char		opener[128];
		char		sentence[MAX_SENTENCE];

		snprintf(context, sizeof(context), "%s%s%s", prompt, last[0] ? " " : "", last);
		make_opener(rng, name, girl, animal, opener, sizeof(opener));
		if (write_sentence(base, context, opener, sentence, sizeof(sentence)))
		{
			list_add(out, strdup(sentence));
			snprintf(last, sizeof(last), "%s", sentence);
		}
	}
}

/*
 * The data: sentences of stories i % 10 == 0, 1 are for test, 2 for dev,
 * the rest for training.  Each split keeps a sentence once (by key), and
 * dev and test drop those whose key is in an earlier split.
 */
typedef struct Data
{
	List		train;
	List		dev;
	List		test;
	int			stories;
	int			written;		/* sentences the model wrote */
	int			kept;			/* of them clean */
	double		seconds;
} Data;

static void
make_data(const Student *base, int n_stories, Data *data)
{
	List		raw[3] = {{0}};	/* train, dev, test */
	List	   *split[3] = {&data->train, &data->dev, &data->test};
	Set			seen = {0};
	uint64_t	rng = DATA_SEED;
	double		started = now();

	memset(data, 0, sizeof(*data));
	for (int i = 0; i < n_stories; i++)
		write_story(base, &rng, &raw[i % 10 < 2 ? 2 : i % 10 == 2 ? 1 : 0]);
	for (int s = 0; s < 3; s++)
	{
		for (int i = 0; i < raw[s].n; i++)
		{
			char		text[MAX_SENTENCE];
			char		key[MAX_SENTENCE];

			data->written++;
			if (!clean_sentence(raw[s].items[i], text, key))
				continue;
			data->kept++;
			if (set_add(&seen, key))
				list_add(split[s], strdup(text));
		}
		list_free(&raw[s]);
	}
	set_free(&seen);
	data->stories = n_stories;
	data->seconds = now() - started;
}

/* ---------------------------------------------------------------- */
/* Rows */

typedef struct Rows
{
	StudentExample *examples;
	int			n;
	int			n_real;
} Rows;

/*
 * n rows of the sentences, drawn by seed: the first n of a shuffled
 * order, alternately real and shuffled (balanced).  With one seed, the
 * 200 rows are the first 200 of the 2000.
 */
static void
make_rows(const List *sentences, int n, uint64_t seed, Rows *rows)
{
	int		   *order = malloc(sentences->n * sizeof(int));
	uint64_t	rng = seed;

	rows->examples = calloc(n, sizeof(StudentExample));
	rows->n = n;
	rows->n_real = 0;
	if (order == NULL || rows->examples == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (int i = 0; i < sentences->n; i++)
		order[i] = i;
	for (int i = sentences->n - 1; i > 0; i--)
	{
		int			j = pick(&rng, i + 1);
		int			t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int i = 0; i < n; i++)
	{
		const char *s = sentences->items[order[i]];
		bool		real = i % 2 == 0;

		rows->examples[i].input = real ? strdup(s) : shuffle_sentence(s, &rng);
		rows->examples[i].label = labels[real ? 0 : 1];
		rows->n_real += real;
	}
	free(order);
}

static void
rows_free(Rows *rows)
{
	for (int i = 0; i < rows->n; i++)
		free((char *) rows->examples[i].input);
	free(rows->examples);
}

/* ---------------------------------------------------------------- */
/* Runs */

typedef enum Arm
{
	ARM_PRETRAINED,
	ARM_RANDOM
} Arm;

static const char *const arm_names[] = {"pretrained", "random init"};

typedef struct Bench
{
	StoriesFiles files;
	Tokenizer  *tokenizer;		/* a copy, for students that borrow a model */
	Rows		dev;
	Rows		test;
	const List *train;
	int			batch;
} Bench;

typedef struct Run
{
	int			epochs;
	double		test[MAX_EPOCHS + 1];	/* accuracy after each epoch; [0]
										 * before training */
	double		dev[MAX_EPOCHS + 1];
	double		loss[MAX_EPOCHS + 1];	/* [e]: epoch e's mean label loss */
	double		train_seconds;
	double		eval_seconds;
} Run;

/*
 * Accuracy on rows of the model in training, asked as a fine-tuned
 * student: a Student that borrows the trainer's model and a copy of its
 * tokenizer (never freed as a whole).
 */
static double
accuracy(const Bench *b, const StudentTrainer *t, const StudentParams *p,
		 const Rows *rows)
{
	Student		view = {
		.tokenizer = b->tokenizer,
		.model = (Model *) trainer_model(t),
		.max_input_tokens = p->max_input_tokens,
		.max_target_tokens = p->max_target_tokens,
	};
	int			right = 0;

	for (int i = 0; i < rows->n; i++)
	{
		CoreError	err;
		int			k = student_choose(&view, rows->examples[i].input, labels, 2, NULL, &err);

		if (k < 0)
		{
			fprintf(stderr, "student_choose: %s\n", err.message);
			exit(1);
		}
		right += strcmp(labels[k], rows->examples[i].label) == 0;
	}
	return (double) right / rows->n;
}

/* The base of an arm: stories260K, or its shape with new weights. */
static Student *
arm_base(Bench *b, Arm arm, uint64_t seed)
{
	Student    *base = stories_student(&b->files);

	if (base != NULL && arm == ARM_RANDOM)
	{
		model_init_weights(base->model, seed);
		base->model->config.logit_scale = 1.0f / sqrtf((float) base->model->config.d_model);
	}
	return base;
}

/* Test accuracy after epoch (0: before training); dev after the last. */
static void
evaluate(const Bench *b, const StudentTrainer *t, const StudentParams *p,
		 Run *run, int epoch)
{
	double		started = now();

	run->test[epoch] = accuracy(b, t, p, &b->test);
	if (epoch == p->epochs)
		run->dev[epoch] = accuracy(b, t, p, &b->dev);
	run->eval_seconds += now() - started;
}

static void
train_run(Bench *b, Arm arm, int n_rows, uint64_t seed, double lr, int epochs,
		  Run *run)
{
	StudentParams p;
	Rows		rows;
	CoreError	err;
	StudentTrainer *t;
	TrainProgress progress;
	TrainEvent	event;
	double		started;

	student_params_default_for_base(&p);
	p.lr = lr;
	p.epochs = epochs;
	p.batch_size = b->batch;
	p.max_input_tokens = 64;
	p.max_target_tokens = 8;
	p.validation_fraction = 0.0;
	p.seed = seed;
	p.log_every = 1000000;
	make_rows(b->train, n_rows, seed, &rows);
	t = trainer_create_on_base(&p, arm_base(b, arm, seed), rows.examples, rows.n,
							   labels, 2, NULL, &err);
	if (t == NULL)
	{
		fprintf(stderr, "trainer_create_on_base: %s\n", err.message);
		exit(1);
	}
	memset(run, 0, sizeof(*run));
	run->epochs = epochs;
	started = now();
	evaluate(b, t, &p, run, 0);
	while ((event = trainer_advance(t, &progress)) != TRAIN_DONE)
		if (event == TRAIN_EPOCH)
		{
			run->loss[progress.epoch] = progress.label_loss;
			evaluate(b, t, &p, run, progress.epoch);
		}
	if (trainer_error(t) != NULL)
	{
		fprintf(stderr, "training: %s\n", trainer_error(t)->message);
		exit(1);
	}
	run->train_seconds = now() - started - run->eval_seconds;
	trainer_free(t);
	rows_free(&rows);
}

/* ---------------------------------------------------------------- */
/* Figures */

static void
mean_std(const double *x, int n, double *mean, double *std)
{
	double		s = 0.0,
				ss = 0.0;

	for (int i = 0; i < n; i++)
		s += x[i];
	*mean = s / n;
	for (int i = 0; i < n; i++)
		ss += (x[i] - *mean) * (x[i] - *mean);
	*std = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

/* The figure at epoch e over the seeds' runs (test accuracy or loss). */
static void
column(const Run *runs, int n, int e, bool loss, double *out)
{
	for (int i = 0; i < n; i++)
		out[i] = loss ? runs[i].loss[e] : runs[i].test[e];
}

/* The epochs shown: 0, 1, 2, 3, 5, every tenth and the last. */
static bool
shown(int e, int epochs)
{
	return e <= 3 || e == 5 || e % 10 == 0 || e == epochs;
}

static void
print_table(int n_rows, Run runs[2][MAX_SEEDS], int n_seeds, const double lr[2])
{
	int			epochs = runs[0][0].epochs;
	double		x[MAX_SEEDS],
				m,
				s;

	printf("\n%d training rows, %d epochs: test accuracy (mean ± std over %d seeds) after epoch\n",
		   n_rows, epochs, n_seeds);
	printf("%-12s %-7s", "arm", "lr");
	for (int e = 0; e <= epochs; e++)
		if (shown(e, epochs))
			printf(" %11d", e);
	printf("   train s  eval s\n");
	for (int a = 0; a < 2; a++)
	{
		double		ts[MAX_SEEDS],
					es[MAX_SEEDS];

		printf("%-12s %-7.0e", arm_names[a], lr[a]);
		for (int e = 0; e <= epochs; e++)
			if (shown(e, epochs))
			{
				column(runs[a], n_seeds, e, false, x);
				mean_std(x, n_seeds, &m, &s);
				printf(" %5.3f±%.3f", m, s);
			}
		for (int i = 0; i < n_seeds; i++)
		{
			ts[i] = runs[a][i].train_seconds;
			es[i] = runs[a][i].eval_seconds;
		}
		printf("  %8.1f %7.1f\n", median(ts, n_seeds), median(es, n_seeds));
	}
	printf("label loss of the epoch\n");
	for (int a = 0; a < 2; a++)
	{
		printf("%-12s %-7s", arm_names[a], "");
		for (int e = 0; e <= epochs; e++)
			if (shown(e, epochs))
			{
				if (e == 0)
				{
					printf(" %11s", "");
					continue;
				}
				column(runs[a], n_seeds, e, true, x);
				mean_std(x, n_seeds, &m, &s);
				printf(" %5.3f±%.3f", m, s);
			}
		printf("\n");
	}
}

/*
 * Is the pretrained arm ahead beyond seed noise at epoch e?  Both tests:
 * its worst seed above the random init's best, and a difference of means
 * above twice the pooled standard deviation.
 */
static void
print_gap(Run runs[2][MAX_SEEDS], int n_seeds, int e)
{
	double		x[2][MAX_SEEDS] = {{0}},
				m[2],
				s[2],
				worst = 1.0,
				best = 0.0,
				pooled;

	for (int a = 0; a < 2; a++)
	{
		column(runs[a], n_seeds, e, false, x[a]);
		mean_std(x[a], n_seeds, &m[a], &s[a]);
	}
	for (int i = 0; i < n_seeds; i++)
	{
		worst = fmin(worst, x[0][i]);
		best = fmax(best, x[1][i]);
	}
	pooled = sqrt((s[0] * s[0] + s[1] * s[1]) / 2.0);
	printf("%5d  %+6.3f  %10.1f  %10.3f  %10.3f  %s\n", e, m[0] - m[1],
		   pooled > 0 ? (m[0] - m[1]) / pooled : INFINITY, worst, best,
		   worst > best && m[0] - m[1] > 2 * pooled ? "yes" : "no");
}

static void
print_gaps(Run runs[2][MAX_SEEDS], int n_seeds)
{
	int			epochs = runs[0][0].epochs;

	printf("\npretrained - random init, test accuracy (gap in pooled std; beyond seed noise: worst pretrained seed > best random seed and gap > 2 pooled std)\n");
	printf("epoch     gap     gap/std  worst pre.  best rand.  beyond seed noise\n");
	for (int e = 1; e <= epochs; e++)
		if (shown(e, epochs))
			print_gap(runs, n_seeds, e);
}

/* ---------------------------------------------------------------- */

static int
parse_lrs(double *lrs)
{
	const char *env = getenv("LRS");
	char		buf[256];
	int			n = 0;

	snprintf(buf, sizeof(buf), "%s", env && *env ? env : "1e-4 3e-4 1e-3 3e-3 1e-2");
	for (char *w = strtok(buf, " ,"); w && n < MAX_LRS; w = strtok(NULL, " ,"))
		lrs[n++] = atof(w);
	return n;
}

/*
 * One size: each arm's learning rate of LRS by the dev accuracy of its
 * last epoch with seed 1 (ties to the smaller), then the other seeds.
 */
static void
bench_size(Bench *b, int n_rows, int epochs, int n_seeds, const double *lrs,
		   int n_lrs)
{
	static Run	runs[2][MAX_SEEDS];
	Run			tuning;
	double		chosen[2];

	for (int a = 0; a < 2; a++)
	{
		double		best = -1.0;

		for (int k = 0; k < n_lrs; k++)
		{
			train_run(b, a, n_rows, 1, lrs[k], epochs, &tuning);
			printf("  tuning: %d rows, %-11s lr %.0e: dev %.3f, test %.3f after %d epochs (%.1f s + %.1f s eval)\n",
				   n_rows, arm_names[a], lrs[k], tuning.dev[epochs], tuning.test[epochs],
				   epochs, tuning.train_seconds, tuning.eval_seconds);
			fflush(stdout);
			if (tuning.dev[epochs] > best)
			{
				best = tuning.dev[epochs];
				chosen[a] = lrs[k];
				runs[a][0] = tuning;
			}
		}
		for (int seed = 2; seed <= n_seeds; seed++)
		{
			train_run(b, a, n_rows, seed, chosen[a], epochs, &runs[a][seed - 1]);
			printf("  seed %d: %d rows, %-11s lr %.0e: test %.3f after %d epochs\n",
				   seed, n_rows, arm_names[a], chosen[a], runs[a][seed - 1].test[epochs],
				   epochs);
			fflush(stdout);
		}
	}
	print_table(n_rows, runs, n_seeds, chosen);
	print_gaps(runs, n_seeds);
	fflush(stdout);
}

int
main(void)
{
	static Bench b;
	Student    *base;
	Data		data;
	int			n_stories = env_int("STORIES", 1000);
	int			n_seeds = env_int("SEEDS", 3);
	int			sizes[2] = {200, 2000};
	int			epochs[2] = {env_int("EPOCHS_200", 30), env_int("EPOCHS_2000", 15)};
	double		lrs[MAX_LRS];
	int			n_lrs = parse_lrs(lrs);
	double		started = now();

	model_set_threads(env_int("THREADS", 1));
	b.batch = env_int("BATCH", 8);
	if (!stories_read(&b.files))
		return 1;
	if (n_seeds < 1 || n_seeds > MAX_SEEDS || epochs[0] < 1 || epochs[0] > MAX_EPOCHS ||
		epochs[1] < 1 || epochs[1] > MAX_EPOCHS || n_lrs == 0)
	{
		fprintf(stderr, "SEEDS 1..%d, EPOCHS_* 1..%d, LRS not empty\n", MAX_SEEDS, MAX_EPOCHS);
		return 1;
	}
	if ((base = stories_student(&b.files)) == NULL)
		return 1;
	make_data(base, n_stories, &data);
	b.tokenizer = base->tokenizer;
	base->tokenizer = NULL;
	student_free(base);
	printf("data: %d stories, %d sentences written by stories260K, %d clean, distinct: %d train, %d dev, %d test (%.1f s)\n",
		   data.stories, data.written, data.kept, data.train.n, data.dev.n, data.test.n,
		   data.seconds);
	if (data.train.n < sizes[1] || data.dev.n < DEV_ROWS || data.test.n < TEST_ROWS)
	{
		fprintf(stderr, "too few sentences for %d training, %d dev and %d test rows: raise STORIES\n",
				sizes[1], DEV_ROWS, TEST_ROWS);
		return 1;
	}
	make_rows(&data.test, TEST_ROWS, DATA_SEED + 1, &b.test);
	make_rows(&data.dev, DEV_ROWS, DATA_SEED + 2, &b.dev);
	b.train = &data.train;
	printf("test: %d rows (%d real), dev: %d rows (%d real), e.g.\n", b.test.n, b.test.n_real,
		   b.dev.n, b.dev.n_real);
	for (int i = 0; i < 4; i++)
		printf("  %-8s  %s\n", b.test.examples[i].label, b.test.examples[i].input);
	printf("batch %d, lr of {", b.batch);
	for (int k = 0; k < n_lrs; k++)
		printf("%s%.0e", k ? ", " : "", lrs[k]);
	printf("} by dev accuracy with seed 1, seeds 1..%d, %d thread(s)\n", n_seeds,
		   env_int("THREADS", 1));
	fflush(stdout);

	for (int i = 0; i < 2; i++)
		bench_size(&b, sizes[i], epochs[i], n_seeds, lrs, n_lrs);

	printf("\ntotal %.0f s\n", now() - started);
	rows_free(&b.test);
	rows_free(&b.dev);
	list_free(&data.train);
	list_free(&data.dev);
	list_free(&data.test);
	tok_free(b.tokenizer);
	stories_free(&b.files);
	return 0;
}
