/**
 * The end-to-end checks every backend must pass against the HF reference fixtures:
 * logits and hidden states of a full forward pass, exact greedy ids, and prefill + steps agreeing with
 * a full forward pass. `fixtureSuite("wasm")` registers them for one backend.
 */

import assert from "node:assert/strict";
import { loadModel, type LoadOptions } from "../mod.ts";
import { prefill } from "../src/generate/generate.ts";
import { assertClose, CASES, expected, FIXTURES, hfNewIds } from "./_fixtures.ts";

export function fixtureSuite(opts: LoadOptions & { ignore?: string; layouts?: string[] }): void {
  const tag = opts.backend ?? "auto";
  const layouts = opts.layouts ?? ["hf"];
  for (const name of CASES) {
    for (const layout of layouts) {
      const dir = new URL(`${name}/${layout}/`, FIXTURES);
      const load = () => loadModel(dir, { ...opts, log: () => {} });
      const ignore = opts.ignore !== undefined;
      if (ignore) console.log(`${tag}: ${opts.ignore}`);

      Deno.test(
        { name: `${tag}: ${name}/${layout} forward matches HF logits and hidden states`, ignore },
        async () => {
          const model = await load();
          try {
            const e = await expected(name);
            const r = await model.forward(e.inputIds, { outputHiddenStates: true });
            assert.deepEqual(r.shape, [e.batch, e.promptLen, model.config.vocabSize]);
            assertClose(r.logits, e.logits, "logits");
            const per = r.hiddenStates![0].length;
            r.hiddenStates!.forEach((h, j) =>
              assertClose(h, e.hiddenStates.subarray(j * per, (j + 1) * per), `hidden state ${j}`)
            );
          } finally {
            await model.dispose();
          }
        },
      );

      Deno.test(
        { name: `${tag}: ${name}/${layout} greedy generateIds equals HF generate`, ignore },
        async () => {
          const model = await load();
          try {
            const e = await expected(name);
            const ids = await model.generateIds(e.inputIds, { maxNewTokens: e.newTokens, temperature: 0 });
            assert.deepEqual(ids, hfNewIds(e, model.config.eosTokenId));
          } finally {
            await model.dispose();
          }
        },
      );

      Deno.test({
        name: `${tag}: ${name}/${layout} prefill then steps give the logits of a full forward`,
        ignore,
      }, async () => {
        const model = await load();
        const net = model.network, be = net.backend, c = model.config;
        try {
          const e = await expected(name);
          const b = e.batch, v = c.vocabSize, total = e.promptLen + e.newTokens;
          const at = (t: number) => {
            const out = new Float32Array(b * v);
            for (let i = 0; i < b; i++) {
              out.set(e.generatedLogits.subarray((i * total + t) * v, (i * total + t + 1) * v), i * v);
            }
            return out;
          };
          const state = net.newState(b);
          const last = be.zeros([b, c.dModel]), normed = be.zeros([b, c.dModel]), logits = be.zeros([b, v]);
          const prompts = e.generatedIds.map((row) => row.slice(0, e.promptLen));
          prefill(net, state, prompts, last);
          net.head(logits, normed, last);
          assertClose(await be.read(logits), at(e.promptLen - 1), "logits after prefill");
          const ids = be.zeros([b], "i32");
          for (let t = e.promptLen; t < total; t++) {
            be.write(ids, Int32Array.from(e.generatedIds.map((row) => row[t])));
            const ws = net.run(state, ids, 0, b, 1);
            net.head(logits, normed, ws.hidden);
            assertClose(await be.read(logits), at(t), `logits of step at position ${t}`);
          }
          for (const t of [last, normed, logits, ids]) be.free(t);
          state.dispose();
        } finally {
          await model.dispose();
        }
      });
    }
  }

  Deno.test({
    name: `${tag}: shakespeare-bytes gives HF's last logits for "ROMEO:\\n"`,
    ignore: opts.ignore !== undefined,
  }, async () => {
    const dir = new URL("../models/shakespeare-bytes/", import.meta.url);
    const training = JSON.parse(await Deno.readTextFile(new URL("training.json", dir)));
    const model = await loadModel(dir, { ...opts, log: () => {} });
    try {
      const ids = model.tokenizer.encode(training.greedy_prompt);
      assert.deepEqual(ids, training.prompt_ids);
      const r = await model.forward([ids]);
      const v = model.config.vocabSize;
      assertClose(
        r.logits.subarray((ids.length - 1) * v),
        Float32Array.from(training.prompt_last_logits_hf),
        "logits",
      );
    } finally {
      await model.dispose();
    }
  });
}
