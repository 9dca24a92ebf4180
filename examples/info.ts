/**
 * Prints the WebGPU adapter (name, features, limits) and the backend `auto` would choose, with why.
 *
 * ```sh
 * deno task info
 * ```
 *
 * @module
 */

import { describeAdapter, probeWebGpu, requestAdapter } from "../src/backends/webgpu/webgpu.ts";
import { createBackend } from "../src/backends/select.ts";

const adapter = await requestAdapter();
if (!adapter) {
  console.log("webgpu: no adapter (Deno needs --unstable-webgpu)");
} else {
  const a = describeAdapter(adapter);
  console.log(`webgpu adapter: ${a.description || "(no description)"} (vendor ${a.vendor})`);
  console.log(`  fallback (software) adapter: ${a.isFallbackAdapter}`);
  console.log(`  features: ${a.features.join(", ") || "(none)"}`);
  console.log("  limits:");
  for (const [k, v] of Object.entries(a.limits)) console.log(`    ${k}: ${v}`);
}
const why = await probeWebGpu();
const notes: string[] = [];
const be = await createBackend({ backend: "auto", log: (m) => notes.push(m) });
console.log(`auto chooses: ${be.name}${why ? ` (webgpu: ${why})` : " (a hardware WebGPU adapter)"}`);
for (const n of notes) console.log(`  note: ${n}`);
await be.dispose();
