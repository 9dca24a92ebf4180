/**
 * Random-weight models of the real checkpoints' shapes, built in memory as HF files (config.json +
 * model.safetensors), for benchmarks: speed does not depend on the values.
 *
 * @module
 */

import { writeSafetensors } from "../src/io/safetensors.ts";

/** Deterministic uniform values in [-a, a). */
function uniform(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 * 2 - 1) * a;
  }
  return out;
}

const fill = (n: number, v: number) => new Float32Array(n).fill(v);

/** A random Mamba-1 of the mamba-130m shape, as HF files in memory. */
export function mamba1Files(): Record<string, Uint8Array> {
  const d = 768, nl = 24, v = 50280, n = 16, r = 48, di = 2 * d, k = 4;
  const config = {
    model_type: "mamba",
    hidden_size: d,
    num_hidden_layers: nl,
    vocab_size: v,
    state_size: n,
    time_step_rank: r,
    expand: 2,
    conv_kernel: k,
    intermediate_size: di,
    use_bias: false,
    use_conv_bias: true,
    tie_word_embeddings: true,
    layer_norm_epsilon: 1e-5,
    eos_token_id: 0,
  };
  const t: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
  const put = (name: string, data: Float32Array, shape: number[]) => {
    t[name] = data;
    shapes[name] = shape;
  };
  put("backbone.embeddings.weight", uniform(v * d, 0.02, 1), [v, d]);
  for (let i = 0; i < nl; i++) {
    const p = `backbone.layers.${i}.`;
    put(`${p}norm.weight`, fill(d, 1), [d]);
    put(`${p}mixer.in_proj.weight`, uniform(2 * di * d, 1 / Math.sqrt(d), 10 + i), [2 * di, d]);
    put(`${p}mixer.conv1d.weight`, uniform(di * k, 0.5, 100 + i), [di, 1, k]);
    put(`${p}mixer.conv1d.bias`, uniform(di, 0.1, 200 + i), [di]);
    put(`${p}mixer.x_proj.weight`, uniform((r + 2 * n) * di, 1 / Math.sqrt(di), 300 + i), [r + 2 * n, di]);
    put(`${p}mixer.dt_proj.weight`, uniform(di * r, 1 / Math.sqrt(r), 400 + i), [di, r]);
    put(`${p}mixer.dt_proj.bias`, fill(di, -4), [di]);
    put(`${p}mixer.A_log`, Float32Array.from({ length: di * n }, (_, j) => Math.log(1 + (j % n))), [di, n]);
    put(`${p}mixer.D`, fill(di, 1), [di]);
    put(`${p}mixer.out_proj.weight`, uniform(d * di, 1 / Math.sqrt(di) / 4, 500 + i), [d, di]);
  }
  put("backbone.norm_f.weight", fill(d, 1), [d]);
  return files(config, t, shapes);
}

/** A random Mamba-2 of the mamba2-130m shape, as HF files in memory. */
export function mamba2Files(): Record<string, Uint8Array> {
  const d = 768, nl = 24, v = 50288, n = 128, p = 64, di = 2 * d, h = di / p, g = 1, k = 4;
  const config = {
    model_type: "mamba2",
    hidden_size: d,
    num_hidden_layers: nl,
    vocab_size: v,
    state_size: n,
    head_dim: p,
    num_heads: h,
    n_groups: g,
    expand: 2,
    conv_kernel: k,
    chunk_size: 256,
    use_bias: false,
    use_conv_bias: true,
    tie_word_embeddings: true,
    layer_norm_epsilon: 1e-5,
    eos_token_id: 0,
  };
  const t: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
  const put = (name: string, data: Float32Array, shape: number[]) => {
    t[name] = data;
    shapes[name] = shape;
  };
  const inRows = 2 * di + 2 * g * n + h, convCh = di + 2 * g * n;
  put("backbone.embeddings.weight", uniform(v * d, 0.02, 2), [v, d]);
  for (let i = 0; i < nl; i++) {
    const q = `backbone.layers.${i}.`;
    put(`${q}norm.weight`, fill(d, 1), [d]);
    put(`${q}mixer.in_proj.weight`, uniform(inRows * d, 1 / Math.sqrt(d), 10 + i), [inRows, d]);
    put(`${q}mixer.conv1d.weight`, uniform(convCh * k, 0.5, 100 + i), [convCh, 1, k]);
    put(`${q}mixer.conv1d.bias`, uniform(convCh, 0.1, 200 + i), [convCh]);
    put(`${q}mixer.dt_bias`, fill(h, -3), [h]);
    put(`${q}mixer.A_log`, Float32Array.from({ length: h }, (_, j) => Math.log(1 + j)), [h]);
    put(`${q}mixer.D`, fill(h, 1), [h]);
    put(`${q}mixer.norm.weight`, fill(di, 1), [di]);
    put(`${q}mixer.out_proj.weight`, uniform(d * di, 1 / Math.sqrt(di) / 4, 500 + i), [d, di]);
  }
  put("backbone.norm_f.weight", fill(d, 1), [d]);
  return files(config, t, shapes);
}

function files(config: unknown, t: Record<string, Float32Array>, shapes: Record<string, number[]>) {
  return {
    "config.json": new TextEncoder().encode(JSON.stringify(config)),
    "model.safetensors": writeSafetensors(t, shapes),
  };
}
