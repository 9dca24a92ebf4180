/**
 * GPU time of each op of a Mamba-1 layer on the webgpu backend, at the mamba-130m shape (random
 * values): each op (or fused group of ops, as the model records them) is recorded r and 2r times in
 * a row, each followed by one wait; the difference over r is its wall time (recording, submission and
 * GPU); its GPU time alone comes from timestamp queries around r of them. Also the CPU time to
 * record one. One JSON object per line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu_ops.ts [--batch 1] [--reps 400] [--dtype f32] [--prefill 512]
 * ```
 *
 * @module
 */

import { createWebGpuBackend } from "../src/backends/webgpu/webgpu.ts";
import type { WeightDType } from "../src/backends/backend.ts";
import { GREEDY } from "../src/generate/sampler.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const m = Number(arg("batch", "1")), reps = Number(arg("reps", "400"));
const lp = Number(arg("prefill", "512"));
const dtype = arg("dtype", "f32") as WeightDType;
const d = 768, di = 1536, n = 16, r = 48, v = 50280;
let seed = 1;
const rand = (len: number, scale = 1, offset = 0) => {
  let s = seed++ >>> 0;
  return Float32Array.from({ length: len }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return offset + scale * (2 * (s / 4294967296) - 1);
  });
};
const be = await createWebGpuBackend({ dtype });
const mat = (rows: number, cols: number) =>
  be.uploadMatrix(rand(rows * cols, 1 / Math.sqrt(cols)), [rows, cols]);
const vec = (shape: number[], scale = 1, offset = 0) => {
  const len = shape.reduce((a, b) => a * b, 1);
  return be.upload(rand(len, scale, offset), shape);
};
const w = {
  norm: vec([d], 0.1, 1),
  inX: mat(di, d),
  inZ: mat(di, d),
  convW: vec([di, 4], 0.5),
  convB: vec([di], 0.5),
  xDt: mat(r, di),
  xB: mat(n, di),
  xC: mat(n, di),
  dtW: mat(di, r),
  dtB: vec([di], 0.1, -4.6),
  A: vec([di, n], 0.5, -1),
  D: vec([di], 0.1, 1),
  out: mat(d, di),
  head: mat(v, d),
};
const act = (l: number) => ({
  hidden: vec([m, l, d]),
  xn: be.zeros([m, l, d]),
  x: vec([m, l, di]),
  z: vec([m, l, di]),
  xc: vec([m, l, di]),
  dtLow: vec([m * l, r]),
  B: vec([m, l, n]),
  C: vec([m, l, n]),
  dt: vec([m, l, di], 1, -2),
  y: vec([m, l, di]),
  o: be.zeros([m, l, d]),
  conv: be.zeros([m, di, 3]),
  h: be.zeros([m, di, n]),
});
const s1 = act(1);
const logits = be.zeros([m, v]);
const ids = be.zeros([2, m], "i32");

async function time(name: string, l: number, fn: () => void): Promise<void> {
  const run = async (k: number) => {
    await be.sync();
    const t0 = performance.now();
    for (let i = 0; i < k; i++) fn();
    const t1 = performance.now();
    await be.sync();
    return [t1 - t0, performance.now() - t0];
  };
  const k = l > 1 ? Math.max(4, Math.round(reps / 40)) : reps;
  await run(4);
  const [c1, w1] = await run(k);
  const [c2, w2] = await run(2 * k);
  const ts = await be.timeGpu(() => {
    for (let i = 0; i < k; i++) fn();
  });
  console.log(JSON.stringify({
    op: name,
    batch: m,
    l,
    dtype,
    wall_us: +(((w2 - w1) / k) * 1000).toFixed(2),
    gpu_us: ts === undefined ? null : +(ts / k).toFixed(2),
    record_us: +(((c1 + c2) / (3 * k)) * 1000).toFixed(2),
  }));
}

const layer = (s: ReturnType<typeof act>, l: number, part: string) => {
  if (part === "in" || part === "all") {
    be.rmsNorm(s.xn, s.hidden, w.norm, 1e-5);
    be.linear(s.x, w.inX, s.xn);
    be.linear(s.z, w.inZ, s.xn);
  }
  if (part === "conv" || part === "all") be.conv1dSilu(s.xc, s.x, w.convW, w.convB, s.conv);
  if (part === "xproj" || part === "all") {
    be.linear(s.dtLow, w.xDt, s.xc);
    be.linear(s.B, w.xB, s.xc);
    be.linear(s.C, w.xC, s.xc);
  }
  if (part === "scan" || part === "all") {
    be.linear(s.dt, w.dtW, s.dtLow, w.dtB);
    be.selectiveScan({ y: s.y, x: s.xc, dt: s.dt, A: w.A, B: s.B, C: s.C, D: w.D, z: s.z, h: s.h });
  }
  if (part === "out" || part === "all") {
    be.linear(s.o, w.out, s.y);
    be.add(s.hidden, s.hidden, s.o);
  }
  void l;
};
for (const part of ["in", "conv", "xproj", "scan", "out", "all"]) {
  await time(part, 1, () => layer(s1, 1, part));
}
await time("lm_head", 1, () => {
  be.rmsNorm(s1.xn, s1.hidden, w.norm, 1e-5);
  be.linear(logits, w.head, s1.xn);
});
await time("argmax", 1, () => be.sample({ out: ids, outRow: 1, logits, params: GREEDY, step: 0 }));
if (lp > 1 && m === 1) {
  const sp = act(lp);
  for (const part of ["in", "conv", "xproj", "scan", "out", "all"]) {
    await time(part, lp, () => layer(sp, lp, part));
  }
}
await be.dispose();
