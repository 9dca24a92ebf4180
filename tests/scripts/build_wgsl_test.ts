import assert from "node:assert/strict";
import { generate } from "../../scripts/build_wgsl.ts";
import { SHADERS } from "../../src/backends/webgpu/_shaders.ts";

Deno.test("build_wgsl: src/backends/webgpu/_shaders.ts is up to date with wgsl/", async () => {
  const text = await generate();
  const current = await Deno.readTextFile(new URL("../../src/backends/webgpu/_shaders.ts", import.meta.url));
  assert.ok(current === text, "src/backends/webgpu/_shaders.ts is stale: run `deno task build:wgsl`");
});

Deno.test("build_wgsl: every kernel's entry point is named after its file", () => {
  for (const [name, code] of Object.entries(SHADERS)) {
    assert.match(code, new RegExp(`fn ${name}\\(`), `wgsl/${name}.wgsl lacks fn ${name}(`);
    assert.match(code, /struct Params/, `wgsl/${name}.wgsl lacks a Params uniform`);
  }
});
