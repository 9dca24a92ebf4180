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
 * timed after a second of warm-up prefills (a GPU just out of idle runs slower at first), two ways:
 * - `prefill_<l>`: throughput, `--prefill-reps` prompts (default 32) back to back, then one wait for
 *   the GPU, which is included. In Deno that wait costs the GPU's work plus a fixed 10 ms: mapAsync
 *   polls the device, then sleeps 10 ms before it resolves (ext/webgpu/buffer.rs), whatever the work.
 * - `prefill_<l>_single`: the latency of one prompt with its wait (`ms_total`), as one request sees it.
 *
 * @module
 */

import { loadModel } from "../src/model/model.ts";
import { mamba1Files, mamba2Files } from "./_models.ts";
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
const prefillReps = Number(args.get("prefill-reps") ?? (small ? 2 : 32));
const backend = (args.get("backend") ?? "webgpu") as "webgpu" | "wasm" | "js";
const sampled = args.has("sampled");

/** A random model of the family: the 130m shapes, or tiny ones for a software adapter. */
function randomModel(arch: "mamba" | "mamba2"): Record<string, Uint8Array> {
  const tiny = { d: 64, layers: 2, vocab: 512, dState: 16, headDim: 16 };
  if (arch === "mamba") return mamba1Files(small ? tiny : {});
  return mamba2Files(small ? tiny : {});
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
        ms_total: +(seconds * 1000).toFixed(3),
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
      // Warm up for a second of GPU work: right after an idle spell an H100 ran the first ~0.3 s of
      // prefills at about half speed (8 prefills of 512 then a wait: 36.6 ms each the first time, then
      // 19.2). The second starts after the first prefill, whose pipeline compiles (seconds with a cold
      // driver cache) would otherwise eat it: the first process on a fresh H100 read 48,081 tok/s, the
      // next 68,943, for the same code.
      run();
      await sync();
      const w0 = performance.now();
      do {
        for (let r = 0; r < 4; r++) run();
        await sync();
      } while (!small && performance.now() - w0 < 1000);
      const t0 = performance.now();
      for (let r = 0; r < prefillReps; r++) run();
      await sync();
      const s = (performance.now() - t0) / 1000;
      emit(1, `prefill_${prefillLen}`, prefillReps * prefillLen, s, prefillReps * prefillLen);
      // One prompt and its wait, the best of a few (each right after the previous wait).
      let one = Infinity;
      for (let r = 0; r < (small ? 1 : 4); r++) {
        const t1 = performance.now();
        run();
        await sync();
        one = Math.min(one, (performance.now() - t1) / 1000);
      }
      emit(1, `prefill_${prefillLen}_single`, prefillLen, one, prefillLen);
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
