/** The three HF fixtures end to end on the wasm backend (f32), with 1 and 2 threads, and against js. */

import assert from "node:assert/strict";
import { loadModel } from "../../../src/model/model.ts";
import { assertClose, CASES, expected, FIXTURES, hfNewIds } from "../../_fixtures.ts";

for (const name of CASES) {
  for (const threads of [1, 2]) {
    Deno.test(`wasm (${threads} thread${threads > 1 ? "s" : ""}): ${name} matches HF logits, hidden states and greedy ids`, async () => {
      const e = await expected(name);
      const model = await loadModel(new URL(`${name}/hf/`, FIXTURES), {
        backend: "wasm",
        threads,
        log: () => {},
      });
      try {
        assert.equal(model.backendName, "wasm");
        const r = await model.forward(e.inputIds, { outputHiddenStates: true });
        assertClose(r.logits, e.logits, "logits");
        const per = r.hiddenStates![0].length;
        r.hiddenStates!.forEach((h, j) =>
          assertClose(h, e.hiddenStates.subarray(j * per, (j + 1) * per), `hidden state ${j}`)
        );
        const ids = await model.generateIds(e.inputIds, { maxNewTokens: e.newTokens, temperature: 0 });
        assert.deepEqual(ids, hfNewIds(e, model.config.eosTokenId));
      } finally {
        await model.dispose();
      }
    });
  }
}

Deno.test("wasm: greedy and sampled generations equal js, and 1 and 2 threads agree exactly", async () => {
  const opts = [
    { maxNewTokens: 40, temperature: 0 },
    { maxNewTokens: 40, temperature: 0.9, topP: 0.9, topK: 50, seed: 7 },
    { maxNewTokens: 40, temperature: 0, repetitionPenalty: 1.3 },
  ];
  for (const name of CASES) {
    const e = await expected(name);
    const dir = new URL(`${name}/hf/`, FIXTURES);
    const js = await loadModel(dir, { backend: "js" });
    const one = await loadModel(dir, { backend: "wasm", threads: 1 });
    const two = await loadModel(dir, { backend: "wasm", threads: 2 });
    try {
      for (const o of opts) {
        const want = await js.generateIds(e.inputIds, { ...o, ignoreEos: true });
        const a = await one.generateIds(e.inputIds, { ...o, ignoreEos: true });
        const b = await two.generateIds(e.inputIds, { ...o, ignoreEos: true });
        assert.deepEqual(a, want, `${name} ${JSON.stringify(o)}`);
        assert.deepEqual(b, a, `${name} ${JSON.stringify(o)}: 2 threads`);
      }
      const l1 = await one.forward(e.inputIds), l2 = await two.forward(e.inputIds);
      assert.deepEqual(l2.logits, l1.logits);
    } finally {
      await Promise.all([js.dispose(), one.dispose(), two.dispose()]);
    }
  }
});

Deno.test("wasm: f16 packing is exact on a checkpoint stored in f16", async () => {
  const e = await expected("mamba-small-f16");
  const model = await loadModel(new URL("mamba-small-f16/hf/", FIXTURES), {
    backend: "wasm",
    dtype: "f16",
    threads: 1,
  });
  try {
    assertClose((await model.forward(e.inputIds)).logits, e.logits, "logits");
  } finally {
    await model.dispose();
  }
});
