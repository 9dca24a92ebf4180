import assert from "node:assert/strict";
import { greedyText, startServer } from "./_server.ts";

const PROMPTS = ["ROMEO:\n", "To be, or not", "Hello", "xyz"];

Deno.test("createHandler() serves 200 requests at concurrency 8: all succeed, same texts, flat memory", async () => {
  await using s = await startServer({ maxQueue: 16, maxBatch: 8 });
  const want = await Promise.all(PROMPTS.map((p) => greedyText(s.model, p, 12)));
  const one = async (i: number): Promise<[string, number]> => {
    const stream = i % 4 === 3; // a quarter streamed
    const t0 = performance.now();
    const res = await fetch(`${s.base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: PROMPTS[i % PROMPTS.length], max_tokens: 12, temperature: 0, stream }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    let text = "";
    if (stream) {
      for (const e of (await res.text()).split("\n\n")) {
        if (e.startsWith("data: {")) text += JSON.parse(e.slice(6)).choices[0]?.text ?? "";
      }
    } else text = (await res.json()).choices[0].text;
    return [text, performance.now() - t0];
  };
  /** n requests, `width` at a time; returns texts and latencies (ms) in request order. */
  const load = async (n: number, width: number) => {
    const out: [string, number][] = new Array(n);
    let next = 0;
    await Promise.all(Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await one(i);
      }
    }));
    return out;
  };

  await load(32, 8); // warm-up
  const heap0 = Deno.memoryUsage().heapUsed;
  const t0 = performance.now();
  const results = await load(200, 8);
  const wall = performance.now() - t0;
  const heap1 = Deno.memoryUsage().heapUsed;

  results.forEach(([text], i) => assert.equal(text, want[i % PROMPTS.length], `request ${i}`));
  const ms = results.map(([, t]) => t).sort((a, b) => a - b);
  const pct = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))].toFixed(1);
  const st = s.handler.stats();
  console.log(
    `200 requests, concurrency 8, mamba-tiny js, max_tokens 12: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, ` +
      `${(200 / (wall / 1000)).toFixed(0)} req/s, ${st.batches} batches (largest ${st.largestBatch}), ` +
      `heap ${(heap0 / 2 ** 20).toFixed(1)} -> ${(heap1 / 2 ** 20).toFixed(1)} MiB`,
  );
  assert.equal(st.failed, 0);
  assert.equal(st.completed, 232);
  assert.ok(st.largestBatch > 1, "concurrent greedy requests were batched");
  assert.ok(heap1 - heap0 < 32 * 2 ** 20, `heap grew by ${((heap1 - heap0) / 2 ** 20).toFixed(1)} MiB`);
});
