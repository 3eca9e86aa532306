#!/usr/bin/env python3
"""Write the text seed corpora of the fuzz targets (`make fuzz-seeds`).

Usage: python3 test/fuzz/make_seeds.py SEEDS_DIR

Real teacher replies from test/data, wrapped as the replay teacher sends
them (test/replay_teacher.py: OpenAI, Ollama single and streamed, its error
bodies), and the same replies and labels for the answer parser and the
equation evaluator.  The output depends only on the data (the replay
teacher's clock is fixed here), so regenerating changes no file unless the
data or the formats did.
"""

import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import replay_teacher  # noqa: E402
from replay_teacher import OllamaFormat, OpenAIFormat  # noqa: E402

DATA = os.path.join(HERE, "..", "data")
# A few of the shortest replies: a few hundred bytes each.
CQA_ROWS = (16, 113, 198)
SVAMP_ROWS = (54, 18)
KEY = "sk-wrong-456"


class FixedClock:
    """Stands in for the replay teacher's time and datetime modules."""

    @staticmethod
    def time():
        return 1700000000

    class datetime:
        @staticmethod
        def now(tz=None):
            return datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=tz)


def read_rows(name, indexes):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [rows[i] for i in indexes]


def write(seeds, target, name, data):
    os.makedirs(os.path.join(seeds, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(seeds, target, name), "wb") as f:
        f.write(data)


def teacher_replies(seeds, rows):
    out = "fuzz_teacher_reply"
    request = {"model": "replay", "messages": []}
    for n, row in enumerate(rows):
        text = row["teacher_output"]
        _, body = OpenAIFormat.reply(request, text, 120, n)
        write(seeds, out, f"openai_{n}.json", body)
        _, body = OllamaFormat.reply(dict(request, stream=False), text, 120, n)
        write(seeds, out, f"ollama_{n}.json", body)
        _, body = OllamaFormat.reply(request, text, 120, n)
        write(seeds, out, f"ollama_stream_{n}.ndjson", body)
    _, body = OpenAIFormat.reply(request, replay_teacher.NO_ANSWER, 7, 99)
    write(seeds, out, "openai_malformed.json", body[:len(body) // 2])

    unauthorized = (f"Incorrect API key provided: {KEY}. You can find your "
                    "API key at https://example.invalid/api-keys.")
    for fmt, name in ((OpenAIFormat, "openai"), (OllamaFormat, "ollama")):
        for what, message in (("401", unauthorized),
                              ("500", "The server had an error while "
                               "processing your request.")):
            error = fmt.error(message, "invalid_request_error", "invalid_api_key")
            write(seeds, out, f"{name}_error_{what}.json", json.dumps(error))
    write(seeds, out, "error_detail.json", '{"detail": "Not Found"}')
    write(seeds, out, "error_message.json",
          '{"message": "model \\"x\\" not found,\\ttry pulling it first"}')
    write(seeds, out, "error_html.txt",
          "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
          "<body>\n\n<center><h1>502 Bad Gateway</h1></center>\n</body></html>\n")
    write(seeds, out, "ollama_stream_error.ndjson",
          '{"message":{"role":"assistant","content":"The answer"},"done":false}\n'
          '{"error":"an error was encountered while running the model"}\n')
    write(seeds, out, "openai_escapes.json",
          '{"choices":[{"message":{"content":"caf\\u00e9 \\ud83d\\ude00 '
          '\\ud800 \\u0000 \\n\\"\\/"}}],'
          '"usage":{"prompt_tokens":-3,"completion_tokens":2147483648}}')


def parser_inputs(seeds, cqa, svamp, cut_off):
    out = "fuzz_parse"
    for n, row in enumerate(cqa):
        write(seeds, out, f"cqa_{n}",
              "So the answer is\0" + row["teacher_output"] + "\0" +
              "\n".join(row["choices"]))
    for n, row in enumerate(svamp + cut_off):
        write(seeds, out, f"svamp_{n}",
              "The answer is\0" + row["teacher_output"] + "\0" +
              row["label"] + "\n" + row["teacher_label"])
    write(seeds, out, "default_prefix", cqa[0]["teacher_output"])


def equations(seeds, svamp, cut_off):
    out = "fuzz_equation"
    for n, row in enumerate(svamp):
        write(seeds, out, f"svamp_{n}", row["label"] + "\0" + row["teacher_label"])
    write(seeds, out, "cut_off", cut_off[0]["teacher_label"])
    write(seeds, out, "signs", "-(-3) / .5 + +2.25\0 8.25")
    write(seeds, out, "divide_by_zero", "1 / (2 - 2)")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    seeds = sys.argv[1]
    replay_teacher.time = FixedClock
    replay_teacher.datetime = FixedClock.datetime
    cqa = read_rows("cqa_sample.jsonl", CQA_ROWS)
    svamp = read_rows("svamp_sample.jsonl", SVAMP_ROWS)
    cut_off = read_rows("svamp_cut_off.jsonl", (0,))
    teacher_replies(seeds, cqa + svamp + cut_off)
    parser_inputs(seeds, cqa, svamp, cut_off)
    equations(seeds, svamp, cut_off)


if __name__ == "__main__":
    main()
