/*
 * test_protocol.c - request bodies, reply parsing and error text (no network).
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "teacher/protocol.h"
#include "unit.h"

#define PROMPT "Q: \"Quoted\" / slash\n\tand caf\xC3\xA9 \xE2\x9C\x93\nA:"
/* A key as long as real ones (44 bytes). */
#define LONG_KEY "sk-proj-Q7xv2LmN9pR4tY8wK3zA6bC1dE5fG0hJ2kM"

/* obj[path[0]][path[1]]... through objects only; NULL when missing. */
static json_object *
lookup(json_object *obj, const char *key1, const char *key2)
{
	json_object *value = NULL;

	if (!json_object_object_get_ex(obj, key1, &value))
		return NULL;
	if (key2 != NULL && !json_object_object_get_ex(value, key2, &value))
		return NULL;
	return value;
}

/* Whether s is whole "\xC3\xA9" pairs followed by "...". */
static bool
cut_between_characters(const char *s)
{
	size_t		len = strlen(s);

	if (len < 3 || strcmp(s + len - 3, "...") != 0 || (len - 3) % 2 != 0)
		return false;
	for (size_t i = 0; i < len - 3; i += 2)
		if (memcmp(s + i, "\xC3\xA9", 2) != 0)
			return false;
	return true;
}

static void
test_urls(void)
{
	char	   *url;

	url = teacher_request_url(TEACHER_API_OPENAI, "http://h:1/v1");
	CHECK(strcmp(url, "http://h:1/v1/chat/completions") == 0);
	free(url);
	url = teacher_request_url(TEACHER_API_OPENAI, "https://api.example.com/v1//");
	CHECK(strcmp(url, "https://api.example.com/v1/chat/completions") == 0);
	free(url);
	url = teacher_request_url(TEACHER_API_OLLAMA, "http://localhost:11434/");
	CHECK(strcmp(url, "http://localhost:11434/api/chat") == 0);
	free(url);
}

static void
test_openai_body(void)
{
	char	   *body = teacher_request_body(TEACHER_API_OPENAI, "gpt-x", PROMPT,
											0.25, 128);
	json_object *root = json_tokener_parse(body);
	json_object *messages = lookup(root, "messages", NULL);
	json_object *message = json_object_array_get_idx(messages, 0);

	CHECKF(root != NULL, "body: %s", body);
	CHECK(strcmp(json_object_get_string(lookup(root, "model", NULL)), "gpt-x") == 0);
	CHECK(json_object_array_length(messages) == 1);
	CHECK(strcmp(json_object_get_string(lookup(message, "role", NULL)), "user") == 0);
	CHECK(strcmp(json_object_get_string(lookup(message, "content", NULL)), PROMPT) == 0);
	CHECK(json_object_get_double(lookup(root, "temperature", NULL)) == 0.25);
	CHECK(json_object_get_int(lookup(root, "max_tokens", NULL)) == 128);
	CHECK(lookup(root, "stream", NULL) == NULL);
	CHECK(strchr(body, '\n') == NULL);
	json_object_put(root);
	free(body);

	body = teacher_request_body(TEACHER_API_OPENAI, "m", "p", 0.0, 0);
	root = json_tokener_parse(body);
	CHECKF(lookup(root, "max_tokens", NULL) == NULL, "max_tokens 0 is omitted: %s", body);
	json_object_put(root);
	free(body);
}

static void
test_ollama_body(void)
{
	char	   *body = teacher_request_body(TEACHER_API_OLLAMA, "llama3", PROMPT,
											0.7, 256);
	json_object *root = json_tokener_parse(body);
	json_object *stream = lookup(root, "stream", NULL);
	json_object *message = json_object_array_get_idx(lookup(root, "messages", NULL), 0);

	CHECKF(root != NULL, "body: %s", body);
	CHECK(strcmp(json_object_get_string(lookup(root, "model", NULL)), "llama3") == 0);
	CHECK(strcmp(json_object_get_string(lookup(message, "content", NULL)), PROMPT) == 0);
	CHECK(json_object_is_type(stream, json_type_boolean) && !json_object_get_boolean(stream));
	CHECK(json_object_get_double(lookup(root, "options", "temperature")) == 0.7);
	CHECK(json_object_get_int(lookup(root, "options", "num_predict")) == 256);
	CHECK(lookup(root, "temperature", NULL) == NULL);
	CHECK(lookup(root, "max_tokens", NULL) == NULL);
	json_object_put(root);
	free(body);
}

/* Parse body with api; returns ok and leaves content/counts/error in out. */
static bool
parse(TeacherApi api, const char *body, TeacherReply *reply, char *err)
{
	err[0] = '\0';
	return teacher_parse_reply(api, body, strlen(body), NULL, reply, err, 256);
}

/*
 * Whether text holds any 8 bytes of key: the promise, kept independent of
 * TEACHER_SECRET_PIECE_MIN so that raising the constant fails this test.
 */
static bool
holds_piece_of(const char *text, const char *key)
{
	char		piece[8 + 1];

	for (size_t i = 0; i + 8 <= strlen(key); i++)
	{
		memcpy(piece, key + i, 8);
		piece[8] = '\0';
		if (strstr(text, piece) != NULL)
			return true;
	}
	return false;
}

static void
test_openai_reply(void)
{
	TeacherReply reply;
	char		err[256];
	bool		ok;

	ok = parse(TEACHER_API_OPENAI,
			   "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
			   "\"assistant\",\"content\":\"So the answer is (b).\\n\"},"
			   "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
			   "\"completion_tokens\":7,\"total_tokens\":19}}\n", &reply, err);
	CHECKF(ok, "%s", err);
	CHECK(ok && strcmp(reply.content, "So the answer is (b).\n") == 0);
	CHECK(reply.prompt_tokens == 12 && reply.completion_tokens == 7);
	free(reply.content);

	ok = parse(TEACHER_API_OPENAI,
			   "{\"choices\":[{\"message\":{\"content\":\"\"}}]}", &reply, err);
	CHECK(ok && strcmp(reply.content, "") == 0);
	CHECK(reply.prompt_tokens == -1 && reply.completion_tokens == -1);
	free(reply.content);

	ok = parse(TEACHER_API_OPENAI,
			   "{\"choices\":[{\"message\":{\"content\":null}}]}", &reply, err);
	CHECK(!ok && reply.content == NULL);
	CHECKF(strstr(err, "choices[0].message.content") != NULL, "%s", err);

	CHECK(!parse(TEACHER_API_OPENAI, "{\"choices\":[]}", &reply, err));
	CHECK(!parse(TEACHER_API_OPENAI, "[1,2]", &reply, err));
	CHECKF(strstr(err, "not a JSON object") != NULL, "%s", err);

	CHECK(!parse(TEACHER_API_OPENAI, "{\"choices\":[{\"message\":{\"con", &reply, err));
	CHECKF(strstr(err, "truncated") != NULL, "%s", err);

	CHECK(!parse(TEACHER_API_OPENAI, "<html>Bad gateway</html>", &reply, err));
	CHECKF(strstr(err, "invalid JSON") != NULL, "%s", err);

	CHECK(!parse(TEACHER_API_OPENAI, "  \n", &reply, err));
	CHECKF(strcmp(err, "empty body") == 0, "%s", err);

	CHECK(!parse(TEACHER_API_OPENAI,
				 "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}",
				 &reply, err));
	CHECKF(strcmp(err, "error: overloaded") == 0, "%s", err);

	ok = parse(TEACHER_API_OPENAI,
			   "{\"error\":null,\"choices\":[{\"message\":{\"content\":\"x\"}}]}",
			   &reply, err);
	CHECKF(ok, "a null error is no error: %s", err);
	free(reply.content);

	CHECK(!parse(TEACHER_API_OPENAI,
				 "{\"choices\":[{\"message\":{\"content\":\"a\"}}]}\n{}", &reply, err));
}

/*
 * The content comes back byte for byte, whatever it holds: the caller
 * checks it and keeps what it cannot store escaped (utf8.h).  A reply is
 * never lost over a stray byte, nor cut at a NUL.
 */
static void
test_reply_bytes(void)
{
	static const struct
	{
		const char *json;		/* the JSON string's body */
		const char *content;
		size_t		len;
	}			cases[] = {
		{"a\xC3\x28", "a\xC3\x28", 3},		/* a cut-short character */
		{"\xFFz", "\xFFz", 2},				/* a byte no UTF-8 has */
		{"\xED\xA0\x80", "\xED\xA0\x80", 3},	/* a surrogate */
		{"\xC0\x80", "\xC0\x80", 2},		/* an overlong NUL */
		{"\xF4\x90\x80\x80", "\xF4\x90\x80\x80", 4},	/* above U+10FFFF */
		{"a\\u0000b", "a\0b", 3},			/* a NUL, kept */
	};
	TeacherReply reply;
	char		body[256];
	char		err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		bool		ok;

		snprintf(body, sizeof(body),
				 "{\"choices\":[{\"message\":{\"content\":\"%s\"}}]}", cases[i].json);
		ok = parse(TEACHER_API_OPENAI, body, &reply, err);
		CHECKF(ok, "case %zu: %s", i, err);
		CHECKF(ok && reply.content_len == cases[i].len &&
			   memcmp(reply.content, cases[i].content, cases[i].len) == 0 &&
			   reply.content[reply.content_len] == '\0',
			   "case %zu: %zu bytes", i, ok ? reply.content_len : 0);
		free(reply.content);
	}

	/* An Ollama stream may split a character between lines: joined again. */
	CHECK(parse(TEACHER_API_OLLAMA,
				"{\"message\":{\"content\":\"caf\xC3\"}}\n"
				"{\"message\":{\"content\":\"\xA9\"},\"done\":true}\n", &reply, err));
	CHECK(reply.content_len == 5 && strcmp(reply.content, "caf\xC3\xA9") == 0);
	free(reply.content);
}

/*
 * A server may echo the key in an error: no piece of it of
 * TEACHER_SECRET_PIECE_MIN bytes or more survives, wherever the text is cut.
 */
static void
test_key_never_leaks(void)
{
	char		body[1024];
	char		text[512];
	char		buf[TEACHER_SERVER_TEXT_MAX + 1];
	char		err[256];
	TeacherReply reply;

	/* A 2xx error object whose message is cut inside the key. */
	for (int pad = 140; pad <= 200; pad++)
	{
		snprintf(body, sizeof(body),
				 "{\"error\":{\"message\":\"%*s%s\"}}", pad, "", LONG_KEY);
		memset(body + strlen("{\"error\":{\"message\":\""), 'x', pad);
		CHECK(!teacher_parse_reply(TEACHER_API_OPENAI, body, strlen(body), LONG_KEY,
								   &reply, err, sizeof(err)));
		CHECKF(strncmp(err, "error: xxx", 10) == 0, "%s", err);
		CHECKF(!holds_piece_of(err, LONG_KEY), "pad %d: %s", pad, err);
	}

	/* An error body (non-2xx), and text cut inside the key at every point. */
	for (int pad = 150; pad <= 210; pad++)
	{
		memset(text, 'y', pad);
		strcpy(text + pad, LONG_KEY);
		snprintf(body, sizeof(body), "{\"error\":\"%s\"}", text);
		teacher_error_text(body, strlen(body), LONG_KEY, buf, sizeof(buf));
		CHECKF(!holds_piece_of(buf, LONG_KEY), "pad %d: %s", pad, buf);
		teacher_clean_text(text, strlen(text), LONG_KEY, buf, sizeof(buf));
		CHECKF(!holds_piece_of(buf, LONG_KEY), "pad %d: %s", pad, buf);
	}

	/* A key partly echoed: 8 bytes of it are scrubbed, 7 are not a key. */
	strcpy(body, "{\"error\":\"bad key sk-proj-Q7xv...\"}");
	teacher_error_text(body, strlen(body), LONG_KEY, buf, sizeof(buf));
	CHECKF(strcmp(buf, "bad key ***...") == 0, "%s", buf);
	teacher_clean_text("key ends 1dE5fG0hJ2kM.", 23, LONG_KEY, buf, sizeof(buf));
	CHECKF(strcmp(buf, "key ends ***.") == 0, "%s", buf);
	teacher_clean_text("seven: sk-proj", 14, LONG_KEY, buf, sizeof(buf));
	CHECKF(strcmp(buf, "seven: sk-proj") == 0, "%s", buf);

	/* A key split by a line break: each piece of 8 or more goes. */
	teacher_clean_text("sk-proj-Q7xv2Lm\nN9pR4tY8wK3zA6b", 32, LONG_KEY, buf, sizeof(buf));
	CHECKF(strcmp(buf, "*** ***") == 0, "%s", buf);

	/* A key shorter than the piece length is scrubbed only whole. */
	teacher_clean_text("sk-1234 and sk-12", 17, "sk-1234", buf, sizeof(buf));
	CHECKF(strcmp(buf, "*** and sk-12") == 0, "%s", buf);

	/* The message of an error body is taken whole, past a NUL. */
	strcpy(body, "{\"error\":\"a\\u0000sk-proj-Q7\"}");
	teacher_error_text(body, strlen(body), LONG_KEY, buf, sizeof(buf));
	CHECKF(strcmp(buf, "a ***") == 0, "%s", buf);
}

static void
test_ollama_reply(void)
{
	TeacherReply reply;
	char		err[256];
	bool		ok;

	ok = parse(TEACHER_API_OLLAMA,
			   "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":"
			   "\"Paris.\"},\"done\":true,\"prompt_eval_count\":26,\"eval_count\":3}",
			   &reply, err);
	CHECKF(ok, "%s", err);
	CHECK(ok && strcmp(reply.content, "Paris.") == 0);
	CHECK(reply.prompt_tokens == 26 && reply.completion_tokens == 3);
	free(reply.content);

	/* A stream: pieces concatenated, counts from the final line. */
	ok = parse(TEACHER_API_OLLAMA,
			   "{\"message\":{\"content\":\"The answer \"},\"done\":false}\n"
			   "{\"message\":{\"content\":\"is \\u00e9.\"},\"done\":false}\r\n"
			   "\n"
			   "{\"message\":{\"content\":\"\"},\"done\":true,"
			   "\"prompt_eval_count\":5,\"eval_count\":4}\n", &reply, err);
	CHECKF(ok, "%s", err);
	CHECK(ok && strcmp(reply.content, "The answer is \xC3\xA9.") == 0);
	CHECK(reply.prompt_tokens == 5 && reply.completion_tokens == 4);
	free(reply.content);

	CHECK(!parse(TEACHER_API_OLLAMA,
				 "{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"mess", &reply, err));
	CHECKF(strstr(err, "truncated") != NULL, "%s", err);
	CHECK(reply.content == NULL);

	CHECK(!parse(TEACHER_API_OLLAMA,
				 "{\"message\":{\"content\":\"a\"}}\n{\"error\":\"model crashed\"}",
				 &reply, err));
	CHECKF(strcmp(err, "error: model crashed") == 0, "%s", err);

	CHECK(!parse(TEACHER_API_OLLAMA, "{\"done\":true}", &reply, err));
	CHECKF(strstr(err, "message.content") != NULL, "%s", err);
}

static void
test_error_text(void)
{
	char		buf[TEACHER_SERVER_TEXT_MAX + 1];
	const char *openai = "{\"error\":{\"message\":\"Incorrect API key provided: "
		"sk-test-123. You can find your API key at x. (sk-test-123)\","
		"\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
	const char *ollama = "{\"error\":\"model \\\"llama9\\\" not found\"}";
	const char *html = "<html>\r\n<body>502 Bad Gateway sk-test-123</body>\n</html>\n";

	teacher_error_text(openai, strlen(openai), "sk-test-123", buf, sizeof(buf));
	CHECKF(strcmp(buf, "Incorrect API key provided: ***. You can find your "
				  "API key at x. (***)") == 0, "%s", buf);
	teacher_error_text(ollama, strlen(ollama), NULL, buf, sizeof(buf));
	CHECKF(strcmp(buf, "model \"llama9\" not found") == 0, "%s", buf);
	teacher_error_text(html, strlen(html), "sk-test-123", buf, sizeof(buf));
	CHECKF(strcmp(buf, "<html> <body>502 Bad Gateway ***</body> </html>") == 0,
		   "%s", buf);
	teacher_error_text("", 0, "sk-test-123", buf, sizeof(buf));
	CHECK(buf[0] == '\0');
	teacher_error_text("{\"detail\":\"Not Found\"}", 22, NULL, buf, sizeof(buf));
	CHECKF(strcmp(buf, "Not Found") == 0, "%s", buf);
}

static void
test_clean_text(void)
{
	char		buf[TEACHER_SERVER_TEXT_MAX + 1];
	char		small[8];
	char		text[1024];
	size_t		n;

	teacher_clean_text("  a\n\n b\tc\x01" "d  ", 12, NULL, buf, sizeof(buf));
	CHECKF(strcmp(buf, "a b c d") == 0, "'%s'", buf);

	teacher_clean_text("bad \xFF byte \xC3", 12, NULL, buf, sizeof(buf));
	CHECKF(strcmp(buf, "bad ? byte ?") == 0, "'%s'", buf);

	/* Long text: cut at a character boundary, marked, still valid UTF-8. */
	n = 0;
	while (n < 600)
		n += (size_t) sprintf(text + n, "\xC3\xA9");
	teacher_clean_text(text, n, NULL, buf, sizeof(buf));
	CHECK(strlen(buf) <= TEACHER_SERVER_TEXT_MAX);
	CHECK(strlen(buf) >= TEACHER_SERVER_TEXT_MAX - 4);
	CHECKF(cut_between_characters(buf), "%s", buf);

	/* A key straddling the cut is replaced, never partly shown. */
	memset(text, 'a', 195);
	strcpy(text + 195, "sk-test-123 tail");
	teacher_clean_text(text, strlen(text), "sk-test-123", buf, sizeof(buf));
	CHECKF(strstr(buf, "sk-") == NULL, "%s", buf);
	teacher_clean_text(text, strlen(text), NULL, buf, sizeof(buf));
	CHECK(strlen(buf) == TEACHER_SERVER_TEXT_MAX);

	teacher_clean_text("abcdefghijkl", 12, NULL, small, sizeof(small));
	CHECKF(strcmp(small, "abcd...") == 0, "%s", small);
	teacher_clean_text("abc", 3, NULL, small, 1);
	CHECK(small[0] == '\0');
	teacher_clean_text("key", 3, "", buf, sizeof(buf));
	CHECK(strcmp(buf, "key") == 0);
}

int
main(void)
{
	test_urls();
	test_openai_body();
	test_ollama_body();
	test_openai_reply();
	test_ollama_reply();
	test_reply_bytes();
	test_error_text();
	test_clean_text();
	test_key_never_leaks();
	return unit_summary("protocol");
}
