/** The committed kernels: valid WebAssembly, embedded unchanged, and SIMD in the hot loops. */

import assert from "node:assert/strict";
import initWabt from "wabt";
import { decodeBase64 } from "../../src/backends/wasm/_base64.ts";
import { RELAXED_WASM, SIMD_WASM } from "../../src/backends/wasm/_kernels.ts";

const BUILD = new URL("../../wasm/build/", import.meta.url);

/** The text of one function of a module printed by wabt. */
function body(wat: string, name: string): string {
  const start = wat.indexOf(`(func $${name} `) >= 0
    ? wat.indexOf(`(func $${name} `)
    : wat.indexOf(`(func $${name}\n`);
  assert.ok(start >= 0, `function ${name} not found`);
  const next = wat.indexOf("\n  (func ", start + 1);
  return wat.slice(start, next < 0 ? undefined : next);
}

for (
  const [file, embedded, relaxed] of [
    ["kernels.wasm", SIMD_WASM, false],
    ["kernels-relaxed.wasm", RELAXED_WASM, true],
  ] as const
) {
  Deno.test(`${file} validates with wabt, is the embedded copy, and its hot kernels use f32x4`, async () => {
    const bytes = await Deno.readFile(new URL(file, BUILD));
    assert.deepEqual(decodeBase64(embedded), bytes);
    const wabt = await initWabt();
    const mod = wabt.readWasm(bytes, {
      readDebugNames: true,
      simd: true,
      relaxed_simd: relaxed,
      threads: true,
    });
    try {
      mod.validate();
      mod.generateNames();
      mod.applyNames();
      const wat = mod.toText({ foldExprs: false, inlineExport: false });
      for (const fn of ["linear_f32", "linear_q8", "selective_scan", "ssd_scan"]) {
        const exported = new RegExp(`\\(export "${fn}" \\(func \\$([^)]+)\\)\\)`).exec(wat);
        assert.ok(exported, `export ${fn} missing`);
        const text = body(wat, exported[1]);
        // the loops may live in helpers inlined into the export; count f32x4 in the export and what it calls
        const callees = [...text.matchAll(/call \$([^\s)]+)/g)].map((m) => body(wat, m[1]));
        const all = [text, ...callees].join("\n");
        assert.match(all, /f32x4\.(mul|add|relaxed_madd)/, `${fn} has no f32x4 arithmetic`);
        if (relaxed && fn.startsWith("linear")) {
          assert.match(all, /f32x4\.relaxed_madd/, `${fn} does not fuse`);
        }
      }
      if (!relaxed) assert.doesNotMatch(wat, /relaxed/);
    } finally {
      mod.destroy();
    }
  });
}
