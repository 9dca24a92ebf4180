/**
 * Load on the completions handler over loopback: `requests` greedy requests, `concurrency` at a time,
 * against the default model (or MODEL). Prints one JSON object.
 *
 *   deno run --allow-read --allow-env --allow-net=127.0.0.1 bench/serve.ts [requests] [concurrency] [max_tokens] [backend]
 *
 * @module
 */

import { createHandler } from "../mod.ts";

const [requests = 64, concurrency = 8, maxTokens = 32] = Deno.args.slice(0, 3).map(Number);
const backend = (Deno.args[3] ?? "auto") as "auto" | "js";
const handler = createHandler({
  backend,
  maxQueue: concurrency,
  maxBatch: concurrency,
  load: { log: () => {} },
});
const model = await handler.model();
const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler.fetch);
const url = `http://127.0.0.1:${server.addr.port}/v1/completions`;
const prompts = ["ROMEO:\n", "JULIET:\n", "First Citizen:\n", "KING RICHARD III:\n"];

const one = async (i: number) => {
  const t0 = performance.now();
  const res = await fetch(url, {
    method: "POST",
    body: JSON.stringify({ prompt: prompts[i % prompts.length], max_tokens: maxTokens, temperature: 0 }),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(JSON.stringify(body));
  return { ms: performance.now() - t0, tokens: body.usage.completion_tokens as number };
};
const run = async (n: number) => {
  const out: { ms: number; tokens: number }[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) out.push(await one(next++));
  }));
  return out;
};

await run(concurrency); // warm-up
const t0 = performance.now();
const results = await run(requests);
const wall = (performance.now() - t0) / 1000;
const ms = results.map((r) => r.ms).sort((a, b) => a - b);
const tokens = results.reduce((s, r) => s + r.tokens, 0);
console.log(JSON.stringify({
  bench: "serve",
  model: model.source.split("/").filter(Boolean).pop(),
  backend: model.backendName,
  requests,
  concurrency,
  max_tokens: maxTokens,
  p50_ms: +ms[Math.floor(ms.length / 2)].toFixed(1),
  p99_ms: +ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))].toFixed(1),
  requests_per_s: +(requests / wall).toFixed(2),
  tokens_per_s: +(tokens / wall).toFixed(1),
  largest_batch: handler.stats().largestBatch,
}));
await server.shutdown();
await handler.close();
