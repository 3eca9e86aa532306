/*
 * protocol.h - the JSON spoken with a teacher server, apart from transport.
 *
 * Builds request URLs and bodies for OpenAI Chat Completions and Ollama's
 * /api/chat, reads the assistant text and token counts out of a reply, and
 * turns error bodies and other server-provided text into a short, safe
 * reason: one line, valid UTF-8, bounded length, the API key (and any
 * piece of it) replaced by "***".  Plain C with json-c; no PostgreSQL
 * headers, no network.
 */
#ifndef DISTILL_TEACHER_PROTOCOL_H
#define DISTILL_TEACHER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include "teacher/client.h"

/* The longest server text kept in an error reason, in bytes. */
#define TEACHER_SERVER_TEXT_MAX 200

/*
 * The shortest piece of an API key scrubbed from server text (a shorter
 * key is scrubbed only whole).
 */
#define TEACHER_SECRET_PIECE_MIN 8

typedef struct TeacherReply
{
	char	   *content;		/* malloc'd assistant text, NUL-terminated */
	size_t		content_len;	/* its bytes, which may include NULs */
	int			prompt_tokens;	/* -1 when the server did not say */
	int			completion_tokens;
} TeacherReply;

/*
 * The URL to POST to: <endpoint>/chat/completions (OpenAI) or
 * <endpoint>/api/chat (Ollama), trailing slashes of endpoint ignored.
 * Returns a malloc'd string, or NULL when out of memory.
 */
extern char *teacher_request_url(TeacherApi api, const char *endpoint);

/*
 * The JSON request body for one user prompt.  max_tokens <= 0 leaves the
 * server's default.  Returns a malloc'd string, or NULL when out of memory.
 */
extern char *teacher_request_body(TeacherApi api, const char *model,
								  const char *prompt, double temperature,
								  int max_tokens);

/*
 * Parse the body of a 2xx reply.  On success fills *reply (the caller frees
 * reply->content) and returns true.  Otherwise returns false and writes what
 * is wrong with the body to errbuf, any server text in it cleaned as by
 * teacher_clean_text() with secret; a retry may get a better reply.
 *
 * The content is the bytes the JSON string decodes to, unchecked: it may
 * hold NULs (from \u0000) and invalid UTF-8, which the caller must check.
 *
 * Ollama replies may be a single object or an NDJSON stream, whose
 * message.content pieces are concatenated.
 */
extern bool teacher_parse_reply(TeacherApi api, const char *body, size_t len,
								const char *secret, TeacherReply *reply,
								char *errbuf, size_t errlen);

/*
 * The reason given by an error body: error.message (OpenAI), error (Ollama),
 * or a top-level message or detail string; the start of the body itself when
 * it is not such JSON.  Written to buf cleaned as by teacher_clean_text().
 */
extern void teacher_error_text(const char *body, size_t len,
							   const char *secret, char *buf, size_t buflen);

/*
 * Copy len bytes of server-provided text to buf for use in an error reason:
 * every occurrence of secret (when non-empty), and of any piece of it at
 * least TEACHER_SECRET_PIECE_MIN bytes long, becomes "***", before anything
 * is cut; control characters and runs of white space become one space,
 * invalid UTF-8 bytes become '?', and text beyond TEACHER_SERVER_TEXT_MAX
 * bytes (or what buf holds) is cut at a character boundary and marked with
 * "...".
 */
extern void teacher_clean_text(const char *text, size_t len,
							   const char *secret, char *buf, size_t buflen);

#endif
