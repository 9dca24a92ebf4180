/**
 * Where a prefill's time goes on the webgpu backend (mamba-130m shape, random weights, one prompt):
 * wall time per prefill (8 back to back, then one read, which adds Deno's 10 ms map sleep once), the
 * GPU time of one prefill alone (timestamp queries), then the GPU time of each kernel (a pass per
 * dispatch, which inflates short kernels). One JSON object per line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu_prefill.ts [--dtype f32] [--prefill 512]
 *   [--vocab 50280]   # a software adapter binds at most 128 MiB: --vocab 4096 there
 * ```
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { mamba1Files } from "./_models.ts";
import { prefill } from "../src/generate/generate.ts";
import type { WebGpuBackend } from "../src/backends/webgpu/webgpu.ts";
import type { WeightDType } from "../src/backends/backend.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const dtype = arg("dtype", "f32") as WeightDType;
const l = Number(arg("prefill", "512"));
const vocab = Number(arg("vocab", "50280"));
const model = await loadModel({ files: mamba1Files({ vocab }) }, { backend: "webgpu", dtype, log: () => {} });
const net = model.network, be = net.backend as WebGpuBackend;
const c = model.config;
const prompts = [Array.from({ length: l }, (_, t) => (t * 104729) % c.vocabSize)];
const last = be.zeros([1, c.dModel]);
const run = () => {
  const state = net.newState(1);
  prefill(net, state, prompts, last);
  state.dispose();
};
run(); // pipelines compiled
await be.read(last);
for (let rep = 0; rep < 3; rep++) {
  const t0 = performance.now();
  for (let r = 0; r < 8; r++) run();
  await be.read(last);
  const wall = (performance.now() - t0) / 8;
  for (let r = 0; r < 6; r++) run(); // the GPU kept busy, its clocks up
  const gpu = await be.timeGpu(run);
  console.log(JSON.stringify({
    dtype,
    prefill: l,
    wall_ms_per_prefill: +wall.toFixed(3),
    gpu_ms_per_prefill: gpu === undefined ? null : +(gpu / 1000).toFixed(3),
  }));
}
for (let r = 0; r < 6; r++) run();
const prof = await be.profileGpu(run);
for (const [kernel, k] of Object.entries(prof?.kernels ?? {})) {
  console.log(
    JSON.stringify({ kernel, count: k.count, us: +k.us.toFixed(1), us_each: +(k.us / k.count).toFixed(2) }),
  );
}
await model.dispose();
