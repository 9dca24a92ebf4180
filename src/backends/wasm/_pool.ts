/**
 * A pool of workers that share one WebAssembly.Memory with the main thread, running recorded
 * programs: the backend records its ops as steps (a kernel, a range of work split over the threads,
 * its arguments) and runs them all at once when it needs a result. Every thread, the main one
 * included, walks the same list of steps, each doing its own share; a step waits at a barrier for the
 * others only when it depends on work of another thread (see `add`). One wake-up per program instead of
 * one per op, and small ops no longer leave a thread idle waiting for the next dispatch.
 *
 * Control block (Int32 words at `ctl`): 0 job generation, 1 workers done, 2 steps in the program,
 * 3 stop, 4 threads asleep at a barrier. Step s: header words HEAD + 4s (kernel, total, grain,
 * parts | barrier << 16), barrier counter word BAR + s, Float64 arguments at ARGS_AT + 8 * ARGS * s.
 *
 * @module
 */

/** The most threads a pool runs. */
export const MAX_THREADS = 64;
/** Steps one program holds; the backend runs the program when it is full. */
export const MAX_STEPS = 1024;
/** Arguments of one step after (lo, hi, tid). */
const ARGS = 24;
const HEAD = 16;
const BAR = HEAD + 4 * MAX_STEPS;
const ARGS_AT = 4 * (BAR + MAX_STEPS);
/** Bytes of the control block. */
export const CONTROL_BYTES = ARGS_AT + 8 * ARGS * MAX_STEPS;
/** Polls at a barrier before a thread sleeps there (a thread descheduled by the OS). */
const BARRIER_SPIN = 200000;
/** Milliseconds an idle worker polls for the next program before it sleeps. */
const IDLE_SPIN_MS = 4;

/**
 * Runs steps [0, n) of the program as thread `tid` of `threads`. Self-contained (its source is also
 * the workers'): the range of step s for thread t is the t-th of `parts` near-equal shares of
 * [0, total) in multiples of `grain`.
 */
function runProgram(
  I: Int32Array,
  F: Float64Array,
  fns: ((...a: number[]) => void)[],
  tid: number,
  threads: number,
  n: number,
  head: number,
  bar: number,
  nargs: number,
  spin: number,
): void {
  for (let s = 0; s < n; s++) {
    const h = head + 4 * s;
    const flags = I[h + 3];
    if (flags >> 16) {
      const b = bar + s;
      if (Atomics.add(I, b, 1) + 1 === threads) {
        if (Atomics.load(I, 4) > 0) Atomics.notify(I, b);
      } else {
        let spins = 0;
        for (let v = Atomics.load(I, b); v < threads; v = Atomics.load(I, b)) {
          if (++spins > spin) {
            Atomics.add(I, 4, 1);
            Atomics.wait(I, b, v, 1);
            Atomics.sub(I, 4, 1);
          }
        }
      }
    }
    const parts = flags & 0xffff;
    if (tid >= parts) continue;
    const total = I[h + 1], grain = I[h + 2];
    const units = Math.ceil(total / grain);
    const lo = Math.min(total, Math.round((units * tid) / parts) * grain);
    const hi = Math.min(total, Math.round((units * (tid + 1)) / parts) * grain);
    if (lo >= hi) continue;
    const a = nargs * s;
    fns[I[h]](
      lo,
      hi,
      tid,
      F[a],
      F[a + 1],
      F[a + 2],
      F[a + 3],
      F[a + 4],
      F[a + 5],
      F[a + 6],
      F[a + 7],
      F[a + 8],
      F[a + 9],
      F[a + 10],
      F[a + 11],
      F[a + 12],
      F[a + 13],
      F[a + 14],
      F[a + 15],
      F[a + 16],
      F[a + 17],
      F[a + 18],
      F[a + 19],
      F[a + 20],
      F[a + 21],
      F[a + 22],
      F[a + 23],
    );
  }
}

/** The worker's source; it runs as a module worker (Deno, browsers) or an eval worker (Node). */
const WORKER_SOURCE = `
const runProgram = ${runProgram.toString()};
const start = (msg, post) => {
  const { bytes, memory, ctl, tid, threads, kernels, gen } = msg;
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  const fns = kernels.map((k) => inst.exports[k]);
  const I = new Int32Array(memory.buffer, ctl, ${ARGS_AT / 4});
  const F = new Float64Array(memory.buffer, ctl + ${ARGS_AT}, ${ARGS * MAX_STEPS});
  let seen = gen; // jobs already posted are not this worker's; later ones are
  post("ready");
  for (;;) {
    let g = Atomics.load(I, 0);
    if (g === seen) {
      const until = performance.now() + ${IDLE_SPIN_MS};
      for (let spins = 1; g === seen; spins++) {
        if ((spins & 1023) === 0 && performance.now() > until) Atomics.wait(I, 0, seen);
        g = Atomics.load(I, 0);
      }
    }
    seen = g;
    if (Atomics.load(I, 3)) return;
    runProgram(I, F, fns, tid, threads, I[2], ${HEAD}, ${BAR}, ${ARGS}, ${BARRIER_SPIN});
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

/**
 * A byte range a step reads or writes. With `unit`, a step's range [lo, hi) touches only bytes
 * [lo * unit, hi * unit) of each of the `bytes / stride` rows of `stride` bytes starting at `ptr`
 * (a thread's share of columns, channels or rows); without, all of it.
 */
export interface Access {
  ptr: number;
  bytes: number;
  write: boolean;
  unit?: number;
  stride?: number;
}

/** An access of a recorded step, with the step's split (total, grain, parts). */
interface Held extends Access {
  total: number;
  grain: number;
  parts: number;
}

/**
 * Whether two accesses of steps with no barrier between them are safe: they touch no common byte, or
 * both only read, or every thread touches the common bytes in both (both steps on thread 0 alone, or
 * the same split of the same rows).
 */
function safe(a: Held, b: Held): boolean {
  if (!(a.write || b.write) || a.ptr + a.bytes <= b.ptr || b.ptr + b.bytes <= a.ptr) return true;
  if (a.parts === 1 && b.parts === 1) return true;
  return !!a.unit && a.unit === b.unit && a.ptr === b.ptr && a.stride === b.stride && a.total === b.total &&
    a.grain === b.grain && a.parts === b.parts;
}

/** Workers over one shared memory, running recorded programs of kernel steps. */
export class Pool {
  readonly threads: number;
  #workers: AnyWorker[] = [];
  #I: Int32Array;
  #F: Float64Array;
  #fns: ((...a: number[]) => void)[];
  #steps = 0;
  /** accesses of the steps since the last barrier */
  #held: Held[] = [];

  private constructor(
    threads: number,
    memory: WebAssembly.Memory,
    ctl: number,
    fns: ((...a: number[]) => void)[],
  ) {
    this.threads = threads;
    this.#I = new Int32Array(memory.buffer, ctl, ARGS_AT / 4);
    this.#F = new Float64Array(memory.buffer, ctl + ARGS_AT, ARGS * MAX_STEPS);
    this.#fns = fns;
  }

  /**
   * A pool of `threads` (the main thread included) running `kernels` (export names) of the module
   * `bytes` over `memory`, whose control block (CONTROL_BYTES) starts at byte `ctl`.
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
        w.send({ bytes, memory, ctl, tid: t, threads, kernels, gen: Atomics.load(pool.#I, 0) });
        await w.ready;
      }
    } catch (e) {
      pool.close();
      throw e;
    }
    return pool;
  }

  /** Steps recorded and not run yet. */
  get pending(): number {
    return this.#steps;
  }

  /**
   * Records kernel `k` over [0, total), split into `parts` ranges that are multiples of `grain`
   * (capped by the threads and the units), with `args` after (lo, hi, tid). `acc` lists what it
   * reads and writes: a barrier goes before the step when it touches what another thread may still
   * be writing, or writes what another thread may still be reading.
   */
  add(k: number, total: number, grain: number, parts: number, args: number[], acc: Access[]): void {
    if (this.#steps === MAX_STEPS) this.flush();
    parts = Math.max(1, Math.min(parts, this.threads, Math.ceil(total / grain)));
    const mine = acc as Held[];
    let barrier = false;
    for (const m of mine) {
      m.total = total;
      m.grain = grain;
      m.parts = parts;
      for (const h of this.#held) barrier ||= !safe(m, h);
    }
    if (barrier) this.#held = mine;
    else this.#held.push(...mine);
    const s = this.#steps++;
    const h = HEAD + 4 * s;
    const I = this.#I;
    I[h] = k;
    I[h + 1] = total;
    I[h + 2] = grain;
    I[h + 3] = parts | ((barrier ? 1 : 0) << 16);
    I[BAR + s] = 0;
    this.#F.set(args, ARGS * s);
  }

  /** Runs the recorded steps on every thread; returns when all are done. */
  flush(): void {
    const n = this.#steps;
    if (n === 0) return;
    this.#steps = 0;
    this.#held = [];
    const I = this.#I;
    I[2] = n;
    Atomics.store(I, 1, 0);
    Atomics.add(I, 0, 1);
    Atomics.notify(I, 0);
    try {
      runProgram(I, this.#F, this.#fns, 0, this.threads, n, HEAD, BAR, ARGS, BARRIER_SPIN);
    } catch (e) {
      for (let s = 0; s < n; s++) Atomics.store(I, BAR + s, this.threads); // let the workers finish
      throw e;
    } finally {
      const workers = this.#workers.length;
      let done = Atomics.load(I, 1);
      for (let spins = 0; done < workers; spins++) {
        if (spins > BARRIER_SPIN) Atomics.wait(I, 1, done, 1);
        done = Atomics.load(I, 1);
      }
    }
  }

  /** Stops and terminates the workers. */
  close(): void {
    this.#steps = 0;
    this.#held = [];
    if (this.#workers.length === 0) return;
    Atomics.store(this.#I, 3, 1);
    Atomics.add(this.#I, 0, 1);
    Atomics.notify(this.#I, 0);
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
  }
}
