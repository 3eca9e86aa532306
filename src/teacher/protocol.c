/*
 * protocol.c - request bodies, reply parsing and error text for the teacher.
 *
 * See protocol.h.  Everything here is pure: strings in, strings out.
 */
#include "teacher/protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/util.h"
#include "teacher/utf8.h"

/* What parsing one reply body works on. */
typedef struct ReplyParse
{
	TeacherApi	api;
	const char *secret;			/* scrubbed from server text in errbuf */
	TextBuffer	content;		/* streamed pieces, concatenated */
	TeacherReply *reply;
	char	   *errbuf;
	size_t		errlen;
} ReplyParse;

char *
teacher_request_url(TeacherApi api, const char *endpoint)
{
	const char *path = api == TEACHER_API_OLLAMA ? "/api/chat" : "/chat/completions";
	size_t		base_len = strlen(endpoint);
	char	   *url;

	while (base_len > 0 && endpoint[base_len - 1] == '/')
		base_len--;
	url = malloc(base_len + strlen(path) + 1);
	if (url == NULL)
		return NULL;
	memcpy(url, endpoint, base_len);
	strcpy(url + base_len, path);
	return url;
}

/*
 * Add value under key; false when value is NULL (json-c out of memory) or
 * cannot be added, in which case value is released.
 */
static bool
put(json_object *obj, const char *key, json_object *value)
{
	if (value == NULL)
		return false;
	if (json_object_object_add(obj, key, value) != 0)
	{
		json_object_put(value);
		return false;
	}
	return true;
}

/* [{"role": "user", "content": prompt}] */
static json_object *
user_messages(const char *prompt)
{
	json_object *messages = json_object_new_array();
	json_object *message = json_object_new_object();

	if (messages == NULL || message == NULL ||
		!put(message, "role", json_object_new_string("user")) ||
		!put(message, "content", json_object_new_string(prompt)) ||
		json_object_array_add(messages, message) != 0)
	{
		json_object_put(message);
		json_object_put(messages);
		return NULL;
	}
	return messages;
}

/* Ollama takes sampling parameters in "options", with its own names. */
static json_object *
ollama_options(double temperature, int max_tokens)
{
	json_object *options = json_object_new_object();

	if (options == NULL ||
		!put(options, "temperature", json_object_new_double(temperature)) ||
		(max_tokens > 0 &&
		 !put(options, "num_predict", json_object_new_int(max_tokens))))
	{
		json_object_put(options);
		return NULL;
	}
	return options;
}

static bool
fill_request(json_object *root, TeacherApi api, const char *model,
			 const char *prompt, double temperature, int max_tokens)
{
	if (!put(root, "model", json_object_new_string(model)) ||
		!put(root, "messages", user_messages(prompt)))
		return false;
	if (api == TEACHER_API_OLLAMA)
		return put(root, "stream", json_object_new_boolean(0)) &&
			put(root, "options", ollama_options(temperature, max_tokens));
	return put(root, "temperature", json_object_new_double(temperature)) &&
		(max_tokens <= 0 ||
		 put(root, "max_tokens", json_object_new_int(max_tokens)));
}

char *
teacher_request_body(TeacherApi api, const char *model, const char *prompt,
					 double temperature, int max_tokens)
{
	json_object *root = json_object_new_object();
	char	   *body = NULL;

	if (root != NULL &&
		fill_request(root, api, model, prompt, temperature, max_tokens))
	{
		const char *json = json_object_to_json_string_ext(root,
														  JSON_C_TO_STRING_PLAIN |
														  JSON_C_TO_STRING_NOSLASHESCAPE);

		if (json != NULL)
			body = strdup(json);
	}
	json_object_put(root);
	return body;
}

/* obj[key] when obj is an object and the member has the given type. */
static json_object *
member(json_object *obj, const char *key, json_type type)
{
	json_object *value;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
		!json_object_object_get_ex(obj, key, &value) ||
		!json_object_is_type(value, type))
		return NULL;
	return value;
}

static json_object *
first_element(json_object *array)
{
	if (array == NULL || json_object_array_length(array) == 0)
		return NULL;
	return json_object_array_get_idx(array, 0);
}

/* A token count, or -1 when absent or nonsensical. */
static int
count_member(json_object *obj, const char *key)
{
	json_object *value = member(obj, key, json_type_int);
	int			count = value ? json_object_get_int(value) : -1;

	return count >= 0 ? count : -1;
}

/*
 * The message an error body or object carries: {"error": "..."} (Ollama),
 * {"error": {"message": "..."}} (OpenAI), or a top-level "message" or
 * "detail" (vLLM, FastAPI servers).  A JSON string, or NULL when there is
 * none.
 */
static json_object *
error_message(json_object *root)
{
	json_object *text = member(root, "error", json_type_string);

	if (text == NULL)
		text = member(member(root, "error", json_type_object), "message",
					  json_type_string);
	if (text == NULL)
		text = member(root, "message", json_type_string);
	if (text == NULL)
		text = member(root, "detail", json_type_string);
	return text;
}

static bool
is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Parse the next JSON value of a body holding one or more values separated
 * by white space (NDJSON).  Returns 1 and sets *value (the caller releases
 * it), 0 at the end of the body, or -1 with errbuf filled.
 */
static int
next_value(json_tokener *tok, const char *body, size_t len, size_t *pos,
		   json_object **value, char *errbuf, size_t errlen)
{
	enum json_tokener_error status;

	while (*pos < len && is_json_space(body[*pos]))
		(*pos)++;
	if (*pos == len)
		return 0;
	json_tokener_reset(tok);
	*value = json_tokener_parse_ex(tok, body + *pos, (int) (len - *pos));
	status = json_tokener_get_error(tok);
	if (status == json_tokener_success)
	{
		*pos += json_tokener_get_parse_end(tok);
		return 1;
	}
	if (status == json_tokener_continue)
		format_message(errbuf, errlen, "truncated JSON (%zu bytes)", len);
	else
		format_message(errbuf, errlen, "invalid JSON at byte %zu: %s",
					   *pos + json_tokener_get_parse_end(tok),
					   json_tokener_error_desc(status));
	return -1;
}

/*
 * Either API may answer 2xx with an error object (proxies, streams).  Its
 * message is cleaned of the secret here, before anything cuts it short.
 */
static bool
check_reply_object(ReplyParse *parse, json_object *root)
{
	json_object *error;
	json_object *message;
	char		clean[TEACHER_SERVER_TEXT_MAX + 1];

	if (!json_object_is_type(root, json_type_object))
	{
		format_message(parse->errbuf, parse->errlen, "not a JSON object");
		return false;
	}
	/* json-c gives NULL for a JSON null, which is no error. */
	if (json_object_object_get_ex(root, "error", &error) && error != NULL)
	{
		message = error_message(root);
		if (message != NULL)
			teacher_clean_text(json_object_get_string(message),
							   json_object_get_string_len(message),
							   parse->secret, clean, sizeof(clean));
		else
			strcpy(clean, "?");
		format_message(parse->errbuf, parse->errlen, "error: %s", clean);
		return false;
	}
	return true;
}

/* The bytes of a JSON string, NULs and all: the caller checks them. */
static bool
append_content(ReplyParse *parse, json_object *text)
{
	if (text_buffer_append(&parse->content, json_object_get_string(text),
					json_object_get_string_len(text)))
		return true;
	format_message(parse->errbuf, parse->errlen, "out of memory");
	return false;
}

static bool
take_openai(ReplyParse *parse, json_object *root)
{
	json_object *message = member(first_element(member(root, "choices",
													   json_type_array)),
								  "message", json_type_object);
	json_object *text = member(message, "content", json_type_string);
	json_object *usage = member(root, "usage", json_type_object);

	if (!check_reply_object(parse, root))
		return false;
	if (text == NULL)
	{
		format_message(parse->errbuf, parse->errlen, "no choices[0].message.content");
		return false;
	}
	parse->reply->prompt_tokens = count_member(usage, "prompt_tokens");
	parse->reply->completion_tokens = count_member(usage, "completion_tokens");
	return append_content(parse, text);
}

/* One object of an Ollama reply: the whole reply or one line of a stream. */
static bool
take_ollama(ReplyParse *parse, json_object *root)
{
	json_object *text = member(member(root, "message", json_type_object),
							   "content", json_type_string);

	if (!check_reply_object(parse, root))
		return false;
	if (text == NULL)
	{
		format_message(parse->errbuf, parse->errlen, "no message.content");
		return false;
	}
	/* Only the final line of a stream carries the counts. */
	if (count_member(root, "prompt_eval_count") >= 0)
		parse->reply->prompt_tokens = count_member(root, "prompt_eval_count");
	if (count_member(root, "eval_count") >= 0)
		parse->reply->completion_tokens = count_member(root, "eval_count");
	return append_content(parse, text);
}

/*
 * Feed each JSON value of the body to the API's taker.  OpenAI replies are
 * one value; Ollama ones one or more.
 */
static bool
take_values(ReplyParse *parse, json_tokener *tok, const char *body, size_t len)
{
	size_t		pos = 0;
	int			count = 0;
	json_object *value;
	int			status;

	while ((status = next_value(tok, body, len, &pos, &value,
								parse->errbuf, parse->errlen)) == 1)
	{
		bool		taken;

		if (parse->api == TEACHER_API_OPENAI && count > 0)
		{
			json_object_put(value);
			format_message(parse->errbuf, parse->errlen, "more than one JSON value");
			return false;
		}
		taken = parse->api == TEACHER_API_OLLAMA
			? take_ollama(parse, value)
			: take_openai(parse, value);
		json_object_put(value);
		if (!taken)
			return false;
		count++;
	}
	if (status == 0 && count == 0)
		format_message(parse->errbuf, parse->errlen, "empty body");
	return status == 0 && count > 0;
}

bool
teacher_parse_reply(TeacherApi api, const char *body, size_t len,
					const char *secret, TeacherReply *reply,
					char *errbuf, size_t errlen)
{
	json_tokener *tok = json_tokener_new();
	ReplyParse	parse = {api, secret, {NULL, 0, 0}, reply, errbuf, errlen};
	bool		ok;

	reply->content = NULL;
	reply->content_len = 0;
	reply->prompt_tokens = -1;
	reply->completion_tokens = -1;
	if (tok == NULL)
	{
		format_message(errbuf, errlen, "out of memory");
		return false;
	}

	/*
	 * No JSON_TOKENER_VALIDATE_UTF8: it lets surrogates, overlong forms and
	 * code points beyond U+10FFFF through, and refuses the whole reply over
	 * one stray byte.  The caller checks the content strictly (utf8.h) and
	 * keeps what it cannot store in escaped form.
	 */
	ok = take_values(&parse, tok, body, len);
	json_tokener_free(tok);
	/* An empty content is still an answer: make it a string. */
	if (ok && parse.content.data == NULL && !text_buffer_append(&parse.content, "", 0))
	{
		format_message(errbuf, errlen, "out of memory");
		ok = false;
	}
	if (ok)
	{
		reply->content = parse.content.data;
		reply->content_len = parse.content.len;
	}
	else
		free(parse.content.data);
	return ok;
}

void
teacher_error_text(const char *body, size_t len, const char *secret,
				   char *buf, size_t buflen)
{
	json_tokener *tok = json_tokener_new();
	json_object *root = NULL;
	json_object *message = NULL;

	if (tok != NULL)
	{
		root = json_tokener_parse_ex(tok, body, (int) len);
		message = error_message(root);
		json_tokener_free(tok);
	}
	if (message != NULL)
		teacher_clean_text(json_object_get_string(message),
						   json_object_get_string_len(message),
						   secret, buf, buflen);
	else
		teacher_clean_text(body, len, secret, buf, buflen);
	json_object_put(root);
}

/*
 * An API key to scrub from text.  Any piece of it at least min_piece long
 * is scrubbed, so a key that a server cut, split or partly echoed does not
 * show either.
 */
typedef struct Secret
{
	const char *text;
	size_t		len;			/* 0: nothing to scrub */
	size_t		min_piece;
	bool		starts[256];	/* the bytes such a piece can start with */
} Secret;

static void
secret_init(Secret *secret, const char *text)
{
	memset(secret, 0, sizeof(*secret));
	if (text == NULL || text[0] == '\0')
		return;
	secret->text = text;
	secret->len = strlen(text);
	secret->min_piece = secret->len < TEACHER_SECRET_PIECE_MIN
		? secret->len : TEACHER_SECRET_PIECE_MIN;
	for (size_t j = 0; j + secret->min_piece <= secret->len; j++)
		secret->starts[(unsigned char) text[j]] = true;
}

/*
 * Length of the longest piece of the secret, of at least min_piece bytes,
 * that text (of avail bytes) starts with; 0 when there is none.
 */
static size_t
secret_piece(const Secret *secret, const char *text, size_t avail)
{
	size_t		longest = 0;

	if (secret->len == 0 || !secret->starts[(unsigned char) text[0]])
		return 0;
	for (size_t j = 0; j + secret->min_piece <= secret->len; j++)
	{
		size_t		n = 0;

		while (n < avail && j + n < secret->len && text[n] == secret->text[j + n])
			n++;
		if (n > longest)
			longest = n;
	}
	return longest >= secret->min_piece ? longest : 0;
}

/* Output state of teacher_clean_text(). */
typedef struct CleanOutput
{
	char	   *buf;
	size_t		len;
	size_t		limit;			/* bytes of text at most, before the NUL */
	size_t		cut;			/* where to cut so that "..." still fits */
	bool		full;
} CleanOutput;

/* Append one piece (a character or "***"); false once the limit is hit. */
static bool
emit(CleanOutput *out, const char *piece, size_t n)
{
	if (out->len + n > out->limit)
	{
		out->len = out->cut;
		memcpy(out->buf + out->len, "...", 3);
		out->len += 3;
		out->full = true;
		return false;
	}
	memcpy(out->buf + out->len, piece, n);
	out->len += n;
	if (out->len + 3 <= out->limit)
		out->cut = out->len;
	return true;
}

/*
 * The secret is looked for at every position before that position is cut
 * or copied, and a piece is matched against the whole rest of the text, so
 * a cut can never leave part of a key behind.
 */
void
teacher_clean_text(const char *text, size_t len, const char *secret_text,
				   char *buf, size_t buflen)
{
	Secret		secret;
	CleanOutput out = {buf, 0, buflen > 0 ? buflen - 1 : 0, 0, false};
	bool		space = false;
	size_t		i = 0;

	if (buflen == 0)
		return;
	secret_init(&secret, secret_text);
	if (out.limit > TEACHER_SERVER_TEXT_MAX)
		out.limit = TEACHER_SERVER_TEXT_MAX;
	if (out.limit < 3)
		out.limit = 0;			/* too small even for "...": stay empty */
	while (i < len && out.limit > 0 && !out.full)
	{
		const unsigned char *c = (const unsigned char *) text + i;
		const char *piece = (const char *) c;
		size_t		n;
		size_t		consumed;

		if ((consumed = secret_piece(&secret, text + i, len - i)) > 0)
			piece = "***", n = 3;
		else if (*c <= ' ' || *c == 0x7F)
		{
			space = out.len > 0;	/* leading white space is dropped */
			i++;
			continue;
		}
		else if ((n = utf8_char_len(c, len - i)) > 0)
			consumed = n;
		else
			piece = "?", n = 1, consumed = 1;
		if (space && !emit(&out, " ", 1))
			break;
		space = false;
		emit(&out, piece, n);
		i += consumed;
	}
	buf[out.len] = '\0';
}
