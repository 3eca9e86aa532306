/*
 * tokenizer_pairmap.c - the open-addressing map from a pair of token ids
 * to an int32 (a merge's rank, a pair's index in training), and the
 * memory budget that training's arrays are counted in.
 */
#include <stdlib.h>

#include "core/tokenizer_internal.h"

/*
 * realloc() for memory counted in b (NULL = not counted): p held old_size
 * bytes.  NULL, with p untouched, when memory runs out or the new size
 * would pass the limit (then b->exceeded says so).
 */
void *
budget_realloc(Budget *b, void *p, size_t old_size, size_t new_size)
{
	void	   *q;

	if (b != NULL && new_size > old_size &&
		new_size - old_size > b->limit - b->used)
	{
		b->exceeded = true;
		return NULL;
	}
	if ((q = realloc(p, new_size)) == NULL)
		return NULL;
	if (b != NULL)
		b->used = b->used - old_size + new_size;
	return q;
}

void
budget_free(Budget *b, void *p, size_t size)
{
	free(p);
	if (b != NULL && p != NULL)
		b->used -= size;
}

/* Arrays for capacity entries, all empty; m->budget is kept. */
static bool
pairmap_alloc(PairMap *m, uint32_t capacity)
{
	m->keys = budget_realloc(m->budget, NULL, 0, sizeof(uint64_t) * capacity);
	m->values = m->keys == NULL ? NULL :
		budget_realloc(m->budget, NULL, 0, sizeof(int32_t) * capacity);
	if (m->values == NULL)
	{
		budget_free(m->budget, m->keys, sizeof(uint64_t) * capacity);
		m->keys = NULL;
		return false;
	}
	for (uint32_t i = 0; i < capacity; i++)
		m->keys[i] = MAP_EMPTY;
	m->mask = capacity - 1;
	m->count = 0;
	return true;
}

/*
 * An empty map with room for `expected` entries before it grows, its
 * arrays counted in budget (may be NULL).
 */
bool
pairmap_init(PairMap *m, size_t expected, Budget *budget)
{
	uint32_t	capacity = 16;

	while (capacity < 2 * expected)
		capacity *= 2;
	m->budget = budget;
	return pairmap_alloc(m, capacity);
}

void
pairmap_free(PairMap *m)
{
	if (m->keys == NULL)
		return;
	budget_free(m->budget, m->keys, sizeof(uint64_t) * (m->mask + 1));
	budget_free(m->budget, m->values, sizeof(int32_t) * (m->mask + 1));
	m->keys = NULL;
	m->values = NULL;
}

size_t
pairmap_bytes(const PairMap *m)
{
	return m->keys == NULL ? 0 : (sizeof(uint64_t) + sizeof(int32_t)) * (m->mask + 1);
}

/* Store a key that is not in the map yet, doubling it at half load. */
bool
pairmap_put(PairMap *m, uint64_t key, int32_t value)
{
	uint32_t	i;

	if (2 * (m->count + 1) > m->mask + 1)
	{
		PairMap		bigger = {.budget = m->budget};

		if (!pairmap_alloc(&bigger, 2 * (m->mask + 1)))
			return false;
		for (uint32_t j = 0; j <= m->mask; j++)
			if (m->keys[j] != MAP_EMPTY)
			{
				i = pairmap_slot(&bigger, m->keys[j]);
				bigger.keys[i] = m->keys[j];
				bigger.values[i] = m->values[j];
			}
		bigger.count = m->count;
		pairmap_free(m);
		*m = bigger;
	}
	i = pairmap_slot(m, key);
	m->keys[i] = key;
	m->values[i] = value;
	m->count++;
	return true;
}
