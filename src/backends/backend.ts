/**
 * The backend op interface: a small fixed set of ops over opaque tensors. The model (src/model/) is
 * written once against it; each backend (js, wasm, webgpu) implements it with its own kernels.
 *
 * Rules every backend follows:
 * - Tensors are row-major; shapes use the glossary of src/config.ts. The model checks shapes once; ops
 *   may assume the shapes in their comments.
 * - Ops are issued in order and return nothing. A backend may run them at once (js, wasm) or record
 *   them and run them later (webgpu); `read`/`readIds` wait for every op issued before them.
 * - Ops take their sizes from the inputs' shapes; an `out` only needs the right number of elements
 *   (a (b, l, h, p) tensor can receive a (b, l, di) result).
 * - `out` never aliases an input unless the op says so.
 * - Weights are uploaded once. `uploadMatrix` may pack (f16, bf16, q8) as the backend's `weightDType`
 *   says; every other tensor is f32 (or i32 for token ids).
 *
 * @module
 */

/** Which backend. */
export type BackendName = "js" | "wasm" | "webgpu";

/** How matrices (linear weights, the embedding) are kept: f32 is exact; the others are packed. */
export type WeightDType = "f32" | "f16" | "bf16" | "q8";

/** A tensor shape, outermost first. */
export type Shape = readonly number[];

/** A tensor on some backend. Only its shape and element type are visible above backends/. */
export interface Tensor {
  readonly shape: Shape;
  readonly dtype: "f32" | "i32";
}

/** Arguments of the Mamba-1 selective scan (softplus, scan, D skip and gate fused). */
export interface ScanArgs {
  /** (b, l, di) out: (C.h + D*x) * silu(z) */
  y: Tensor;
  /** (b, l, di) input, after conv and SiLU */
  x: Tensor;
  /** (b, l, di) dt before softplus (dt_proj output, its bias included) */
  dt: Tensor;
  /** (di, n) A = -exp(A_log) */
  A: Tensor;
  /** (b, l, n) */
  B: Tensor;
  /** (b, l, n) */
  C: Tensor;
  /** (di) */
  D: Tensor;
  /** (b, l, di) gate */
  z: Tensor;
  /** (b, di, n) recurrent state, read and updated in place */
  h: Tensor;
}

/** Arguments of the Mamba-2 SSD scan (softplus, clamp, scan and D skip fused; the gate is in gatedRmsNorm). */
export interface SsdArgs {
  /** (b, l, h, p) out: C.h + D*x */
  y: Tensor;
  /** (b, l, h, p) input, after conv and SiLU */
  x: Tensor;
  /** (b, l, h) dt before softplus and before dt_bias */
  dt: Tensor;
  /** (h) */
  dtBias: Tensor;
  /** clamp of dt after softplus */
  dtMin: number;
  dtMax: number;
  /** (h) A = -exp(A_log), one scalar per head */
  A: Tensor;
  /** (b, l, g, n) */
  B: Tensor;
  /** (b, l, g, n) */
  C: Tensor;
  /** (h) */
  D: Tensor;
  /** (b, h, p, n) recurrent state, read and updated in place */
  state: Tensor;
  /** chunk length for a chunked prefill; a backend may scan step by step instead (same result) */
  chunkSize: number;
}

/** How the next token is chosen. temperature 0 means greedy (argmax; the lowest id wins ties). */
export interface SamplingParams {
  temperature: number;
  /** keep the k most likely (0: off) */
  topK: number;
  /** keep the smallest set whose probability reaches p (1: off) */
  topP: number;
  /** drop tokens whose probability is below minP x the top probability (0: off) */
  minP: number;
  /** HF-style: a seen token's logit is divided by it when positive, multiplied when negative (1: off) */
  repetitionPenalty: number;
  /** seed of the counter-based random stream (see src/generate/rng.ts) */
  seed: number;
}

/** Arguments of `sample`. */
export interface SampleArgs {
  /** (rows, b) i32: the sampled id of sequence i goes to out[outRow, i] */
  out: Tensor;
  outRow: number;
  /** (b, v) */
  logits: Tensor;
  params: SamplingParams;
  /** index of this draw in the generation, so that each draw has its own random number */
  step: number;
  /** (b, v) f32, 1 where a token was seen (for the repetition penalty); updated with the sampled ids */
  seen?: Tensor;
}

/** The ops. See the module comment for the rules. */
export interface Backend {
  readonly name: BackendName;
  /** how uploadMatrix stores matrices */
  readonly weightDType: WeightDType;
  /**
   * How many decode steps the generator should issue between two reads of sampled ids. 1 for backends
   * whose reads are free (js, wasm); more where a read costs a round trip (webgpu).
   */
  readonly stepsPerRead: number;

  /** A weight matrix used by `linear` or `embed`: (o, i) or (v, d). May be packed. */
  uploadMatrix(data: Float32Array, shape: Shape): Tensor;
  /** An f32 tensor holding `data`. */
  upload(data: Float32Array, shape: Shape): Tensor;
  /** A zero-filled tensor. */
  zeros(shape: Shape, dtype?: "f32" | "i32"): Tensor;
  /** Overwrites t[offset .. offset + data.length) (elements). */
  write(t: Tensor, data: Float32Array | Int32Array, offset?: number): void;
  /** dst[dstOffset + i] = src[srcOffset + i] for i < length (elements; same dtype; default: all of src). */
  copy(dst: Tensor, src: Tensor, dstOffset?: number, srcOffset?: number, length?: number): void;
  /** Contents of an f32 tensor after every op issued so far. */
  read(t: Tensor): Promise<Float32Array>;
  /** Contents of an i32 tensor after every op issued so far. */
  readIds(t: Tensor): Promise<Int32Array>;
  /** Releases a tensor; it must not be used afterwards. */
  free(t: Tensor): void;

  /** out (m, d) = table (v, d) [ids[idsOffset + i]] for i < m; ids is i32 */
  embed(out: Tensor, table: Tensor, ids: Tensor, idsOffset?: number): void;
  /** out (m, d) = x / sqrt(mean(x^2) + eps) * w;  w (d). out may alias x. */
  rmsNorm(out: Tensor, x: Tensor, w: Tensor, eps: number): void;
  /** out = a + b, elementwise. out may alias a or b. */
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /** out (m, o) = x (m, i) @ w (o, i)^T + bias (o) */
  linear(out: Tensor, w: Tensor, x: Tensor, bias?: Tensor): void;
  /**
   * Causal depthwise conv over time, then SiLU, continuing from `state`:
   * with xs = concat(state, x) along time, out[b, t, c] = silu(bias[c] + sum_j w[c, j] * xs[b, t + j, c]);
   * afterwards state holds the last k-1 steps of xs.  out, x (b, l, c); w (c, k); state (b, c, k-1)
   */
  conv1dSilu(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | undefined, state: Tensor): void;
  /** Mamba-1 selective scan; see ScanArgs. */
  selectiveScan(args: ScanArgs): void;
  /** Mamba-2 SSD scan; see SsdArgs. */
  ssdScan(args: SsdArgs): void;
  /**
   * Mamba-2 gated RMSNorm: u = y * silu(z); each group of `groupSize` channels of u is normalized
   * (u / sqrt(mean(u^2) + eps)) and scaled by w.  out, y, z (m, di); w (di). out may alias y.
   */
  gatedRmsNorm(out: Tensor, y: Tensor, z: Tensor, w: Tensor, eps: number, groupSize: number): void;
  /** Chooses one id per sequence from logits; see SampleArgs and SamplingParams. */
  sample(args: SampleArgs): void;

  /** Releases everything the backend holds. */
  dispose(): Promise<void>;
}

/** Number of elements of a shape. */
export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}
