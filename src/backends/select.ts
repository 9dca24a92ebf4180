/**
 * Chooses and creates a backend. `auto` takes WebGPU when an adapter exists that is not a fallback
 * (software) adapter, else wasm with SIMD, else js. Falling back is not an error: it is said once
 * through `log`.
 *
 * @module
 */

import type { Backend, BackendName, WeightDType } from "./backend.ts";
import { JsBackend } from "./js/js.ts";
import { BackendError } from "../errors.ts";
import type { ModelConfig } from "../config.ts";

/** What a caller may ask of a backend. */
export interface BackendOptions {
  /** "auto" (default) or a backend by name */
  backend?: "auto" | BackendName;
  /** how matrices are kept where the backend can pack them (default f32, the exact one) */
  dtype?: WeightDType;
  /** wasm worker threads (default: the available cores) */
  threads?: number;
  /** where notes such as fallbacks go (default console.error; pass () => {} to silence) */
  log?: (message: string) => void;
}

/** One way to create a backend: `probe` says whether it can run here (and why not). */
interface Candidate {
  name: BackendName;
  /** `config`, when known, lets a backend refuse a model that cannot fit before allocating */
  create(opts: BackendOptions, config?: ModelConfig): Promise<Backend>;
  /** undefined when it can run; else the reason it cannot */
  probe(opts: BackendOptions): Promise<string | undefined>;
}

/** In order of preference for `auto`: the fastest first, js (always available) last. */
const CANDIDATES: Candidate[] = [
  {
    name: "webgpu",
    create: async (opts) => {
      const { createWebGpuBackend } = await import("./webgpu/webgpu.ts");
      return await createWebGpuBackend({ dtype: opts.dtype });
    },
    probe: async () => {
      const { probeWebGpu } = await import("./webgpu/webgpu.ts");
      return await probeWebGpu();
    },
  },
  {
    name: "wasm",
    // Imported on demand, so that js-only users do not load the kernels.
    create: async (opts, config) => (await import("./wasm/wasm.ts")).createWasmBackend(opts, config),
    probe: async () => (await import("./wasm/wasm.ts")).simdSupport(),
  },
  {
    name: "js",
    create: (opts) => {
      if (opts.dtype && opts.dtype !== "f32") {
        throw new BackendError(
          `Cannot create js backend: dtype is "${opts.dtype}", expected "f32" (js keeps f32 only)`,
        );
      }
      return Promise.resolve(new JsBackend());
    },
    probe: () => Promise.resolve(undefined),
  },
];

/** Creates the backend the options ask for. */
export async function createBackend(opts: BackendOptions = {}, config?: ModelConfig): Promise<Backend> {
  const want = opts.backend ?? "auto";
  const log = opts.log ?? ((m: string) => console.error(m));
  if (want !== "auto") {
    const c = CANDIDATES.find((x) => x.name === want);
    if (!c) {
      throw new BackendError(
        `Cannot create backend: "${want}" is unknown, expected "auto" or one of ${
          CANDIDATES.map((x) => x.name).join(", ")
        }`,
      );
    }
    return await c.create(opts, config);
  }
  for (const c of CANDIDATES) {
    const why = await c.probe(opts);
    if (why === undefined) {
      try {
        return await c.create(opts, config);
      } catch (e) {
        log(`${c.name}: ${(e as Error).message}; trying the next backend`);
        continue;
      }
    }
    log(`${c.name}: ${why}; trying the next backend`);
  }
  throw new BackendError("Cannot create any backend");
}
