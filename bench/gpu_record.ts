/**
 * CPU (JavaScript) time to record decode steps on the webgpu backend, without running them: the
 * steps are recorded and dropped unsubmitted (WebGpuBackend.recordOnly), so the adapter's speed does
 * not matter and a software adapter gives the same numbers. Batch 1, greedy, random weights of the
 * given shape (default mamba-130m's). One JSON object per line:
 *
 * - `what: "model"`: the model's side alone (Network.run + head + sample calls on a backend whose
 *   ops do nothing), ms per step.
 * - `what: "record"`: the same calls on the webgpu backend: record_ms_per_step (JavaScript down to the
 *   setPipeline / setBindGroup / dispatchWorkgroups calls), finish_ms_per_step (the encoder's finish(),
 *   wgpu's validation and encoding), dispatches_per_step. Medians over `--reps` recordings of `--steps`
 *   steps (default: as many as one submission holds, at most 32).
 *
 * ```sh
 * deno run -A --unstable-webgpu bench/gpu_record.ts [--arch mamba|mamba2] [--layers 24] [--d 64]
 *   [--vocab 512] [--steps n] [--reps 40]
 * ```
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { mamba1Files, mamba2Files } from "./_models.ts";
import { GREEDY } from "../src/generate/sampler.ts";
import type { Backend, Shape, Tensor } from "../src/backends/backend.ts";
import type { WebGpuBackend } from "../src/backends/webgpu/webgpu.ts";
import { Network } from "../src/model/network.ts";
import { parseConfig } from "../src/config.ts";
import { readCheckpoint } from "../src/io/checkpoint.ts";
import { memorySource } from "../src/io/source.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const arch = arg("arch", "mamba");
const layers = Number(arg("layers", "24")), d = Number(arg("d", "768"));
const v = Number(arg("vocab", arch === "mamba2" ? "50288" : "50280"));
const reps = Number(arg("reps", "40"));
/** steps per recording: as many as fit in one submission (4096 dispatches), at most 32 */
let n = Number(arg("steps", "0"));
const files = (arch === "mamba2" ? mamba2Files : mamba1Files)({ d, layers, vocab: v });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The decode steps of generate.ts's loop (batch 1, greedy), from row `from` of `tokens`. */
function steps(net: Network, tokens: Tensor, logits: Tensor, normed: Tensor, from: number, count: number) {
  const be = net.backend;
  const state = stateOf.get(net)!;
  for (let s = from; s < from + count; s++) {
    const ws = net.run(state, tokens, s, 1, 1);
    net.head(logits, normed, ws.hidden);
    be.sample({ out: tokens, outRow: s + 1, logits, params: GREEDY, step: s });
  }
}
const stateOf = new Map<Network, ReturnType<Network["newState"]>>();

/** A backend whose ops do nothing: what is left is the model's own JavaScript. */
class NoopBackend implements Backend {
  readonly name = "js" as const;
  readonly weightDType = "f32" as const;
  readonly stepsPerRead = 1;
  #t = (shape: Shape, dtype: "f32" | "i32" = "f32"): Tensor => ({ shape: [...shape], dtype });
  uploadMatrix(_: Float32Array, shape: Shape) {
    return this.#t(shape);
  }
  upload(_: Float32Array, shape: Shape) {
    return this.#t(shape);
  }
  zeros(shape: Shape, dtype: "f32" | "i32" = "f32") {
    return this.#t(shape, dtype);
  }
  write() {}
  copy() {}
  read(): Promise<Float32Array> {
    return Promise.resolve(new Float32Array());
  }
  readIds(): Promise<Int32Array> {
    return Promise.resolve(new Int32Array());
  }
  free() {}
  embed() {}
  rmsNorm() {}
  add() {}
  linear() {}
  conv1dSilu() {}
  selectiveScan() {}
  ssdScan() {}
  gatedRmsNorm() {}
  sample() {}
  dispose() {
    return Promise.resolve();
  }
}

// Steps per recording.
{
  const model = await loadModel({ files }, { backend: "webgpu", log: () => {} });
  const net = model.network, be = net.backend as WebGpuBackend;
  stateOf.set(net, net.newState(1));
  const tokens = be.zeros([2, 1], "i32"), logits = be.zeros([1, v]), normed = be.zeros([1, d]);
  const one = be.recordOnly(() => steps(net, tokens, logits, normed, 0, 1)).dispatches;
  n ||= Math.min(32, Math.floor(4095 / one));
  await model.dispose();
}

// The model's side alone.
{
  const src = memorySource(files, "random");
  const config = parseConfig(new TextDecoder().decode(files["config.json"]), "config.json");
  const net = new Network(new NoopBackend(), config, await readCheckpoint(src), "random");
  stateOf.set(net, net.newState(1));
  const be = net.backend;
  const tokens = be.zeros([n + 1, 1], "i32"), logits = be.zeros([1, v]), normed = be.zeros([1, d]);
  const times: number[] = [];
  for (let r = 0; r < reps + 5; r++) {
    const t0 = performance.now();
    steps(net, tokens, logits, normed, 0, n);
    if (r >= 5) times.push((performance.now() - t0) / n);
  }
  console.log(JSON.stringify({ what: "model", arch, layers, ms_per_step: +median(times).toFixed(4) }));
}

// The webgpu backend.
const model = await loadModel({ files }, { backend: "webgpu", log: () => {} });
const net = model.network, be = net.backend as WebGpuBackend;
stateOf.set(net, net.newState(1));
const tokens = be.zeros([n + 1, 1], "i32"), logits = be.zeros([1, v]), normed = be.zeros([1, d]);
steps(net, tokens, logits, normed, 0, n); // compiles the pipelines, makes the bind groups
await be.sync();
const rec: number[] = [], fin: number[] = [];
let dispatches = 0;
for (let r = 0; r < reps + 5; r++) {
  const t = be.recordOnly(() => steps(net, tokens, logits, normed, 0, n));
  if (r < 5) continue;
  rec.push(t.recordMs / n);
  fin.push(t.finishMs / n);
  dispatches = t.dispatches / n;
}
console.log(JSON.stringify({
  what: "record",
  arch,
  layers,
  steps: n,
  record_ms_per_step: +median(rec).toFixed(4),
  finish_ms_per_step: +median(fin).toFixed(4),
  dispatches_per_step: dispatches,
}));
await model.dispose();
