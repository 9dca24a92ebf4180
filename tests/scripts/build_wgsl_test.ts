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

Deno.test("build_wgsl: an //#include line takes wgsl/include/NAME.wgsl; a missing one is an error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/include`);
    await Deno.writeTextFile(`${dir}/include/two.wgsl`, "fn two() -> u32 {\n  return 2u;\n}\n");
    await Deno.writeTextFile(`${dir}/k.wgsl`, "// k\n//#include two.wgsl\nfn k() {}\n");
    const text = await generate(new URL(`file://${dir}/`));
    assert.ok(text.includes(JSON.stringify("// k\nfn two() -> u32 {\n  return 2u;\n}\nfn k() {}\n")), text);
    assert.ok(!text.includes("two:"), "an include is not a kernel");
    await Deno.writeTextFile(`${dir}/k.wgsl`, "//#include three.wgsl\nfn k() {}\n");
    await assert.rejects(
      generate(new URL(`file://${dir}/`)),
      /Cannot build k\.wgsl: include three\.wgsl is missing, expected wgsl\/include\/three\.wgsl/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build_wgsl: no kernel keeps an //#include line", () => {
  for (const [name, code] of Object.entries(SHADERS)) {
    assert.doesNotMatch(code, /^\/\/#include/m, `wgsl/${name}.wgsl`);
  }
});
