/**
 * Choosing the next token from one row of logits. This is the reference that every backend's
 * `sample` op reproduces: the js and wasm backends call it directly.
 *
 * Order, as HF transformers applies its processors: repetition penalty, then (unless greedy)
 * temperature, softmax, top-k, top-p, min-p, and a draw over what is left, walking tokens from the most
 * to the least likely (the lower id first among equals).
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
  let max = -Infinity;
  for (let i = 0; i < v; i++) if (x[i] > max) max = x[i];
  const p = new Float64Array(v);
  let sum = 0;
  for (let i = 0; i < v; i++) {
    p[i] = Math.exp((x[i] - max) / params.temperature);
    sum += p[i];
  }
  for (let i = 0; i < v; i++) p[i] /= sum;

  // Most likely first, the lower id first among equals.
  const order = Array.from({ length: v }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let keep = v;
  if (params.topK > 0) keep = Math.min(keep, params.topK);
  if (params.topP < 1) {
    let cum = 0;
    for (let j = 0; j < keep; j++) {
      cum += p[order[j]];
      if (cum >= params.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  if (params.minP > 0) {
    const floor = params.minP * p[order[0]];
    let j = 1;
    while (j < keep && p[order[j]] >= floor) j++;
    keep = j;
  }
  let total = 0;
  for (let j = 0; j < keep; j++) total += p[order[j]];
  const target = u * total;
  let cum = 0;
  for (let j = 0; j < keep; j++) {
    cum += p[order[j]];
    if (target < cum) return order[j];
  }
  return order[keep - 1];
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
