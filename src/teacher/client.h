/*
 * client.h - concurrent requests to a teacher LLM over HTTP.
 *
 * A TeacherPool sends prompts to an OpenAI-compatible Chat Completions
 * server or to Ollama's /api/chat through the libcurl multi interface, with
 * at most `concurrency` requests in flight.  Failed attempts that may
 * succeed later (connection errors, timeouts, HTTP 429 and 5xx, a reply that
 * is not the JSON we expect) are retried with exponential backoff and full
 * jitter, honouring Retry-After (up to a cap), up to `max_retries` retries;
 * then the item is returned as failed with a short reason.
 *
 * The pool never blocks for longer than the caller asks and never calls
 * back: the caller polls teacher_pool_next() and checks for interrupts in
 * between, so a cancelled statement stops promptly.  Plain C; no
 * PostgreSQL headers.
 */
#ifndef DISTILL_TEACHER_CLIENT_H
#define DISTILL_TEACHER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Waits before a retry: the backoff grows to at most TEACHER_BACKOFF_MAX_MS;
 * a server's Retry-After is honoured up to TEACHER_RETRY_AFTER_MAX_MS, so
 * that no server can park an item for longer.
 */
#define TEACHER_BACKOFF_MAX_MS		30000
#define TEACHER_RETRY_AFTER_MAX_MS	(5 * 60 * 1000)

/*
 * A reply body may hold TEACHER_REPLY_MIN_BYTES, or TEACHER_REPLY_TOKEN_BYTES
 * per max_tokens token when that is more; a larger one fails its item.  It
 * bounds the memory of a pool to about concurrency times that.
 */
#define TEACHER_REPLY_MIN_BYTES		(1024 * 1024)
#define TEACHER_REPLY_TOKEN_BYTES	128

typedef enum TeacherApi
{
	TEACHER_API_OPENAI,			/* POST <endpoint>/chat/completions */
	TEACHER_API_OLLAMA			/* POST <endpoint>/api/chat, "stream": false */
} TeacherApi;

typedef struct TeacherConfig
{
	const char *endpoint;		/* base URL; a trailing '/' is ignored */
	const char *model;
	TeacherApi	api;
	const char *api_key;		/* sent as "Authorization: Bearer"; NULL = none */
	double		temperature;
	int			max_tokens;
	int			timeout_ms;		/* whole-request timeout of one attempt */
	int			concurrency;	/* requests in flight at most */
	int			max_retries;	/* retries after the first attempt */
	int			retry_base_ms;	/* first backoff; doubles per retry, capped */
} TeacherConfig;

typedef struct TeacherResult
{
	size_t		tag;			/* the caller's tag given to submit */
	bool		ok;
	const char *content;		/* assistant text when ok, else NULL; as the
								 * server sent it: may hold NULs and invalid
								 * UTF-8, which the caller must check */
	size_t		content_len;	/* its bytes */
	const char *error;			/* short reason when !ok, else NULL; valid
								 * UTF-8, never holding the API key or a
								 * piece of it (protocol.h) */
	long		http_status;	/* of the last attempt; 0 when there was no
								 * HTTP response (connect error, timeout) */
	int			attempts;		/* 1 + retries made */
	double		latency_ms;		/* of the last attempt */
	int			prompt_tokens;	/* as reported by the server, -1 unknown */
	int			completion_tokens;
} TeacherResult;

typedef struct TeacherPool TeacherPool;

/*
 * Create a pool.  Returns NULL and writes a message to errbuf when the
 * configuration cannot be used (for instance libcurl failed to start).
 */
extern TeacherPool *teacher_pool_create(const TeacherConfig *config,
										char *errbuf, size_t errlen);

/*
 * Queue one prompt; the pool copies it.  Requests start in submit order.
 * Returns false, queueing nothing, only when out of memory.
 */
extern bool teacher_pool_submit(TeacherPool *pool, size_t tag,
								const char *prompt);

/*
 * Queue an item that fails at once with the given reason, sending nothing:
 * for an input the caller cannot send.  It comes back from
 * teacher_pool_next() like any other, with 0 attempts.  Returns false only
 * when out of memory.
 */
extern bool teacher_pool_refuse(TeacherPool *pool, size_t tag,
								const char *reason);

/*
 * Wait at most wait_ms for an item to finish (succeed, or fail for good).
 * Returns it, or NULL when none finished in time.  The result and its
 * strings stay valid until the next call on the pool.
 */
extern const TeacherResult *teacher_pool_next(TeacherPool *pool, int wait_ms);

/* Items submitted and not yet returned by teacher_pool_next(). */
extern size_t teacher_pool_pending(const TeacherPool *pool);

/* Abort whatever is in flight and free everything.  NULL is allowed. */
extern void teacher_pool_destroy(TeacherPool *pool);

/*
 * The wait before retry number retry_index (0 for the first), in ms: full
 * jitter, jitter in [0, 1] times min(TEACHER_BACKOFF_MAX_MS, retry_base_ms *
 * 2^retry_index), but no sooner than the server's Retry-After, itself
 * capped at TEACHER_RETRY_AFTER_MAX_MS.
 */
extern double teacher_retry_delay_ms(int retry_base_ms, int retry_index,
									 double retry_after_ms, double jitter);

/* The largest reply body accepted for a max_tokens (<= 0: server default). */
extern size_t teacher_reply_max_bytes(int max_tokens);

#endif
