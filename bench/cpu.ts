/**
 * CPU benchmark: prefill and decode tokens/s of the mamba-130m shape (Mamba-1), the mamba2-130m shape
 * (Mamba-2), both with random weights built in memory, and the embedded shakespeare-bytes model; plus
 * a memory-bandwidth probe (a SIMD sum in wasm) so that decode is also reported as a fraction of the
 * bandwidth limit. One JSON object per line.
 *
 *   deno task bench                                   the default set (a few minutes on 2 cores)
 *   deno task bench --models m1 --dtypes f32,q8 --threads 2 --phases decode --decode 64
 *
 * Flags: --backend wasm|js, --models m1,m2,shakespeare, --dtypes f32,f16,bf16,q8, --threads 1,2,
 * --phases prefill,decode,bandwidth, --prefill 512, --decode 128, --repeat 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadModel, type Model } from "../src/model/model.ts";
import { mamba1Files, mamba2Files } from "./_models.ts";
import type { WeightDType } from "../src/backends/backend.ts";
import { createWasmBackend } from "../src/backends/wasm/wasm.ts";
import { prefill } from "../src/generate/generate.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "wasm" },
    models: { type: "string", default: "m1,m2,shakespeare" },
    dtypes: { type: "string", default: "f32,q8" },
    threads: { type: "string", default: "1,2" },
    phases: { type: "string", default: "bandwidth,prefill,decode" },
    prefill: { type: "string", default: "512" },
    decode: { type: "string", default: "128" },
    repeat: { type: "string", default: "1" },
  },
});
const list = (s: string) => s.split(",").filter(Boolean);

/** Bytes of weights a decode step reads: every matrix once, plus the vectors. */
function weightBytes(model: Model, dtype: WeightDType): number {
  const c = model.config;
  const per = dtype === "f32" ? 4 : dtype === "q8" ? 36 / 32 : 2;
  const { dModel: d, dInner: di, dState: n, nLayer } = c;
  let mats = c.vocabSize * d;
  if (c.arch === "mamba") mats += nLayer * (2 * di * d + (c.dtRank + 2 * n) * di + di * c.dtRank + d * di);
  else mats += nLayer * ((2 * di + 2 * c.nGroups * n + c.nHeads) * d + d * di);
  return mats * per;
}

function emit(o: Record<string, unknown>): void {
  console.log(JSON.stringify(o));
}

const MODELS: Record<string, { name: string; load: () => Record<string, Uint8Array> | URL }> = {
  m1: { name: "mamba-130m-shape", load: mamba1Files },
  m2: { name: "mamba2-130m-shape", load: mamba2Files },
  shakespeare: {
    name: "shakespeare-bytes",
    load: () => new URL("../models/shakespeare-bytes/", import.meta.url),
  },
};

const backend = flags.backend as "wasm" | "js";
const threadsList = list(flags.threads).map(Number);
const phases = new Set(list(flags.phases));
const L = Number(flags.prefill), N = Number(flags.decode), repeat = Number(flags.repeat);
const bandwidth = new Map<number, number>();

if (phases.has("bandwidth") && backend === "wasm") {
  for (const threads of threadsList) {
    const be = await createWasmBackend({ threads });
    const bytes = 512 * 1024 * 1024;
    const bw = Math.max(...Array.from({ length: 3 }, () => be.bandwidth(bytes, 4)));
    bandwidth.set(threads, bw);
    emit({ backend, threads, phase: "bandwidth", bytes, gb_per_s: +(bw / 1e9).toFixed(2) });
    await be.dispose();
  }
}

for (const key of list(flags.models)) {
  const spec = MODELS[key];
  if (!spec) throw new Error(`unknown model ${key}; expected one of ${Object.keys(MODELS).join(", ")}`);
  const src = spec.load();
  for (const dtype of list(flags.dtypes) as WeightDType[]) {
    for (const threads of threadsList) {
      const model = await loadModel(src instanceof URL ? src : { files: src, name: spec.name }, {
        backend,
        dtype,
        threads,
        log: () => {},
      });
      try {
        const v = model.config.vocabSize;
        const prompt = Array.from({ length: L }, (_, i) => (i * 7919 + 13) % v);
        const base = { backend, model: spec.name, dtype, threads };
        if (phases.has("prefill")) {
          const net = model.network;
          const be = net.backend;
          const last = be.zeros([1, model.config.dModel]);
          const run = async () => {
            const state = net.newState(1);
            const t0 = performance.now();
            prefill(net, state, [prompt], last);
            await be.read(last);
            const ms = performance.now() - t0;
            state.dispose();
            return ms;
          };
          await run(); // warm-up
          let best = Infinity;
          for (let r = 0; r < repeat; r++) best = Math.min(best, await run());
          be.free(last);
          emit({
            ...base,
            phase: "prefill",
            tokens: L,
            tokens_per_s: +(L / best * 1000).toFixed(1),
            ms_per_token: +(best / L).toFixed(3),
          });
        }
        if (phases.has("decode")) {
          const short = prompt.slice(0, 8);
          await model.generateIds([short], { maxNewTokens: 8, ignoreEos: true }); // warm-up
          let best = Infinity;
          for (let r = 0; r < repeat; r++) {
            // time N+1 tokens minus 1 token: prefill and the first sample are not decode steps
            const t0 = performance.now();
            await model.generateIds([short], { maxNewTokens: 1, ignoreEos: true });
            const t1 = performance.now();
            await model.generateIds([short], { maxNewTokens: N + 1, ignoreEos: true });
            const t2 = performance.now();
            best = Math.min(best, (t2 - t1) - (t1 - t0));
          }
          const tps = N / best * 1000;
          const bw = bandwidth.get(threads);
          const wb = weightBytes(model, dtype);
          emit({
            ...base,
            phase: "decode",
            tokens: N,
            tokens_per_s: +tps.toFixed(1),
            ms_per_token: +(best / N).toFixed(3),
            weight_bytes: wb,
            ...(bw ? { fraction_of_bandwidth: +(wb * tps / bw).toFixed(3) } : {}),
          });
        }
      } finally {
        await model.dispose();
      }
    }
  }
}
