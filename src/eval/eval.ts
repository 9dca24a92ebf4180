/**
 * Evaluation of a loaded model: perplexity of a text (nats per token and per byte) and LAMBADA
 * last-word accuracy. Both run full forward passes through the Model API, in batches.
 *
 * Perplexity protocol: the ids are cut into windows of `window` predictions; window j reads
 * ids[j*window, (j+1)*window) from an empty state and predicts ids[j*window + 1, (j+1)*window + 1), so
 * every id but the first is predicted exactly once, with at most `window` ids of context (the way a
 * model trained on (x, y) pairs of seq_len bytes is validated). The last window may be shorter.
 *
 * @example
 * ```ts
 * import { loadModel } from "../model/model.ts";
 * import { perplexity } from "./eval.ts";
 * const model = await loadModel("models/shakespeare-bytes", { backend: "wasm" });
 * const r = await perplexity(model, "First Citizen:\nBefore we proceed any further, hear me speak.", { window: 256 });
 * console.log(r.natsPerByte, r.ppl);
 * ```
 *
 * @module
 */

import { InputError } from "../errors.ts";
import type { Model } from "../model/model.ts";

/** Options of perplexity. */
export interface PerplexityOptions {
  /** predictions per window (default 256) */
  window?: number;
  /** windows per forward pass (default: as many as keep the logits under ~64 M floats) */
  batch?: number;
  /**
   * evaluate only every `every`-th window (default 1: all), starting with the first: a subset spread
   * over the whole text, under the same protocol
   */
  every?: number;
  /** called after each batch with the predictions done so far and their total */
  onProgress?: (done: number, total: number) => void;
}

/** What perplexity measured. */
export interface PerplexityResult {
  /** predicted tokens */
  tokens: number;
  /** UTF-8 bytes of the predicted tokens' text */
  bytes: number;
  windows: number;
  /** summed negative log-likelihood, nats */
  nll: number;
  natsPerToken: number;
  natsPerByte: number;
  bitsPerByte: number;
  /** exp(natsPerToken) */
  ppl: number;
  /** nats per token of each window evaluated, in order */
  perWindow: number[];
}

/** Perplexity of `text` (or of token ids) under `model`. */
export async function perplexity(
  model: Model,
  text: string | number[],
  opts: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const ids = typeof text === "string" ? model.tokenizer.encode(text) : text;
  const window = opts.window ?? 256;
  if (!Number.isInteger(window) || window < 1) {
    throw new InputError(`Cannot evaluate: window is ${window}, expected an integer >= 1`);
  }
  if (ids.length < 2) {
    throw new InputError(`Cannot evaluate: text is ${ids.length} tokens, expected at least 2`);
  }
  const v = model.config.vocabSize;
  const batch = opts.batch ?? Math.max(1, Math.floor(64e6 / (window * v)));
  const every = opts.every ?? 1;
  if (!Number.isInteger(every) || every < 1) {
    throw new InputError(`Cannot evaluate: every is ${every}, expected an integer >= 1`);
  }
  const starts: number[] = [];
  for (let s = 0; s + 1 < ids.length; s += window * every) starts.push(s);
  const last = ids.length - 1; // the last id predicted
  const total = starts.reduce((a, s) => a + Math.min(window, last - s), 0);
  const perWindow: number[] = [];
  let nll = 0, done = 0;
  for (let i = 0; i < starts.length;) {
    // A batch of full windows, or the shorter last window alone (a batch shares one length).
    const len = Math.min(window, last - starts[i]);
    const group: number[] = [];
    while (i < starts.length && group.length < batch && Math.min(window, last - starts[i]) === len) {
      group.push(starts[i++]);
    }
    const { logits } = await model.forward(group.map((s) => ids.slice(s, s + len))); // (b, len, v)
    group.forEach((s, b) => {
      let w = 0;
      for (let t = 0; t < len; t++) w -= logSoftmaxAt(logits, (b * len + t) * v, v, ids[s + t + 1]);
      perWindow.push(w / len);
      nll += w;
    });
    done += group.length * len;
    opts.onProgress?.(done, total);
  }
  const utf8 = (x: number[]) => new TextEncoder().encode(model.tokenizer.decode(x)).length;
  // Bytes of the predicted text: of the whole text less its first token when every id was predicted,
  // else window by window.
  const bytes = every === 1 && typeof text === "string"
    ? new TextEncoder().encode(text).length - utf8([ids[0]])
    : starts.reduce((a, s) => a + utf8(ids.slice(s + 1, s + 1 + Math.min(window, last - s))), 0);
  return {
    tokens: total,
    bytes,
    windows: starts.length,
    nll,
    natsPerToken: nll / total,
    natsPerByte: nll / bytes,
    bitsPerByte: nll / bytes / Math.LN2,
    ppl: Math.exp(nll / total),
    perWindow,
  };
}

/** log softmax(row)[target] for the row of `v` logits at `at`, in f64. */
export function logSoftmaxAt(logits: Float32Array, at: number, v: number, target: number): number {
  let max = -Infinity;
  for (let j = 0; j < v; j++) if (logits[at + j] > max) max = logits[at + j];
  let sum = 0;
  for (let j = 0; j < v; j++) sum += Math.exp(logits[at + j] - max);
  return logits[at + target] - max - Math.log(sum);
}

/** What lambada measured. */
export interface LambadaResult {
  examples: number;
  /** the share of passages whose last word every token of is the greedy prediction */
  accuracy: number;
  /** perplexity of the last words' tokens */
  ppl: number;
}

/**
 * LAMBADA accuracy as lm-evaluation-harness computes it (lambada_openai): the context is the passage up
 * to its last space, the target is " " + the last word; a passage counts when the greedy prediction
 * equals every target token. Passages run one per forward pass (their lengths differ).
 */
export async function lambada(
  model: Model,
  passages: string[],
  onProgress?: (done: number, total: number) => void,
): Promise<LambadaResult> {
  const v = model.config.vocabSize;
  let correct = 0, nll = 0, targets = 0;
  for (const [n, passage] of passages.entries()) {
    const cut = passage.lastIndexOf(" ");
    if (cut <= 0) throw new InputError(`Cannot evaluate LAMBADA: passage ${n} has no last word`);
    const context = model.tokenizer.encode(passage.slice(0, cut));
    const target = model.tokenizer.encode(passage.slice(cut));
    const ids = [...context, ...target];
    const { logits } = await model.forward([ids.slice(0, -1)]); // (1, l, v)
    let ok = true;
    target.forEach((id, k) => {
      const at = (context.length - 1 + k) * v;
      nll -= logSoftmaxAt(logits, at, v, id);
      let best = 0;
      for (let j = 1; j < v; j++) if (logits[at + j] > logits[at + best]) best = j;
      if (best !== id) ok = false;
    });
    targets += target.length;
    if (ok) correct++;
    onProgress?.(n + 1, passages.length);
  }
  return { examples: passages.length, accuracy: correct / passages.length, ppl: Math.exp(nll / targets) };
}
