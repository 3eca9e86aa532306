/*
 * client.c - the teacher HTTP client pool, on the libcurl multi interface.
 *
 * Each pool owns a multi handle and `concurrency` slots.  A slot holds one
 * easy handle, configured once and re-added for every attempt it carries, so
 * keep-alive connections in the multi handle's cache serve request after
 * request.  An item (one prompt) lives in exactly one place at a time: the
 * ready queue (submitted, never started), a slot (in flight), the waiting
 * heap (a retry not yet due, holding no slot), the finished queue, or
 * `returned` (handed to the caller, freed at the next call).
 *
 * Everything happens inside teacher_pool_next(): no threads of our own, no
 * signals (CURLOPT_NOSIGNAL), no callbacks into the caller, so it is safe in
 * a PostgreSQL backend.  See client.h for the contract.
 */
#include "teacher/client.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/util.h"
#include "teacher/protocol.h"

#define CONNECT_TIMEOUT_MAX_MS 10000
#define REASON_MAX			(TEACHER_SERVER_TEXT_MAX + 64)

typedef struct Item
{
	struct Item *next;			/* in the ready or finished queue */
	char	   *body;			/* request JSON, kept for retries */
	char	   *content;		/* owned strings behind result */
	char	   *error;
	double		retry_at;		/* monotonic ms, while waiting to retry */
	TeacherResult result;		/* outcome of the last attempt */
} Item;

typedef struct ItemQueue
{
	Item	   *head;
	Item	   *tail;
} ItemQueue;

typedef struct Slot
{
	CURL	   *easy;			/* created on first use, then reused */
	Item	   *item;			/* in flight here, or NULL when free */
	double		started;		/* monotonic ms when the attempt began */
	TextBuffer	reply;			/* reply body of the current attempt */
	size_t		reply_max;		/* the pool's cap on a reply body */
	bool		reply_too_large;
	char		curl_error[CURL_ERROR_SIZE];
} Slot;

struct TeacherPool
{
	TeacherApi	api;
	char	   *url;
	char	   *model;
	char	   *api_key;		/* NULL when none; scrubbed from errors */
	double		temperature;
	int			max_tokens;
	int			timeout_ms;
	int			connect_timeout_ms;
	int			max_retries;
	int			retry_base_ms;
	struct curl_slist *headers; /* shared by all easy handles */
	CURLM	   *multi;
	Slot	   *slots;
	int			nslots;
	int			in_flight;
	ItemQueue	ready;			/* never started, in submit order */
	Item	  **waiting;		/* min-heap on retry_at */
	size_t		nwaiting;
	size_t		waiting_cap;
	ItemQueue	finished;		/* done for good, not yet returned */
	Item	   *returned;		/* what the last teacher_pool_next gave */
	size_t		pending;		/* submitted and not yet returned */
	uint64_t	rng_state;
};

/* libcurl's global state is set up on first use, never at load time. */
static bool curl_started = false;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/*
 * Uniform in [0, 1], from the pool's own SplitMix64 stream, so we never
 * touch rand()'s state.
 */
static double
random_unit(TeacherPool *pool)
{
	return (splitmix64_next(&pool->rng_state) >> 11) / (double) ((UINT64_C(1) << 53) - 1);
}

static void
seed_random(TeacherPool *pool)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	pool->rng_state = ((uint64_t) ts.tv_sec * 1000000000u + ts.tv_nsec) ^
		((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) pool;
}

/* ---- item queues and the waiting heap ---- */

static void
queue_push(ItemQueue *queue, Item *item)
{
	item->next = NULL;
	if (queue->tail)
		queue->tail->next = item;
	else
		queue->head = item;
	queue->tail = item;
}

static Item *
queue_pop(ItemQueue *queue)
{
	Item	   *item = queue->head;

	if (item)
	{
		queue->head = item->next;
		if (queue->head == NULL)
			queue->tail = NULL;
	}
	return item;
}

static void
heap_swap(Item **heap, size_t a, size_t b)
{
	Item	   *tmp = heap[a];

	heap[a] = heap[b];
	heap[b] = tmp;
}

static bool
heap_push(TeacherPool *pool, Item *item)
{
	size_t		i = pool->nwaiting;

	if (pool->nwaiting == pool->waiting_cap)
	{
		size_t		cap = pool->waiting_cap ? pool->waiting_cap * 2 : 16;
		Item	  **grown = realloc(pool->waiting, cap * sizeof(Item *));

		if (grown == NULL)
			return false;
		pool->waiting = grown;
		pool->waiting_cap = cap;
	}
	pool->waiting[pool->nwaiting++] = item;
	while (i > 0 && pool->waiting[(i - 1) / 2]->retry_at > item->retry_at)
	{
		heap_swap(pool->waiting, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return true;
}

/* Remove and return the earliest retry if it is due by now, else NULL. */
static Item *
heap_pop_due(TeacherPool *pool, double now)
{
	Item	  **heap = pool->waiting;
	Item	   *top;
	size_t		i = 0;

	if (pool->nwaiting == 0 || heap[0]->retry_at > now)
		return NULL;
	top = heap[0];
	heap[0] = heap[--pool->nwaiting];
	for (;;)
	{
		size_t		least = i;
		size_t		left = 2 * i + 1;
		size_t		right = left + 1;

		if (left < pool->nwaiting && heap[left]->retry_at < heap[least]->retry_at)
			least = left;
		if (right < pool->nwaiting && heap[right]->retry_at < heap[least]->retry_at)
			least = right;
		if (least == i)
			break;
		heap_swap(heap, i, least);
		i = least;
	}
	return top;
}

static void
free_item(Item *item)
{
	if (item == NULL)
		return;
	free(item->body);
	free(item->content);
	free(item->error);
	free(item);
}

static void
free_queue(ItemQueue *queue)
{
	Item	   *item;

	while ((item = queue_pop(queue)) != NULL)
		free_item(item);
}

/* ---- outcomes of one attempt ---- */

static void set_failure(Item *item, long http_status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
set_failure(Item *item, long http_status, const char *fmt,...)
{
	char		reason[REASON_MAX];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);
	free(item->error);
	item->error = strdup(reason);
	item->result.ok = false;
	item->result.error = item->error ? item->error : "out of memory";
	item->result.http_status = http_status;
	item->result.prompt_tokens = -1;
	item->result.completion_tokens = -1;
}

static void
set_success(Item *item, long http_status, TeacherReply *reply)
{
	free(item->error);
	item->error = NULL;
	item->content = reply->content;
	item->result.ok = true;
	item->result.content = item->content;
	item->result.content_len = reply->content_len;
	item->result.error = NULL;
	item->result.http_status = http_status;
	item->result.prompt_tokens = reply->prompt_tokens;
	item->result.completion_tokens = reply->completion_tokens;
}

/*
 * Record a transfer that got no usable HTTP response.  Returns whether
 * another attempt may do better.
 */
static bool
judge_transfer_error(TeacherPool *pool, Slot *slot, CURLcode code)
{
	Item	   *item = slot->item;
	const char *curl_text = slot->curl_error[0] ? slot->curl_error
		: curl_easy_strerror(code);
	char		detail[TEACHER_SERVER_TEXT_MAX + 1];
	long		os_errno = 0;
	long		status = 0;

	teacher_clean_text(curl_text, strlen(curl_text), pool->api_key,
					   detail, sizeof(detail));
	switch (code)
	{
		case CURLE_OPERATION_TIMEDOUT:
			/*
			 * Which timeout fired, when they differ: the connect one is the
			 * shorter, and our clock is only roughly libcurl's.
			 */
			if (pool->connect_timeout_ms < pool->timeout_ms &&
				item->result.latency_ms <
				(pool->connect_timeout_ms + pool->timeout_ms) / 2.0)
				set_failure(item, 0, "connection failed: no connection after %d ms",
							pool->connect_timeout_ms);
			else
				set_failure(item, 0, "timeout after %d ms", pool->timeout_ms);
			return true;
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_SSL_CONNECT_ERROR:
			curl_easy_getinfo(slot->easy, CURLINFO_OS_ERRNO, &os_errno);
			set_failure(item, 0, "connection failed: %s",
						os_errno != 0 ? strerror((int) os_errno) : detail);
			return true;
		case CURLE_GOT_NOTHING:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_PARTIAL_FILE:
			set_failure(item, 0, "connection dropped: %s", detail);
			return true;
		case CURLE_WRITE_ERROR:
			if (!slot->reply_too_large)
			{
				set_failure(item, 0, "out of memory");
				return false;
			}
			/* The server did answer, with too much. */
			curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
			set_failure(item, status, "reply larger than %zu bytes", slot->reply_max);
			return false;
		default:
			/* Bad URL, unsupported protocol, certificate problems... */
			set_failure(item, 0, "%s", detail);
			return false;
	}
}

/*
 * Record an attempt that got an HTTP response.  Returns whether another
 * attempt may do better.
 */
static bool
judge_http_reply(TeacherPool *pool, Slot *slot, long status)
{
	Item	   *item = slot->item;
	char		text[TEACHER_SERVER_TEXT_MAX + 1];

	if (status >= 200 && status <= 299)
	{
		TeacherReply reply;
		char		what[REASON_MAX];

		/* Server text in `what` is already cleaned of the key. */
		if (teacher_parse_reply(pool->api, slot->reply.data, slot->reply.len,
								pool->api_key, &reply, what, sizeof(what)))
		{
			set_success(item, status, &reply);
			return false;
		}
		set_failure(item, status, "malformed reply: %s", what);
		return true;
	}
	teacher_error_text(slot->reply.data, slot->reply.len, pool->api_key,
					   text, sizeof(text));
	if (text[0] != '\0')
		set_failure(item, status, "HTTP %ld: %s", status, text);
	else
		set_failure(item, status, "HTTP %ld", status);
	/* 408 is the server timing us out: as transient as our own timeout. */
	return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

double
teacher_retry_delay_ms(int retry_base_ms, int retry_index,
					   double retry_after_ms, double jitter)
{
	double		ceiling = retry_base_ms;
	double		delay;

	for (int i = 0; i < retry_index && ceiling < TEACHER_BACKOFF_MAX_MS; i++)
		ceiling *= 2;
	if (ceiling > TEACHER_BACKOFF_MAX_MS)
		ceiling = TEACHER_BACKOFF_MAX_MS;
	if (retry_after_ms > TEACHER_RETRY_AFTER_MAX_MS)
		retry_after_ms = TEACHER_RETRY_AFTER_MAX_MS;
	delay = jitter * ceiling;
	return delay > retry_after_ms ? delay : retry_after_ms;
}

size_t
teacher_reply_max_bytes(int max_tokens)
{
	size_t		per_tokens = max_tokens > 0
		? (size_t) max_tokens * TEACHER_REPLY_TOKEN_BYTES : 0;

	return per_tokens > TEACHER_REPLY_MIN_BYTES ? per_tokens : TEACHER_REPLY_MIN_BYTES;
}

/* The Retry-After the server sent with this response, in ms; 0 if none. */
static double
retry_after_ms(Slot *slot)
{
	curl_off_t	seconds = 0;

	if (curl_easy_getinfo(slot->easy, CURLINFO_RETRY_AFTER, &seconds) != CURLE_OK)
		return 0;
	return seconds > 0 ? seconds * 1000.0 : 0;
}

/* An attempt has ended: decide between done and a retry, free the slot. */
static void
finish_attempt(TeacherPool *pool, Slot *slot, CURLcode code)
{
	Item	   *item = slot->item;
	long		status = 0;
	bool		retryable;
	double		wait_ms = 0;

	item->result.latency_ms = now_ms() - slot->started;
	if (code == CURLE_OK)
	{
		curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
		retryable = judge_http_reply(pool, slot, status);
		wait_ms = retry_after_ms(slot);
	}
	else
		retryable = judge_transfer_error(pool, slot, code);

	curl_multi_remove_handle(pool->multi, slot->easy);
	slot->item = NULL;
	pool->in_flight--;

	if (retryable && item->result.attempts <= pool->max_retries)
	{
		item->retry_at = now_ms() +
			teacher_retry_delay_ms(pool->retry_base_ms, item->result.attempts - 1,
								   wait_ms, random_unit(pool));
		if (heap_push(pool, item))
			return;
		/* Out of memory for the heap: give the item back as it stands. */
	}
	queue_push(&pool->finished, item);
}

/* ---- starting attempts ---- */

static size_t
collect_reply(char *data, size_t size, size_t nmemb, void *arg)
{
	Slot	   *slot = arg;
	size_t		n = size * nmemb;

	if (slot->reply.len + n > slot->reply_max)
	{
		slot->reply_too_large = true;
		return 0;
	}
	return text_buffer_append(&slot->reply, data, n) ? n : 0;
}

/* Create the slot's easy handle with everything that never changes. */
static CURL *
new_easy(TeacherPool *pool, Slot *slot)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		return NULL;
	/* We run inside a server process: no SIGALRM for DNS timeouts. */
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_URL, pool->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, pool->headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "distill");
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) pool->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
					 (long) pool->connect_timeout_ms);
	/* Answers can take minutes; keep idle NAT entries from expiring. */
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Don't wait for a stuck DNS thread when an abort removes the handle. */
	curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_reply);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, slot);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, slot->curl_error);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, slot);
	return easy;
}

static Slot *
find_free_slot(TeacherPool *pool)
{
	for (int i = 0; i < pool->nslots; i++)
		if (pool->slots[i].item == NULL)
			return &pool->slots[i];
	return NULL;
}

static void
start_attempt(TeacherPool *pool, Item *item)
{
	Slot	   *slot = find_free_slot(pool);
	CURLMcode	code;

	item->result.attempts++;
	if (slot->easy == NULL && (slot->easy = new_easy(pool, slot)) == NULL)
	{
		set_failure(item, 0, "could not start request: out of memory");
		queue_push(&pool->finished, item);
		return;
	}
	slot->reply.len = 0;
	slot->reply_too_large = false;
	slot->curl_error[0] = '\0';
	curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t) strlen(item->body));
	curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDS, item->body);
	code = curl_multi_add_handle(pool->multi, slot->easy);
	if (code != CURLM_OK)
	{
		set_failure(item, 0, "could not start request: %s",
					curl_multi_strerror(code));
		queue_push(&pool->finished, item);
		return;
	}
	slot->item = item;
	slot->started = now_ms();
	pool->in_flight++;
}

/* Fill free slots: due retries first (they are older), then new items. */
static void
start_due(TeacherPool *pool)
{
	double		now = now_ms();

	while (pool->in_flight < pool->nslots)
	{
		Item	   *item = heap_pop_due(pool, now);

		if (item == NULL)
			item = queue_pop(&pool->ready);
		if (item == NULL)
			break;
		start_attempt(pool, item);
	}
}

/* Let libcurl move the transfers along, then settle the ones that ended. */
static void
drive(TeacherPool *pool)
{
	int			running;
	int			left;
	CURLMsg    *msg;

	curl_multi_perform(pool->multi, &running);
	while ((msg = curl_multi_info_read(pool->multi, &left)) != NULL)
	{
		char	   *slot = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &slot);
		finish_attempt(pool, (Slot *) slot, msg->data.result);
	}
}

/* How long to sleep: until the deadline or the earliest retry we can start. */
static double
sleep_ms(TeacherPool *pool, double deadline)
{
	double		now = now_ms();
	double		wait = deadline - now;

	if (pool->nwaiting > 0 && pool->in_flight < pool->nslots &&
		pool->waiting[0]->retry_at - now < wait)
		wait = pool->waiting[0]->retry_at - now;
	return wait > 0 ? wait : 0;
}

/* ---- creation ---- */

static bool
check_config(const TeacherConfig *config, char *errbuf, size_t errlen)
{
	const char *problem = NULL;

	if (config->endpoint == NULL ||
		(strncasecmp(config->endpoint, "http://", 7) != 0 &&
		 strncasecmp(config->endpoint, "https://", 8) != 0))
		problem = "the teacher endpoint must be an http:// or https:// URL";
	else if (config->model == NULL || config->model[0] == '\0')
		problem = "the teacher model must be given";
	else if (config->concurrency < 1)
		problem = "the teacher concurrency must be at least 1";
	else if (config->timeout_ms < 1)
		problem = "the teacher timeout must be at least 1 ms";
	else if (config->max_retries < 0 || config->retry_base_ms < 0)
		problem = "the teacher retry settings must not be negative";
	else if (config->api_key != NULL &&
			 strpbrk(config->api_key, "\r\n") != NULL)
		problem = "the teacher API key must not contain line breaks";
	if (problem != NULL)
		snprintf(errbuf, errlen, "%s", problem);
	return problem == NULL;
}

static bool
start_curl(char *errbuf, size_t errlen)
{
	CURLcode	code;

	if (curl_started)
		return true;
	code = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (code != CURLE_OK)
	{
		snprintf(errbuf, errlen, "could not initialize libcurl: %s",
				 curl_easy_strerror(code));
		return false;
	}
	curl_started = true;
	return true;
}

static bool
add_header(struct curl_slist **headers, const char *line)
{
	struct curl_slist *more = curl_slist_append(*headers, line);

	if (more == NULL)
		return false;
	*headers = more;
	return true;
}

/* Content-Type, Authorization when there is a key, and no Expect. */
static bool
build_headers(TeacherPool *pool)
{
	char	   *auth;
	bool		ok;

	/*
	 * libcurl would send "Expect: 100-continue" with long prompts, then wait
	 * up to a second for servers that never answer it.
	 */
	if (!add_header(&pool->headers, "Content-Type: application/json") ||
		!add_header(&pool->headers, "Expect:"))
		return false;
	if (pool->api_key == NULL)
		return true;
	auth = malloc(strlen(pool->api_key) + sizeof("Authorization: Bearer "));
	if (auth == NULL)
		return false;
	sprintf(auth, "Authorization: Bearer %s", pool->api_key);
	ok = add_header(&pool->headers, auth);
	free(auth);
	return ok;
}

/* Copy the configuration and allocate everything; false when out of memory. */
static bool
fill_pool(TeacherPool *pool, const TeacherConfig *config)
{
	pool->api = config->api;
	pool->temperature = config->temperature;
	pool->max_tokens = config->max_tokens;
	pool->timeout_ms = config->timeout_ms;
	pool->connect_timeout_ms = config->timeout_ms < CONNECT_TIMEOUT_MAX_MS
		? config->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
	pool->max_retries = config->max_retries;
	pool->retry_base_ms = config->retry_base_ms;
	pool->nslots = config->concurrency;
	seed_random(pool);

	pool->url = teacher_request_url(config->api, config->endpoint);
	pool->model = strdup(config->model);
	/* An empty key is no key: "Bearer " alone would only confuse servers. */
	if (config->api_key != NULL && config->api_key[0] != '\0' &&
		(pool->api_key = strdup(config->api_key)) == NULL)
		return false;
	pool->slots = calloc(pool->nslots, sizeof(Slot));
	pool->multi = curl_multi_init();
	if (pool->url == NULL || pool->model == NULL || pool->slots == NULL ||
		pool->multi == NULL || !build_headers(pool))
		return false;
	for (int i = 0; i < pool->nslots; i++)
		pool->slots[i].reply_max = teacher_reply_max_bytes(pool->max_tokens);
	/* One connection per request in flight, all kept alive for reuse. */
	curl_multi_setopt(pool->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
					  (long) pool->nslots);
	curl_multi_setopt(pool->multi, CURLMOPT_MAXCONNECTS, (long) pool->nslots);
	return true;
}

/* ---- the API ---- */

TeacherPool *
teacher_pool_create(const TeacherConfig *config, char *errbuf, size_t errlen)
{
	TeacherPool *pool;

	if (!check_config(config, errbuf, errlen) || !start_curl(errbuf, errlen))
		return NULL;
	pool = calloc(1, sizeof(TeacherPool));
	if (pool == NULL || !fill_pool(pool, config))
	{
		teacher_pool_destroy(pool);
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	return pool;
}

bool
teacher_pool_submit(TeacherPool *pool, size_t tag, const char *prompt)
{
	Item	   *item = calloc(1, sizeof(Item));

	if (item == NULL)
		return false;
	item->body = teacher_request_body(pool->api, pool->model, prompt,
									  pool->temperature, pool->max_tokens);
	if (item->body == NULL)
	{
		free(item);
		return false;
	}
	item->result.tag = tag;
	item->result.prompt_tokens = -1;
	item->result.completion_tokens = -1;
	queue_push(&pool->ready, item);
	pool->pending++;
	return true;
}

bool
teacher_pool_refuse(TeacherPool *pool, size_t tag, const char *reason)
{
	Item	   *item = calloc(1, sizeof(Item));

	if (item == NULL)
		return false;
	item->result.tag = tag;
	set_failure(item, 0, "%s", reason);
	if (item->error == NULL)
	{
		free(item);
		return false;
	}
	queue_push(&pool->finished, item);
	pool->pending++;
	return true;
}

const TeacherResult *
teacher_pool_next(TeacherPool *pool, int wait_ms)
{
	double		deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
	double		wait;

	free_item(pool->returned);
	pool->returned = NULL;
	for (;;)
	{
		start_due(pool);
		drive(pool);
		if (pool->finished.head != NULL || pool->pending == 0)
			break;
		if (now_ms() >= deadline)
			break;
		wait = sleep_ms(pool, deadline);
		/* Also returns early when a transfer needs attention. */
		curl_multi_poll(pool->multi, NULL, 0, (int) ceil(wait), NULL);
	}
	/* Refill the slots just freed, so they work while the caller does. */
	start_due(pool);
	pool->returned = queue_pop(&pool->finished);
	if (pool->returned == NULL)
		return NULL;
	pool->pending--;
	return &pool->returned->result;
}

size_t
teacher_pool_pending(const TeacherPool *pool)
{
	return pool->pending;
}

void
teacher_pool_destroy(TeacherPool *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; pool->slots != NULL && i < pool->nslots; i++)
	{
		Slot	   *slot = &pool->slots[i];

		if (slot->item != NULL)
		{
			curl_multi_remove_handle(pool->multi, slot->easy);
			free_item(slot->item);
		}
		if (slot->easy != NULL)
			curl_easy_cleanup(slot->easy);
		free(slot->reply.data);
	}
	if (pool->multi != NULL)
		curl_multi_cleanup(pool->multi);
	curl_slist_free_all(pool->headers);
	free_queue(&pool->ready);
	free_queue(&pool->finished);
	for (size_t i = 0; i < pool->nwaiting; i++)
		free_item(pool->waiting[i]);
	free(pool->waiting);
	free_item(pool->returned);
	free(pool->slots);
	free(pool->url);
	free(pool->model);
	free(pool->api_key);
	free(pool);
}
