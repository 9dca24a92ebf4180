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

/** Sizes of a random model; the defaults are the real checkpoints' (mamba-130m, mamba2-130m). */
export interface Shape {
  /** d */
  d?: number;
  layers?: number;
  /** v */
  vocab?: number;
  /** n */
  dState?: number;
  /** p (Mamba-2) */
  headDim?: number;
}

/** Tensors by name with their shapes, then the HF files holding them and a config. */
class Checkpoint {
  t: Record<string, Float32Array> = {};
  shapes: Record<string, number[]> = {};

  put(name: string, data: Float32Array, shape: number[]): void {
    this.t[name] = data;
    this.shapes[name] = shape;
  }

  files(config: unknown): Record<string, Uint8Array> {
    return {
      "config.json": new TextEncoder().encode(JSON.stringify(config)),
      "model.safetensors": writeSafetensors(this.t, this.shapes),
    };
  }
}

/** A random Mamba-1 (by default of the mamba-130m shape), as HF files in memory. */
export function mamba1Files(shape: Shape = {}): Record<string, Uint8Array> {
  const d = shape.d ?? 768, nl = shape.layers ?? 24, v = shape.vocab ?? 50280, n = shape.dState ?? 16;
  const r = Math.ceil(d / 16), di = 2 * d, k = 4;
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
  const c = new Checkpoint();
  c.put("backbone.embeddings.weight", uniform(v * d, 0.02, 1), [v, d]);
  for (let i = 0; i < nl; i++) {
    const p = `backbone.layers.${i}.`;
    c.put(`${p}norm.weight`, fill(d, 1), [d]);
    c.put(`${p}mixer.in_proj.weight`, uniform(2 * di * d, 1 / Math.sqrt(d), 10 + i), [2 * di, d]);
    c.put(`${p}mixer.conv1d.weight`, uniform(di * k, 0.5, 100 + i), [di, 1, k]);
    c.put(`${p}mixer.conv1d.bias`, uniform(di, 0.1, 200 + i), [di]);
    c.put(`${p}mixer.x_proj.weight`, uniform((r + 2 * n) * di, 1 / Math.sqrt(di), 300 + i), [r + 2 * n, di]);
    c.put(`${p}mixer.dt_proj.weight`, uniform(di * r, 1 / Math.sqrt(r), 400 + i), [di, r]);
    c.put(`${p}mixer.dt_proj.bias`, fill(di, -4), [di]);
    c.put(`${p}mixer.A_log`, Float32Array.from({ length: di * n }, (_, j) => Math.log(1 + (j % n))), [di, n]);
    c.put(`${p}mixer.D`, fill(di, 1), [di]);
    c.put(`${p}mixer.out_proj.weight`, uniform(d * di, 1 / Math.sqrt(di) / 4, 500 + i), [d, di]);
  }
  c.put("backbone.norm_f.weight", fill(d, 1), [d]);
  return c.files(config);
}

/** A random Mamba-2 (by default of the mamba2-130m shape), as HF files in memory. */
export function mamba2Files(shape: Shape = {}): Record<string, Uint8Array> {
  const d = shape.d ?? 768, nl = shape.layers ?? 24, v = shape.vocab ?? 50288, n = shape.dState ?? 128;
  const p = shape.headDim ?? 64, di = 2 * d, h = di / p, g = 1, k = 4;
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
  const c = new Checkpoint();
  const inRows = 2 * di + 2 * g * n + h, convCh = di + 2 * g * n;
  c.put("backbone.embeddings.weight", uniform(v * d, 0.02, 2), [v, d]);
  for (let i = 0; i < nl; i++) {
    const q = `backbone.layers.${i}.`;
    c.put(`${q}norm.weight`, fill(d, 1), [d]);
    c.put(`${q}mixer.in_proj.weight`, uniform(inRows * d, 1 / Math.sqrt(d), 10 + i), [inRows, d]);
    c.put(`${q}mixer.conv1d.weight`, uniform(convCh * k, 0.5, 100 + i), [convCh, 1, k]);
    c.put(`${q}mixer.conv1d.bias`, uniform(convCh, 0.1, 200 + i), [convCh]);
    c.put(`${q}mixer.dt_bias`, fill(h, -3), [h]);
    c.put(`${q}mixer.A_log`, Float32Array.from({ length: h }, (_, j) => Math.log(1 + j)), [h]);
    c.put(`${q}mixer.D`, fill(h, 1), [h]);
    c.put(`${q}mixer.norm.weight`, fill(di, 1), [di]);
    c.put(`${q}mixer.out_proj.weight`, uniform(d * di, 1 / Math.sqrt(di) / 4, 500 + i), [d, di]);
  }
  c.put("backbone.norm_f.weight", fill(d, 1), [d]);
  return c.files(config);
}
