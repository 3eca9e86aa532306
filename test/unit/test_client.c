/*
 * test_client.c - the teacher pool against the replay teacher.
 *
 * Starts test/replay_teacher.py on a free port (it is killed when this
 * program ends, however it ends), then drives pools through its fault
 * injection: latency, 500, 429 with Retry-After, malformed and dropped
 * replies, hangs, a wrong API key; and against a port nobody listens on.
 *
 * No check has a time limit, which a busy machine could break.  Overlap is
 * shown by the teacher's gather fault (requests held until N are in flight
 * at once) and its max_in_flight counter; the only durations checked are
 * lower bounds of waits the client must make (Retry-After, its own
 * timeout), which a busy machine can only lengthen.  A call that must not
 * wait is given a wait of minutes, under a watchdog that fails the run if
 * it blocks (WATCHDOG_S).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "teacher/client.h"
#include "unit.h"

#define MAX_ITEMS	32
#define NO_ANSWER	"I have no recorded answer for this question."
#define KEY			"sk-test-123"
/* A key as long as real ones (44 bytes). */
#define LONG_KEY	"sk-proj-Q7xv2LmN9pR4tY8wK3zA6bC1dE5fG0hJ2kM"

/* What one item ended with, copied out of the pool. */
typedef struct Outcome
{
	int			seen;			/* times returned: must end up 1 */
	bool		ok;
	int			attempts;
	long		http_status;
	int			prompt_tokens;
	int			completion_tokens;
	double		done_ms;		/* since the run started */
	char		error[512];
	char	   *content;
	size_t		content_len;
} Outcome;

static pid_t teacher_pid;
static int	teacher_port;

/* How long a call that must return at once may block before the run fails. */
#define WATCHDOG_S 60
static const char *volatile watched_call;

static void
watchdog_fired(int signo)
{
	char		msg[256];
	int			n = snprintf(msg, sizeof(msg),
							 "%s: check failed: %s blocked for %d s\n"
							 "client: %d passed, %d failed\n",
							 __FILE__, watched_call, WATCHDOG_S, unit_passed, unit_failed + 1);

	(void) !write(STDOUT_FILENO, msg, n);
	_exit(1);
}

/* Arm the watchdog for a call (NULL: disarm). */
static void
watch(const char *call)
{
	watched_call = call;
	signal(SIGALRM, watchdog_fired);
	alarm(call != NULL ? WATCHDOG_S : 0);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* ---- the replay teacher process ---- */

static void
stop_teacher(void)
{
	if (teacher_pid > 0)
	{
		kill(teacher_pid, SIGTERM);
		waitpid(teacher_pid, NULL, 0);
		teacher_pid = 0;
	}
}

/* A small blocking HTTP call for test plumbing; returns the body or NULL. */
static char *
http_call(const char *path, bool post)
{
	CURL	   *easy = curl_easy_init();
	char		url[256];
	char	   *body = NULL;
	size_t		len = 0;
	FILE	   *out = open_memstream(&body, &len);
	long		status = 0;
	CURLcode	code;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", teacher_port, path);
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, out);
	if (post)
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
	code = curl_easy_perform(easy);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(easy);
	fclose(out);
	if (code != CURLE_OK || status != 200)
	{
		free(body);
		return NULL;
	}
	return body;
}

/* Start the teacher with --port 0 and read the port it chose. */
static bool
start_teacher(void)
{
	int			fds[2];
	char		line[256];
	FILE	   *in;

	if (pipe(fds) != 0)
		return false;
	teacher_pid = fork();
	if (teacher_pid == 0)
	{
		/* Die with us even if we crash before stop_teacher(). */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execlp("python3", "python3", "test/replay_teacher.py", "--port", "0",
			   (char *) NULL);
		_exit(127);
	}
	close(fds[1]);
	in = fdopen(fds[0], "r");
	if (fgets(line, sizeof(line), in) == NULL ||
		sscanf(line, "replay teacher listening on %*[^:]:%d", &teacher_port) != 1)
		teacher_port = 0;
	fclose(in);
	return teacher_port > 0;
}

static bool
wait_for_health(void)
{
	for (int i = 0; i < 100; i++)
	{
		char	   *body = http_call("/health", false);

		free(body);
		if (body != NULL)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/*
 * Counters from GET /stats, or -1.  The connection made to ask is not
 * counted in "connections".
 */
static void
teacher_stats(long *connections, long *max_in_flight)
{
	char	   *body = http_call("/stats", false);
	json_object *root = body ? json_tokener_parse(body) : NULL;
	json_object *value;

	*connections = *max_in_flight = -1;
	if (json_object_object_get_ex(root, "connections", &value))
		*connections = json_object_get_int64(value) - 1;
	if (json_object_object_get_ex(root, "max_in_flight", &value))
		*max_in_flight = json_object_get_int64(value);
	json_object_put(root);
	free(body);
}

static void
reset_teacher_stats(void)
{
	free(http_call("/stats/reset", true));
}

/* ---- running pools ---- */

static TeacherConfig
base_config(char *endpoint, const char *faults)
{
	TeacherConfig config = {0};

	if (faults != NULL)
		sprintf(endpoint, "http://127.0.0.1:%d/faults/%s/v1", teacher_port, faults);
	else
		sprintf(endpoint, "http://127.0.0.1:%d/v1", teacher_port);
	config.endpoint = endpoint;
	config.model = "replay";
	config.api = TEACHER_API_OPENAI;
	config.temperature = 0.0;
	config.max_tokens = 64;
	config.timeout_ms = 5000;
	config.concurrency = 4;
	config.max_retries = 3;
	config.retry_base_ms = 20;
	return config;
}

static TeacherPool *
create_pool(const TeacherConfig *config)
{
	char		errbuf[256] = "";
	TeacherPool *pool = teacher_pool_create(config, errbuf, sizeof(errbuf));

	CHECKF(pool != NULL, "teacher_pool_create: %s", errbuf);
	return pool;
}

static void
copy_outcome(Outcome *out, const TeacherResult *result, double start)
{
	out->seen++;
	out->ok = result->ok;
	out->attempts = result->attempts;
	out->http_status = result->http_status;
	out->prompt_tokens = result->prompt_tokens;
	out->completion_tokens = result->completion_tokens;
	out->done_ms = now_ms() - start;
	snprintf(out->error, sizeof(out->error), "%s",
			 result->error ? result->error : "");
	free(out->content);
	out->content = NULL;
	out->content_len = result->content_len;
	if (result->content != NULL && (out->content = malloc(result->content_len + 1)) != NULL)
		memcpy(out->content, result->content, result->content_len + 1);
	CHECKF(result->ok == (result->content != NULL) &&
		   result->ok == (result->error == NULL),
		   "content xor error, tag %zu", result->tag);
}

/*
 * Submit prompts "<name> question <i>" for i < n and collect every result,
 * polling as a backend would, for at most 15 s.
 */
static void
run(const TeacherConfig *config, const char *name, int n, Outcome *outcomes)
{
	TeacherPool *pool = create_pool(config);
	double		start = now_ms();
	char		prompt[256];

	memset(outcomes, 0, sizeof(Outcome) * n);
	if (pool == NULL)
		return;
	for (int i = 0; i < n; i++)
	{
		snprintf(prompt, sizeof(prompt), "Answer.\n\nQ: %s question %d\nA:", name, i);
		CHECK(teacher_pool_submit(pool, (size_t) i, prompt));
	}
	CHECK(teacher_pool_pending(pool) == (size_t) n);
	while (teacher_pool_pending(pool) > 0 && now_ms() - start < 15000)
	{
		const TeacherResult *result = teacher_pool_next(pool, 50);

		if (result != NULL && result->tag < (size_t) n)
			copy_outcome(&outcomes[result->tag], result, start);
	}
	CHECKF(teacher_pool_pending(pool) == 0, "%s: all items returned", name);
	teacher_pool_destroy(pool);
}

/* Send one prompt "Q: <question>\nA:" and wait for its outcome. */
static void
ask_one(const TeacherConfig *config, const char *question, Outcome *out)
{
	TeacherPool *pool = create_pool(config);
	double		start = now_ms();
	char	   *prompt = malloc(strlen(question) + 16);
	const TeacherResult *result = NULL;

	memset(out, 0, sizeof(*out));
	sprintf(prompt, "Q: %s\nA:", question);
	if (pool != NULL && teacher_pool_submit(pool, 0, prompt))
		while (result == NULL && now_ms() - start < 15000)
			result = teacher_pool_next(pool, 100);
	CHECKF(result != NULL, "no result for %.40s", question);
	if (result != NULL)
		copy_outcome(out, result, start);
	teacher_pool_destroy(pool);
	free(prompt);
}

static void
free_outcomes(Outcome *outcomes, int n)
{
	for (int i = 0; i < n; i++)
		free(outcomes[i].content);
}

static int
count_ok(const Outcome *outcomes, int n)
{
	int			ok = 0;

	for (int i = 0; i < n; i++)
		ok += outcomes[i].seen == 1 && outcomes[i].ok;
	return ok;
}

static int
max_attempts(const Outcome *outcomes, int n)
{
	int			most = 0;

	for (int i = 0; i < n; i++)
		if (outcomes[i].attempts > most)
			most = outcomes[i].attempts;
	return most;
}

/* ---- the tests ---- */

static void
test_success(TeacherApi api)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, NULL);
	Outcome		out[8];
	const char *name = api == TEACHER_API_OLLAMA ? "ollama" : "openai";

	if (api == TEACHER_API_OLLAMA)
		sprintf(endpoint, "http://127.0.0.1:%d/", teacher_port);
	config.api = api;
	run(&config, name, 8, out);
	CHECKF(count_ok(out, 8) == 8, "%s: all ok (first error: %s)", name, out[0].error);
	for (int i = 0; i < 8; i++)
	{
		CHECK(out[i].seen == 1 && out[i].attempts == 1);
		CHECK(out[i].http_status == 200);
		CHECKF(out[i].content && strcmp(out[i].content, NO_ANSWER) == 0,
			   "%s: content %s", name, out[i].content);
		CHECK(out[i].prompt_tokens > 0 && out[i].completion_tokens == 8);
	}
	free_outcomes(out, 8);
}

/* A recorded input comes back with its recorded teacher output. */
static void
test_recorded_answer(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, NULL);
	FILE	   *data = fopen("test/data/svamp_sample.jsonl", "r");
	char		line[16384];
	json_object *row = NULL;
	json_object *input;
	json_object *output;
	TeacherPool *pool;
	const TeacherResult *result = NULL;
	char	   *prompt;

	if (data && fgets(line, sizeof(line), data))
		row = json_tokener_parse(line);
	if (data)
		fclose(data);
	if (!json_object_object_get_ex(row, "input", &input) ||
		!json_object_object_get_ex(row, "teacher_output", &output))
	{
		CHECKF(false, "cannot read test/data/svamp_sample.jsonl");
		json_object_put(row);
		return;
	}
	pool = create_pool(&config);
	prompt = malloc(strlen(json_object_get_string(input)) + 16);
	sprintf(prompt, "Q: %s\nA:", json_object_get_string(input));
	teacher_pool_submit(pool, 42, prompt);
	for (int i = 0; i < 100 && result == NULL; i++)
		result = teacher_pool_next(pool, 100);
	CHECK(result != NULL && result->ok && result->tag == 42);
	CHECK(result != NULL && result->content &&
		  strcmp(result->content, json_object_get_string(output)) == 0);
	teacher_pool_destroy(pool);
	free(prompt);
	json_object_put(row);
}

/*
 * Requests overlap up to the concurrency, not beyond, on kept-alive
 * connections.  With gather=N the teacher holds each request until N are in
 * flight at once (and answers 503 after hang_s when fewer come), so a pool
 * that overlapped fewer would fail its items; no retries, or the retried
 * requests would count as arrivals.  The latency gives a pool that sent
 * more than its concurrency the time to show it in max_in_flight.
 */
static void
test_concurrency(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "gather=16,hang_s=4");
	Outcome		out[16];
	long		connections;
	long		max_in_flight;

	reset_teacher_stats();
	config.concurrency = 16;
	config.max_retries = 0;
	run(&config, "parallel", 16, out);
	CHECKF(count_ok(out, 16) == 16, "16 at concurrency 16: %s", out[0].error);
	teacher_stats(&connections, &max_in_flight);
	CHECKF(max_in_flight == 16, "max in flight %ld at concurrency 16", max_in_flight);
	free_outcomes(out, 16);

	reset_teacher_stats();
	config = base_config(endpoint, "gather=4,hang_s=4,latency_ms=100");
	config.concurrency = 4;
	config.max_retries = 0;
	run(&config, "four", 16, out);
	CHECKF(count_ok(out, 16) == 16, "16 at concurrency 4: %s", out[0].error);
	teacher_stats(&connections, &max_in_flight);
	CHECKF(max_in_flight == 4, "max in flight %ld at concurrency 4", max_in_flight);
	CHECKF(connections >= 1 && connections <= 4, "connections %ld (keep-alive)", connections);
	free_outcomes(out, 16);

	reset_teacher_stats();
	config = base_config(endpoint, "latency_ms=100");
	config.concurrency = 1;
	run(&config, "serial", 8, out);
	CHECK(count_ok(out, 8) == 8);
	teacher_stats(&connections, &max_in_flight);
	CHECKF(max_in_flight == 1, "max in flight %ld at concurrency 1", max_in_flight);
	CHECKF(connections == 1, "connections %ld (keep-alive)", connections);
	free_outcomes(out, 8);
}

/* Transient faults are retried until the item succeeds. */
static void
test_retried_until_ok(const char *faults, const char *name)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, faults);
	Outcome		out[20];

	config.max_retries = 12;
	run(&config, name, 20, out);
	CHECKF(count_ok(out, 20) == 20, "%s: all ok in the end", name);
	CHECKF(max_attempts(out, 20) > 1, "%s: some were retried", name);
	for (int i = 0; i < 20; i++)
		CHECK(!out[i].ok || out[i].http_status == 200);
	free_outcomes(out, 20);
}

static void
test_retry_after(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "p429=0.5,retry_after=1,seed=5");
	Outcome		out[6];
	int			retried = 0;

	config.concurrency = 6;
	config.max_retries = 6;
	run(&config, "ratelimited", 6, out);
	CHECK(count_ok(out, 6) == 6);
	for (int i = 0; i < 6; i++)
	{
		retried += out[i].attempts > 1;
		/* Each 429 costs at least the second it asked for (a lower bound). */
		CHECKF(out[i].done_ms >= 1000.0 * (out[i].attempts - 1),
			   "item %d: %d attempts in %.0f ms", i, out[i].attempts, out[i].done_ms);
	}
	CHECKF(retried > 0, "some items got a 429");
	free_outcomes(out, 6);

	/* Always 429: fails after the retries, with the server's reason. */
	config = base_config(endpoint, "p429=1,retry_after=1");
	config.max_retries = 1;
	run(&config, "ratelimited-always", 1, out);
	CHECK(!out[0].ok && out[0].attempts == 2 && out[0].http_status == 429);
	CHECKF(strncmp(out[0].error, "HTTP 429: Rate limit reached", 28) == 0, "%s",
		   out[0].error);
	CHECKF(out[0].done_ms >= 1000, "retried after %.0f ms", out[0].done_ms);
	free_outcomes(out, 1);
}

/* A fault on every attempt: failed after max_retries + 1 attempts. */
static void
test_always_failing(const char *faults, long status, const char *reason)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, faults);
	Outcome		out[3];

	config.max_retries = 2;
	run(&config, faults, 3, out);
	for (int i = 0; i < 3; i++)
	{
		CHECKF(out[i].seen == 1 && !out[i].ok && out[i].attempts == 3,
			   "%s: ok %d after %d attempts", faults, out[i].ok, out[i].attempts);
		CHECKF(out[i].http_status == status, "%s: status %ld", faults,
			   out[i].http_status);
		CHECKF(strncmp(out[i].error, reason, strlen(reason)) == 0,
			   "%s: error '%s'", faults, out[i].error);
		CHECK(out[i].content == NULL && out[i].prompt_tokens == -1);
	}
	free_outcomes(out, 3);
}

static void
test_hang_times_out(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "hang=1");
	Outcome		out[2];

	/* The hang lasts 600 s: only the client's timeout ends it in run()'s 15. */
	config.timeout_ms = 300;
	config.max_retries = 0;
	run(&config, "hang", 2, out);
	for (int i = 0; i < 2; i++)
	{
		CHECK(!out[i].ok && out[i].attempts == 1 && out[i].http_status == 0);
		CHECKF(strcmp(out[i].error, "timeout after 300 ms") == 0, "%s", out[i].error);
		/* not before its time (a lower bound) */
		CHECKF(out[i].done_ms >= 290, "%.0f ms", out[i].done_ms);
	}
	free_outcomes(out, 2);
}

static void
test_wrong_key(TeacherApi api)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "key=" KEY);
	Outcome		out[2];

	if (api == TEACHER_API_OLLAMA)
		strstr(endpoint, "/v1")[0] = '\0';
	config.api = api;
	config.api_key = "sk-wrong-456";
	config.max_retries = 5;
	run(&config, "wrongkey", 2, out);
	for (int i = 0; i < 2; i++)
	{
		CHECK(!out[i].ok && out[i].attempts == 1 && out[i].http_status == 401);
		CHECKF(strncmp(out[i].error, "HTTP 401: Incorrect API key provided: ***", 41) == 0,
			   "%s", out[i].error);
		CHECKF(strstr(out[i].error, "sk-wrong") == NULL, "key leaked: %s", out[i].error);
	}
	free_outcomes(out, 2);

	config.api_key = KEY;
	run(&config, "rightkey", 2, out);
	CHECK(count_ok(out, 2) == 2);
	free_outcomes(out, 2);
}

static void
test_not_found(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, NULL);
	Outcome		out[1];

	sprintf(endpoint, "http://127.0.0.1:%d/nope", teacher_port);
	run(&config, "notfound", 1, out);
	CHECK(!out[0].ok && out[0].attempts == 1 && out[0].http_status == 404);
	CHECKF(strncmp(out[0].error, "HTTP 404: unknown path", 22) == 0, "%s", out[0].error);
	free_outcomes(out, 1);
}

/* A port that was free a moment ago: nothing listens there. */
static int
closed_port(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t	len = sizeof(addr);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	int			port;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *) &addr, sizeof(addr));
	getsockname(fd, (struct sockaddr *) &addr, &len);
	port = ntohs(addr.sin_port);
	close(fd);
	return port;
}

static void
test_connection_refused(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, NULL);
	Outcome		out[2];

	sprintf(endpoint, "http://127.0.0.1:%d/v1", closed_port());
	config.max_retries = 2;
	run(&config, "refused", 2, out);
	for (int i = 0; i < 2; i++)
	{
		CHECK(!out[i].ok && out[i].attempts == 3 && out[i].http_status == 0);
		CHECKF(strcmp(out[i].error, "connection failed: Connection refused") == 0,
			   "%s", out[i].error);
	}
	free_outcomes(out, 2);
}

static void
test_bad_config(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, NULL);
	char		errbuf[256];

	config.endpoint = "file:///etc/passwd";
	CHECK(teacher_pool_create(&config, errbuf, sizeof(errbuf)) == NULL);
	CHECKF(strstr(errbuf, "http://") != NULL, "%s", errbuf);
	config = base_config(endpoint, NULL);
	config.concurrency = 0;
	CHECK(teacher_pool_create(&config, errbuf, sizeof(errbuf)) == NULL);
	CHECKF(strstr(errbuf, "concurrency") != NULL, "%s", errbuf);
	config = base_config(endpoint, NULL);
	config.api_key = "sk-x\r\nX-Evil: 1";
	CHECK(teacher_pool_create(&config, errbuf, sizeof(errbuf)) == NULL);
}

/*
 * Whether text holds any 8 bytes of key: what must never reach an error,
 * whatever TEACHER_SECRET_PIECE_MIN says.
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

/*
 * Servers that echo the key in their errors, cut or in part: a 2xx error
 * object, error bodies, for every place the 200-byte cut can fall.
 */
static void
test_key_in_errors(void)
{
	static const char *const faults[] = {
		"echo=1,error_status=200", "echo=1,error_status=400",
		"echo=1,error_status=500"
	};
	char		endpoint[256];
	char		question[512];
	Outcome		out;

	for (size_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++)
	{
		TeacherConfig config = base_config(endpoint, faults[f]);

		config.api_key = LONG_KEY;
		config.max_retries = 0;
		for (int pad = 150; pad <= 215; pad += 5)
		{
			memset(question, 'x', pad);
			strcpy(question + pad, LONG_KEY);
			ask_one(&config, question, &out);
			CHECKF(!out.ok && out.error[0] != '\0', "%s: %s", faults[f], out.error);
			CHECKF(!holds_piece_of(out.error, LONG_KEY), "%s, pad %d: %s",
				   faults[f], pad, out.error);
			free(out.content);
		}
		/* A partial echo: the first 20 bytes of the key. */
		snprintf(question, sizeof(question), "key %.20s is wrong", LONG_KEY);
		ask_one(&config, question, &out);
		CHECKF(strstr(out.error, "key *** is wrong") != NULL, "%s: %s", faults[f], out.error);
		free(out.content);
	}
}

/*
 * The content comes back byte for byte, whatever bytes the server sent; the
 * caller (the PostgreSQL glue) checks them.
 */
static void
test_reply_bytes(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "echo=1");
	Outcome		out;

	ask_one(&config, "bad %ED%A0%80 %C0%80 %F4%90%80%80 %FF", &out);
	CHECKF(out.ok && out.content_len == 17 &&
		   memcmp(out.content, "bad \xED\xA0\x80 \xC0\x80 \xF4\x90\x80\x80 \xFF", 17) == 0,
		   "%s", out.error);
	free(out.content);
	ask_one(&config, "nul \\u0000 kept", &out);
	CHECKF(out.ok && out.content_len == 10 && memcmp(out.content, "nul \0 kept", 10) == 0,
		   "%zu bytes", out.content_len);
	free(out.content);
}

/*
 * A reply beyond teacher_reply_max_bytes() fails its item at once, with the
 * limit in the reason: it is not retried, and no more of it is kept.
 */
static void
test_reply_size(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "echo=1,pad_bytes=1100000");
	Outcome		out;
	char		reason[64];

	CHECK(teacher_reply_max_bytes(0) == TEACHER_REPLY_MIN_BYTES);
	CHECK(teacher_reply_max_bytes(256) == TEACHER_REPLY_MIN_BYTES);
	CHECK(teacher_reply_max_bytes(32768) == 32768 * TEACHER_REPLY_TOKEN_BYTES);
	CHECK(TEACHER_REPLY_MIN_BYTES <= 4 * 1024 * 1024 &&
		  teacher_reply_max_bytes(32768) <= 4 * 1024 * 1024);

	snprintf(reason, sizeof(reason), "reply larger than %zu bytes",
			 teacher_reply_max_bytes(config.max_tokens));
	ask_one(&config, "big", &out);
	CHECKF(!out.ok && out.attempts == 1 && out.http_status == 200 &&
		   strcmp(out.error, reason) == 0,
		   "%d attempts, HTTP %ld: %s", out.attempts, out.http_status, out.error);
	free(out.content);

	/* Just under the limit is fine; a larger max_tokens allows more. */
	config = base_config(endpoint, "echo=1,pad_bytes=1000000");
	ask_one(&config, "big", &out);
	CHECKF(out.ok && out.content_len == 1000003, "%s", out.error);
	free(out.content);
	config = base_config(endpoint, "echo=1,pad_bytes=1100000");
	config.max_tokens = 16384;
	ask_one(&config, "big", &out);
	CHECKF(out.ok && out.content_len == 1100003, "%s", out.error);
	free(out.content);
}

/* The wait before a retry: backoff with jitter, Retry-After capped. */
static void
test_retry_delay(void)
{
	double		eleven_days = 11 * 86400 * 1000.0;

	CHECK(teacher_retry_delay_ms(500, 0, 0, 0.5) == 250);
	CHECK(teacher_retry_delay_ms(500, 2, 0, 1.0) == 2000);
	CHECK(teacher_retry_delay_ms(500, 40, 0, 1.0) == TEACHER_BACKOFF_MAX_MS);
	CHECK(teacher_retry_delay_ms(500, 0, 7000, 0.5) == 7000);
	CHECK(teacher_retry_delay_ms(500, 0, eleven_days, 0.0) == TEACHER_RETRY_AFTER_MAX_MS);
	CHECK(teacher_retry_delay_ms(500, 40, eleven_days, 1.0) == TEACHER_RETRY_AFTER_MAX_MS);
	CHECK(TEACHER_RETRY_AFTER_MAX_MS <= 5 * 60 * 1000);
}

/* A refused item comes back failed, unsent, among the others. */
static void
test_refuse(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, NULL);
	TeacherPool *pool = create_pool(&config);
	const TeacherResult *result;
	bool		seen[3] = {false, false, false};
	double		start = now_ms();

	CHECK(teacher_pool_submit(pool, 0, "Q: first\nA:"));
	CHECK(teacher_pool_refuse(pool, 1, "the input is not valid UTF-8"));
	CHECK(teacher_pool_submit(pool, 2, "Q: third\nA:"));
	CHECK(teacher_pool_pending(pool) == 3);
	while (teacher_pool_pending(pool) > 0 && now_ms() - start < 15000)
	{
		if ((result = teacher_pool_next(pool, 100)) == NULL || result->tag > 2)
			continue;
		seen[result->tag] = true;
		if (result->tag == 1)
			CHECKF(!result->ok && result->attempts == 0 && result->http_status == 0 &&
				   strcmp(result->error, "the input is not valid UTF-8") == 0 &&
				   result->content == NULL, "%s", result->error);
		else
			CHECK(result->ok && result->attempts == 1);
	}
	CHECK(seen[0] && seen[1] && seen[2]);
	teacher_pool_destroy(pool);
}

/*
 * next() on an empty pool returns at once; destroy works at any point, and
 * aborts transfers rather than waiting for them.  Both are given waits of
 * ten minutes (next()'s own, the teacher's latency), under the watchdog.
 */
static void
test_destroy(void)
{
	char		endpoint[256];
	TeacherConfig config = base_config(endpoint, "latency_ms=600000");
	TeacherPool *pool;

	pool = create_pool(&config);
	watch("teacher_pool_next() on an empty pool");
	CHECK(teacher_pool_next(pool, 600000) == NULL);
	watch(NULL);

	/* Mid-transfer, with more queued behind. */
	for (int i = 0; i < 8; i++)
		teacher_pool_submit(pool, i, "Q: slow question\nA:");
	CHECK(teacher_pool_next(pool, 200) == NULL);
	CHECK(teacher_pool_pending(pool) == 8);
	watch("teacher_pool_destroy() during transfers");
	teacher_pool_destroy(pool);
	watch(NULL);

	/* With retries waiting, and with a result handed out. */
	config = base_config(endpoint, "p500=1");
	config.retry_base_ms = 60000;
	pool = create_pool(&config);
	teacher_pool_submit(pool, 1, "Q: waiting question\nA:");
	CHECK(teacher_pool_next(pool, 300) == NULL);
	teacher_pool_destroy(pool);

	config = base_config(endpoint, NULL);
	pool = create_pool(&config);
	teacher_pool_submit(pool, 1, "Q: one\nA:");
	teacher_pool_submit(pool, 2, "Q: two\nA:");
	CHECK(teacher_pool_next(pool, 3000) != NULL);
	teacher_pool_destroy(pool);

	/* Never started. */
	pool = create_pool(&config);
	teacher_pool_submit(pool, 1, "Q: never\nA:");
	teacher_pool_destroy(pool);
	teacher_pool_destroy(NULL);
}

int
main(void)
{
	/* As in a PostgreSQL backend: a write to a closed socket is no signal. */
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	atexit(stop_teacher);
	if (!start_teacher() || !wait_for_health())
	{
		fprintf(stderr, "could not start test/replay_teacher.py\n");
		CHECK(false);
		return unit_summary("client");
	}
	test_bad_config();
	test_success(TEACHER_API_OPENAI);
	test_success(TEACHER_API_OLLAMA);
	test_recorded_answer();
	test_concurrency();
	test_retried_until_ok("p500=0.5,seed=3", "p500");
	test_retried_until_ok("malformed=0.4,seed=4", "malformed");
	test_retried_until_ok("drop=0.4,seed=5", "drop");
	test_retry_after();
	test_always_failing("p500=1", 500, "HTTP 500: The server had an error");
	test_always_failing("malformed=1", 200, "malformed reply: ");
	test_always_failing("drop=1", 0, "connection dropped: ");
	test_hang_times_out();
	test_wrong_key(TEACHER_API_OPENAI);
	test_wrong_key(TEACHER_API_OLLAMA);
	test_key_in_errors();
	test_reply_bytes();
	test_reply_size();
	test_retry_delay();
	test_refuse();
	test_not_found();
	test_connection_refused();
	test_destroy();
	stop_teacher();
	curl_global_cleanup();
	return unit_summary("client");
}
