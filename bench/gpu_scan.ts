/**
 * GPU time of the Mamba-1 selective scan on the webgpu backend at the mamba-130m shape (di 1536, n 16,
 * dt_rank 48; random values): the prefill scan (b 1, l 512 by default) and the decode scan (l 1, b 1
 * and 32, dt_proj fused: `linear(dt, ...)` right before `selectiveScan`, as src/model/mamba1.ts does).
 * For each case: the largest difference from the js backend on the same inputs, the GPU time of each
 * kernel by timestamp queries (a compute pass per dispatch: `profileGpu`), and the GPU time of the
 * whole op in one pass (`timeGpu`), both per layer over `--layers` calls in a row. One JSON object per
 * line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu_scan.ts [--layers 24] [--prefill 512] [--batches 1,32]
 * ```
 *
 * Kernel shapes to try instead of the defaults (SCAN_TUNING), each a comma-separated list:
 * `--carry 8,32` (chunks per round of the prefill's carry pass), `--states 1,4` and `--group 64,256`
 * (one-step scan states per thread and threads per workgroup).
 *
 * @module
 */

import {
  createWebGpuBackend,
  describeAdapter,
  requestAdapter,
  SCAN_TUNING,
} from "../src/backends/webgpu/webgpu.ts";
import { JsBackend } from "../src/backends/js/js.ts";
import type { Backend, Tensor } from "../src/backends/backend.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const layers = Number(arg("layers", "24")), lp = Number(arg("prefill", "512"));
const batches = arg("batches", "1,32").split(",").map(Number);
const list = (name: string, dflt: number) => arg(name, String(dflt)).split(",").map(Number);
const carries = list("carry", SCAN_TUNING.carryChunks);
const states = list("states", SCAN_TUNING.stepStates), stepGroups = list("group", SCAN_TUNING.stepGroup);
const di = 1536, n = 16, r = 48;

let seed = 1;
const rand = (len: number, scale = 1, offset = 0) => {
  let s = seed++ >>> 0;
  return Float32Array.from({ length: len }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return offset + scale * (2 * (s / 4294967296) - 1);
  });
};

/** The inputs of one scan, as host arrays (so that both backends get the same values). */
function inputs(b: number, l: number) {
  return {
    x: rand(b * l * di),
    z: rand(b * l * di),
    dtLow: rand(b * l * r, 1 / Math.sqrt(r)),
    dt: rand(b * l * di, 1, -2),
    B: rand(b * l * n),
    C: rand(b * l * n),
    h: rand(b * di * n, 0.5),
    dtW: rand(di * r, 1 / Math.sqrt(r)),
    dtB: rand(di, 0.1, -4.6),
    A: rand(di * n, 0.5, -1),
    D: rand(di, 0.1, 1),
  };
}

function tensors(be: Backend, v: ReturnType<typeof inputs>, b: number, l: number) {
  return {
    y: be.zeros([b, l, di]),
    x: be.upload(v.x, [b, l, di]),
    z: be.upload(v.z, [b, l, di]),
    dtLow: be.upload(v.dtLow, [b * l, r]),
    dt: be.upload(v.dt, [b, l, di]),
    B: be.upload(v.B, [b, l, n]),
    C: be.upload(v.C, [b, l, n]),
    h: be.upload(v.h, [b, di, n]),
    dtW: be.uploadMatrix(v.dtW, [di, r]),
    dtB: be.upload(v.dtB, [di]),
    A: be.upload(v.A, [di, n]),
    D: be.upload(v.D, [di]),
  };
}

/** One layer's scan: with l = 1, dt_proj first (fused by the webgpu backend). */
function scan(be: Backend, t: ReturnType<typeof tensors>, l: number) {
  if (l === 1) be.linear(t.dt, t.dtW, t.dtLow, t.dtB);
  const { y, x, dt, A, B, C, D, z, h } = t;
  be.selectiveScan({ y, x, dt, A, B, C, D, z, h });
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

const gpu = await createWebGpuBackend();
const js = new JsBackend();
{
  const a = await requestAdapter();
  const info = a && describeAdapter(a);
  console.log(JSON.stringify({ adapter: info?.description ?? null, features: info?.features ?? null }));
}
const cases: [number, number, Partial<typeof SCAN_TUNING>][] = [];
for (const carryChunks of carries) cases.push([1, lp, { carryChunks }]);
for (const b of batches) {
  for (const stepStates of states) {
    for (const stepGroup of stepGroups) cases.push([b, 1, { stepStates, stepGroup }]);
  }
}
if (Deno.args.includes("--decode-first")) cases.push(...cases.splice(0, carries.length));
await floor();
const defaults = { ...SCAN_TUNING };
for (const [b, l, tuning] of cases) {
  Object.assign(SCAN_TUNING, defaults, tuning);
  const v = inputs(b, l);
  // Against js: one call from the same inputs.
  const outs: Float32Array[][] = [];
  for (const be of [js, gpu] as Backend[]) {
    const t = tensors(be, v, b, l);
    scan(be, t, l);
    outs.push(await Promise.all([t.y, t.h, t.dt].map((x: Tensor) => be.read(x))));
  }
  const t = tensors(gpu, v, b, l);
  for (let i = 0; i < 4; i++) scan(gpu, t, l); // pipelines
  await gpu.sync();
  const prof = await gpu.profileGpu(() => {
    for (let i = 0; i < layers; i++) scan(gpu, t, l);
  });
  const total = await gpu.timeGpu(() => {
    for (let i = 0; i < layers; i++) scan(gpu, t, l);
  });
  const kernels: Record<string, { per_layer: number; us_per_dispatch: number }> = {};
  for (const [k, s] of Object.entries(prof?.kernels ?? {})) {
    kernels[k] = { per_layer: s.count / layers, us_per_dispatch: +(s.us / s.count).toFixed(2) };
  }
  console.log(JSON.stringify({
    case: l === 1 ? "decode" : "prefill",
    b,
    l,
    layers,
    tuning,
    err_y: maxDiff(outs[0][0], outs[1][0]),
    err_h: maxDiff(outs[0][1], outs[1][1]),
    err_dt: maxDiff(outs[0][2], outs[1][2]),
    kernels,
    us_per_layer_one_pass: total === undefined ? null : +(total / layers).toFixed(2),
  }));
}
await floor();
await gpu.dispose();

/** The floor of a dispatch timed in a pass of its own: a small add. */
async function floor() {
  const a = gpu.upload(rand(di), [di]), o = gpu.zeros([di]);
  gpu.add(o, a, a);
  await gpu.sync();
  const prof = await gpu.profileGpu(() => {
    for (let i = 0; i < layers; i++) gpu.add(o, a, o);
  });
  const k = prof?.kernels.add;
  console.log(
    JSON.stringify({ floor: "add of 1536", us_per_dispatch: k ? +(k.us / k.count).toFixed(2) : null }),
  );
}
await gpu.dispose();
