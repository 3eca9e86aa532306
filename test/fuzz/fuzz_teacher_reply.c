/*
 * fuzz_teacher_reply.c - whatever bytes a teacher server sends back
 * (teacher/protocol.h).
 *
 * The input is a response body.  It is parsed as an OpenAI reply, as an
 * Ollama reply (one object or an NDJSON stream) and as an error body, and
 * cleaned as error text, each under several secrets and buffer sizes.
 * Besides the sanitizers, the checks are protocol.h's promises: a parsed
 * reply comes back byte for byte and its escaped form (utf8.h) is storable
 * text; error text is one line of valid UTF-8 within its bounds, without
 * the secret or any 8 bytes of it.
 */
#include "fuzz.h"

#include "teacher/protocol.h"
#include "teacher/utf8.h"

/*
 * Secrets as API keys look (no white space, control bytes or '?', which
 * cleaning could turn into a copy of them), one that overlaps itself, and
 * none.
 */
static const char *const secrets[] = {"sk-test-123", "aa", "", NULL};

/* Output sizes: nothing, too small for "...", small, the limit, larger. */
static const size_t buffer_sizes[] = {0, 1, 3, 4, 16, TEACHER_SERVER_TEXT_MAX,
TEACHER_SERVER_TEXT_MAX + 1, 512};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void
check_clean(const char *out, size_t buflen, const char *secret)
{
	size_t		len = strlen(out);

	FUZZ_CHECK(len < buflen && len <= TEACHER_SERVER_TEXT_MAX,
			   "%zu bytes in a buffer of %zu", len, buflen);
	FUZZ_CHECK(fuzz_utf8_valid(out, len), "invalid UTF-8: \"%s\"", out);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char) out[i] >= 0x20 && out[i] != 0x7F,
				   "control byte 0x%02x at %zu", (unsigned char) out[i], i);
	FUZZ_CHECK(len == 0 || (out[0] != ' ' && out[len - 1] != ' '),
			   "white space at an end: \"%s\"", out);
	FUZZ_CHECK(strstr(out, "  ") == NULL, "a run of spaces: \"%s\"", out);
	if (secret != NULL && secret[0] != '\0')
		FUZZ_CHECK(strstr(out, secret) == NULL,
				   "the secret is in \"%s\"", out);
}

/* Clean body into a buffer of exactly buflen bytes and check the result. */
static void
clean_into(const char *body, size_t len, const char *secret, size_t buflen,
		   bool as_error_body)
{
	/* exactly buflen bytes, so a write past them is caught */
	char	   *out = malloc(buflen > 0 ? buflen : 1);

	if (out == NULL)
		abort();
	if (as_error_body)
		teacher_error_text(body, len, secret, out, buflen);
	else
		teacher_clean_text(body, len, secret, out, buflen);
	if (buflen > 0)
		check_clean(out, buflen, secret);
	free(out);
}

/*
 * Every buffer size for the cleaning itself; two for error bodies, whose
 * message goes through the same cleaning after the JSON is parsed.
 */
static void
clean_everywhere(const char *body, size_t len)
{
	for (size_t s = 0; s < N_ELEMS(secrets); s++)
	{
		for (size_t b = 0; b < N_ELEMS(buffer_sizes); b++)
			clean_into(body, len, secrets[s], buffer_sizes[b], false);
		clean_into(body, len, secrets[s], 4, true);
		clean_into(body, len, secrets[s], 512, true);
	}
}

/* The key the replies are parsed with: no 8 bytes of it may reach a reason. */
static const char REPLY_SECRET[] = "sk-fuzz-0123456789abcdef";

static bool
holds_secret_piece(const char *text)
{
	char		piece[9];

	for (size_t i = 0; i + 8 <= strlen(REPLY_SECRET); i++)
	{
		memcpy(piece, &REPLY_SECRET[i], 8);
		piece[8] = '\0';
		if (strstr(text, piece) != NULL)
			return true;
	}
	return false;
}

/*
 * The content comes back byte for byte, whatever it holds (the glue decides
 * what the database can store); its escaped form is always storable text.
 */
static void
check_content(const TeacherReply *reply)
{
	char	   *escaped;

	FUZZ_CHECK(reply->content != NULL, "a reply without content");
	FUZZ_CHECK(reply->content[reply->content_len] == '\0', "content not terminated");
	escaped = utf8_escape(reply->content, reply->content_len, NULL, NULL);
	FUZZ_CHECK(escaped != NULL, "out of memory escaping %zu bytes", reply->content_len);
	FUZZ_CHECK(fuzz_utf8_valid(escaped, strlen(escaped)) &&
			   utf8_find_flaw(escaped, strlen(escaped), NULL, NULL).kind == UTF8_FLAW_NONE,
			   "the escaped content is not storable: \"%s\"", escaped);
	free(escaped);
}

static void
parse_as(TeacherApi api, const char *body, size_t len)
{
	TeacherReply reply;
	char		err[256];

	err[0] = '\0';
	if (teacher_parse_reply(api, body, len, REPLY_SECRET, &reply, err, sizeof(err)))
	{
		check_content(&reply);
		FUZZ_CHECK(reply.prompt_tokens >= -1 && reply.completion_tokens >= -1,
				   "token counts %d and %d", reply.prompt_tokens,
				   reply.completion_tokens);
		free(reply.content);
	}
	else
	{
		FUZZ_CHECK(reply.content == NULL, "content left after a failure");
		FUZZ_CHECK(err[0] != '\0', "a failure without a reason");
		FUZZ_CHECK(fuzz_utf8_valid(err, strlen(err)),
				   "the reason is not valid UTF-8: \"%s\"", err);
		FUZZ_CHECK(!holds_secret_piece(err), "the reason holds the key: \"%s\"", err);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exactly size bytes and no NUL after them: the body as received */
	char	   *body = fuzz_copy(data, size, false);

	parse_as(TEACHER_API_OPENAI, body, size);
	parse_as(TEACHER_API_OLLAMA, body, size);
	clean_everywhere(body, size);
	free(body);
	return 0;
}
