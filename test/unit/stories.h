/*
 * stories.h - stories260K (test/data/stories260K), the one real pretrained
 * model here, loaded as a student to fine-tune (or as a checkpoint), for
 * the unit tests that need a base and for bench/learning.c.
 */
#ifndef DISTILL_UNIT_STORIES_H
#define DISTILL_UNIT_STORIES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/student.h"
#include "core/student_internal.h"
#include "core/tokenizer_pretrained.h"

#define STORIES_BIN "test/data/stories260K/stories260K.bin"
#define STORIES_TOK "test/data/stories260K/tok512.bin"

typedef struct StoriesFiles
{
	void	   *bin;
	size_t		bin_len;
	void	   *tok;
	size_t		tok_len;
} StoriesFiles;

static inline void *
stories_read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	void	   *data = NULL;
	long		size;

	*len = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
		fseek(f, 0, SEEK_SET) == 0 && (data = malloc(size)) != NULL &&
		fread(data, 1, size, f) == (size_t) size)
		*len = size;
	fclose(f);
	return data;
}

static inline const void *
stories_open_file(void *ctx, const char *name, bool required, size_t *len,
				  CoreError *err)
{
	StoriesFiles *files = ctx;

	(void) required;
	(void) err;
	if (strcmp(name, "tokenizer") == 0)
	{
		*len = files->tok_len;
		return files->tok;
	}
	*len = files->bin_len;
	return files->bin;
}

/* Both files, read whole; false, with a message, when one cannot be. */
static inline bool
stories_read(StoriesFiles *files)
{
	files->bin = stories_read_file(STORIES_BIN, &files->bin_len);
	files->tok = stories_read_file(STORIES_TOK, &files->tok_len);
	if (files->bin != NULL && files->tok != NULL)
		return true;
	fprintf(stderr, "cannot read %s or %s (run from the repository root)\n",
			STORIES_BIN, STORIES_TOK);
	return false;
}

static inline void
stories_free(StoriesFiles *files)
{
	free(files->bin);
	free(files->tok);
}

/* The checkpoint of the files read, its context cut to max_seq (0: whole). */
static inline Checkpoint *
stories_checkpoint(StoriesFiles *files, int max_seq, CoreError *err)
{
	CheckpointFiles cf = {files, stories_open_file, NULL};

	return checkpoint_read(CHECKPOINT_LLAMA2C, &cf, max_seq, NULL, err);
}

/* stories260K from the files read as an imported student, or NULL (with a message). */
static inline Student *
stories_student(StoriesFiles *files)
{
	CoreError	err;
	Checkpoint *ckpt = stories_checkpoint(files, 0, &err);
	Tokenizer  *tok;
	Student    *s = NULL;

	if (ckpt == NULL)
	{
		fprintf(stderr, "stories260K: %s\n", err.message);
		return NULL;
	}
	if ((tok = tok_from_source(&ckpt->tokenizer, &err)) == NULL)
		fprintf(stderr, "stories260K's tokenizer: %s\n", err.message);
	else if ((s = student_from_checkpoint(tok, ckpt->model, &err)) == NULL)
		fprintf(stderr, "stories260K as a student: %s\n", err.message);
	else
		ckpt->model = NULL;		/* the student's now */
	checkpoint_free(ckpt);
	return s;
}

/* stories260K as an imported student, or NULL (with a message). */
static inline Student *
load_base(void)
{
	StoriesFiles files = {0};
	Student    *s = stories_read(&files) ? stories_student(&files) : NULL;

	stories_free(&files);
	return s;
}

#endif
