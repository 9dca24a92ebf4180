/**
 * How much each weight packing of the wasm backend changes the outputs on the HF fixtures: max abs
 * error of the logits against HF's, and whether greedy generation still gives HF's ids. One JSON
 * object per line.
 *
 *   deno run --allow-read bench/dtypes.ts
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { CASES, expected, FIXTURES, hfNewIds, maxAbsDiff, std } from "../tests/_fixtures.ts";

for (const name of CASES) {
  const e = await expected(name);
  for (const dtype of ["f32", "bf16", "f16", "q8"] as const) {
    const model = await loadModel(new URL(`${name}/hf/`, FIXTURES), { backend: "wasm", dtype, threads: 1 });
    try {
      const r = await model.forward(e.inputIds);
      const ids = await model.generateIds(e.inputIds, { maxNewTokens: e.newTokens, temperature: 0 });
      const want = hfNewIds(e, model.config.eosTokenId);
      console.log(JSON.stringify({
        case: name,
        dtype,
        max_abs_error: +maxAbsDiff(r.logits, e.logits).toExponential(2),
        logits_std: +std(e.logits).toFixed(3),
        greedy_identical: JSON.stringify(ids) === JSON.stringify(want),
      }));
    } finally {
      await model.dispose();
    }
  }
}
