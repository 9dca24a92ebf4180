import assert from "node:assert/strict";
import { HttpError } from "../../src/serve/errors.ts";
import { parseCompletionRequest, type RequestLimits } from "../../src/serve/request.ts";

const LIMITS: RequestLimits = {
  maxTokens: 100,
  defaultMaxTokens: 16,
  maxPromptTokens: 50,
  maxChoices: 4,
  maxStops: 2,
  maxStopLength: 8,
};
const parse = (body: unknown) =>
  parseCompletionRequest(
    new TextEncoder().encode(typeof body === "string" ? body : JSON.stringify(body)),
    LIMITS,
  );

Deno.test("parseCompletionRequest() takes OpenAI's fields and defaults", () => {
  const r = parse({ model: "m", prompt: "hi" });
  assert.deepEqual(r.prompts, ["hi"]);
  assert.equal(r.maxTokens, 16);
  assert.equal(r.n, 1);
  assert.equal(r.stream, false);
  assert.equal(r.sampling.temperature, 1);
  assert.equal(r.seeded, false);
  const s = parse({
    prompt: [[1, 2], [3]],
    max_tokens: 100,
    temperature: 0.5,
    top_p: 0.9,
    top_k: 40,
    min_p: 0.05,
    repetition_penalty: 1.2,
    seed: 7,
    stop: "\n",
    stream: true,
    stream_options: { include_usage: true },
    n: 2,
    logprobs: null,
    echo: false,
    presence_penalty: 0,
    user: "x",
  });
  assert.deepEqual(s.prompts, [[1, 2], [3]]);
  assert.deepEqual(s.sampling, {
    temperature: 0.5,
    topK: 40,
    topP: 0.9,
    minP: 0.05,
    repetitionPenalty: 1.2,
    seed: 7,
  });
  assert.deepEqual(s.stop, ["\n"]);
  assert.equal(s.seeded, true);
  assert.equal(s.includeUsage, true);
  assert.deepEqual(parse({ prompt: [5, 6] }).prompts, [[5, 6]]);
  assert.deepEqual(parse({ prompt: ["a", "b"], top_k: -1 }).prompts, ["a", "b"]);
  assert.equal(parse({ prompt: "a", top_k: -1 }).sampling.topK, 0);
});

Deno.test("parseCompletionRequest() refuses bad bodies with 400 naming the field", () => {
  const cases: [unknown, string | null, RegExp][] = [
    ["{not json", null, /not valid JSON/],
    ["[1, 2]", null, /expected a JSON object/],
    [{}, "prompt", /"prompt" is undefined/],
    [{ prompt: [] }, "prompt", /expected a string/],
    [{ prompt: [1, "a"] }, "prompt", /expected a string/],
    [
      { prompt: "a", max_tokens: 101 },
      "max_tokens",
      /"max_tokens" is 101, expected an integer in \[0, 100\]/,
    ],
    [{ prompt: "a", max_tokens: 1.5 }, "max_tokens", /expected an integer/],
    [{ prompt: "a", temperature: -1 }, "temperature", /expected a number in \[0, 2\]/],
    [{ prompt: "a", temperature: "hot" }, "temperature", /"temperature" is "hot"/],
    [{ prompt: "a", top_p: 0 }, "top_p", /\(0, 1\]/],
    [{ prompt: "a", min_p: 1 }, "min_p", /\[0, 1\)/],
    [{ prompt: "a", repetition_penalty: 0 }, "repetition_penalty", /> 0/],
    [{ prompt: "a", seed: -1 }, "seed", /\[0, 4294967295\]/],
    [{ prompt: "a", n: 5 }, "n", /\[1, 4\]/],
    [{ prompt: ["a", "b", "c"], n: 2 }, "n", /3 x 2, expected at most 4/],
    [{ prompt: "a", stop: 3 }, "stop", /string or a list of strings/],
    [{ prompt: "a", stop: ["a", "b", "c"] }, "stop", /at most 2/],
    [{ prompt: "a", stop: "123456789" }, "stop", /9 characters, expected at most 8/],
    [{ prompt: "a", stream: "yes" }, "stream", /true or false/],
    [{ prompt: "a", stream_options: { include_usage: 1 } }, "stream_options.include_usage", /true or false/],
    [{ prompt: "a", model: 3 }, "model", /expected a string/],
    [{ prompt: "a", logprobs: 2 }, "logprobs", /not supported/],
    [{ prompt: "a", echo: true }, "echo", /not supported/],
    [{ prompt: "a", best_of: 3 }, "best_of", /not supported/],
    [{ prompt: "a", frequency_penalty: 0.5 }, "frequency_penalty", /not supported/],
  ];
  for (const [body, param, message] of cases) {
    assert.throws(() => parse(body), (e: unknown) => {
      assert.ok(e instanceof HttpError, `${JSON.stringify(body)}: ${e}`);
      assert.equal(e.status, 400);
      assert.equal(e.param, param, JSON.stringify(body));
      assert.match(e.message, message);
      return true;
    });
  }
});
