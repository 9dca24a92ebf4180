/**
 * A pool of workers that share one WebAssembly.Memory with the main thread. The main thread splits a
 * kernel's work into ranges, runs the first range itself and waits (Atomics.wait) for the others, so
 * that ops stay synchronous. Workers spin briefly before sleeping, since decode issues many short
 * kernels back to back.
 *
 * Control block (Int32 words at `ctl`): 0 job generation, 1 workers done, 2 kernel index, 3 stop;
 * 16 + 2t, 17 + 2t: range of thread t. Float64 arguments at ctl + 4096.
 *
 * @module
 */

/** Bytes of the control block. */
export const CONTROL_BYTES = 8192;
/** The most threads a pool runs (the control block's range table). */
export const MAX_THREADS = 64;
const ARGS_AT = 4096;
const MAX_ARGS = 24;
/** Polls before a waiting thread sleeps. */
const SPIN = 20000;

/** The worker's source; it runs as a module worker (Deno, browsers) or an eval worker (Node). */
const WORKER_SOURCE = `
const start = (msg, post) => {
  const { bytes, memory, ctl, tid, kernels, gen } = msg;
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  const fns = kernels.map((k) => inst.exports[k]);
  const I = new Int32Array(memory.buffer, ctl, ${ARGS_AT / 4});
  const F = new Float64Array(memory.buffer, ctl + ${ARGS_AT}, ${MAX_ARGS});
  let seen = gen; // jobs already posted are not this worker's; later ones are
  post("ready");
  for (;;) {
    let g = Atomics.load(I, 0);
    for (let spins = 0; g === seen; spins++) {
      if (spins > ${SPIN}) Atomics.wait(I, 0, seen);
      g = Atomics.load(I, 0);
    }
    seen = g;
    if (Atomics.load(I, 3)) return;
    const lo = I[16 + 2 * tid], hi = I[17 + 2 * tid];
    if (lo < hi) {
      fns[I[2]](lo, hi, tid, F[0], F[1], F[2], F[3], F[4], F[5], F[6], F[7], F[8], F[9], F[10], F[11],
        F[12], F[13], F[14], F[15], F[16], F[17], F[18], F[19], F[20], F[21], F[22], F[23]);
    }
    Atomics.add(I, 1, 1);
    Atomics.notify(I, 1);
  }
};
if (typeof require === "function") {
  const { parentPort } = require("node:worker_threads");
  parentPort.once("message", (m) => start(m, (x) => parentPort.postMessage(x)));
} else {
  self.onmessage = (e) => { self.onmessage = null; start(e.data, (x) => self.postMessage(x)); };
}
`;

interface AnyWorker {
  postMessage(m: unknown): void;
  terminate(): unknown;
}

/** True where a shared memory, workers and Atomics.wait on this thread are all available. */
export function threadsAvailable(): boolean {
  if (typeof SharedArrayBuffer === "undefined" || typeof Atomics === "undefined") return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0); // throws on a browser's main thread
  } catch {
    return false;
  }
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  return typeof g.Worker === "function" || !!g.process?.versions?.node;
}

async function spawn(): Promise<{ worker: AnyWorker; ready: Promise<void>; send(m: unknown): void }> {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (typeof g.Worker === "function") {
    const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    const worker = new g.Worker(url, { type: "module" }) as Worker;
    const ready = new Promise<void>((resolve, reject) => {
      worker.onmessage = () => {
        worker.onmessage = null;
        URL.revokeObjectURL(url);
        resolve();
      };
      worker.onerror = (e) => {
        e.preventDefault?.();
        reject(new Error(e.message));
      };
    });
    return { worker, ready, send: (m) => worker.postMessage(m) };
  }
  const wt = await import("node:worker_threads");
  const worker = new wt.Worker(WORKER_SOURCE, { eval: true });
  const ready = new Promise<void>((resolve, reject) => {
    worker.once("message", () => {
      worker.unref(); // an idle pool must not keep the process alive
      resolve();
    });
    worker.once("error", reject);
  });
  return { worker, ready, send: (m) => worker.postMessage(m) };
}

/** Workers over one shared memory, running kernels split by ranges. */
export class Pool {
  readonly threads: number;
  #workers: AnyWorker[] = [];
  #I: Int32Array;
  #F: Float64Array;
  #fns: ((...a: number[]) => void)[];

  private constructor(
    threads: number,
    memory: WebAssembly.Memory,
    ctl: number,
    fns: ((...a: number[]) => void)[],
  ) {
    this.threads = threads;
    this.#I = new Int32Array(memory.buffer, ctl, ARGS_AT / 4);
    this.#F = new Float64Array(memory.buffer, ctl + ARGS_AT, MAX_ARGS);
    this.#fns = fns;
  }

  /**
   * A pool of `threads` (the main thread included) running `kernels` (export names) of the module
   * `bytes` over `memory`, whose control block starts at byte `ctl`.
   */
  static async create(
    threads: number,
    bytes: Uint8Array,
    instance: WebAssembly.Instance,
    memory: WebAssembly.Memory,
    ctl: number,
    kernels: string[],
  ): Promise<Pool> {
    const fns = kernels.map((k) => instance.exports[k] as (...a: number[]) => void);
    const pool = new Pool(threads, memory, ctl, fns);
    try {
      for (let t = 1; t < threads; t++) {
        const w = await spawn();
        pool.#workers.push(w.worker);
        w.send({ bytes, memory, ctl, tid: t, kernels, gen: Atomics.load(pool.#I, 0) });
        await w.ready;
      }
    } catch (e) {
      pool.close();
      throw e;
    }
    return pool;
  }

  /**
   * Runs kernel `k` over [0, total) split into ranges that are multiples of `grain`, with `args`
   * after (lo, hi, tid). Returns when every thread is done. `threads` caps the split (small work).
   */
  run(k: number, total: number, grain: number, args: number[], threads = this.threads): void {
    const units = Math.ceil(total / grain);
    const parts = Math.max(1, Math.min(threads, this.threads, units));
    const fn = this.#fns[k];
    if (parts === 1 || this.#workers.length === 0) {
      fn(0, total, 0, ...args);
      return;
    }
    const I = this.#I;
    for (let t = 0; t < this.threads; t++) {
      const lo = t < parts ? Math.min(total, Math.round((units * t) / parts) * grain) : 0;
      const hi = t < parts ? Math.min(total, Math.round((units * (t + 1)) / parts) * grain) : 0;
      I[16 + 2 * t] = lo;
      I[17 + 2 * t] = hi;
    }
    this.#F.set(args);
    I[2] = k;
    Atomics.store(I, 1, 0);
    Atomics.add(I, 0, 1);
    Atomics.notify(I, 0);
    if (I[17] > I[16]) fn(I[16], I[17], 0, ...args);
    const n = this.#workers.length;
    let done = Atomics.load(I, 1);
    for (let spins = 0; done < n; spins++) {
      if (spins > SPIN) Atomics.wait(I, 1, done);
      done = Atomics.load(I, 1);
    }
  }

  /** Stops and terminates the workers. */
  close(): void {
    if (this.#workers.length === 0) return;
    Atomics.store(this.#I, 3, 1);
    Atomics.add(this.#I, 0, 1);
    Atomics.notify(this.#I, 0);
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
  }
}
