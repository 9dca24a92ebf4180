import assert from "node:assert/strict";
import type { SamplingParams } from "../../src/backends/backend.ts";
import { loadModel, type Model } from "../../src/model/model.ts";
import { type FinishReason, type Job, Scheduler } from "../../src/serve/scheduler.ts";
import { expected, FIXTURES, hfNewIds } from "../_fixtures.ts";
import { greedyText, TINY } from "./_server.ts";

const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 };

interface Outcome {
  texts: string[];
  reasons: FinishReason[];
  tokens: number[];
}

/** Submits a job; the promise settles when every choice has ended. */
function submit(
  s: Scheduler,
  prompts: number[][],
  opts: Partial<Omit<Job, "sink" | "prompts">> = {},
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const out: Outcome = { texts: prompts.map(() => ""), reasons: [], tokens: [] };
    let left = prompts.length;
    s.submit({
      prompts,
      maxTokens: 8,
      stop: [],
      sampling: GREEDY,
      seeded: false,
      ...opts,
      sink: {
        text: (i, t) => (out.texts[i] += t),
        finish(i, reason, tokens) {
          out.reasons[i] = reason;
          out.tokens[i] = tokens;
          if (--left === 0) resolve(out);
        },
        fail: reject,
      },
    });
  });
}

const ids = (m: Model, text: string) => m.tokenizer.encode(text);

Deno.test("Scheduler batches greedy jobs and each gets the text it gets alone", async () => {
  await using stack = new AsyncDisposableStack();
  const model = await loadModel(TINY, { backend: "js" });
  stack.defer(() => model.dispose());
  const s = new Scheduler(model, { maxQueue: 16, maxBatch: 8 });
  stack.defer(() => s.close());
  const prompts = ["a", "Hello", "xyz", "Hello", "The end"];
  const lengths = [3, 9, 5, 9, 0];
  const got = await Promise.all(prompts.map((p, i) => submit(s, [ids(model, p)], { maxTokens: lengths[i] })));
  const st = s.stats();
  assert.equal(st.batches, 1);
  assert.equal(st.largestBatch, 5);
  assert.equal(st.completed, 5);
  for (let i = 0; i < prompts.length; i++) {
    assert.equal(got[i].texts[0], await greedyText(model, prompts[i], lengths[i]), prompts[i]);
    assert.deepEqual(got[i].reasons, ["length"]);
    assert.deepEqual(got[i].tokens, [lengths[i]]);
  }
});

Deno.test("Scheduler reproduces HF's greedy ids, and ends at eos with finish reason stop", async () => {
  for (const name of ["mamba-tiny", "mamba2-tiny"]) {
    const model = await loadModel(new URL(`${name}/hf/`, FIXTURES), { backend: "js" });
    const s = new Scheduler(model, { maxQueue: 16, maxBatch: 8 });
    try {
      const e = await expected(name);
      const want = hfNewIds(e, model.config.eosTokenId);
      const got = await Promise.all(e.inputIds.map((p) => submit(s, [p], { maxTokens: e.newTokens })));
      assert.equal(s.stats().batches, 1);
      want.forEach((w, i) => {
        const eos = w.at(-1) === model.config.eosTokenId;
        const text = model.tokenizer.decode(eos ? w.slice(0, -1) : w);
        assert.equal(got[i].texts[0], text, `${name} sequence ${i}`);
        assert.deepEqual(got[i].reasons, [eos ? "stop" : "length"], `${name} sequence ${i}`);
        assert.deepEqual(got[i].tokens, [eos ? w.length - 1 : w.length]);
      });
      if (name === "mamba2-tiny") assert.deepEqual(got[1].reasons, ["stop"]); // HF's row 1 ends at eos
    } finally {
      await s.close();
      await model.dispose();
    }
  }
});

Deno.test("Scheduler runs seeded sampled jobs alone and honours maxBatch", async () => {
  await using stack = new AsyncDisposableStack();
  const model = await loadModel(TINY, { backend: "js" });
  stack.defer(() => model.dispose());
  const s = new Scheduler(model, { maxQueue: 16, maxBatch: 3 });
  stack.defer(() => s.close());
  const sampling = { ...GREEDY, temperature: 0.8, topP: 0.9, seed: 42 };
  const seeded = await Promise.all(
    [1, 2, 3].map(() => submit(s, [ids(model, "Hi")], { sampling, seeded: true })),
  );
  assert.equal(s.stats().batches, 3);
  let want = "";
  for await (const p of model.generate("Hi", { maxNewTokens: 8, ...sampling })) want += p.text;
  for (const o of seeded) assert.equal(o.texts[0], want);

  // Unseeded sampled jobs with the same params share batches; 7 single-sequence jobs at maxBatch 3.
  const before = s.stats().batches;
  await Promise.all(
    Array.from({ length: 7 }, () => submit(s, [ids(model, "Hi")], { sampling: { ...sampling } })),
  );
  assert.equal(s.stats().batches - before, 3);
  assert.equal(s.stats().largestBatch, 3);
  // Different temperatures never share one.
  const b2 = s.stats().batches;
  await Promise.all(
    [0.5, 0.7].map((t) => submit(s, [ids(model, "Hi")], { sampling: { ...sampling, temperature: t } })),
  );
  assert.equal(s.stats().batches - b2, 2);
});

Deno.test("Scheduler applies stop text per sequence within a batch", async () => {
  await using stack = new AsyncDisposableStack();
  const model = await loadModel(TINY, { backend: "js" });
  stack.defer(() => model.dispose());
  const s = new Scheduler(model, { maxQueue: 16, maxBatch: 8 });
  stack.defer(() => s.close());
  const full = await greedyText(model, "Hello", 20);
  const stop = full.slice(5, 7);
  const [cut, whole] = await Promise.all([
    submit(s, [ids(model, "Hello")], { maxTokens: 20, stop: [stop] }),
    submit(s, [ids(model, "Hello")], { maxTokens: 20 }),
  ]);
  assert.equal(s.stats().batches, 1);
  assert.equal(cut.texts[0], full.slice(0, full.indexOf(stop)));
  assert.deepEqual(cut.reasons, ["stop"]);
  assert.equal(whole.texts[0], full);
  assert.deepEqual(whole.reasons, ["length"]);
});
