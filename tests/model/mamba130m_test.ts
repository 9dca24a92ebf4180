/**
 * The real state-spaces/mamba-130m (or mamba-130m-hf) against the values HF transformers' integration
 * tests publish (/work/shared/data/reference-values.md). Runs when MAMBA_130M_DIR names a downloaded
 * checkpoint directory (config.json + pytorch_model.bin or model.safetensors); MAMBA_130M_BACKEND picks
 * the backend (default auto).
 */

import assert from "node:assert/strict";
import { loadModel } from "../../src/model/model.ts";
import { maxAbsDiff } from "../_fixtures.ts";

const dir = Deno.env.get("MAMBA_130M_DIR");
const backend = (Deno.env.get("MAMBA_130M_BACKEND") ?? "auto") as "auto";

// logits[0, 0, :40] of "Hey how are you doing?" (the position after "Hey"), float32, tolerance 1e-3.
const LOGITS_HEY = [
  -55.6909,
  -69.7903,
  -49.8981,
  -51.7581,
  -57.6544,
  -57.9368,
  -56.9591,
  -57.9033,
  -54.6787,
  -55.9261,
  -55.3011,
  -58.0765,
  -60.5642,
  -47.0176,
  -52.0344,
  -49.7836,
  -55.9463,
  -57.8957,
  -56.7627,
  -57.1080,
  -57.3434,
  -58.3015,
  -57.7875,
  -58.7760,
  -59.6037,
  -59.0665,
  -58.7087,
  -52.9293,
  -53.4654,
  -57.3466,
  -56.9294,
  -55.7314,
  -53.3141,
  -55.8171,
  -56.9879,
  -56.9121,
  -56.2139,
  -54.7198,
  -56.4134,
  -57.4825,
];

Deno.test({
  name: dir
    ? "loadModel() of state-spaces/mamba-130m gives HF's logits and greedy text"
    : "loadModel() of state-spaces/mamba-130m gives HF's logits and greedy text (skipped: set MAMBA_130M_DIR to a downloaded checkpoint)",
  ignore: !dir,
  async fn() {
    const model = await loadModel(dir!, { backend });
    try {
      const ids = model.tokenizer.encode("Hey how are you doing?");
      assert.deepEqual(ids, [8262, 849, 403, 368, 2509, 32]);
      const { logits } = await model.forward([ids]);
      const err = maxAbsDiff(logits.subarray(0, 40), LOGITS_HEY);
      assert.ok(err <= 1e-3, `logits[0, 0, :40] max abs error ${err}`);
      const out = await model.generateIds([ids], { maxNewTokens: 10, temperature: 0 });
      assert.equal(
        model.tokenizer.decode([...ids, ...out[0]]),
        "Hey how are you doing?\n\nI'm so glad you're here.",
      );
      let text = "";
      for await (const p of model.generate("Hey how are you doing?", { maxNewTokens: 10, temperature: 0 })) {
        text += p.text;
      }
      assert.equal(text, "\n\nI'm so glad you're here.");
    } finally {
      await model.dispose();
    }
  },
});
