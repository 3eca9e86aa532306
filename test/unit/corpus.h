/*
 * corpus.h - a text file as lines in one buffer, for the tokenizer's unit
 * tests and bench/units.
 */
#ifndef DISTILL_TEST_CORPUS_H
#define DISTILL_TEST_CORPUS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Corpus
{
	char	   *buf;
	const char **texts;
	size_t	   *lens;
	size_t		n;
	size_t		bytes;			/* sum of lens */
} Corpus;

/* Cut c->buf (bytes long, owned by c) into lines. */
static inline void
corpus_split_lines(Corpus *c, size_t bytes)
{
	size_t		cap = 1024;

	c->texts = malloc(cap * sizeof(char *));
	c->lens = malloc(cap * sizeof(size_t));
	c->n = 0;
	c->bytes = 0;
	for (size_t i = 0; i < bytes;)
	{
		char	   *nl = memchr(c->buf + i, '\n', bytes - i);
		size_t		end = nl ? (size_t) (nl - c->buf) : bytes;

		if (c->n == cap)
		{
			cap *= 2;
			c->texts = realloc(c->texts, cap * sizeof(char *));
			c->lens = realloc(c->lens, cap * sizeof(size_t));
		}
		c->texts[c->n] = c->buf + i;
		c->lens[c->n++] = end - i;
		c->bytes += end - i;
		i = end + 1;
	}
}

/* The lines of the file at path; false when it cannot be read. */
static inline bool
corpus_load_file(Corpus *c, const char *path)
{
	FILE	   *f = fopen(path, "rb");
	long		size;

	if (f == NULL)
		return false;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		return false;
	}
	c->buf = malloc(size > 0 ? size : 1);
	if (fread(c->buf, 1, size, f) != (size_t) size)
	{
		fclose(f);
		free(c->buf);
		return false;
	}
	fclose(f);
	corpus_split_lines(c, (size_t) size);
	return true;
}

static inline void
corpus_free(Corpus *c)
{
	free(c->buf);
	free(c->texts);
	free(c->lens);
}

#endif
