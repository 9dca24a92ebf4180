import assert from "node:assert/strict";
import { parseConfig, parseJsonLenient } from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";
import { FIXTURES } from "./_fixtures.ts";

const read = (path: string) => Deno.readTextFile(new URL(path, FIXTURES));

Deno.test("parseConfig() reads HF and original layouts of one model to the same config", async () => {
  for (const name of ["mamba-tiny", "mamba-small-f16", "mamba2-tiny"]) {
    const hf = parseConfig(await read(`${name}/hf/config.json`));
    const orig = parseConfig(await read(`${name}/original/config.json`));
    const { bosTokenId: _b, eosTokenId: _e, padTokenId: _p, ...hfCore } = hf;
    assert.deepEqual(orig, hfCore, name);
  }
});

Deno.test("parseConfig() derives Mamba-1 sizes from the HF fields", async () => {
  const c = parseConfig(await read("mamba-small-f16/hf/config.json"));
  assert.equal(c.arch, "mamba");
  assert.deepEqual(
    [c.dModel, c.nLayer, c.vocabSize, c.dState, c.dInner, c.dConv, c.dtRank, c.bias, c.convBias],
    [128, 3, 1000, 16, 256, 4, 8, false, true],
  );
  assert.equal(c.eosTokenId, 0);
});

Deno.test("parseConfig() reads Mamba-2 heads, groups and the Infinity limit", async () => {
  const c = parseConfig(await read("mamba2-tiny/hf/config.json"));
  assert.equal(c.arch, "mamba2");
  assert.deepEqual([c.nHeads, c.headDim, c.nGroups, c.chunkSize, c.dInner], [8, 16, 1, 16, 128]);
  assert.deepEqual(c.dtLimit, [0, Infinity]);
});

Deno.test("parseConfig() computes time_step_rank 'auto' as ceil(d / 16)", () => {
  const c = parseConfig(
    JSON.stringify({ hidden_size: 100, num_hidden_layers: 1, vocab_size: 300, time_step_rank: "auto" }),
  );
  assert.equal(c.dtRank, 7);
  assert.equal(c.dInner, 200);
});

Deno.test("parseConfig() pads the vocab of original configs as mamba_ssm does", () => {
  const c = parseConfig(JSON.stringify({ d_model: 768, n_layer: 24, vocab_size: 50277, ssm_cfg: {} }));
  assert.equal(c.vocabSize, 50280); // pad_vocab_size_multiple defaults to 8
  const one = parseConfig(
    JSON.stringify({ d_model: 768, n_layer: 24, vocab_size: 50277, pad_vocab_size_multiple: 16 }),
  );
  assert.equal(one.vocabSize, 50288);
  const m2 = parseConfig(
    JSON.stringify({ d_model: 768, n_layer: 24, vocab_size: 50277, ssm_cfg: { layer: "Mamba2" } }),
  );
  assert.deepEqual([m2.arch, m2.dState, m2.headDim, m2.nHeads, m2.chunkSize], ["mamba2", 128, 64, 24, 256]);
});

Deno.test("parseJsonLenient() accepts Python's Infinity, -Infinity and NaN outside strings only", () => {
  const v = parseJsonLenient('{"a": [Infinity, -Infinity, NaN], "s": "Infinity NaN", "e": 1e-5}') as {
    a: number[];
    s: string;
    e: number;
  };
  assert.equal(v.a[0], Infinity);
  assert.equal(v.a[1], -Infinity);
  assert.ok(Number.isNaN(v.a[2]));
  assert.equal(v.s, "Infinity NaN");
  assert.equal(v.e, 1e-5);
  const limit = parseConfig(
    '{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 256, "head_dim": 16, "time_step_limit": [0.0, Infinity]}',
  );
  assert.deepEqual(limit.dtLimit, [0, Infinity]);
});

const BAD: [string, string, RegExp][] = [
  ["not JSON", "{hidden_size: 1", /Cannot parse config\.json: expected JSON/],
  ["not an object", "[1, 2]", /expected a JSON object, found an array of 2/],
  [
    "missing hidden_size",
    '{"num_hidden_layers": 2, "vocab_size": 10}',
    /field "hidden_size" is nothing, expected a positive integer/,
  ],
  [
    "string layers",
    '{"hidden_size": 8, "num_hidden_layers": "2", "vocab_size": 10}',
    /field "num_hidden_layers" is "2", expected a positive integer/,
  ],
  ["zero vocab", '{"hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 0}', /field "vocab_size" is 0/],
  [
    "other model",
    '{"model_type": "llama", "hidden_size": 8}',
    /field "model_type" is "llama", expected "mamba" or "mamba2"/,
  ],
  [
    "bad bias",
    '{"hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 10, "use_bias": "no"}',
    /field "use_bias" is "no", expected true or false/,
  ],
  [
    "heads do not divide",
    '{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 256, "head_dim": 16, "num_heads": 5}',
    /heads x head dim is 5 x 16, expected a product equal to d_inner 128/,
  ],
  [
    "hybrid attention",
    '{"d_model": 64, "n_layer": 2, "vocab_size": 256, "attn_layer_idx": [1]}',
    /attn_layer_idx/,
  ],
  [
    "bad limit",
    '{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 256, "head_dim": 16, "time_step_limit": [1]}',
    /time_step_limit/,
  ],
];

for (const [what, text, message] of BAD) {
  Deno.test(`parseConfig() refuses a config.json with ${what}`, () => {
    assert.throws(() => parseConfig(text), (e: Error) => e instanceof ConfigError && message.test(e.message));
  });
}
