/**
 * The `wasm` backend: AssemblyScript kernels compiled to SIMD WebAssembly (wasm/assembly/), run over
 * one WebAssembly.Memory that holds every tensor. Where SharedArrayBuffer and workers exist the memory
 * is shared with a pool of workers and the big kernels (linear, scans, conv) are split across threads;
 * elsewhere everything runs on the calling thread. Ops are synchronous: a decode step stays inside wasm
 * memory until the logits, and `sample` reads them in place.
 *
 * Matrices (uploadMatrix) are kept as f32 (exact) or packed as f16, bf16 or q8 (int8 in blocks of 32
 * along the input dim, one f32 scale per block), chosen with the `dtype` option.
 *
 * @module
 */

import {
  type Backend,
  numel,
  type SampleArgs,
  type ScanArgs,
  type Shape,
  type SsdArgs,
  type Tensor,
  type WeightDType,
} from "../backend.ts";
import type { ModelConfig } from "../../config.ts";
import { BackendError } from "../../errors.ts";
import { sampleRows } from "../../generate/sampler.ts";
import { decodeBase64 } from "./_base64.ts";
import { RELAXED_WASM, SIMD_WASM } from "./_kernels.ts";
import { type Access, CONTROL_BYTES, MAX_THREADS, Pool, threadsAvailable } from "./_pool.ts";

/** Options of the wasm backend. */
export interface WasmOptions {
  /** how matrices are kept (default f32) */
  dtype?: WeightDType;
  /** threads, the calling one included (default: the available cores; 1 where workers cannot run) */
  threads?: number;
  /** use the relaxed-SIMD build (fused multiply-add) where the engine has it (default true) */
  relaxed?: boolean;
  /** where notes go */
  log?: (message: string) => void;
  /** a kernels module to run instead of the embedded ones (for experiments with the build) */
  kernels?: Uint8Array<ArrayBuffer>;
}

const PAGE = 65536;
/** The largest wasm32 memory. */
export const MAX_MEMORY_BYTES = 65536 * PAGE;
/** Per-thread scratch of the kernels (must match SCRATCH in wasm/assembly/math.ts). */
const SCRATCH = 1 << 20;
const ALIGN = 64;

/** The kernels ops run, by index: each takes (lo, hi, tid) first, its share of the work. */
const KERNELS = [
  "linear_f32",
  "linear_f16",
  "linear_bf16",
  "linear_q8",
  "conv1d_silu",
  "selective_scan",
  "ssd_scan",
  "bw_sum",
  "rms_norm",
  "add",
  "gated_rms_norm",
  "embed_f32",
  "embed16",
  "embed_q8",
  "argmax_rows",
] as const;
const K = Object.fromEntries(KERNELS.map((k, i) => [k, i])) as Record<(typeof KERNELS)[number], number>;

/** Work (multiply-adds or so) below which a step runs on one thread. */
const PARALLEL_MIN_WORK = 1 << 13;

interface Exports {
  heap_base(): number;
  pack_f16(dst: number, src: number, n: number): number;
  pack_bf16(dst: number, src: number, n: number): void;
  pack_q8(q: number, s: number, src: number, o: number, i: number): void;
}

class WasmTensor implements Tensor {
  constructor(
    readonly shape: Shape,
    readonly dtype: "f32" | "i32",
    /** byte offset of the data (q8: the int8 values) */
    public ptr: number,
    /** bytes held at ptr */
    readonly bytes: number,
    /** how a matrix is stored; f32 for everything else */
    readonly packed: WeightDType = "f32",
    /** q8: byte offset of the scales, and their bytes */
    public scales = 0,
    readonly scaleBytes = 0,
  ) {}
}

function t(x: Tensor): WasmTensor {
  return x as WasmTensor;
}

/** Bytes one packed (o, i) matrix takes. */
export function matrixBytes(o: number, i: number, dtype: WeightDType): number {
  if (dtype === "f32") return o * i * 4;
  if (dtype === "q8") return o * Math.ceil(i / 32) * (32 + 4);
  return o * i * 2;
}

/**
 * Bytes of wasm memory a model needs with matrices kept as `dtype`: weights plus the activations of a
 * full-length forward pass at batch 1 (a conservative estimate, computed before anything is allocated).
 */
export function modelBytes(c: ModelConfig, dtype: WeightDType): number {
  const { dModel: d, dInner: di, dState: n, dConv: k, nLayer, vocabSize: v } = c;
  const mats: [number, number][] = [[v, d]];
  if (!c.tieEmbeddings) mats.push([v, d]);
  let vectors = d;
  if (c.arch === "mamba") {
    const r = c.dtRank;
    mats.push(
      ...Array.from({ length: nLayer }, () => [[2 * di, d], [r + 2 * n, di], [di, r], [d, di]]).flat() as [
        number,
        number,
      ][],
    );
    vectors += nLayer * (d + di * (k + 4 + n) + 3 * di + d);
  } else {
    const gn = c.nGroups * n, h = c.nHeads;
    mats.push(
      ...Array.from({ length: nLayer }, () => [[2 * di + 2 * gn + c.nHeads, d], [d, di]]).flat() as [
        number,
        number,
      ][],
    );
    vectors += nLayer * (d + (di + 2 * gn) * (k + 1) + 3 * h + di + 2 * di + 2 * gn + d);
  }
  const weights = mats.reduce((a, [o, i]) => a + matrixBytes(o, i, dtype), 0) + vectors * 4;
  const l = 512;
  const activations = 4 * (l * v + 16 * l * Math.max(di, d) + (c.nLayer + 2) * l * d);
  return weights + activations + 64 * 1024 * 1024;
}

/** Refuses a model that cannot fit one wasm memory, naming the packings that would. */
export function checkFits(c: ModelConfig, dtype: WeightDType): void {
  const need = modelBytes(c, dtype);
  if (need <= MAX_MEMORY_BYTES) return;
  const gb = (b: number) => `${(b / 1e9).toFixed(1)} GB`;
  const fit = (["f16", "bf16", "q8"] as WeightDType[]).filter((p) => modelBytes(c, p) <= MAX_MEMORY_BYTES);
  const hint = fit.length
    ? `dtype ${fit.map((p) => `"${p}" (${gb(modelBytes(c, p))})`).join(" or ")} would fit`
    : "no packing fits; use the webgpu backend";
  throw new BackendError(
    `Cannot load model on wasm: dtype "${dtype}" needs ${
      gb(need)
    }, expected at most 4.3 GB (one WebAssembly memory); ${hint}`,
  );
}

/** A module with one memory import made shared (limits flag 1 -> 3), for the threaded build. */
function withSharedMemory(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const out = bytes.slice();
  let p = 8;
  const leb = () => {
    let v = 0, s = 0, b;
    do {
      b = out[p++];
      v |= (b & 0x7f) << s;
      s += 7;
    } while (b & 0x80);
    return v >>> 0;
  };
  while (p < out.length) {
    const id = out[p++];
    const size = leb();
    if (id !== 2) {
      p = p + size;
      continue;
    }
    for (let count = leb(); count > 0; count--) {
      const moduleName = leb();
      p += moduleName;
      const fieldName = leb();
      p += fieldName;
      const kind = out[p++];
      if (kind === 2) {
        if (out[p] !== 1) throw new BackendError(`Cannot share memory: limits flag is ${out[p]}, expected 1`);
        out[p] = 3;
        return out;
      }
      if (kind === 0) leb();
      else if (kind === 1) {
        p++;
        if (out[p++] & 1) leb();
        leb();
      } else if (kind === 3) p += 2;
    }
  }
  throw new BackendError("Cannot share memory: the module imports none, expected one");
}

/** (module (func (result v128) (v128.const i32x4 0 0 0 0))): validates where SIMD exists. */
const SIMD_PROBE = new Uint8Array([
  0,
  97,
  115,
  109,
  1,
  0,
  0,
  0,
  1,
  5,
  1,
  96,
  0,
  1,
  123,
  3,
  2,
  1,
  0,
  10,
  22,
  1,
  20,
  0,
  253,
  12,
  ...new Array(16).fill(0),
  11,
]);

/** Whether this engine runs WebAssembly SIMD; undefined when it does, else why not. */
export function simdSupport(): string | undefined {
  if (typeof WebAssembly === "undefined") return "no WebAssembly";
  try {
    return WebAssembly.validate(SIMD_PROBE) ? undefined : "no WebAssembly SIMD";
  } catch {
    return "no WebAssembly SIMD";
  }
}

/** Creates the wasm backend; with a config, refuses models that cannot fit before allocating. */
export async function createWasmBackend(opts: WasmOptions = {}, config?: ModelConfig): Promise<WasmBackend> {
  const dtype = opts.dtype ?? "f32";
  if (!["f32", "f16", "bf16", "q8"].includes(dtype)) {
    throw new BackendError(`Cannot create wasm backend: dtype is "${dtype}", expected f32, f16, bf16 or q8`);
  }
  const why = simdSupport();
  if (why) throw new BackendError(`Cannot create wasm backend: ${why}`);
  if (config) checkFits(config, dtype);
  // deno-lint-ignore no-explicit-any
  const cores = (globalThis as any).navigator?.hardwareConcurrency ?? await nodeCores();
  let threads = opts.threads ?? cores;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new BackendError(`Cannot create wasm backend: threads is ${threads}, expected an integer >= 1`);
  }
  threads = Math.min(threads, MAX_THREADS);
  if (threads > 1 && !threadsAvailable()) {
    if (opts.threads !== undefined) opts.log?.(`wasm: no shared memory or workers here; using 1 thread`);
    threads = 1;
  }
  const relaxed = (opts.relaxed ?? true) && WebAssembly.validate(decodeBase64(RELAXED_WASM));
  let bytes = opts.kernels ?? decodeBase64(relaxed ? RELAXED_WASM : SIMD_WASM);
  if (threads > 1) bytes = withSharedMemory(bytes);
  const module = await WebAssembly.compile(bytes);
  const memory = new WebAssembly.Memory(
    { initial: 1, maximum: 65536, shared: threads > 1 } as WebAssembly.MemoryDescriptor,
  );
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const ex = instance.exports as unknown as Exports;
  const base = align(ex.heap_base());
  const ctl = base;
  const scratch = ctl + CONTROL_BYTES;
  const heap = scratch + threads * SCRATCH;
  const be = new WasmBackend(dtype, memory, ex, instance, ctl, scratch, heap, relaxed);
  if (threads > 1) be.pool = await Pool.create(threads, bytes, instance, memory, ctl, [...KERNELS]);
  return be;
}

/** All of a tensor, read (write: false); for a write, see part. */
function whole(x: Tensor): Access {
  return { ptr: t(x).ptr, bytes: t(x).bytes, write: false };
}

/**
 * A tensor of `rows` rows, of which a step's share [lo, hi) touches bytes [lo * unit, hi * unit) of
 * every row; written unless `read` is 1.
 */
function part(x: Tensor, read: 0 | 1, rows: number, unit: number): Access {
  return { ptr: t(x).ptr, bytes: t(x).bytes, write: read === 0, unit, stride: t(x).bytes / rows };
}

/** The scales of a q8 matrix, read; none for other packings. */
function scales(x: WasmTensor): Access[] {
  return x.scaleBytes ? [{ ptr: x.scales, bytes: x.scaleBytes, write: false }] : [];
}

function align(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN;
}

/** The backend; create it with createWasmBackend. */
export class WasmBackend implements Backend {
  readonly name = "wasm" as const;
  readonly stepsPerRead = 1;
  /**
   * the threads kernels are split over (none: the calling thread alone, running each op at once);
   * with a pool, ops are recorded and run as one program when a result is needed
   */
  pool?: Pool;
  #memory: WebAssembly.Memory;
  #ex: Exports;
  #fns: ((...a: number[]) => void)[];
  #scratch: number;
  #top: number;
  #free = new Map<number, number[]>();
  #u8!: Uint8Array;
  #f32!: Float32Array;
  #i32!: Int32Array;
  #disposed = false;

  constructor(
    readonly weightDType: WeightDType,
    memory: WebAssembly.Memory,
    ex: Exports,
    instance: WebAssembly.Instance,
    ctl: number,
    scratch: number,
    heap: number,
    /** whether the relaxed-SIMD (fused multiply-add) build runs */
    readonly relaxed: boolean,
  ) {
    this.#memory = memory;
    this.#ex = ex;
    this.#fns = KERNELS.map((k) => instance.exports[k] as (...a: number[]) => void);
    this.#scratch = scratch;
    this.#top = heap;
    void ctl;
    this.#grow(heap);
  }

  /** Threads kernels are split over. */
  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /** Bytes of wasm memory in use (the high-water mark of the allocator). */
  get memoryBytes(): number {
    return this.#top;
  }

  #grow(end: number): void {
    const have = this.#memory.buffer.byteLength;
    if (end > have) {
      if (end > MAX_MEMORY_BYTES) {
        throw new BackendError(
          `Cannot allocate wasm memory: ${
            (end / 1e9).toFixed(2)
          } GB needed, expected at most 4.29 GB (one WebAssembly memory)`,
        );
      }
      const want = Math.min(65536, Math.max(Math.ceil(end / PAGE), Math.ceil((have / PAGE) * 1.25)));
      this.#memory.grow(want - have / PAGE);
    }
    if (!this.#u8 || this.#u8.byteLength !== this.#memory.buffer.byteLength) {
      const buf = this.#memory.buffer;
      this.#u8 = new Uint8Array(buf);
      this.#f32 = new Float32Array(buf);
      this.#i32 = new Int32Array(buf);
    }
  }

  #alloc(bytes: number): number {
    const size = align(Math.max(bytes, 16));
    const list = this.#free.get(size);
    if (list?.length) return list.pop()!;
    const ptr = this.#top;
    this.#grow(ptr + size + ALIGN);
    this.#top = ptr + size;
    return ptr;
  }

  #release(ptr: number, bytes: number): void {
    const size = align(Math.max(bytes, 16));
    const list = this.#free.get(size);
    if (list) list.push(ptr);
    else this.#free.set(size, [ptr]);
  }

  /**
   * Kernel k over [0, total) in shares that are multiples of `grain`: recorded in the pool's program
   * (split when `work` is large enough), or run at once without a pool. `acc`: what it reads and writes.
   */
  #run(k: number, total: number, grain: number, work: number, args: number[], acc: Access[]): void {
    if (this.pool) {
      this.pool.add(k, total, grain, work >= PARALLEL_MIN_WORK ? this.pool.threads : 1, args, acc);
    } else this.#fns[k](0, total, 0, ...args);
  }

  /** Runs the recorded ops: before anything reads or writes memory from JavaScript. */
  #flush(): void {
    this.pool?.flush();
  }

  uploadMatrix(data: Float32Array, shape: Shape): Tensor {
    if (this.weightDType === "f32" || shape.length !== 2) return this.upload(data, shape);
    const [o, i] = shape;
    if (data.length !== o * i) {
      throw new BackendError(`Cannot upload: ${data.length} values for shape (${shape.join(", ")})`);
    }
    const src = this.#alloc(data.length * 4);
    this.#f32.set(data, src / 4);
    const ex = this.#ex;
    let out: WasmTensor;
    if (this.weightDType === "q8") {
      const nb = Math.ceil(i / 32), og = Math.ceil(o / 4) * 4; // rows padded to groups of 4
      const q = this.#alloc(og * nb * 32), s = this.#alloc(og * nb * 4);
      ex.pack_q8(q, s, src, o, i);
      out = new WasmTensor([o, i], "f32", q, og * nb * 32, "q8", s, og * nb * 4);
    } else {
      const dst = this.#alloc(o * i * 2);
      if (this.weightDType === "f16") {
        const bad = ex.pack_f16(dst, src, o * i);
        if (bad) {
          this.#release(src, data.length * 4);
          this.#release(dst, o * i * 2);
          throw new BackendError(
            `Cannot pack weights as f16: ${bad} values of a (${o}, ${i}) matrix are outside f16's range, expected |w| <= 65504 (use bf16)`,
          );
        }
      } else ex.pack_bf16(dst, src, o * i);
      out = new WasmTensor([o, i], "f32", dst, o * i * 2, this.weightDType);
    }
    this.#release(src, data.length * 4);
    return out;
  }

  upload(data: Float32Array, shape: Shape): Tensor {
    if (data.length !== numel(shape)) {
      throw new BackendError(`Cannot upload: ${data.length} values for shape (${shape.join(", ")})`);
    }
    const x = this.#tensor(shape, "f32");
    this.#f32.set(data, x.ptr / 4);
    return x;
  }

  #tensor(shape: Shape, dtype: "f32" | "i32"): WasmTensor {
    const bytes = numel(shape) * 4;
    return new WasmTensor([...shape], dtype, this.#alloc(bytes), bytes);
  }

  zeros(shape: Shape, dtype: "f32" | "i32" = "f32"): Tensor {
    const x = this.#tensor(shape, dtype);
    this.#u8.fill(0, x.ptr, x.ptr + x.bytes);
    return x;
  }

  write(x: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    this.#flush();
    const view = data instanceof Int32Array ? this.#i32 : this.#f32;
    view.set(data, t(x).ptr / 4 + offset);
  }

  copy(dst: Tensor, src: Tensor, dstOffset = 0, srcOffset = 0, length?: number): void {
    this.#flush();
    const n = length ?? numel(src.shape) - srcOffset;
    const s = t(src).ptr + srcOffset * 4;
    this.#u8.copyWithin(t(dst).ptr + dstOffset * 4, s, s + n * 4);
  }

  read(x: Tensor): Promise<Float32Array> {
    this.#flush();
    const p = t(x).ptr / 4;
    return Promise.resolve(this.#f32.slice(p, p + numel(x.shape)));
  }

  readIds(x: Tensor): Promise<Int32Array> {
    this.#flush();
    const p = t(x).ptr / 4;
    return Promise.resolve(this.#i32.slice(p, p + numel(x.shape)));
  }

  free(x: Tensor): void {
    const w = t(x);
    if (w.ptr < 0) return;
    this.#flush(); // recorded ops may still use it
    this.#release(w.ptr, w.bytes);
    if (w.scaleBytes) this.#release(w.scales, w.scaleBytes);
    w.ptr = -1;
  }

  embed(out: Tensor, table: Tensor, ids: Tensor, idsOffset = 0): void {
    const tab = t(table);
    const d = table.shape[1];
    const m = numel(out.shape) / d;
    const o = t(out).ptr, idp = t(ids).ptr + idsOffset * 4;
    const acc = [part(out, 0, m, d * 4), whole(table), whole(ids), ...scales(tab)];
    if (tab.packed === "f32") this.#run(K.embed_f32, m, 1, m * d, [o, tab.ptr, idp, d], acc);
    else if (tab.packed === "q8") {
      this.#run(K.embed_q8, m, 1, m * d * 8, [o, tab.ptr, tab.scales, idp, d], acc);
    } else this.#run(K.embed16, m, 1, m * d * 4, [o, tab.ptr, idp, d, tab.packed === "bf16" ? 1 : 0], acc);
  }

  rmsNorm(out: Tensor, x: Tensor, w: Tensor, eps: number): void {
    const d = x.shape[x.shape.length - 1];
    const m = numel(x.shape) / d;
    this.#run(K.rms_norm, m, 1, m * d * 2, [t(out).ptr, t(x).ptr, t(w).ptr, eps, d], [
      part(out, 0, m, d * 4),
      part(x, 1, m, d * 4),
      whole(w),
    ]);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const n = numel(out.shape);
    this.#run(K.add, n, 64, n, [t(out).ptr, t(a).ptr, t(b).ptr], [
      part(out, 0, 1, 4),
      part(a, 1, 1, 4),
      part(b, 1, 1, 4),
    ]);
  }

  linear(out: Tensor, w: Tensor, x: Tensor, bias?: Tensor): void {
    const wt = t(w);
    const [o, i] = w.shape;
    const m = numel(x.shape) / i;
    const y = t(out).ptr, xp = t(x).ptr, bp = bias ? t(bias).ptr : 0;
    const work = m * o * i;
    // each thread writes its columns of y (m, o)
    const acc = [part(out, 0, m, 4), whole(w), ...scales(wt), whole(x), ...(bias ? [whole(bias)] : [])];
    switch (wt.packed) {
      case "f32":
        return this.#run(K.linear_f32, o, 8, work, [y, wt.ptr, xp, bp, m, o, i], acc);
      case "f16":
        return this.#run(K.linear_f16, o, 8, work, [y, wt.ptr, xp, bp, m, o, i, this.#scratch], acc);
      case "bf16":
        return this.#run(K.linear_bf16, o, 8, work, [y, wt.ptr, xp, bp, m, o, i, this.#scratch], acc);
      case "q8":
        return this.#run(
          K.linear_q8,
          o,
          8,
          work,
          [y, wt.ptr, wt.scales, xp, bp, m, o, i, this.#scratch],
          acc,
        );
    }
  }

  conv1dSilu(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | undefined, state: Tensor): void {
    const [b, l, c] = x.shape;
    const k = w.shape[1];
    // each thread its channels: of every time step of out and x, of every sequence's state
    this.#run(K.conv1d_silu, c, 8, b * l * c * k * 2, [
      t(out).ptr,
      t(x).ptr,
      t(w).ptr,
      bias ? t(bias).ptr : 0,
      t(state).ptr,
      b,
      l,
      c,
      k,
      this.#scratch,
    ], [
      part(out, 0, b * l, 4),
      part(x, 1, b * l, 4),
      part(state, 0, b, (k - 1) * 4),
      whole(w),
      ...(bias ? [whole(bias)] : []),
    ]);
  }

  selectiveScan(a: ScanArgs): void {
    const [b, l, di] = a.x.shape;
    const n = a.A.shape[1];
    // each thread its channels: of y, x, dt, z at every step, and of the state
    this.#run(K.selective_scan, di, 8, b * l * di * n * 8, [
      t(a.y).ptr,
      t(a.x).ptr,
      t(a.dt).ptr,
      t(a.A).ptr,
      t(a.B).ptr,
      t(a.C).ptr,
      t(a.D).ptr,
      t(a.z).ptr,
      t(a.h).ptr,
      b,
      l,
      di,
      n,
      this.#scratch,
    ], [
      part(a.y, 0, b * l, 4),
      part(a.x, 1, b * l, 4),
      part(a.dt, 1, b * l, 4),
      part(a.z, 1, b * l, 4),
      part(a.h, 0, b, n * 4),
      whole(a.A),
      whole(a.B),
      whole(a.C),
      whole(a.D),
    ]);
  }

  ssdScan(a: SsdArgs): void {
    const [b, l, nh, p] = a.x.shape;
    const [, , g, n] = a.B.shape;
    this.#run(K.ssd_scan, b * nh, 1, b * l * nh * p * n, [
      t(a.y).ptr,
      t(a.x).ptr,
      t(a.dt).ptr,
      t(a.dtBias).ptr,
      t(a.A).ptr,
      t(a.B).ptr,
      t(a.C).ptr,
      t(a.D).ptr,
      t(a.state).ptr,
      b,
      l,
      nh,
      p,
      g,
      n,
      a.dtMin,
      a.dtMax,
    ], [
      { ...whole(a.y), write: true },
      { ...whole(a.state), write: true },
      ...[a.x, a.dt, a.dtBias, a.A, a.B, a.C, a.D].map(whole),
    ]);
  }

  gatedRmsNorm(out: Tensor, y: Tensor, z: Tensor, w: Tensor, eps: number, groupSize: number): void {
    const total = numel(y.shape), groups = total / groupSize;
    this.#run(K.gated_rms_norm, groups, 1, total * 8, [
      t(out).ptr,
      t(y).ptr,
      t(z).ptr,
      t(w).ptr,
      eps,
      groupSize,
      w.shape[0],
    ], [
      part(out, 0, 1, groupSize * 4),
      part(y, 1, 1, groupSize * 4),
      part(z, 1, 1, groupSize * 4),
      whole(w),
    ]);
  }

  sample(a: SampleArgs): void {
    const [b, v] = a.logits.shape;
    const lp = t(a.logits).ptr, op = t(a.out).ptr / 4 + a.outRow * b;
    if (a.params.temperature <= 0 && !a.seen) { // plain greedy: an argmax kernel per row
      const out = { ptr: op * 4, bytes: b * 4, write: true };
      return this.#run(K.argmax_rows, b, 1, b * v, [op * 4, lp, v], [out, whole(a.logits)]);
    }
    this.#flush();
    const ids = new Int32Array(b);
    const logits = this.#f32.subarray(lp / 4, lp / 4 + b * v);
    const seen = a.seen ? this.#f32.subarray(t(a.seen).ptr / 4, t(a.seen).ptr / 4 + b * v) : undefined;
    sampleRows(ids, logits, v, a.params, a.step, seen);
    this.#i32.set(ids, op);
  }

  /**
   * Memory-bandwidth probe: sums `bytes` of wasm memory `rounds` times over the pool's threads and
   * returns the bytes read per second.
   */
  bandwidth(bytes: number, rounds: number): number {
    this.#flush();
    const lines = Math.floor(bytes / 64);
    const buf = this.#alloc(lines * 64);
    this.#u8.fill(1, buf, buf + lines * 64);
    const run = () => {
      this.#run(K.bw_sum, lines, 1024, Infinity, [buf, this.#scratch], []);
      this.#flush();
    };
    run();
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) run();
    const s = (performance.now() - t0) / 1000;
    this.#release(buf, lines * 64);
    return (lines * 64 * rounds) / s;
  }

  dispose(): Promise<void> {
    if (!this.#disposed) {
      this.#disposed = true;
      this.#flush();
      this.pool?.close();
      this.pool = undefined;
      this.#free.clear();
    }
    return Promise.resolve();
  }
}

/** Cores under Node, which has no navigator (Node >= 21 has one); 1 where node:os is absent. */
async function nodeCores(): Promise<number> {
  try {
    const os = await import("node:os");
    return os.availableParallelism?.() ?? os.cpus().length ?? 1;
  } catch {
    return 1;
  }
}
