/**
 * Choosing the next token from one row of logits. This is the reference that every backend's
 * `sample` op reproduces: the js and wasm backends call it directly.
 *
 * Order, as HF transformers applies its processors: repetition penalty, then (unless greedy)
 * temperature, softmax, top-k, top-p, min-p, and a draw over what is left (see sampleRow). The draw
 * needs no sort of the vocabulary, so a GPU kernel can reproduce it with a threshold search and a
 * prefix sum.
 *
 * @module
 */

import type { SamplingParams } from "../backends/backend.ts";
import { uniform } from "./rng.ts";

/** Sampling parameters of plain greedy decoding. */
export const GREEDY: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  seed: 0,
};

/** Index of the largest value; the lowest index wins ties. NaN never wins. */
export function argmax(x: Float32Array): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i] > bestValue) {
      bestValue = x[i];
      best = i;
    }
  }
  return best;
}

/**
 * Picks one id from `logits` (v). `seen` (v, 1 where seen) feeds the repetition penalty; `u` is the
 * uniform draw in [0, 1) (ignored when greedy). `logits` is not modified.
 *
 * The filters set one probability threshold: the k-th largest probability (top-k), the smallest
 * probability of the most likely tokens that together reach top-p, and min-p times the largest; a token
 * is kept when its probability reaches all three (so ties at a threshold are kept, as HF's top-k keeps
 * them). The draw then walks the kept tokens in id order until their mass exceeds u times the kept mass.
 */
export function sampleRow(
  logits: Float32Array,
  params: SamplingParams,
  u: number,
  seen?: Float32Array,
): number {
  let x = logits;
  if (params.repetitionPenalty !== 1 && seen) {
    x = logits.slice();
    const rp = params.repetitionPenalty;
    for (let i = 0; i < x.length; i++) {
      if (seen[i] !== 0) x[i] = x[i] > 0 ? x[i] / rp : x[i] * rp;
    }
  }
  if (params.temperature <= 0) return argmax(x);

  const v = x.length;
  const best = argmax(x);
  const max = x[best];
  const p = new Float64Array(v);
  let sum = 0;
  for (let i = 0; i < v; i++) {
    p[i] = Math.exp((x[i] - max) / params.temperature);
    sum += p[i];
  }
  for (let i = 0; i < v; i++) p[i] /= sum;

  let threshold = params.minP > 0 ? params.minP * p[best] : 0;
  if (params.topK > 0 && params.topK < v) threshold = Math.max(threshold, kthLargest(p, params.topK));
  if (params.topP < 1) threshold = Math.max(threshold, nucleusFloor(p, params.topP));
  threshold = Math.min(threshold, p[best]); // the most likely token is always kept
  let total = 0;
  for (let i = 0; i < v; i++) if (p[i] >= threshold) total += p[i];
  const target = u * total;
  let cum = 0;
  let last = best;
  for (let i = 0; i < v; i++) {
    if (p[i] < threshold) continue;
    cum += p[i];
    last = i;
    if (target < cum) return i;
  }
  return last;
}

/** The k-th largest value of p (a min-heap of the k largest; k is small in practice). */
function kthLargest(p: Float64Array, k: number): number {
  if (k > 1024) return p.slice().sort()[p.length - k];
  const heap = new Float64Array(k).fill(-Infinity);
  for (let i = 0; i < p.length; i++) {
    const x = p[i];
    if (x <= heap[0]) continue;
    let j = 0; // sift the new value down from the root
    while (true) {
      const l = 2 * j + 1, r = l + 1;
      let m = j, mv = x;
      if (l < k && heap[l] < mv) (m = l), (mv = heap[l]);
      if (r < k && heap[r] < mv) (m = r), (mv = heap[r]);
      if (m === j) break;
      heap[j] = heap[m];
      j = m;
    }
    heap[j] = x;
  }
  return heap[0];
}

/**
 * The smallest probability among the most likely tokens that together reach `topP`. Tokens below
 * (1 - topP) / v hold less than 1 - topP together, so the nucleus lies above that bound: only those
 * candidates are sorted.
 */
function nucleusFloor(p: Float64Array, topP: number): number {
  const bound = (1 - topP) / p.length;
  const candidates = p.filter((x) => x >= bound).sort(); // ascending
  let cum = 0;
  for (let j = candidates.length - 1; j >= 0; j--) {
    cum += candidates[j];
    if (cum >= topP) return candidates[j];
  }
  return candidates[0];
}

/** Samples every row of `logits` (b, v) for draw `step`; writes ids to `out` and marks them in `seen`. */
export function sampleRows(
  out: Int32Array,
  logits: Float32Array,
  v: number,
  params: SamplingParams,
  step: number,
  seen?: Float32Array,
): void {
  for (let i = 0; i < out.length; i++) {
    const row = logits.subarray(i * v, (i + 1) * v);
    const seenRow = seen?.subarray(i * v, (i + 1) * v);
    const id = sampleRow(row, params, uniform(params.seed, i, step), seenRow);
    out[i] = id;
    if (seenRow) seenRow[id] = 1;
  }
}
