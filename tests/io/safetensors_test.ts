import assert from "node:assert/strict";
import { f16ToF32, readSafetensors, toFloat32, toInt32, writeSafetensors } from "../../src/io/safetensors.ts";
import { ModelLoadError } from "../../src/errors.ts";

function file(header: unknown, data: Uint8Array, headerLen?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("readSafetensors() round-trips what writeSafetensors() wrote", () => {
  const a = Float32Array.from([1, -2.5, 3e-8, 1e30, 0, -0, 7, 8]);
  const ids = Int32Array.from([1, -2, 2147483647]);
  const bytes = writeSafetensors({ a, ids }, { a: [2, 4] });
  const t = readSafetensors(bytes, "x.safetensors");
  assert.deepEqual(t.get("a")!.shape, [2, 4]);
  assert.deepEqual(toFloat32(t.get("a")!), a);
  assert.deepEqual(toInt32(t.get("ids")!), ids);
});

Deno.test("toFloat32() converts F16 and BF16 exactly", () => {
  // f16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), inf; bf16: 1.0, -3.0, 1.5
  const f16 = Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00]);
  const bf16 = Uint16Array.from([0x3f80, 0xc040, 0x3fc0]);
  const t = readSafetensors(
    writeSafetensors({
      h: { dtype: "F16", shape: [5], bytes: new Uint8Array(f16.buffer) },
      b: { dtype: "BF16", shape: [3], bytes: new Uint8Array(bf16.buffer) },
    }),
    "x",
  );
  assert.deepEqual(Array.from(toFloat32(t.get("h")!)), [1, -2, 65504, 2 ** -24, Infinity]);
  assert.deepEqual(Array.from(toFloat32(t.get("b")!)), [1, -3, 1.5]);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
});

const entry = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
const BAD: [string, () => Uint8Array, RegExp][] = [
  ["shorter than 8 bytes", () => new Uint8Array(5), /file is 5 bytes, expected at least 8/],
  [
    "a header length past the end",
    () => file({ w: entry }, new Uint8Array(8), 9999),
    /header length 9999 runs past the end of the file/,
  ],
  ["a header that is not JSON", () => file("{not json", new Uint8Array(8)), /header is not JSON/],
  [
    "offsets outside the data",
    () => file({ w: { ...entry, data_offsets: [0, 16] } }, new Uint8Array(8)),
    /data_offsets \[0, 16\] fall outside the 8 bytes of data/,
  ],
  [
    "a dtype x shape that disagrees with the bytes",
    () => file({ w: { ...entry, shape: [3] } }, new Uint8Array(8)),
    /F32 x \(3\) needs 12 bytes, found 8/,
  ],
  [
    "an unknown dtype",
    () => file({ w: { ...entry, dtype: "F8" } }, new Uint8Array(8)),
    /dtype is "F8", expected one of/,
  ],
  [
    "a bad shape",
    () => file({ w: { ...entry, shape: [-1] } }, new Uint8Array(8)),
    /shape is \[-1\], expected a list of sizes/,
  ],
  [
    "a truncated file",
    () => writeSafetensors({ w: new Float32Array(16) }).subarray(0, 100),
    /fall outside the .* bytes of data \(file truncated\?\)/,
  ],
];

for (const [what, make, message] of BAD) {
  Deno.test(`readSafetensors() refuses a file with ${what}`, () => {
    assert.throws(
      () => readSafetensors(make(), "bad.safetensors"),
      (e: Error) =>
        e instanceof ModelLoadError && e.message.includes("bad.safetensors") && message.test(e.message),
    );
  });
}
