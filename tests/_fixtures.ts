/** Helpers shared by tests: reference fixtures (produced by HF transformers) and comparisons. */

import { readSafetensors, toFloat32, toInt32 } from "../src/io/safetensors.ts";

export const FIXTURES = new URL("./fixtures/", import.meta.url);
export const CASES = ["mamba-tiny", "mamba-small-f16", "mamba2-tiny"] as const;

export interface Expected {
  inputIds: number[][];
  logits: Float32Array;
  hiddenStates: Float32Array;
  generatedIds: number[][];
  generatedLogits: Float32Array;
  batch: number;
  promptLen: number;
  newTokens: number;
}

export async function expected(name: string): Promise<Expected> {
  const t = readSafetensors(await Deno.readFile(new URL(`${name}/expected.safetensors`, FIXTURES)), name);
  const ids = toInt32(t.get("input_ids")!);
  const gen = toInt32(t.get("generated_ids")!);
  const [b, l] = t.get("input_ids")!.shape;
  const total = t.get("generated_ids")!.shape[1];
  const rows = (a: Int32Array, n: number) =>
    Array.from({ length: b }, (_, i) => Array.from(a.subarray(i * n, (i + 1) * n)));
  return {
    inputIds: rows(ids, l),
    logits: toFloat32(t.get("logits")!),
    hiddenStates: toFloat32(t.get("hidden_states")!),
    generatedIds: rows(gen, total),
    generatedLogits: toFloat32(t.get("generated_logits")!),
    batch: b,
    promptLen: l,
    newTokens: total - l,
  };
}

/** Standard deviation of the values. */
export function std(x: Float32Array): number {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let s = 0;
  for (const v of x) s += (v - mean) ** 2;
  return Math.sqrt(s / x.length);
}

/** Largest |a - b|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Asserts max |actual - expected| <= 1e-4 x max(1, std(expected)), the project's tolerance vs references. */
export function assertClose(actual: Float32Array, want: Float32Array, what: string, rel = 1e-4): void {
  const tol = rel * Math.max(1, std(want));
  const err = maxAbsDiff(actual, want);
  if (!(err <= tol)) {
    throw new Error(`${what}: max abs error ${err.toExponential(3)} > tolerance ${tol.toExponential(3)}`);
  }
}

/** The new ids HF generated: after the prompt, up to and including eos, without the padding after it. */
export function hfNewIds(e: Expected, eos: number | undefined): number[][] {
  return e.generatedIds.map((row) => {
    const out = row.slice(e.promptLen);
    const at = eos === undefined ? -1 : out.indexOf(eos);
    return at >= 0 ? out.slice(0, at + 1) : out;
  });
}
