import assert from "node:assert/strict";
import { ConfigError, InputError, loadModel, ModelLoadError, StateError } from "../../mod.ts";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { assertClose, expected, FIXTURES } from "../_fixtures.ts";

const TINY = new URL("mamba-tiny/hf/", FIXTURES);

async function tinyFiles(): Promise<Record<string, Uint8Array>> {
  return {
    "config.json": await Deno.readFile(new URL("config.json", TINY)),
    "model.safetensors": await Deno.readFile(new URL("model.safetensors", TINY)),
  };
}

/** The tiny checkpoint with one tensor changed (undefined: removed). */
async function withTensor(name: string, replace?: { shape: number[] }): Promise<Record<string, Uint8Array>> {
  const files = await tinyFiles();
  const tensors = readSafetensors(files["model.safetensors"], "x");
  const out: Record<string, { dtype: "F32"; shape: number[]; bytes: Uint8Array }> = {};
  for (const [k, t] of tensors) {
    if (k !== name) out[k] = { dtype: "F32", shape: t.shape, bytes: t.bytes };
    else if (replace) {
      const n = replace.shape.reduce((a, s) => a * s, 1);
      out[k] = { dtype: "F32", shape: replace.shape, bytes: new Uint8Array(4 * n) };
    }
  }
  return { ...files, "model.safetensors": writeSafetensors(out) };
}

const quiet = { backend: "js" as const, log: () => {} };

Deno.test("loadModel() refuses a checkpoint that lacks a tensor, naming it", async () => {
  const files = await withTensor("backbone.layers.1.mixer.A_log");
  await assert.rejects(
    loadModel({ files, name: "tiny" }, quiet),
    (e: Error) =>
      e instanceof ModelLoadError &&
      /tensor "backbone\.layers\.1\.mixer\.A_log" is missing, expected shape \(128, 16\)/.test(e.message),
  );
});

Deno.test("loadModel() refuses a tensor whose shape disagrees with config.json", async () => {
  const files = await withTensor("backbone.layers.0.mixer.A_log", { shape: [128, 8] });
  await assert.rejects(
    loadModel({ files, name: "tiny" }, quiet),
    (e: Error) =>
      e instanceof ModelLoadError &&
      e.message ===
        'Cannot load weights from tiny: tensor "backbone.layers.0.mixer.A_log" has shape (128, 8), expected (128, 16)',
  );
});

Deno.test("loadModel() refuses a config.json that is not JSON or lacks fields", async () => {
  const files = await tinyFiles();
  await assert.rejects(
    loadModel({ files: { ...files, "config.json": new TextEncoder().encode("{oops") }, name: "tiny" }, quiet),
    (e: Error) => e instanceof ConfigError && /tiny\/config\.json: expected JSON/.test(e.message),
  );
  await assert.rejects(
    loadModel({
      files: { ...files, "config.json": new TextEncoder().encode('{"hidden_size": 64}') },
      name: "tiny",
    }, quiet),
    (e: Error) => e instanceof ConfigError && /field "num_hidden_layers" is nothing/.test(e.message),
  );
});

Deno.test("loadModel() says which files it looked for when there are no weights", async () => {
  const files = await tinyFiles();
  delete files["model.safetensors"];
  await assert.rejects(
    loadModel({ files, name: "tiny" }, quiet),
    (e: Error) => e instanceof ModelLoadError && /found none of model\.safetensors/.test(e.message),
  );
  await assert.rejects(
    loadModel("/nonexistent/dir", quiet),
    (e: Error) => e instanceof ModelLoadError && /config\.json is missing/.test(e.message),
  );
});

Deno.test("loadModel() reads sharded safetensors through the index", async () => {
  const files = await tinyFiles();
  const all = readSafetensors(files["model.safetensors"], "x");
  const names = [...all.keys()];
  const shard = (part: string[]) =>
    writeSafetensors(
      Object.fromEntries(
        part.map((k) => [k, { dtype: "F32" as const, shape: all.get(k)!.shape, bytes: all.get(k)!.bytes }]),
      ),
    );
  const half = Math.floor(names.length / 2);
  const index = {
    weight_map: Object.fromEntries(names.map((k, i) => [k, i < half ? "a.safetensors" : "b.safetensors"])),
  };
  const sharded = {
    "config.json": files["config.json"],
    "model.safetensors.index.json": new TextEncoder().encode(JSON.stringify(index)),
    "a.safetensors": shard(names.slice(0, half)),
    "b.safetensors": shard(names.slice(half)),
  };
  const a = await loadModel({ files: sharded }, quiet);
  const b = await loadModel(TINY, quiet);
  try {
    assert.deepEqual((await a.forward([[1, 2, 3]])).logits, (await b.forward([[1, 2, 3]])).logits);
  } finally {
    await a.dispose();
    await b.dispose();
  }
  const broken = {
    ...sharded,
    "model.safetensors.index.json": new TextEncoder().encode('{"weight_map": {"x": "c.safetensors"}}'),
  };
  await assert.rejects(
    loadModel({ files: broken }, quiet),
    (e: Error) => /c\.safetensors is missing/.test(e.message),
  );
});

Deno.test("forward() and generateIds() refuse ids outside the vocabulary, empty and ragged input", async () => {
  const model = await loadModel(TINY, quiet);
  try {
    const bad: [() => Promise<unknown>, RegExp][] = [
      [() => model.forward([[1, 256]]), /sequence 0: token 1 is 256, expected an integer id in \[0, 256\)/],
      [() => model.forward([[1, -1]]), /token 1 is -1/],
      [() => model.forward([[1, 2.5]]), /token 1 is 2\.5/],
      [() => model.forward([[]]), /sequence 0: it is empty, expected at least one token/],
      [() => model.forward([]), /no sequences/],
      [() => model.forward([[1, 2], [3]]), /sequence 1 has 1 tokens, expected 2/],
      [() => model.generateIds([[1], [999]]), /prompt 1: token 0 is 999/],
      [() => model.generateIds([[]]), /prompt 0: it is empty/],
      [
        () => model.generateIds([[1]], { temperature: -1 }),
        /option "temperature" is -1, expected a number >= 0/,
      ],
      [() => model.generateIds([[1]], { topP: 0 }), /option "topP" is 0, expected a number in \(0, 1\]/],
      [() => model.generateIds([[1]], { maxNewTokens: 1.5 }), /option "maxNewTokens" is 1\.5/],
      [async () => {
        for await (const _ of model.generate("")) { /* nothing */ }
      }, /prompt is "", expected a non-empty string/],
    ];
    for (const [call, message] of bad) {
      await assert.rejects(
        call(),
        (e: Error) => e instanceof InputError && message.test(e.message),
        String(message),
      );
    }
  } finally {
    await model.dispose();
  }
});

Deno.test("generateIds() with prompts of different lengths equals generating each alone", async () => {
  const model = await loadModel(TINY, quiet);
  try {
    const prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]];
    const together = await model.generateIds(prompts, { maxNewTokens: 8 });
    const alone = await Promise.all(
      prompts.map(async (p) => (await model.generateIds([p], { maxNewTokens: 8 }))[0]),
    );
    assert.deepEqual(together, alone);
  } finally {
    await model.dispose();
  }
});

Deno.test("restoreState() resumes generation exactly, greedy and seeded", async () => {
  const model = await loadModel(new URL("../../models/shakespeare-bytes/", import.meta.url), quiet);
  try {
    const prompt = model.tokenizer.encode("ROMEO:\n");
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, topP: 0.9, seed: 7 }]) {
      const whole =
        (await model.generateIds([prompt], { maxNewTokens: 20, ignoreEos: true, ...sampling }))[0];
      const state = model.newState(1);
      const first =
        (await model.generateIds([prompt], { maxNewTokens: 10, ignoreEos: true, state, ...sampling }))[0];
      const bytes = await state.serialize();
      state.dispose();
      const restored = model.restoreState(bytes);
      const rest = (await model.generateIds([first.slice(-1)], {
        maxNewTokens: 10,
        ignoreEos: true,
        state: restored,
        ...sampling,
      }))[0];
      restored.dispose();
      assert.deepEqual([...first, ...rest], whole, JSON.stringify(sampling));
    }
  } finally {
    await model.dispose();
  }
});

Deno.test("restoreState() refuses corrupt, truncated and foreign bytes", async () => {
  const model = await loadModel(TINY, quiet);
  const other = await loadModel(new URL("mamba-small-f16/hf/", FIXTURES), quiet);
  try {
    const state = model.newState(2);
    await model.generateIds([[1, 2], [3, 4]], { maxNewTokens: 3, state });
    const bytes = await state.serialize();
    state.dispose();
    const flipped = bytes.slice();
    flipped[bytes.length >> 1] ^= 1;
    const cases: [Uint8Array, RegExp][] = [
      [flipped, /checksum is 0x[0-9a-f]{8}, expected 0x[0-9a-f]{8} \(bytes corrupt or truncated\)/],
      [bytes.subarray(0, bytes.length - 9), /checksum/],
      [bytes.subarray(0, 10), /10 bytes, expected at least 20/],
      [new TextEncoder().encode("definitely not a mamba state at all"), /not a serialized state/],
    ];
    for (const [b, message] of cases) {
      assert.throws(
        () => model.restoreState(b),
        (e: Error) => e instanceof StateError && message.test(e.message),
      );
    }
    assert.throws(
      () => other.restoreState(bytes),
      (e: Error) =>
        e instanceof StateError && /state is of model mamba\/64\/2.*, expected mamba\/128\/3/.test(e.message),
    );
    const round = model.restoreState(bytes);
    assert.deepEqual(await round.serialize(), bytes);
    round.dispose();
  } finally {
    await model.dispose();
    await other.dispose();
  }
});

Deno.test("loadModel() reads safetensors beside an original state-spaces config.json", async () => {
  for (const name of ["mamba-tiny", "mamba2-tiny"]) {
    const files = {
      "config.json": await Deno.readFile(new URL(`${name}/original/config.json`, FIXTURES)),
      "model.safetensors": await Deno.readFile(new URL(`${name}/hf/model.safetensors`, FIXTURES)),
    };
    const original = await loadModel({ files, name }, quiet);
    const hf = await loadModel(new URL(`${name}/hf/`, FIXTURES), quiet);
    try {
      const e = await expected(name);
      const r = await original.forward(e.inputIds);
      assertClose(r.logits, e.logits, `${name} logits`);
      assert.deepEqual(r.logits, (await hf.forward(e.inputIds)).logits);
    } finally {
      await original.dispose();
      await hf.dispose();
    }
  }
});
