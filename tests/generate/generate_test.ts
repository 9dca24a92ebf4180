import assert from "node:assert/strict";
import { loadModel, type Model } from "../../mod.ts";
import type { Tensor } from "../../src/backends/backend.ts";
import { decode } from "../../src/generate/generate.ts";
import type { Network } from "../../src/model/network.ts";

const SHAKESPEARE = new URL("../../models/shakespeare-bytes/", import.meta.url);
const quiet = { backend: "js" as const, log: () => {} };

async function withModel(fn: (m: Model) => Promise<void>): Promise<void> {
  const model = await loadModel(SHAKESPEARE, quiet);
  try {
    await fn(model);
  } finally {
    await model.dispose();
  }
}

async function collect(model: Model, prompt: string, opts: Parameters<Model["generate"]>[1]) {
  const pieces = [];
  for await (const p of model.generate(prompt, opts)) pieces.push(p);
  return pieces;
}

Deno.test("generate() streams the same tokens as generateIds(), and their text", async () => {
  await withModel(async (model) => {
    const ids = (await model.generateIds([model.tokenizer.encode("ROMEO:\n")], { maxNewTokens: 30 }))[0];
    const pieces = await collect(model, "ROMEO:\n", { maxNewTokens: 30 });
    assert.deepEqual(pieces.map((p) => p.token), ids);
    assert.equal(pieces.map((p) => p.text).join(""), model.tokenizer.decode(ids));
  });
});

Deno.test("generate() reproduces HF's greedy continuation of the trained model", async () => {
  await withModel(async (model) => {
    const training = JSON.parse(await Deno.readTextFile(new URL("training.json", SHAKESPEARE)));
    // training.json's continuation was made while eos was "\n": it ends at the first newline after the prompt.
    const text = (await collect(model, training.greedy_prompt, { maxNewTokens: 300, stopIds: [10] }))
      .map((p) => p.text).join("");
    assert.equal(training.greedy_prompt + text, training.greedy_300_hf);
  });
});

Deno.test("generate() ends at a stop sequence and does not emit it", async () => {
  await withModel(async (model) => {
    const full = (await collect(model, "ROMEO:\n", { maxNewTokens: 60 })).map((p) => p.text).join("");
    const stop = full.slice(10, 13);
    const text = (await collect(model, "ROMEO:\n", { maxNewTokens: 60, stop: [stop] })).map((p) => p.text)
      .join("");
    assert.equal(text, full.slice(0, full.indexOf(stop)));
  });
});

Deno.test("generate() with a seed is reproducible, and different seeds differ", async () => {
  await withModel(async (model) => {
    const opts = {
      maxNewTokens: 40,
      temperature: 1,
      topK: 40,
      topP: 0.95,
      minP: 0.01,
      repetitionPenalty: 1.1,
    };
    const a = await model.generateIds([[65, 66]], { ...opts, seed: 1 });
    const b = await model.generateIds([[65, 66]], { ...opts, seed: 1 });
    const c = await model.generateIds([[65, 66]], { ...opts, seed: 2 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });
});

Deno.test("generate() stops when its AbortSignal fires, rejecting with the reason", async () => {
  await withModel(async (model) => {
    const controller = new AbortController();
    let count = 0;
    await assert.rejects(async () => {
      for await (const _ of model.generate("ROMEO:\n", { maxNewTokens: 500, signal: controller.signal })) {
        if (++count === 3) controller.abort(new Error("client went away"));
      }
    }, /client went away/);
    assert.equal(count, 3);
    await assert.rejects(
      model.generateIds([[1]], { signal: AbortSignal.abort(new Error("already")) }),
      /already/,
    );
  });
});

Deno.test("generateIds() honours maxNewTokens, stopIds and eos", async () => {
  await withModel(async (model) => {
    const prompt = model.tokenizer.encode("ROMEO:\n");
    assert.deepEqual(await model.generateIds([prompt], { maxNewTokens: 0 }), [[]]);
    const ids = (await model.generateIds([prompt], { maxNewTokens: 25 }))[0];
    assert.equal(ids.length, 25);
    const stopAt = ids[7];
    const stopped = (await model.generateIds([prompt], { maxNewTokens: 25, stopIds: [stopAt] }))[0];
    assert.deepEqual(stopped, ids.slice(0, ids.indexOf(stopAt) + 1));
  });
});

Deno.test("decode() on a backend that reads several steps at once: cycles of 4, 8, 16, then 32 steps, the same ids", async () => {
  await withModel(async (model) => {
    const inner = model.network, real = inner.backend;
    const prompts = [model.tokenizer.encode("ROMEO:\n"), model.tokenizer.encode("JULIET:\n")];
    const want = await model.generateIds(prompts, { maxNewTokens: 100, ignoreEos: true });
    // the js backend as if its reads cost a round trip (webgpu's stepsPerRead), counting its reads
    let reads = 0;
    const be = new Proxy(real, {
      get(target, key) {
        if (key === "stepsPerRead") return 32;
        if (key === "readIds") return (t: Tensor) => (reads++, target.readIds(t));
        const v = Reflect.get(target, key);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const net = {
      backend: be,
      config: inner.config,
      run: inner.run.bind(inner),
      head: inner.head.bind(inner),
      newState: inner.newState.bind(inner),
    } as unknown as Network;
    const sizes: number[] = [];
    const got: number[][] = [[], []];
    for await (const chunk of decode(net, prompts, { maxNewTokens: 100, ignoreEos: true })) {
      sizes.push(chunk.ids[0].length);
      chunk.ids.forEach((ids, i) => got[i].push(...ids));
    }
    // the first sampled ids (after the prefill), then cycles growing to stepsPerRead
    assert.deepEqual(sizes, [1, 4, 8, 16, 32, 32, 7]);
    assert.equal(reads, sizes.length);
    assert.deepEqual(got, want);
  });
});
