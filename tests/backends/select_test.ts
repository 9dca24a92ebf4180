import assert from "node:assert/strict";
import { createBackend } from "../../src/backends/select.ts";
import { BackendError } from "../../src/errors.ts";

Deno.test("createBackend() auto picks wasm where WebAssembly SIMD exists, before js", async () => {
  const be = await createBackend({ backend: "auto", threads: 1, log: () => {} });
  try {
    assert.equal(be.name, "wasm");
  } finally {
    await be.dispose();
  }
});

Deno.test("createBackend() passes dtype to wasm, and js refuses packed weights", async () => {
  const be = await createBackend({ backend: "wasm", dtype: "q8", threads: 1 });
  try {
    assert.equal(be.weightDType, "q8");
  } finally {
    await be.dispose();
  }
  await assert.rejects(() => createBackend({ backend: "js", dtype: "q8" }), BackendError);
});
