/**
 * Where a decode step's time goes on the webgpu backend (mamba-130m shape, random weights): CPU time
 * to record n steps, then wall time until the GPU has run them (one read at the end), for the whole
 * step and for the head (norm_f + lm_head + argmax) alone. One JSON object per line.
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu_steps.ts [--layers 24] [--steps 256] [--batch 1]
 * ```
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { GREEDY } from "../src/generate/sampler.ts";

const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const layers = arg("layers", 24), n = arg("steps", 256), b = arg("batch", 1);
const d = arg("d", 768), v = arg("vocab", 50280), di = 2 * d, ns = 16, r = Math.ceil(d / 16);
let seed = 1;
const rand = (len: number, scale: number) => {
  let s = seed++ >>> 0;
  return Float32Array.from({ length: len }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return scale * (2 * (s / 4294967296) - 1);
  });
};
const t: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
const put = (k: string, s: number[], x: Float32Array) => (t[k] = x, shapes[k] = s);
put("backbone.embeddings.weight", [v, d], rand(v * d, 1));
put("backbone.norm_f.weight", [d], new Float32Array(d).fill(1));
for (let i = 0; i < layers; i++) {
  const p = `backbone.layers.${i}.`;
  put(`${p}norm.weight`, [d], new Float32Array(d).fill(1));
  put(`${p}mixer.in_proj.weight`, [2 * di, d], rand(2 * di * d, 1 / Math.sqrt(d)));
  put(`${p}mixer.conv1d.weight`, [di, 1, 4], rand(di * 4, 0.5));
  put(`${p}mixer.conv1d.bias`, [di], rand(di, 0.5));
  put(`${p}mixer.x_proj.weight`, [r + 2 * ns, di], rand((r + 2 * ns) * di, 1 / Math.sqrt(di)));
  put(`${p}mixer.dt_proj.weight`, [di, r], rand(di * r, 1 / Math.sqrt(r)));
  put(`${p}mixer.dt_proj.bias`, [di], new Float32Array(di).fill(-4.6));
  put(`${p}mixer.A_log`, [di, ns], Float32Array.from({ length: di * ns }, (_, j) => Math.log(1 + (j % ns))));
  put(`${p}mixer.D`, [di], new Float32Array(di).fill(1));
  put(`${p}mixer.out_proj.weight`, [d, di], rand(d * di, 1 / Math.sqrt(di)));
}
const config = {
  model_type: "mamba",
  hidden_size: d,
  num_hidden_layers: layers,
  vocab_size: v,
  state_size: ns,
};
const files = {
  "config.json": new TextEncoder().encode(JSON.stringify(config)),
  "model.safetensors": writeSafetensors(t, shapes),
};
const model = await loadModel({ files }, { backend: "webgpu", log: () => {} });
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
  console.log(JSON.stringify({
    what,
    layers,
    batch: b,
    steps: n,
    record_ms_per_step: +((t1 - t0) / n).toFixed(4),
    wall_ms_per_step: +((t2 - t0) / n).toFixed(4),
  }));
}
await model.dispose();
