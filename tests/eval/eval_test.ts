import assert from "node:assert/strict";
import { lambada, logSoftmaxAt, perplexity } from "../../src/eval/eval.ts";
import { DEFAULT_MODEL, loadModel } from "../../src/model/model.ts";
import { expected, FIXTURES } from "../_fixtures.ts";

Deno.test("perplexity() sums the log-likelihoods of HF's logits on mamba-tiny", async () => {
  const e = await expected("mamba-tiny");
  const model = await loadModel(new URL("mamba-tiny/hf/", FIXTURES), { backend: "js" });
  try {
    const ids = e.inputIds[0], l = ids.length, v = model.config.vocabSize;
    // Reference: the NLL of ids[1:] under HF's logits of sequence 0 (one window holds all of it).
    let want = 0;
    for (let t = 0; t + 1 < l; t++) want -= logSoftmaxAt(e.logits, t * v, v, ids[t + 1]);
    const r = await perplexity(model, ids, { window: l });
    assert.equal(r.tokens, l - 1);
    assert.equal(r.windows, 1);
    assert.ok(Math.abs(r.nll - want) < 1e-4 * l, `nll ${r.nll} vs HF ${want}`);
    assert.ok(Math.abs(r.ppl - Math.exp(want / (l - 1))) < 1e-3);
    // Windows of 3 predictions: 3 + 3 + ... cover every id but the first, each once.
    const w = await perplexity(model, ids, { window: 3, batch: 2 });
    assert.equal(w.tokens, l - 1);
    assert.equal(w.windows, Math.ceil((l - 1) / 3));
    assert.equal(w.perWindow.length, w.windows);
  } finally {
    await model.dispose();
  }
});

Deno.test("perplexity() of shakespeare-bytes on tinyshakespeare's last 10% is about 1.56 nats per byte", async () => {
  const text = await Deno.readTextFile(new URL("tinyshakespeare-val.txt", FIXTURES));
  const model = await loadModel(DEFAULT_MODEL, { backend: "js" });
  try {
    // training.json: 1.5584 nats/byte over 256-byte windows of the validation split. The js backend
    // needs ~20 min for all 436 windows (the full protocol gives 1.5422 with `deno task eval`), so this
    // runs 4 windows spread over the split (every 109th: 1.415). Window losses vary: their standard
    // deviation over the split is 0.26 nats, and the means of 4 windows taken every 109th (all 109
    // offsets) have a standard deviation of 0.11, so 0.35 (about 3 of those) separates sampling from a
    // broken evaluation (an off-by-one target costs several nats per byte).
    const r = await perplexity(model, text, { window: 256, every: 109 });
    assert.equal(r.windows, 4);
    assert.equal(r.tokens, 1024);
    assert.equal(r.bytes, 1024);
    assert.ok(Math.abs(r.natsPerByte - 1.5584) < 0.35, `${r.natsPerByte} nats/byte`);
  } finally {
    await model.dispose();
  }
});

Deno.test("lambada() counts a passage when greedy decoding gives its last word", async () => {
  const model = await loadModel(DEFAULT_MODEL, { backend: "js" });
  try {
    // training.json: HF's greedy continuation of "ROMEO:\n" is "And then I should speak more son to the sea\n".
    const right = "ROMEO:\nAnd then I should speak more son to the sea";
    const wrong = "ROMEO:\nAnd then I should speak more son to the moon";
    assert.equal((await lambada(model, [right])).accuracy, 1);
    assert.equal((await lambada(model, [wrong])).accuracy, 0);
    const both = await lambada(model, [right, wrong]);
    assert.equal(both.examples, 2);
    assert.equal(both.accuracy, 0.5);
    assert.ok(both.ppl > 1);
  } finally {
    await model.dispose();
  }
});
