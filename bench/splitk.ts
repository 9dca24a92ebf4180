/**
 * GPU time of the products on 2..32 rows of x (batched decode) through the webgpu backend, on the
 * linear shapes of mamba-130m with their fusions (RMSNorm into in_proj and the lm_head, the residual
 * add into out_proj): the split-k kernels (wgsl/splitk.wgsl + wgsl/splitk_reduce.wgsl) with the tile
 * splitkTile chooses and, with --sweep, other tiles, against the kernels used before them (matvec,
 * gemm for the lm_head). Each is recorded `reps` times into one compute pass after 3 * reps untimed
 * (after the first round: about warm-ms of GPU work, so that the GPU's clocks are up again after
 * the pauses of pipeline compiles), timed by timestamp queries, divided by reps, the best of
 * `rounds`: the time of one product (its two dispatches with split-k). One JSON object per line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/splitk.ts [--reps 100] [--dtype f32,f16] [--m 32,8,2] [--sweep]
 *   [--only in_proj,lm_head] [--rounds 3] [--warm-ms 20]
 * ```
 *
 * @module
 */

import {
  createWebGpuBackend,
  LINEAR_TUNING,
  type SplitkTile,
  splitkTile,
} from "../src/backends/webgpu/webgpu.ts";
import type { Backend, Tensor, WeightDType } from "../src/backends/backend.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const reps = Number(arg("reps", "100"));
const dtypes = arg("dtype", "f32,f16").split(",") as WeightDType[];
const ms = arg("m", "32").split(",").map(Number);
const sweep = Deno.args.includes("--sweep");
const only = arg("only", "");
const rounds = Number(arg("rounds", "3"));
const warmMs = Number(arg("warm-ms", "20"));

let seed = 1;
const rand = (len: number, scale = 1) => {
  let s = seed++ >>> 0;
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = scale * (2 * (s / 4294967296) - 1);
  }
  return out;
};

// name, rows of each matrix, cols, fusion
const shapes: [string, number[], number, "norm" | "resid" | "bias" | ""][] = [
  ["in_proj", [1536, 1536], 768, "norm"],
  ["x_proj", [48, 16, 16], 1536, ""],
  ["dt_proj", [1536], 48, "bias"],
  ["out_proj", [768], 1536, "resid"],
  ["lm_head", [50280], 768, "norm"],
];

for (const dtype of dtypes) {
  const be = await createWebGpuBackend({ dtype });
  for (const [name, rows, cols, fusion] of shapes) {
    if (only && !only.split(",").includes(name)) continue;
    const ws = rows.map((o) => be.uploadMatrix(rand(o * cols, 1 / Math.sqrt(cols)), [o, cols]));
    const bias = rows.map((o) => be.upload(rand(o), [o]));
    const nw = be.upload(rand(cols, 0.1).map((v) => v + 1), [cols]);
    for (const m of ms) {
      const x = be.upload(rand(m * cols), [m, cols]);
      const xn = be.zeros([m, cols]);
      const outs = rows.map((o) => be.zeros([m, o]));
      const other = be.zeros([m, rows[0]]);
      const resid = be.zeros([m, rows[0]]);
      const op = (out0: Tensor) => {
        if (fusion === "norm") be.rmsNorm(xn, x, nw, 1e-5);
        const input = fusion === "norm" ? xn : x;
        rows.forEach((_, j) =>
          be.linear(j ? outs[j] : out0, ws[j], input, fusion === "bias" ? bias[j] : undefined)
        );
        if (fusion === "resid") be.add(resid, resid, out0);
      };
      const time = async () => {
        op(other); // another output: the next op makes its dispatches anew (the tile may have changed)
        op(outs[0]);
        await be.read(outs[0]);
        const gpu = be as unknown as { timeGpu(f: () => void): Promise<number | undefined> };
        let best = Infinity, last = 0;
        for (let t = 0; t < rounds; t++) {
          // the GPU kept busy first (its clocks fall while it waits, as while pipelines compile): for
          // about warmMs after the first round, then the timed reps right after
          const warm = last ? Math.max(3 * reps, Math.ceil((warmMs * 1000) / last)) : 3 * reps;
          for (let r = 0; r < warm; r++) op(outs[0]);
          const us = await gpu.timeGpu(() => {
            for (let r = 0; r < reps; r++) op(outs[0]);
          });
          last = us! / reps;
          best = Math.min(best, last);
        }
        return +best.toFixed(2);
      };
      LINEAR_TUNING.splitk = "never";
      LINEAR_TUNING.tile = undefined;
      const before = await time();
      LINEAR_TUNING.splitk = "always"; // also where the backend takes matvec
      const chosen = splitkTile(m, rows, Math.ceil(cols / 8) * 2, dtype === "f16");
      const after = await time();
      const results: [number, SplitkTile][] = [[after, chosen]];
      // the GPU time of each of the two kernels (a pass per dispatch: each inflated by a few us)
      const gpu = be as unknown as {
        profileGpu(f: () => void): Promise<{ kernels: Record<string, { count: number; us: number }> }>;
      };
      const profile = async () => {
        const prof = await gpu.profileGpu(() => {
          for (let r = 0; r < 20; r++) op(outs[0]);
        });
        return Object.fromEntries(
          Object.entries(prof.kernels).map(([k, v]) => [k, +(v.us / 20).toFixed(2)]),
        );
      };
      const kernels = await profile();
      if (sweep) {
        const x4 = Math.ceil(cols / 8) * 2;
        // chunks of 4 and 8 vec4<u32> of weights a row: 4 and 8 vec4 of x in f32, 8 and 16 in f16
        const per = dtype === "f16" ? 2 : 1;
        // tiles: threads, rows of w per thread, chunk (vec4 of x); each once (16 is also 8 * 2 in f16)
        const tiles = [
          { WG: 128, RW: 1, KC4: 16 },
          { WG: 128, RW: 1, KC4: 4 * per },
          { WG: 128, RW: 2, KC4: 4 * per },
          { WG: 128, RW: 1, KC4: 8 * per },
          { WG: 128, RW: 2, KC4: 8 * per },
          { WG: 256, RW: 1, KC4: 16 },
          { WG: 64, RW: 1, KC4: 16 },
        ].filter((t, i, all) =>
          all.findIndex((u) => u.RW === t.RW && u.KC4 === t.KC4 && u.WG === t.WG) === i
        );
        for (const t of tiles) {
          const tileRows = t.WG * t.RW;
          const tilesN = rows.reduce((a, r) => a + Math.ceil(r / tileRows), 0);
          for (const S of [2, 3, 4, 6, 8, 12, 16, 24, 48]) {
            if (S > Math.ceil(x4 / t.KC4) || (S - 1) * t.KC4 >= x4) continue;
            if (tilesN * S < 100 || tilesN * S > 1600) continue;
            const tile = { ...chosen, ...t, S };
            LINEAR_TUNING.tile = tile;
            const us = await time();
            console.log(JSON.stringify({ dtype, name, m, us, ...tile, kernels: await profile() }));
            results.push([us, tile]);
          }
        }
        LINEAR_TUNING.tile = undefined;
      }
      results.sort((a, b) => a[0] - b[0]);
      console.log(JSON.stringify({
        dtype,
        name,
        m,
        rows,
        cols,
        fusion,
        before_us: before,
        splitk_us: after,
        tile: chosen,
        kernels,
        best: results.slice(0, 5).map(([us, t]) => ({ us, WG: t.WG, RW: t.RW, KC4: t.KC4, S: t.S })),
      }));
      for (const t of [x, xn, ...outs, other, resid] as Tensor[]) (be as Backend).free(t);
    }
    for (const t of [...ws, ...bias, nw]) be.free(t);
  }
  await be.dispose();
}
