import assert from "node:assert/strict";
import OpenAI from "openai";
import { createHandler } from "../../src/serve/handler.ts";
import { greedyText, startServer, TINY, waitFor } from "./_server.ts";

const client = (base: string) => new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const post = (base: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${base}/v1/completions`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", ...headers },
  });

/** Asserts an OpenAI-style error response and returns its error object. */
async function apiError(res: Response, status: number): Promise<Record<string, unknown>> {
  assert.equal(res.status, status);
  const body = await res.json();
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  return body.error;
}

Deno.test("createHandler() answers the openai client with the model's greedy text", async () => {
  await using s = await startServer();
  const want = await greedyText(s.model, "Hello", 12);
  const got = await client(s.base).completions.create({
    model: "mamba-tiny",
    prompt: "Hello",
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(got.object, "text_completion");
  assert.equal(got.model, "mamba-tiny");
  assert.equal(got.choices.length, 1);
  assert.equal(got.choices[0].text, want);
  assert.equal(got.choices[0].index, 0);
  assert.equal(got.choices[0].logprobs, null);
  assert.equal(got.choices[0].finish_reason, want.length === 12 ? "length" : "stop");
  assert.deepEqual(got.usage, { prompt_tokens: 5, completion_tokens: 12, total_tokens: 17 });
  const models = await client(s.base).models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["mamba-tiny"]);
});

Deno.test("createHandler() streams server-sent events to the openai client, with usage at the end", async () => {
  await using s = await startServer();
  const want = await greedyText(s.model, "Hello", 20);
  const stream = await client(s.base).completions.create({
    model: "mamba-tiny",
    prompt: "Hello",
    max_tokens: 20,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", finish = "", chunks = 0;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "text_completion");
    chunks++;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, want);
  assert.ok(chunks > 2, `${chunks} chunks`);
  assert.equal(finish, "length");
  assert.deepEqual(usage, { prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 });
});

Deno.test("createHandler() sends OpenAI's SSE framing, ending with [DONE]", async () => {
  await using s = await startServer();
  const res = await post(
    s.base,
    JSON.stringify({ prompt: "ab", max_tokens: 3, temperature: 0, stream: true }),
  );
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const events = (await res.text()).split("\n\n");
  assert.equal(events.pop(), "");
  assert.equal(events.pop(), "data: [DONE]");
  for (const e of events) {
    assert.match(e, /^data: \{/);
    const c = JSON.parse(e.slice(6));
    assert.equal(c.object, "text_completion");
    assert.equal(c.usage, undefined);
    assert.deepEqual(Object.keys(c.choices[0]).sort(), ["finish_reason", "index", "logprobs", "text"]);
  }
  assert.equal(JSON.parse(events.at(-1)!.slice(6)).choices[0].finish_reason, "length");
});

Deno.test("createHandler() gives a seeded sample, n choices and stop text as the Model API does", async () => {
  await using s = await startServer();
  const opts = { maxNewTokens: 16, temperature: 0.9, topP: 0.95, topK: 50, seed: 1234 };
  let sampled = "";
  for await (const p of s.model.generate("The ", opts)) if (p.token !== 0) sampled += p.text;
  const both = await s.model.generateIds([[84, 104, 101, 32], [84, 104, 101, 32]], opts);
  const second = s.model.tokenizer.decode(both[1].filter((id) => id !== 0));
  const got = await client(s.base).completions.create({
    model: "mamba-tiny",
    prompt: "The ",
    max_tokens: 16,
    temperature: 0.9,
    top_p: 0.95,
    seed: 1234,
    n: 2,
    top_k: 50,
  } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(got.choices[0].text, sampled);
  assert.equal(got.choices[1].text, second);

  const greedy = await greedyText(s.model, "Hello", 30);
  const stop = greedy.slice(8, 10);
  const cut = await client(s.base).completions.create({
    model: "mamba-tiny",
    prompt: "Hello",
    max_tokens: 30,
    temperature: 0,
    stop: [stop, "never-there"],
  });
  assert.equal(cut.choices[0].text, greedy.slice(0, greedy.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, "stop");
});

Deno.test("createHandler() answers token-id prompts and lists of prompts, indexed prompt x n + j", async () => {
  await using s = await startServer();
  const res = await post(
    s.base,
    JSON.stringify({ prompt: [[72, 105], [97]], n: 2, max_tokens: 5, temperature: 0 }),
  );
  const body = await res.json();
  assert.equal(res.status, 200);
  const a = await greedyText(s.model, "Hi", 5), b = await greedyText(s.model, "a", 5);
  assert.deepEqual(body.choices.map((c: { index: number; text: string }) => [c.index, c.text]), [
    [0, a],
    [1, a],
    [2, b],
    [3, b],
  ]);
  assert.equal(body.usage.prompt_tokens, 3);
});

Deno.test("createHandler() refuses malformed requests with OpenAI-style errors", async () => {
  await using s = await startServer({ maxBodyBytes: 1000, maxPromptTokens: 20, maxTokens: 64 });
  let e = await apiError(await post(s.base, "{bad json"), 400);
  assert.equal(e.code, "invalid_json");
  e = await apiError(await post(s.base, JSON.stringify({ prompt: "a", max_tokens: 65 })), 400);
  assert.equal(e.param, "max_tokens");
  assert.match(e.message as string, /at most|\[0, 64\]/);
  e = await apiError(await post(s.base, JSON.stringify({ prompt: "x".repeat(21) })), 400);
  assert.equal(e.code, "prompt_too_long");
  assert.match(e.message as string, /21 tokens, expected at most 20/);
  e = await apiError(await post(s.base, JSON.stringify({ prompt: "x".repeat(2000) })), 413);
  assert.match(e.message as string, /at most 1000 bytes/);
  // A body without Content-Length (streamed) is cut off at the cap as well.
  const chunked = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 5; i++) c.enqueue(new TextEncoder().encode("x".repeat(400)));
      c.close();
    },
  });
  e = await apiError(await fetch(`${s.base}/v1/completions`, { method: "POST", body: chunked }), 413);
  e = await apiError(await post(s.base, JSON.stringify({ prompt: [256] })), 400);
  assert.match(e.message as string, /token 0 is 256, expected an integer id in \[0, 256\)/);
  e = await apiError(await post(s.base, JSON.stringify({ prompt: "" })), 400);
  assert.match(e.message as string, /empty/);
  e = await apiError(await post(s.base, JSON.stringify({ model: "gpt-9", prompt: "a" })), 404);
  assert.equal(e.code, "model_not_found");
  e = await apiError(await fetch(`${s.base}/v1/nothing`), 404);
  e = await apiError(await fetch(`${s.base}/v1/completions`), 405);
  const res = await fetch(`${s.base}/health`, { method: "POST", body: "" });
  assert.equal(res.headers.get("allow"), "GET, HEAD");
  await apiError(res, 405);
  const health = await (await fetch(`${s.base}/health`)).json();
  assert.equal(health.status, "ok");
  // The openai client surfaces the same errors.
  await assert.rejects(
    () => client(s.base).completions.create({ model: "mamba-tiny", prompt: "a", max_tokens: 1000 }),
    (err: unknown) => err instanceof OpenAI.BadRequestError && /max_tokens/.test(err.message),
  );
});

Deno.test("createHandler() answers 429 when the queue is full, and drops requests whose client left", async () => {
  await using s = await startServer({ maxQueue: 1, maxBatch: 1, maxTokens: 100_000 });
  const long = { prompt: "a", max_tokens: 100_000, temperature: 0, stream: true };
  const a = await post(s.base, JSON.stringify(long)); // running
  const reader = a.body!.getReader();
  await reader.read();
  const leave = new AbortController();
  const b = fetch(`${s.base}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ ...long, stream: false }),
    signal: leave.signal,
  }).catch((e) => e);
  await waitFor(() => s.handler.stats().waiting === 1, "the second request to wait");
  const e = await apiError(await post(s.base, JSON.stringify(long)), 429);
  assert.equal(e.code, "queue_full");
  leave.abort(); // leaves the queue
  assert.equal((await b).name, "AbortError");
  await waitFor(() => s.handler.stats().waiting === 0, "the waiting request to leave");
  await reader.cancel(); // stops the running stream
  await waitFor(() => s.handler.stats().running === 0, "the stream to stop");
  const st = s.handler.stats();
  assert.equal(st.cancelled, 2);
  assert.equal(st.completed, 0);
});

Deno.test("createHandler() stops a non-streaming generation when its client disconnects", async () => {
  await using s = await startServer({ maxTokens: 100_000 });
  const leave = new AbortController();
  const res = fetch(`${s.base}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "a", max_tokens: 100_000, temperature: 0 }),
    signal: leave.signal,
  }).catch((e) => e);
  await waitFor(() => s.handler.stats().running === 1, "the request to run");
  leave.abort();
  assert.equal((await res).name, "AbortError");
  await waitFor(() => s.handler.stats().running === 0, "the generation to stop", 2000);
  assert.equal(s.handler.stats().cancelled, 1);
});

Deno.test("createHandler() answers 503 to waiting requests when closed", async () => {
  await using s = await startServer({ maxBatch: 1, maxTokens: 800 });
  const first = post(s.base, JSON.stringify({ prompt: "a", max_tokens: 800, temperature: 0 }));
  await waitFor(() => s.handler.stats().running === 1, "the first request to run");
  const second = post(s.base, JSON.stringify({ prompt: "a", max_tokens: 5, temperature: 0 }));
  await waitFor(() => s.handler.stats().waiting === 1, "the second request to wait");
  await s.handler.close();
  assert.equal((await first).status, 200); // the running one finishes
  await (await first).body?.cancel();
  const e = await apiError(await second, 503);
  assert.match(e.message as string, /shutting down/);
  await apiError(await post(s.base, JSON.stringify({ prompt: "a" })), 503);
});

Deno.test("createHandler() loads its model lazily, once: MODEL from the environment, else the default", async () => {
  const saved = Deno.env.get("MODEL");
  try {
    Deno.env.set("MODEL", TINY.pathname);
    const h = createHandler({ backend: "js", modelId: "tiny" });
    try {
      const health = await (await h.fetch(new Request("http://x/health"))).json();
      assert.equal(health.loaded, false);
      const res = await h.fetch(
        new Request("http://x/v1/completions", {
          method: "POST",
          body: JSON.stringify({ model: "tiny", prompt: "Hi", max_tokens: 2, temperature: 0 }),
        }),
      );
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const model = await h.model();
      assert.equal(model.config.dModel, 64); // the fixture, not the default model
      assert.equal(await h.model(), model);
      assert.equal((await (await h.fetch(new Request("http://x/health"))).json()).loaded, true);
    } finally {
      await h.close();
    }
    Deno.env.delete("MODEL");
    const d = createHandler({ backend: "js" });
    try {
      const cards = await (await d.fetch(new Request("http://x/v1/models"))).json();
      assert.deepEqual(cards.data.map((m: { id: string }) => m.id), ["shakespeare-bytes"]);
      assert.equal((await d.model()).config.dModel, 256);
    } finally {
      await d.close();
    }
  } finally {
    if (saved === undefined) Deno.env.delete("MODEL");
    else Deno.env.set("MODEL", saved);
  }
});

Deno.test("createHandler() answers 503 while its model cannot load, and tries again on the next request", async () => {
  const dir = await Deno.makeTempDir();
  const h = createHandler({ model: dir, backend: "js" });
  try {
    const req = () =>
      h.fetch(
        new Request("http://x/v1/completions", {
          method: "POST",
          body: JSON.stringify({ prompt: "a", max_tokens: 1 }),
        }),
      );
    const e = await apiError(await req(), 503);
    assert.equal(e.code, "model_load_failed");
    assert.match(e.message as string, /config\.json/);
    for (const f of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(new URL(f, TINY), `${dir}/${f}`);
    }
    const res = await req();
    assert.equal(res.status, 200);
    assert.equal((await res.json()).usage.completion_tokens, 1);
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createHandler() refuses limits out of range", () => {
  assert.throws(() => createHandler({ maxBatch: 0 }), /"maxBatch" is 0, expected an integer >= 1/);
  assert.throws(() => createHandler({ maxTokens: -1 }), /"maxTokens" is -1, expected an integer >= 0/);
  assert.throws(() => createHandler({ maxBodyBytes: 1.5 }), /"maxBodyBytes" is 1.5/);
});
