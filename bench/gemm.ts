/**
 * GPU time of the tiled kernel (wgsl/gemm.wgsl, f32 or f16 weights) on the linear shapes of mamba-130m
 * (prefill 512 tokens, decode at batch 32 and 8), for the tile `gemmTile` and the splits of k
 * `gemmPlan` chooses, and with `--sweep` for other tiles and splits (1, 2, 4, 8, 16): r and 2r products (one or two dispatches each) in one pass, each followed by one wait; the
 * difference over r is the time per product. The chosen tile's output is checked against sums in f64 at sampled positions.
 * One JSON object per line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gemm.ts [--reps 50] [--dtype f32,f16] [--sweep] [--only prefill]
 *   [--splits 1,2,4,8,16] [--pad 0,1] [--bk 16,32] [--tiles 64x64x4x4,64x32x4x4] [--full 0]
 * ```
 *
 * Products that lie in full tiles run the kernel's pipeline without bounds logic (FULL), as the
 * backend does; `--full 0` runs the general one.
 *
 * @module
 */

import { gemmFull, gemmPlan, gemmSplitsOf, type GemmTile, toHalf } from "../src/backends/webgpu/webgpu.ts";
import { SHADERS } from "../src/backends/webgpu/_shaders.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const reps = Number(arg("reps", "50"));
const dtypes = arg("dtype", "f32,f16").split(",");
const sweep = Deno.args.includes("--sweep");
// shapes whose name contains this; the splits and PAD values (see wgsl/gemm.wgsl) the sweep tries
const only = arg("only", "");
const splitsSwept = arg("splits", "1,2,4,8,16").split(",").map(Number);
const pads = arg("pad", "1").split(",").map(Number);
const bks = arg("bk", "16,32").split(",").map(Number);
// tiles the sweep tries, as BMxBNxTMxTN (all by default)
const tiles = arg("tiles", "");
const fullOk = arg("full", "1") !== "0";
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("Cannot run bench/gemm.ts: no WebGPU adapter");
const device = await adapter.requestDevice({
  requiredFeatures: adapter.features.has("timestamp-query") ? ["timestamp-query"] : [],
  requiredLimits: {
    maxStorageBuffersPerShaderStage: 16,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  },
});
const storage = device.limits.maxComputeWorkgroupStorageSize;
const STORAGE = 0x80 | 0x8 | 0x4;

let seed = 1;
const rand = (len: number, scale = 1) => {
  let s = seed++ >>> 0;
  return Float32Array.from({ length: len }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return scale * (2 * (s / 4294967296) - 1);
  });
};
const buffer = (data: ArrayBufferView) => {
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: STORAGE });
  device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
};

// name, m, rows of each matrix, cols, has_norm
const shapes: [string, number, number[], number, number][] = [
  ["prefill in_proj (norm)", 512, [1536, 1536], 768, 1],
  ["prefill in_proj without norm", 512, [1536, 1536], 768, 0],
  ["prefill out_proj", 512, [768], 1536, 0],
  ["prefill x_proj", 512, [48, 16, 16], 1536, 0],
  ["prefill dt_proj", 512, [1536], 48, 0],
  ["decode32 in_proj (norm)", 32, [1536, 1536], 768, 1],
  ["decode32 out_proj", 32, [768], 1536, 0],
  ["decode32 x_proj", 32, [48, 16, 16], 1536, 0],
  ["decode32 lm_head (norm)", 32, [50280], 768, 1],
  ["decode8 in_proj (norm)", 8, [1536, 1536], 768, 1],
  ["decode8 out_proj", 8, [768], 1536, 0],
  ["decode8 x_proj", 8, [48, 16, 16], 1536, 0],
  ["decode8 lm_head (norm)", 8, [50280], 768, 1],
];
const TILES: [number, number, number, number][] = [
  [8, 64, 4, 4],
  [8, 32, 4, 4],
  [16, 64, 4, 4],
  [16, 32, 4, 4],
  [32, 64, 4, 4],
  [32, 32, 4, 4],
  [32, 64, 4, 8],
  [32, 128, 4, 8],
  [64, 64, 8, 4],
  [64, 32, 4, 4],
  [64, 16, 4, 4],
  [64, 64, 4, 4],
  [64, 128, 8, 8],
  [128, 128, 8, 8],
  [128, 64, 8, 4],
  [64, 64, 8, 8],
  [128, 64, 8, 8],
  [64, 128, 4, 8],
  [64, 128, 8, 4],
];

/** A tile and its splits of k (tps: k-tiles per split). */
interface Choice {
  tile: GemmTile;
  splits: number;
  tps: number;
  pad?: number;
}

function candidates(m: number, cols: number): GemmTile[] {
  const out: GemmTile[] = [];
  for (const [BM, BN, TM, TN] of TILES) {
    if (tiles && !tiles.split(",").includes(`${BM}x${BN}x${TM}x${TN}`)) continue;
    if (BM > 2 * Math.max(m, 8) || (m > 64 && BM < 64)) continue;
    const nt = (BM / TM) * (BN / TN);
    for (const BK of bks) {
      for (let KS = 1; KS * nt <= 256; KS *= 2) {
        const lx = Math.ceil((BM * BK) / 4 / nt), lw = Math.ceil((BN * BK) / 4 / nt);
        const bytes = KS * (BK * (BM + BN + 8) * 4 + BM * BK) + BM * 4;
        if (lx > 8 || lw > 8 || bytes > storage || (KS - 1) * BM * BN > KS * BK * (BM + BN)) continue;
        if (KS > 1 && Math.ceil(cols / BK) < 2 * KS) continue;
        out.push({ BM, BN, TM, TN, BK, KS });
      }
    }
  }
  return out;
}

let module: GPUShaderModule | undefined;
const pipelines = new Map<string, GPUComputePipeline>();
function pipeline(f16: boolean, tile: GemmTile, pad: number, full: boolean): GPUComputePipeline {
  const key = f16 + JSON.stringify(tile) + pad + full;
  let p = pipelines.get(key);
  if (!p) {
    module ??= device.createShaderModule({ code: SHADERS.gemm });
    p = device.createComputePipeline({
      layout: "auto",
      compute: {
        module,
        entryPoint: "gemm",
        constants: {
          ...tile,
          F16: f16 ? 1 : 0,
          ...(pad === 1 ? {} : { PAD: pad }),
          ...(full ? { FULL: 1 } : {}),
        },
      },
    });
    pipelines.set(key, p);
  }
  return p;
}

const stamps = device.features.has("timestamp-query")
  ? {
    set: device.createQuerySet({ type: "timestamp", count: 2 }),
    resolve: device.createBuffer({ size: 16, usage: 0x200 | 0x4 }),
  }
  : undefined;

/**
 * Microseconds per call of `fn`: by timestamp queries around one pass of r calls where the device has
 * them (the best of 3), else by the wall clock (r and 2r calls, each followed by one wait).
 */
async function timeIt(fn: (pass: GPUComputePassEncoder) => void, r: number): Promise<number> {
  const run = async (k: number) => {
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(
      stamps
        ? { timestampWrites: { querySet: stamps.set, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
        : {},
    );
    for (let i = 0; i < k; i++) fn(pass);
    pass.end();
    let read: GPUBuffer | undefined;
    if (stamps) {
      read = device.createBuffer({ size: 16, usage: 0x1 | 0x8 });
      enc.resolveQuerySet(stamps.set, 0, 2, stamps.resolve, 0);
      enc.copyBufferToBuffer(stamps.resolve, 0, read, 0, 16);
    }
    device.queue.submit([enc.finish()]);
    if (read) {
      await read.mapAsync(1);
      const [a, b] = new BigInt64Array(read.getMappedRange());
      const ns = Number(b - a);
      read.unmap();
      read.destroy();
      return ns / 1e6;
    }
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await run(2);
  let best = Infinity;
  for (let t = 0; t < 3; t++) {
    best = Math.min(best, stamps ? await run(r) : (await run(2 * r)) - (await run(r)));
  }
  return (best / r) * 1000;
}

/** Whether the GPU ran the current shape for a while (its clocks rise after idle times). */
let warm = false;
let first = true;

for (const dtype of dtypes) {
  for (const [name, m, rows, cols, norm] of shapes) {
    if (!new RegExp(only).test(name)) continue;
    warm = false;
    const stride = Math.ceil(cols / 8) * 8;
    const ws = rows.map((o) => {
      const w = rand(o * cols, 1 / Math.sqrt(cols));
      const halves = new Uint16Array(o * stride), padded = new Float32Array(o * stride);
      for (let r = 0; r < o; r++) {
        for (let c = 0; c < cols; c++) {
          halves[r * stride + c] = toHalf(w[r * cols + c]);
          padded[r * stride + c] = w[r * cols + c];
        }
      }
      return { w, buf: buffer(dtype === "f16" ? halves : padded) };
    });
    const x = rand(m * cols), nw = rand(cols, 0.1).map((v) => v + 1);
    const xb = buffer(x), nwb = buffer(nw), xnb = buffer(new Float32Array(m * cols));
    const outs = rows.map((o) => buffer(new Float32Array(m * o)));
    const dummy = buffer(new Float32Array(4));
    const flops = 2 * m * cols * rows.reduce((a, b) => a + b, 0);
    const chosen: Choice = gemmPlan(m, rows, cols, storage, 256, true);
    const same = (a: Choice) => JSON.stringify(a) === JSON.stringify(chosen);
    const choices: Choice[] = [chosen];
    if (sweep) {
      for (const tile of candidates(m, cols)) {
        for (const sp of splitsSwept) {
          for (const pad of pads) {
            const c: Choice = { tile, ...(sp === 1 ? { splits: 1, tps: 0 } : gemmSplitsOf(tile, cols, sp)) };
            if (pad !== 1) c.pad = pad;
            if (!same(c) && !choices.some((d) => JSON.stringify(d) === JSON.stringify(c))) choices.push(c);
          }
        }
      }
    }
    const results: [number, Choice][] = [];
    const part = buffer(new Float32Array(16 * m * (rows.reduce((a, o) => a + o, 0) + 4 * 128)));
    for (const choice of choices) {
      const { tile, splits, tps } = choice;
      const full = fullOk && gemmFull(tile, m, rows, cols);
      const p = pipeline(dtype === "f16", tile, choice.pad ?? 1, full);
      const starts = [0, 0, 0, 0], os = [0, 0, 0, 0];
      let total = 0;
      for (let j = 0; j < 4; j++) {
        starts[j] = total;
        if (j < rows.length) total += Math.ceil(rows[j] / tile.BN), os[j] = rows[j];
      }
      const nmb = Math.ceil(m / tile.BM);
      const bindGroup = (phase: number) => {
        const params = new Uint32Array(24);
        params.set([...os, ...starts, 0, 0, 0, 0, m, cols, stride / 4, rows.length, norm, 0, 0, nmb, total]);
        params.set([phase, splits, tps], 21);
        new Float32Array(params.buffer)[18] = 1e-5;
        const ub = device.createBuffer({ size: 96, usage: 0x40 | 0x8 });
        device.queue.writeBuffer(ub, 0, params);
        // a buffer that the dispatch writes is bound once: fresh ones for unused outputs
        const binds = [ub, xb, ...[0, 1, 2, 3].map((j) => outs[j] ?? buffer(new Float32Array(4)))];
        binds.push(
          ...[0, 1, 2, 3].map((j) => ws[j]?.buf ?? dummy),
          dummy,
          dummy,
          dummy,
          dummy,
          nwb,
          splits > 1 && !norm ? part : xnb,
          splits > 1 && norm ? part : buffer(new Float32Array(4)),
        );
        return device.createBindGroup({
          layout: p.getBindGroupLayout(0),
          entries: binds.map((buffer, binding) => ({ binding, resource: { buffer } })),
        });
      };
      const grid = (groups: number) => {
        const gy = Math.ceil(groups / 65535);
        return [Math.ceil(groups / gy), gy] as const;
      };
      const one = bindGroup(splits > 1 ? 1 : 0), two = bindGroup(2);
      const g1 = grid(splits * total * nmb);
      const g2 = grid(
        Math.ceil((m * total * tile.BN) / ((tile.BM / tile.TM) * (tile.BN / tile.TN) * tile.KS)),
      );
      const product = (pass: GPUComputePassEncoder) => {
        pass.setPipeline(p);
        pass.setBindGroup(0, one);
        pass.dispatchWorkgroups(...g1);
        if (splits > 1) {
          pass.setBindGroup(0, two);
          pass.dispatchWorkgroups(...g2);
        }
      };
      // a GPU just out of idle runs slower for about a second: the first shape warms it up longer
      const spin = first ? 1500 : 400;
      for (const t0 = performance.now(); !warm && performance.now() - t0 < spin;) await timeIt(product, reps);
      warm = true;
      first = false;
      const us = await timeIt(product, reps);
      results.push([us, choice]);
      if (choice === chosen) {
        // check sampled outputs of the last matrix against f64 sums (f16-rounded weights for f16)
        const j = rows.length - 1, o = rows[j];
        const read = device.createBuffer({ size: m * o * 4, usage: 0x1 | 0x8 });
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(outs[j], 0, read, 0, m * o * 4);
        device.queue.submit([enc.finish()]);
        await read.mapAsync(1);
        const got = new Float32Array(read.getMappedRange().slice(0));
        read.unmap();
        let err = 0;
        for (let s = 0; s < 64; s++) {
          const i_m = (s * 7919) % m, i_o = (s * 104729) % o;
          let ss = 0, sum = 0;
          for (let c = 0; c < cols; c++) ss += x[i_m * cols + c] ** 2;
          const scale = norm ? 1 / Math.sqrt(ss / cols + 1e-5) : 1;
          for (let c = 0; c < cols; c++) {
            let wv = ws[j].w[i_o * cols + c];
            if (dtype === "f16") wv = new Float32Array(new Float16Array([wv]))[0];
            sum += x[i_m * cols + c] * scale * (norm ? nw[c] : 1) * wv;
          }
          err = Math.max(err, Math.abs(sum - got[i_m * o + i_o]));
        }
        console.log(JSON.stringify({ dtype, name, check: "max abs error vs f64 at 64 outputs", err }));
      }
    }
    results.sort((a, b) => a[0] - b[0]);
    const show = (r: [number, Choice]) => ({
      us: +r[0].toFixed(1),
      full: fullOk && gemmFull(r[1].tile, m, rows, cols),
      tflops: +(flops / r[0] / 1e6).toFixed(2),
      tile: r[1].tile,
      splits: r[1].splits,
      ...(r[1].pad !== undefined ? { pad: r[1].pad } : {}),
    });
    const mine = results.find((r) => r[1] === chosen)!;
    console.log(
      JSON.stringify({ dtype, name, m, rows, cols, chosen: show(mine), best: results.slice(0, 6).map(show) }),
    );
  }
}
