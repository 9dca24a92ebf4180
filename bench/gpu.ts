/**
 * GPU benchmark: prefill and decode throughput of the webgpu backend (or any backend) on the
 * mamba-130m and mamba2-130m shapes with random weights generated in-process. Prints one JSON object
 * per line: backend, model, dtype, batch, phase, tokens_per_s, ms_per_token, device.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu.ts                       # full shapes (a real GPU)
 * deno run -A --unstable-webgpu bench/gpu.ts --small               # tiny shapes (a software adapter)
 * deno run -A --unstable-webgpu bench/gpu.ts --arch mamba --dtype f16 --batch 1,32 --prefill 512 --decode 256
 * ```
 *
 * Decode is timed end to end through generateIds (GPU sampling, pipelined reads of ids), as the
 * difference between n and a few new tokens, so the fixed prefill and first read drop out. Prefill is
 * timed over several passes followed by one wait for the GPU (about 11 ms in Deno), which is included.
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { prefill } from "../src/generate/generate.ts";
import type { WeightDType } from "../src/backends/backend.ts";

const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i++) {
  const a = Deno.args[i];
  if (!a.startsWith("--")) continue;
  const next = Deno.args[i + 1];
  if (next === undefined || next.startsWith("--")) args.set(a.slice(2), "1");
  else args.set(a.slice(2), Deno.args[++i]);
}
const small = args.has("small");
const archs = (args.get("arch") ?? "mamba,mamba2").split(",") as ("mamba" | "mamba2")[];
const dtypes = (args.get("dtype") ?? "f32,f16").split(",") as WeightDType[];
const batches = (args.get("batch") ?? "1,32").split(",").map(Number);
const prefillLen = Number(args.get("prefill") ?? (small ? 32 : 512));
const decodeLen = Number(args.get("decode") ?? (small ? 24 : 512));
const backend = (args.get("backend") ?? "webgpu") as "webgpu" | "wasm" | "js";
const sampled = args.has("sampled");

/** Deterministic values uniform in [-scale, scale). */
function rand(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = scale * (2 * (s / 4294967296) - 1);
  }
  return out;
}

/** config.json and model.safetensors bytes of a random model of the given family and shape. */
function randomModel(arch: "mamba" | "mamba2"): Record<string, Uint8Array> {
  const d = small ? 64 : 768, layers = small ? 2 : 24;
  const v = small ? 512 : arch === "mamba" ? 50280 : 50288;
  const di = 2 * d, k = 4;
  const tensors: Record<string, Float32Array> = {};
  const shapes: Record<string, number[]> = {};
  let seed = 1;
  const put = (name: string, shape: number[], data: Float32Array) => {
    tensors[name] = data;
    shapes[name] = shape;
  };
  const w = (name: string, shape: number[], fanIn: number) =>
    put(name, shape, rand(shape.reduce((a, b) => a * b, 1), seed++, 1 / Math.sqrt(fanIn)));
  const ones = (name: string, n: number) => put(name, [n], new Float32Array(n).fill(1));
  w("backbone.embeddings.weight", [v, d], 1);
  ones("backbone.norm_f.weight", d);
  let config: Record<string, unknown>;
  for (let i = 0; i < layers; i++) {
    const p = `backbone.layers.${i}.`;
    ones(`${p}norm.weight`, d);
    if (arch === "mamba") {
      const n = 16, r = Math.ceil(d / 16);
      w(`${p}mixer.in_proj.weight`, [2 * di, d], d);
      w(`${p}mixer.conv1d.weight`, [di, 1, k], k);
      w(`${p}mixer.conv1d.bias`, [di], k);
      w(`${p}mixer.x_proj.weight`, [r + 2 * n, di], di);
      w(`${p}mixer.dt_proj.weight`, [di, r], r);
      put(`${p}mixer.dt_proj.bias`, [di], new Float32Array(di).fill(-4.6));
      put(`${p}mixer.A_log`, [di, n], Float32Array.from({ length: di * n }, (_, j) => Math.log(1 + (j % n))));
      ones(`${p}mixer.D`, di);
      w(`${p}mixer.out_proj.weight`, [d, di], di);
    } else {
      const n = small ? 16 : 128, hd = small ? 16 : 64, h = di / hd, g = 1;
      w(`${p}mixer.in_proj.weight`, [2 * di + 2 * g * n + h, d], d);
      w(`${p}mixer.conv1d.weight`, [di + 2 * g * n, 1, k], k);
      w(`${p}mixer.conv1d.bias`, [di + 2 * g * n], k);
      put(`${p}mixer.dt_bias`, [h], new Float32Array(h).fill(-4.6));
      put(`${p}mixer.A_log`, [h], Float32Array.from({ length: h }, (_, j) => Math.log(1 + j)));
      ones(`${p}mixer.D`, h);
      ones(`${p}mixer.norm.weight`, di);
      w(`${p}mixer.out_proj.weight`, [d, di], di);
    }
  }
  if (arch === "mamba") {
    config = {
      model_type: "mamba",
      hidden_size: d,
      num_hidden_layers: layers,
      vocab_size: v,
      state_size: 16,
      time_step_rank: Math.ceil(d / 16),
      eos_token_id: 0,
    };
  } else {
    config = {
      model_type: "mamba2",
      hidden_size: d,
      num_hidden_layers: layers,
      vocab_size: v,
      state_size: small ? 16 : 128,
      head_dim: small ? 16 : 64,
      num_heads: di / (small ? 16 : 64),
      n_groups: 1,
      chunk_size: 256,
      eos_token_id: 0,
    };
  }
  return {
    "config.json": new TextEncoder().encode(JSON.stringify(config)),
    "model.safetensors": writeSafetensors(tensors, shapes),
  };
}

const quiet = { log: () => {} };
for (const arch of archs) {
  const files = randomModel(arch);
  for (const dtype of dtypes) {
    const model = await loadModel({ files, name: `random-${arch}` }, { backend, dtype, ...quiet });
    const net = model.network;
    const be = net.backend;
    const c = model.config;
    const device = (be as unknown as { adapter?: { description: string } }).adapter?.description ?? "cpu";
    const name = small ? `${arch}-small` : arch === "mamba" ? "mamba-130m-shape" : "mamba2-130m-shape";
    const emit = (batch: number, phase: string, tokens: number, seconds: number, steps: number) =>
      console.log(JSON.stringify({
        backend: be.name,
        model: name,
        dtype,
        batch,
        phase,
        tokens_per_s: Math.round(tokens / seconds),
        ms_per_token: +((seconds * 1000) / steps).toFixed(4),
        device,
      }));
    const ids = (b: number, l: number) =>
      Array.from(
        { length: b },
        (_, i) => Array.from({ length: l }, (_, t) => (i * 7919 + t * 104729) % c.vocabSize),
      );
    const sync = async () => {
      const t = be.zeros([1]);
      await be.read(t);
      be.free(t);
    };

    // Prefill: b = 1, prefillLen tokens, several passes, then one wait.
    {
      const prompts = ids(1, prefillLen);
      const last = be.zeros([1, c.dModel]);
      const run = () => {
        const state = net.newState(1);
        prefill(net, state, prompts, last);
        state.dispose();
      };
      run();
      await sync();
      const reps = small ? 2 : 8;
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) run();
      await sync();
      const s = (performance.now() - t0) / 1000;
      emit(1, `prefill_${prefillLen}`, reps * prefillLen, s, reps * prefillLen);
      be.free(last);
    }

    // Decode: greedy (or sampled), through generateIds, pipelined reads.
    for (const b of batches) {
      const prompts = ids(b, 8);
      const opts = sampled
        ? { temperature: 0.8, topP: 0.95, seed: 1, ignoreEos: true }
        : { temperature: 0, ignoreEos: true };
      await model.generateIds(prompts, { ...opts, maxNewTokens: 4 });
      const few = 2;
      const t0 = performance.now();
      await model.generateIds(prompts, { ...opts, maxNewTokens: few });
      const t1 = performance.now();
      const out = await model.generateIds(prompts, { ...opts, maxNewTokens: decodeLen });
      const t2 = performance.now();
      if (out[0].length !== decodeLen) {
        throw new Error(`decode gave ${out[0].length} tokens, expected ${decodeLen}`);
      }
      const s = (t2 - t1 - (t1 - t0)) / 1000;
      emit(b, sampled ? "decode_sampled" : "decode", b * (decodeLen - few), s, decodeLen - few);
    }
    await model.dispose();
  }
}
