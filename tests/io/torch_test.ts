import assert from "node:assert/strict";
import { readTorchCheckpoint, unpickle } from "../../src/io/torch.ts";
import { readSafetensors, toFloat32 } from "../../src/io/safetensors.ts";
import { ModelLoadError } from "../../src/errors.ts";
import { loadModel } from "../../src/model/model.ts";
import { assertClose, CASES, expected, FIXTURES, hfNewIds } from "../_fixtures.ts";
import { PickleBuilder, writeZip } from "./_zip.ts";

const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

/** A torch.save-like archive: archive/data.pkl, archive/data/<key>, archive/version. */
function archive(pkl: Uint8Array, storages: Record<string, Uint8Array>, deflate = false) {
  const files: Record<string, Uint8Array> = { "archive/data.pkl": pkl };
  for (const [k, v] of Object.entries(storages)) files[`archive/data/${k}`] = v;
  files["archive/version"] = new TextEncoder().encode("3\n");
  return writeZip(files, deflate);
}

for (const name of CASES) {
  Deno.test(`loadModel() of ${name}/original (pytorch_model.bin) matches HF`, async () => {
    const e = await expected(name);
    const model = await loadModel(new URL(`${name}/original/`, FIXTURES), { backend: "js" });
    try {
      const { logits } = await model.forward(e.inputIds);
      assertClose(logits, e.logits, `${name} logits`);
      // The original config names no eos; HF's generation stopped at the eos of its own config.
      const hf = JSON.parse(await Deno.readTextFile(new URL(`${name}/hf/config.json`, FIXTURES)));
      const eos: number | undefined = hf.eos_token_id ?? undefined;
      const ids = await model.generateIds(e.inputIds, {
        maxNewTokens: e.newTokens,
        temperature: 0,
        stopIds: eos === undefined ? [] : [eos],
      });
      assert.deepEqual(ids, hfNewIds(e, eos));
    } finally {
      await model.dispose();
    }
  });
}

Deno.test("readTorchCheckpoint() gives the same tensors as the HF safetensors", async () => {
  const bin = await Deno.readFile(new URL("mamba-tiny/original/pytorch_model.bin", FIXTURES));
  const pt = await readTorchCheckpoint(bin, "pytorch_model.bin");
  const hf = readSafetensors(await Deno.readFile(new URL("mamba-tiny/hf/model.safetensors", FIXTURES)), "hf");
  const emb = pt.get("backbone.embedding.weight")!;
  assert.deepEqual(emb.shape, hf.get("backbone.embeddings.weight")!.shape);
  assert.deepEqual(toFloat32(emb), toFloat32(hf.get("backbone.embeddings.weight")!));
  const aLog = "backbone.layers.1.mixer.A_log";
  assert.deepEqual(toFloat32(pt.get(aLog)!), toFloat32(hf.get(aLog)!));
});

Deno.test("readTorchCheckpoint() reads tied weights that share one storage", async () => {
  const bin = await Deno.readFile(new URL("mamba2-tiny/original/pytorch_model.bin", FIXTURES));
  const pt = await readTorchCheckpoint(bin, "pytorch_model.bin");
  const head = pt.get("lm_head.weight")!, emb = pt.get("backbone.embedding.weight")!;
  assert.equal(head.bytes.buffer, emb.bytes.buffer);
  assert.deepEqual(toFloat32(head), toFloat32(emb));
});

Deno.test("readTorchCheckpoint() honours storage offsets and non-contiguous strides", async () => {
  // storage 0: [0 1 2 3 4 5 6 7]; "t" is the transpose of the (2, 3) matrix starting at element 2.
  const pkl = new PickleBuilder().op("}").op("(")
    .str("t").tensor("FloatStorage", "0", 8, 2, [3, 2], [1, 3])
    .str("row").tensor("FloatStorage", "0", 8, 5, [3], [1])
    .str("h").tensor("HalfStorage", "1", 2, 0, [2], [1])
    .op("u").bytes();
  const half = new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer); // 1, -2
  for (const deflate of [false, true]) {
    const zip = await archive(pkl, { "0": f32(0, 1, 2, 3, 4, 5, 6, 7), "1": half }, deflate);
    const out = await readTorchCheckpoint(zip, "x.bin");
    assert.deepEqual(out.get("t")!.shape, [3, 2]);
    assert.deepEqual([...toFloat32(out.get("t")!)], [2, 5, 3, 6, 4, 7]);
    assert.deepEqual([...toFloat32(out.get("row")!)], [5, 6, 7]);
    assert.equal(out.get("h")!.dtype, "F16");
    assert.deepEqual([...toFloat32(out.get("h")!)], [1, -2]);
  }
});

Deno.test("unpickle() refuses a pickle calling os.system and runs nothing", () => {
  // protocol 2: GLOBAL 'os system', ('echo pwned',), REDUCE, STOP
  const pkl = new PickleBuilder().global("os", "system").str("echo pwned").op("\x85").op("R").bytes();
  assert.throws(() => unpickle(pkl, "evil.pkl"), (e) => {
    assert.ok(e instanceof ModelLoadError);
    assert.match(e.message, /^Cannot read evil\.pkl: global os\.system is not allowed/);
    return true;
  });
});

const bad: [string, () => Promise<Uint8Array>, RegExp][] = [
  [
    "a pickle naming builtins.eval through STACK_GLOBAL",
    () =>
      archive(
        Uint8Array.from([
          0x80,
          4,
          0x8c,
          8,
          ...new TextEncoder().encode("builtins"),
          0x8c,
          4,
          ...new TextEncoder().encode("eval"),
          0x93,
          0x2e,
        ]),
        {},
      ),
    /global builtins\.eval is not allowed/,
  ],
  [
    "torch.storage._load_from_bytes",
    () => archive(new PickleBuilder().global("torch.storage", "_load_from_bytes").bytes(), {}),
    /global torch\.storage\._load_from_bytes is not allowed/,
  ],
  [
    "a truncated zip",
    async () =>
      (await Deno.readFile(new URL("mamba-tiny/original/pytorch_model.bin", FIXTURES))).subarray(0, 5000),
    /no zip end-of-central-directory record/,
  ],
  [
    "a missing storage file",
    () =>
      archive(
        new PickleBuilder().op("}").str("w").tensor("FloatStorage", "0", 2, 0, [2], [1]).op("s").bytes(),
        {},
      ),
    /storage file archive\/data\/0 of tensor "w" is missing/,
  ],
  [
    "a storage file shorter than its numel",
    () =>
      archive(
        new PickleBuilder().op("}").str("w").tensor("FloatStorage", "0", 4, 0, [4], [1]).op("s").bytes(),
        {
          "0": f32(1, 2),
        },
      ),
    /storage archive\/data\/0 is 8 bytes, expected 16/,
  ],
  [
    "a view past the end of its storage",
    () =>
      archive(
        new PickleBuilder().op("}").str("w").tensor("FloatStorage", "0", 2, 1, [2], [1]).op("s").bytes(),
        {
          "0": f32(1, 2),
        },
      ),
    /tensor "w": offset 1, size \(2\), stride \(1\) reach element 2, storage holds 2/,
  ],
  [
    "a pickle cut short",
    () => archive(new PickleBuilder().op("}").str("w").bytes().subarray(0, 6), {}),
    /pickle ends at byte 6/,
  ],
  [
    "a value that is not a tensor",
    () => archive(new PickleBuilder().op("}").str("w").int(3).op("s").bytes(), {}),
    /entry "w" is 3, expected a tensor/,
  ],
  [
    "a corrupt storage (CRC mismatch)",
    async () => {
      const zip = await archive(
        new PickleBuilder().op("}").str("w").tensor("FloatStorage", "0", 1, 0, [1], [1]).op("s").bytes(),
        {
          "0": f32(1),
        },
      );
      const at = zip.findIndex((_, i) =>
        zip[i] === 0x00 && zip[i + 1] === 0x00 && zip[i + 2] === 0x80 && zip[i + 3] === 0x3f
      );
      zip[at + 3] ^= 0xff; // the storage's 1.0 becomes another number
      return zip;
    },
    /has CRC-32 0x[0-9a-f]+, expected 0x[0-9a-f]+ \(corrupt file\)/,
  ],
  [
    "a legacy pickle checkpoint",
    () => Promise.resolve(Uint8Array.from([0x80, 2, 0x8a, 0x0a])),
    /legacy \(before PyTorch 1\.6\) pickle checkpoint/,
  ],
  [
    "a file that is not a zip",
    () => Promise.resolve(new TextEncoder().encode("<html>not found</html>")),
    /file starts with 3c 68 74 6d, expected a zip archive/,
  ],
];

for (const [what, make, message] of bad) {
  Deno.test(`readTorchCheckpoint() refuses ${what}`, async () => {
    const bytes = await make();
    await assert.rejects(readTorchCheckpoint(bytes, "bad.bin"), (e) => {
      assert.ok(e instanceof ModelLoadError, String(e));
      assert.match(e.message, /^Cannot read bad\.bin/);
      assert.match(e.message, message);
      return true;
    });
  });
}

Deno.test("loadModel() reads a sharded PyTorch checkpoint (pytorch_model.bin.index.json)", async () => {
  const dir = new URL("mamba-tiny/original/", FIXTURES);
  const all = await readTorchCheckpoint(await Deno.readFile(new URL("pytorch_model.bin", dir)), "x");
  const names = [...all.keys()];
  const shards = [names.slice(0, 5), names.slice(5)];
  const files: Record<string, Uint8Array> = {
    "config.json": await Deno.readFile(new URL("config.json", dir)),
  };
  const weightMap: Record<string, string> = {};
  for (const [s, group] of shards.entries()) {
    const file = `pytorch_model-0000${s + 1}-of-00002.bin`;
    const p = new PickleBuilder().op("}").op("(");
    const storages: Record<string, Uint8Array> = {};
    group.forEach((name, k) => {
      const t = all.get(name)!;
      const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
      p.str(name).tensor("FloatStorage", String(k), t.bytes.byteLength / 4, 0, t.shape, stride);
      storages[String(k)] = t.bytes.slice();
      weightMap[name] = file;
    });
    files[file] = await archive(p.op("u").bytes(), storages);
  }
  files["pytorch_model.bin.index.json"] = new TextEncoder().encode(JSON.stringify({ weight_map: weightMap }));
  const e = await expected("mamba-tiny");
  const model = await loadModel({ files, name: "sharded" }, { backend: "js" });
  try {
    assertClose((await model.forward(e.inputIds)).logits, e.logits, "sharded logits");
  } finally {
    await model.dispose();
  }
});
