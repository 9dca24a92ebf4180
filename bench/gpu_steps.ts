/**
 * Where a decode step's time goes on the webgpu backend (mamba-130m shape, random weights): CPU time
 * to record n steps, then wall time until the GPU has run them (one read at the end), for the whole
 * step and for the head (norm_f + lm_head + argmax) alone, and the GPU time alone (timestamp queries).
 * One JSON object per line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu_steps.ts [--layers 24] [--steps 256] [--batch 1] [--dtype f32]
 *   [--xproj-rows 16] [--xproj-scan 256]   # XPROJ_TUNING (x_proj fused at batch 1)
 *   [--xproj-seqs 1]                       # XPROJ_TUNING.splitkSeqs (x_proj fused at 2..32)
 *   [--mv1-groups 256] [--mv1-preload 4] [--mv1-min-tpr 8]   # MATVEC1_TUNING
 *   [--floor]   # also: GPU time of a chain of dependent copies (1 and 192 workgroups), per dispatch
 * ```
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { mamba1Files } from "./_models.ts";
import { GREEDY } from "../src/generate/sampler.ts";
import { MATVEC1_TUNING, type WebGpuBackend, XPROJ_TUNING } from "../src/backends/webgpu/webgpu.ts";
import type { WeightDType } from "../src/backends/backend.ts";

const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const layers = arg("layers", 24), n = arg("steps", 256), b = arg("batch", 1);
const d = arg("d", 768), v = arg("vocab", 50280);
XPROJ_TUNING.rowsPerGroup = arg("xproj-rows", XPROJ_TUNING.rowsPerGroup);
XPROJ_TUNING.scanGroup = arg("xproj-scan", XPROJ_TUNING.scanGroup);
MATVEC1_TUNING.groups = arg("mv1-groups", MATVEC1_TUNING.groups);
MATVEC1_TUNING.preload = arg("mv1-preload", MATVEC1_TUNING.preload);
MATVEC1_TUNING.minTpr = arg("mv1-min-tpr", MATVEC1_TUNING.minTpr);
const dtypeAt = Deno.args.indexOf("--dtype");
const dtype = (dtypeAt >= 0 ? Deno.args[dtypeAt + 1] : "f32") as WeightDType;
XPROJ_TUNING.splitkSeqs = arg("xproj-seqs", XPROJ_TUNING.splitkSeqs);
const files = mamba1Files({ d, layers, vocab: v });
const model = await loadModel({ files }, { backend: "webgpu", dtype, log: () => {} });
const net = model.network, be = net.backend;
const state = net.newState(b);
const tokens = be.zeros([n + 1, b], "i32");
const logits = be.zeros([b, v]), normed = be.zeros([b, d]);
const hidden = be.zeros([b, d]);
const step = (s: number) => {
  const ws = net.run(state, tokens, s * b, b, 1);
  net.head(logits, normed, ws.hidden);
  be.sample({ out: tokens, outRow: s + 1, logits, params: GREEDY, step: s });
};
const headOnly = (s: number) => {
  net.head(logits, normed, hidden);
  be.sample({ out: tokens, outRow: s + 1, logits, params: GREEDY, step: s });
};
for (const [what, fn] of [["step", step], ["head", headOnly], ["step", step]] as const) {
  for (let s = 0; s < 8; s++) fn(s);
  await be.readIds(tokens);
  const t0 = performance.now();
  for (let s = 0; s < n; s++) fn(s);
  const t1 = performance.now();
  await be.readIds(tokens);
  const t2 = performance.now();
  // GPU time alone, by timestamp queries, over 16 steps (within one submission).
  const gpu = await (be as WebGpuBackend).timeGpu(() => {
    for (let s = 0; s < 16; s++) fn(s);
  });
  console.log(JSON.stringify({
    what,
    dtype,
    xproj: XPROJ_TUNING,
    mv1: MATVEC1_TUNING,
    layers,
    batch: b,
    steps: n,
    record_ms_per_step: +((t1 - t0) / n).toFixed(4),
    wall_ms_per_step: +((t2 - t0) / n).toFixed(4),
    gpu_ms_per_step: gpu === undefined ? null : +(gpu / 16 / 1000).toFixed(4),
  }));
}
// GPU time of each kernel over 4 steps (a pass per dispatch).
const prof = await (be as WebGpuBackend).profileGpu(() => {
  for (let s = 0; s < 4; s++) step(s);
});
if (prof) {
  // the first dispatches of a step, in order, with their GPU time in us
  const first = prof.dispatches.slice(0, 16).map((x) => `${x.name} ${x.us.toFixed(1)}`);
  console.log(JSON.stringify({ first_dispatches: first }));
  for (const [kernel, k] of Object.entries(prof.kernels)) {
    console.log(
      JSON.stringify({ kernel, per_step: k.count / 4, us_per_dispatch: +(k.us / k.count).toFixed(2) }),
    );
  }
}
if (Deno.args.includes("--floor")) {
  // The cost of a dispatch as such: chains of 75 dependent copies (each reads what the last wrote).
  for (const n of [4, 49152]) {
    const a = be.zeros([n]), c = be.zeros([n]);
    const chain = () => {
      for (let s = 0; s < 75; s++) be.copy(s % 2 ? a : c, s % 2 ? c : a);
    };
    chain();
    await be.read(a);
    const us = await (be as WebGpuBackend).timeGpu(chain);
    console.log(JSON.stringify({
      floor: `75 dependent copies of ${n} floats (${Math.ceil(n / 256)} workgroups)`,
      us_per_dispatch: us === undefined ? null : +(us / 75).toFixed(2),
    }));
    be.free(a);
    be.free(c);
  }
}
await model.dispose();
