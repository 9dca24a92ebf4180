/**
 * The `webgpu` backend: every op is a WGSL compute shader (wgsl/*.wgsl, bundled into _shaders.ts by
 * scripts/build_wgsl.ts). Ops are recorded, not run: consecutive ops go into one compute pass of one
 * command encoder, which is submitted only when something must leave the GPU (`read`, `readIds`) or
 * enter it in order (`write`). So a whole decode step, sampling included, is one pass, and the sampled
 * ids feed the next step's embedding on the GPU.
 *
 * - Pipelines are created once per (kernel, overrides); bind groups are cached per (kernel, buffers);
 *   every Params uniform of a submission lives in one arena, bound with a dynamic offset.
 * - Weights are uploaded once. Matrices keep rows padded to a multiple of 8 columns (for vec4 loads);
 *   with `dtype: "f16"` they are stored as f16 pairs packed in u32 and unpacked with unpack2x16float
 *   (no shader-f16 feature needed), accumulating in f32. f32 is the default and the exact one.
 * - `zeros` tensors come from a pool of buffers by size (cleared with clearBuffer between passes).
 * - A failed pipeline, a validation error or a lost device is a BackendError at the next read.
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
import { BackendError, ConfigError } from "../../errors.ts";
import { SHADERS } from "./_shaders.ts";

// The WebGPU spec's flag values, spelled out: TypeScript's DOM library (which the npm build checks
// against) declares the WebGPU interfaces but not these global namespaces.
const BufferUsage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const ShaderStage = { COMPUTE: 0x4 } as const;
const MapMode = { READ: 0x1 } as const;

/** x; out 0..3; w 0..3; bias 0..3; norm_w; xn; resid (see wgsl/matvec.wgsl). */
const MATVEC_BINDINGS: ("read" | "rw")[] = [
  "read",
  ...Array(4).fill("rw"),
  ...Array(8).fill("read"),
  "read",
  "rw",
  "rw",
];

/** Storage bindings of each kernel after its Params uniform (binding 0), in binding order. */
const KERNELS: Record<string, ("read" | "rw")[]> = {
  add: ["rw", "rw", "rw"],
  argmax: ["rw", "read", "rw"],
  argmax_partials: ["rw", "read", "read", "rw"],
  conv1d_silu: ["rw", "read", "read", "read", "rw"],
  copy: ["rw", "rw"],
  embed: ["rw", "read", "read"],
  embed_f16: ["rw", "read", "read"],
  gated_rms_norm: ["rw", "rw", "read", "read"],
  gemm: MATVEC_BINDINGS,
  matvec: MATVEC_BINDINGS,
  matvec_f16: MATVEC_BINDINGS,
  matvec1: MATVEC_BINDINGS,
  rms_norm: ["rw", "rw", "read"],
  sample: ["rw", "read", "rw", "rw"],
  scan_carry: ["rw", "rw", "read"],
  splitk: ["read", "read", "read", "read", "read", "read", "rw"],
  splitk_reduce: [
    "read",
    ...Array(4).fill("rw"),
    ...Array(4).fill("read"),
    "read",
    "read",
    "rw",
    "rw",
    "read",
  ],
  scan_step: ["rw", "read", "rw", "read", "rw", "rw", "read", "read", "rw", "rw", "read", "read", "read"],
  scan_chunks: ["rw", "read", "read", "read", "read", "read", "read", "read", "rw"],
  selective_scan: ["rw", "read", "rw", "read", "read", "read", "read", "read", "rw", "read", "read", "read"],
  ssd_carry: ["rw", "rw", "read"],
  ssd_chunks: ["rw", "read", "read", "read", "read", "read", "read", "read", "rw"],
  ssd_scan: ["rw", "read", "read", "read", "read", "read", "read", "read", "rw"],
};

/** Bytes of one Params slot in the uniform arena (minUniformBufferOffsetAlignment). */
const SLOT = 256;
/** Slots per submission; a full arena is submitted. */
const SLOTS = 4096;
/** Largest grid dimension WebGPU guarantees. */
const MAX_GROUPS = 65535;
/**
 * linear uses the matrix-vector kernel (weights re-read from cache per row of x) up to this many rows
 * of x, the tiled kernel beyond, small matrices included (on an H100 at m = 512, x_proj's 80 x 1536
 * took 182 us in matvec, 93 us tiled).
 */
const MATVEC_MAX_M = 32;
/**
 * Held-back products on 2 <= m <= MATVEC_MAX_M rows of x that matvec does not take go to the split-k
 * kernels (to the tiled kernel with LINEAR_TUNING.splitk "never"): those with a matrix of at least
 * this many rows (the lm_head: on an H100 at m = 32, 50280 x 768, tiled 347 us against matvec's
 * 1,446 us, split-k 152 us) or rows longer than MATVEC_MAX_X4 vec4.
 */
const GEMM_MIN_ROWS = 4096;
/** The matrix-vector kernel stages rows of x in workgroup memory: at most this many vec4. */
const MATVEC_MAX_X4 = 1280;
/** The matrix-vector kernel takes fewer output rows per workgroup until it has this many workgroups. */
const MATVEC_MIN_GROUPS = 512;
/**
 * matvec1 (one row of x) spreads rows over more threads (from `minTpr` threads a row, a power of two
 * from 8 up) until it has `groups` workgroups, and has a thread read up to `preload` vec4 of its
 * weights before it stages x (0 to 12). Benchmarks may change them.
 */
export const MATVEC1_TUNING = { groups: 256, preload: 4, minTpr: 8 };
/**
 * Rows of x per workgroup of the matrix-vector kernel, at most (each weight read is reused for them).
 * The kernel takes 1, 2, 4 or 8, but on an H100 8 was slower at batch 32 (4,244 vs 4,977 tok/s, f32)
 * than 1 with the workgroups that share weight rows adjacent (the re-reads then hit the L2 cache);
 * on llvmpipe the 8-row pipelines also take a minute to compile.
 */
const MATVEC_MAX_MB = 1;

/** conv1dSilu runs one thread per output (and a second dispatch for the state) from this l on. */
const CONV_PARALLEL_L = 8;
/** Steps per chunk of the chunked (prefill) selective scan (fixed in wgsl/scan_chunks.wgsl). */
const SCAN_CHUNK = 16;
/** The chunked selective scan is used from this many steps on. */
const SCAN_CHUNKED_L = 32;
/**
 * Shapes of the selective scan's kernels (benchmarks may change them): chunks per round of the
 * chunked (prefill) scan's carry pass (a power of two up to 256), and states per thread (0: chosen by
 * scanStepStates, or 1 or 4) and threads per workgroup of the one-step scan.
 */
export const SCAN_TUNING = { carryChunks: 8, stepStates: 0, stepGroup: 64 };
/**
 * x_proj fused (see #fusedScan). At batch 1: output rows per workgroup of the in_proj + conv matvec1
 * dispatch (a multiple of 8; its workgroups over x each leave x_proj's partial products over that many
 * channels), and threads per workgroup of the scan_step dispatch that adds the partials up. At 2..32
 * on split-k: sequences per workgroup of the reduce's conv (1, 2, 4 or 8; fewer where m is smaller),
 * each workgroup taking 256 / that many channels (each weight of x_proj read once for them all, but
 * scan_step adds up that many times more partials). On an H100 at batch 32 (mamba-130m, two runs),
 * 4 left the split-k reduces no faster than 1 (12.04 vs 12.03 us a dispatch on average) and made the
 * scan slower (13.15 vs 12.22 us: 24 partials a sequence, not 6); the steps took 1.775 vs 1.752 ms.
 */
export const XPROJ_TUNING = { rowsPerGroup: 16, scanGroup: 256, splitkSeqs: 1 };
/** ssdScan runs chunked (SSD quadratic form inside chunks of this many steps, state passed between them) from this many tokens on; the sequential kernel below. */
const SSD_CHUNK = 32;

/** An RMSNorm held back, to be fused into the matrix-vector dispatch that reads its output. */
interface PendingNorm {
  out: GpuTensor;
  x: GpuTensor;
  w: GpuTensor;
  eps: number;
  m: number;
  d: number;
}

/** Matrix-vector products on one input, held back to be dispatched together (see #emit). */
interface PendingLinear {
  /** the input the ops were given (the norm's output when \`norm\` is fused) */
  input: GpuTensor;
  norm?: PendingNorm;
  m: number;
  cols: number;
  stride: number;
  packed: "f32" | "f16";
  items: { out: GpuTensor; w: GpuTensor; bias?: GpuTensor; rows: number }[];
  /** add the (single) product into this tensor too */
  resid?: GpuTensor;
  /**
   * one row of x, or 2..32 on split-k: the conv1d + SiLU step on items[0]'s output (see
   * wgsl/matvec1.wgsl, mode 3, and wgsl/splitk_reduce.wgsl, epi 1)
   */
  conv?: { out: GpuTensor; w: GpuTensor; bias?: GpuTensor; state: GpuTensor; k: number };
  /** one row of x, or 2..32 on split-k: greedy sampling of the (single) product into out[outRow] */
  argmax?: { out: GpuTensor; outRow: number };
  /**
   * with conv: products on the conv's output (x_proj) held back too, and a product on one of theirs
   * (dt_proj), for selectiveScan to take (see #fusedScan); anything else emits them after this one
   */
  xproj?: PendingLinear;
  dtProj?: PendingLinear;
  /**
   * as emitted with x_proj fused: the products of `rows` rows of w (x_proj's matrices joined) on the
   * conv's output, their partial sums per workgroup to `partials` (see wgsl/matvec1.wgsl, mode 3)
   */
  xp?: { w: GPUBuffer; rows: number; stride: number; partials: GPUBuffer; seqs: number };
}

/**
 * The last half of greedy sampling (wgsl/argmax_partials.wgsl) held back, for the next step's embed of
 * the ids it writes to join it: the best of `groups` (value, id) pairs per row of x in `partials`, to
 * out[outRow].
 */
interface PendingArgmax {
  out: GpuTensor;
  outRow: number;
  m: number;
  groups: number;
  partials: GPUBuffer;
}

/** A dispatch as #run records it, kept to be recorded again (see #replay). */
interface Dispatch {
  kernel: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  /** the Params, as 32-bit words */
  words: Uint32Array;
  /** workgroups */
  x: number;
  y: number;
  z: number;
}

/** Cached bind groups of one kernel, by a hash of their buffers' ids (see #bindGroup). */
type BindCache = Map<number, { buffers: GPUBuffer[]; group: GPUBindGroup }[]>;
/** The small integer that #bindGroup hashes for a buffer, kept on the buffer itself. */
const BUFFER_ID = Symbol("buffer id");
type TaggedBuffer = GPUBuffer & { [BUFFER_ID]?: number };

/** A tensor on the GPU: a whole buffer. Matrices carry their padded row stride and packing. */
class GpuTensor implements Tensor {
  freed = false;
  /** elements */
  readonly size: number;
  /** for matrices: the last matrix-vector products emitted with this as the first weight (see #matvec) */
  memo?: {
    pl: PendingLinear;
    /** one, or two with split-k (the partial sums, then their reduce) */
    dispatches: Dispatch[];
    partials?: GPUBuffer;
    /** split-k: the scratch buffer of partial sums its two dispatches use */
    scratch?: GPUBuffer;
  };
  /** for A of a scan with x_proj fused (see #fusedScan): its last scan_step dispatch, and what it binds */
  scanMemo?: { buffers: GPUBuffer[]; b: number; di: number; wg: number; groups: number; dispatch: Dispatch };
  /** for the first of x_proj's matrices: the matrices joined into one buffer (see #joined) */
  joined?: { ws: GpuTensor[]; buffer: GPUBuffer };
  /**
   * for weights of conv1dSilu and gatedRmsNorm: the last one-dispatch op on them, with the tensors
   * (a, b, c, d in the op's argument order) and scalars it was made for
   */
  opMemo?: {
    a: GpuTensor;
    b: GpuTensor;
    c?: GpuTensor;
    d?: GpuTensor;
    eps: number;
    groupSize?: number;
    dispatch: Dispatch;
  };
  constructor(
    readonly shape: Shape,
    readonly dtype: "f32" | "i32",
    readonly buffer: GPUBuffer,
    /** bytes of data (the buffer may be larger) */
    readonly bytes: number,
    /** for matrices: elements per stored row, and how they are stored */
    readonly matrix?: { stride: number; packed: "f32" | "f16" },
  ) {
    this.size = numel(shape);
  }
}

function gt(t: Tensor): GpuTensor {
  const g = t as GpuTensor;
  if (g.freed) throw new BackendError(`Cannot use tensor (${g.shape.join(", ")}): it was freed`);
  return g;
}

/** What an adapter is, for `deno task info` and for `auto`. */
export interface AdapterReport {
  description: string;
  vendor: string;
  architecture: string;
  isFallbackAdapter: boolean;
  features: string[];
  limits: Record<string, number>;
}

/** The adapter navigator.gpu offers, or undefined (no WebGPU, or no adapter). */
export async function requestAdapter(): Promise<GPUAdapter | undefined> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return undefined;
  return (await gpu.requestAdapter({ powerPreference: "high-performance" })) ?? undefined;
}

/** Whether the adapter is a fallback (software) adapter, whichever way the runtime says so. */
export function isFallback(adapter: GPUAdapter): boolean {
  const info = (adapter as unknown as { info?: { isFallbackAdapter?: boolean } }).info;
  return Boolean(
    info?.isFallbackAdapter ?? (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
}

/** A description of the adapter: name, features and limits. */
export function describeAdapter(adapter: GPUAdapter): AdapterReport {
  const info = (adapter as unknown as { info?: GPUAdapterInfo }).info;
  const limits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === "number") limits[key] = v;
  }
  return {
    description: info?.description ?? "",
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    isFallbackAdapter: isFallback(adapter),
    features: [...adapter.features].sort(),
    limits,
  };
}

/**
 * Why the webgpu backend would not be chosen by `auto` here, or undefined when it would be:
 * no navigator.gpu, no adapter, or only a fallback (software) adapter.
 */
export async function probeWebGpu(): Promise<string | undefined> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return "no WebGPU (navigator.gpu is undefined)";
  const adapter = await requestAdapter();
  if (!adapter) return "no adapter";
  if (isFallback(adapter)) {
    return `adapter "${describeAdapter(adapter).description}" is a fallback (software) adapter`;
  }
  return undefined;
}

/** Creates the webgpu backend on the default adapter (a fallback adapter too: tests use one). */
export async function createWebGpuBackend(opts: { dtype?: WeightDType } = {}): Promise<WebGpuBackend> {
  const dtype = opts.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new BackendError(`Cannot create webgpu backend: dtype is "${dtype}", expected "f32" or "f16"`);
  }
  const adapter = await requestAdapter();
  if (!adapter) {
    throw new BackendError(
      "Cannot create webgpu backend: adapter is missing, expected a WebGPU adapter (Deno needs --unstable-webgpu)",
    );
  }
  const a = adapter.limits;
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      // timestamp-query only serves benchmarks (timeGpu); it is requested where the adapter has it.
      requiredFeatures: adapter.features.has("timestamp-query") ? ["timestamp-query"] : [],
      requiredLimits: {
        maxStorageBuffersPerShaderStage: Math.min(a.maxStorageBuffersPerShaderStage, 16),
        maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
        maxBufferSize: a.maxBufferSize,
        maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
      },
    });
  } catch (e) {
    throw new BackendError(`Cannot create webgpu backend: requestDevice failed: ${(e as Error).message}`);
  }
  if (device.limits.maxStorageBuffersPerShaderStage < 10) {
    device.destroy();
    throw new BackendError(
      `Cannot create webgpu backend: maxStorageBuffersPerShaderStage is ${device.limits.maxStorageBuffersPerShaderStage}, expected at least 10`,
    );
  }
  const backend = new WebGpuBackend(device, describeAdapter(adapter), dtype);
  try {
    await backend.compileShaders();
  } catch (e) {
    await backend.dispose();
    throw e;
  }
  return backend;
}

/** The WebGPU backend. Create it with createWebGpuBackend. */
export class WebGpuBackend implements Backend {
  readonly name = "webgpu" as const;
  readonly weightDType: "f32" | "f16";
  /** Decode steps between two reads of sampled ids (the generator also keeps reads in flight). */
  readonly stepsPerRead = 32;

  #device: GPUDevice;
  #modules = new Map<string, GPUShaderModule>();
  #layouts = new Map<string, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();
  /** per kernel, its pipelines with their override constants */
  #pipelines = new Map<string, { names: string[]; values: number[]; pipeline: GPUComputePipeline }[]>();
  #bindGroups = new Map<string, BindCache>();
  #nextId = 1;
  #pool = new Map<number, GPUBuffer[]>();
  #owned = new Set<GPUBuffer>();
  #uniform: GPUBuffer;
  #arena = new ArrayBuffer(SLOT * SLOTS);
  #arenaU32 = new Uint32Array(this.#arena);
  #arenaF32 = new Float32Array(this.#arena);
  #slots = 0;
  /** submissions so far (recordOnly checks that it submitted nothing) */
  #submissions = 0;
  #offset = new Uint32Array(1);
  #encoder?: GPUCommandEncoder;
  #pass?: GPUComputePassEncoder;
  /** pooled buffers handed out by zeros, to be cleared (clearBuffer, between passes) before the next op */
  #clears: GPUBuffer[] = [];
  #lastPipeline?: GPUComputePipeline;
  #dummyRead: GPUBuffer;
  #dummyRw: GPUBuffer;
  #scratch?: GPUBuffer;
  #scanScratch?: GPUBuffer;
  /** the argmax pairs of matvec1's workgroups, or of the split-k reduce's (per row of x) */
  #partials?: GPUBuffer;
  /** matvec1's partial products of x_proj (see #fusedScan) */
  #xpPartials?: GPUBuffer;
  /** the partial sums of the split-k products (#splitk) and of the tiled kernel split over k (#gemm) */
  #splitScratch?: GPUBuffer;
  /** starts the mapping of a read already submitted (see #readBytes) */
  #maps: (() => void)[] = [];
  #pendingNorm?: PendingNorm;
  #pendingLinear?: PendingLinear;
  #pendingArgmax?: PendingArgmax;
  #timestamps?: { querySet: GPUQuerySet; first: boolean; names?: string[] };
  #failure?: string;
  #lost?: string;
  #disposed = false;

  constructor(device: GPUDevice, readonly adapter: AdapterReport, dtype: "f32" | "f16") {
    this.#device = device;
    this.weightDType = dtype;
    device.lost.then((info) => {
      if (!this.#disposed) this.#lost = `${info.reason}: ${info.message}`;
    });
    device.addEventListener("uncapturederror", (e) => {
      this.#failure ??= (e as GPUUncapturedErrorEvent).error.message;
    });
    this.#uniform = this.#buffer(SLOT * SLOTS, BufferUsage.UNIFORM | BufferUsage.COPY_DST);
    this.#dummyRead = this.#buffer(16);
    this.#dummyRw = this.#buffer(16);
  }

  // ---- tensors ----

  uploadMatrix(data: Float32Array, shape: Shape): Tensor {
    this.#check();
    if (shape.length !== 2 || data.length !== numel(shape)) {
      throw new BackendError(
        `Cannot upload matrix: ${data.length} values of shape (${
          shape.join(", ")
        }), expected a 2-d shape of as many values`,
      );
    }
    const [rows, cols] = shape;
    const stride = Math.ceil(cols / 8) * 8;
    if (this.weightDType === "f16") {
      const halves = new Uint16Array(rows * stride);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) halves[r * stride + c] = toHalf(data[r * cols + c]);
      }
      const buf = this.#filled(halves);
      return new GpuTensor([...shape], "f32", buf, halves.byteLength, { stride, packed: "f16" });
    }
    let padded = data;
    if (stride !== cols) {
      padded = new Float32Array(rows * stride);
      for (let r = 0; r < rows; r++) padded.set(data.subarray(r * cols, (r + 1) * cols), r * stride);
    }
    const buf = this.#filled(padded);
    return new GpuTensor([...shape], "f32", buf, padded.byteLength, { stride, packed: "f32" });
  }

  upload(data: Float32Array, shape: Shape): Tensor {
    this.#check();
    if (data.length !== numel(shape)) {
      throw new BackendError(
        `Cannot upload: ${data.length} values for shape (${shape.join(", ")}), expected ${numel(shape)}`,
      );
    }
    return new GpuTensor([...shape], "f32", this.#filled(data), data.byteLength);
  }

  zeros(shape: Shape, dtype: "f32" | "i32" = "f32"): Tensor {
    this.#emit();
    this.#check();
    const bytes = numel(shape) * 4;
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const reuse = this.#pool.get(size)?.pop();
    const buf = reuse ?? this.#buffer(size);
    // a pooled buffer is cleared before the next op: clears in a row share one break of the pass
    if (reuse) this.#clears.push(buf);
    return new GpuTensor([...shape], dtype, buf, bytes);
  }

  write(t: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    this.#emit();
    this.#check();
    const g = gt(t);
    if (g.matrix) throw new BackendError("Cannot write: tensor is a packed matrix, expected a plain tensor");
    if (offset < 0 || offset + data.length > numel(g.shape)) {
      throw new BackendError(
        `Cannot write: range [${offset}, ${offset + data.length}) is outside the tensor's ${
          numel(g.shape)
        } elements`,
      );
    }
    if (data.length === 0) return;
    this.#flush(); // ops recorded before must see the old contents
    this.#device.queue.writeBuffer(g.buffer, offset * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  copy(dst: Tensor, src: Tensor, dstOffset = 0, srcOffset = 0, length?: number): void {
    this.#emit();
    const d = gt(dst), s = gt(src);
    const n = length ?? numel(s.shape) - srcOffset;
    if (n <= 0) return;
    if (d.buffer === s.buffer && dstOffset < srcOffset + n && srcOffset < dstOffset + n) {
      throw new BackendError(
        `Cannot copy within a tensor: ranges [${srcOffset}, ${srcOffset + n}) and [${dstOffset}, ${
          dstOffset + n
        }) overlap, expected disjoint ranges`,
      );
    }
    this.#run("copy", {}, [d.buffer, s.buffer], [n, dstOffset, srcOffset, 0], "uuuu", this.#grid1(n, 256));
  }

  async read(t: Tensor): Promise<Float32Array> {
    const g = gt(t);
    const bytes = await this.#readBytes(g);
    if (g.matrix) return unpackMatrix(bytes, g.shape, g.matrix);
    return new Float32Array(bytes, 0, numel(g.shape));
  }

  async readIds(t: Tensor): Promise<Int32Array> {
    const g = gt(t);
    return new Int32Array(await this.#readBytes(g), 0, numel(g.shape));
  }

  free(t: Tensor): void {
    const g = t as GpuTensor;
    if (g.freed || this.#disposed) return;
    this.#emit();
    g.freed = true;
    this.#release(g.buffer);
    if (g.joined) this.#release(g.joined.buffer);
    g.joined = undefined;
  }

  /** Puts `buf` back in the pool, for a later buffer of its size. */
  #release(buf: GPUBuffer): void {
    let list = this.#pool.get(buf.size);
    if (!list) this.#pool.set(buf.size, list = []);
    list.push(buf);
  }

  // ---- ops ----

  embed(out: Tensor, table: Tensor, ids: Tensor, idsOffset = 0): void {
    const o = gt(out), tab = gt(table), id = gt(ids);
    const d = tab.shape[1];
    const m = numel(o.shape) / d;
    const pa = this.#pendingArgmax;
    if (
      pa && pa.out === id && pa.m === m && idsOffset === pa.outRow * m && !this.#pendingLinear &&
      !this.#pendingNorm && o !== id && o.buffer !== pa.partials
    ) {
      // the rows greedy sampling is choosing now: embedded by the same dispatch
      this.#pendingArgmax = undefined;
      this.#argmaxPartials(pa, { out: o, table: tab, d });
      return;
    }
    this.#emit();
    const stride = tab.matrix?.stride ?? d;
    const kernel = tab.matrix?.packed === "f16" ? "embed_f16" : "embed";
    this.#run(
      kernel,
      {},
      [o.buffer, tab.buffer, id.buffer],
      [m, d, stride, idsOffset],
      "uuuu",
      this.#grid1(m * d, 256),
    );
  }

  rmsNorm(out: Tensor, x: Tensor, w: Tensor, eps: number): void {
    this.#emit();
    const o = gt(out), xs = gt(x), ws = gt(w);
    const d = xs.shape[xs.shape.length - 1];
    const m = xs.size / d;
    if (o !== xs) {
      // Held back: the matrix-vector products that read `out` next normalize their input themselves.
      this.#pendingNorm = { out: o, x: xs, w: ws, eps, m, d };
      return;
    }
    this.#rmsNorm(o, xs, ws, eps, m, d);
  }

  #rmsNorm(o: GpuTensor, xs: GpuTensor, ws: GpuTensor, eps: number, m: number, d: number): void {
    this.#run("rms_norm", {}, [o.buffer, xs.buffer, ws.buffer], [m, d, eps, 0], "uufu", this.#grid2(m));
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = gt(out), as = gt(a), bs = gt(b);
    const pl = this.#pendingLinear;
    if (pl && pl.items.length === 1 && !pl.resid && !pl.conv) {
      const made = pl.items[0].out;
      const other = bs === made ? as : as === made ? bs : undefined;
      const input = pl.norm ? pl.norm.x : pl.input;
      if (other === o && o !== input && o !== made && o.size === pl.m * pl.items[0].rows) {
        pl.resid = o; // out = out + the product: fused into the product's dispatch
        this.#emit();
        return;
      }
    }
    this.#emit();
    const n = o.size;
    this.#run("add", {}, [o.buffer, as.buffer, bs.buffer], [n, 0, 0, 0], "uuuu", this.#grid1(n, 256));
  }

  linear(out: Tensor, w: Tensor, x: Tensor, bias?: Tensor): void {
    const o = gt(out), ws = gt(w), xs = gt(x), bs = bias ? gt(bias) : undefined;
    if (!ws.matrix) {
      throw new BackendError(
        "Cannot run linear: weight was not uploaded with uploadMatrix, expected a matrix",
      );
    }
    const rows = ws.shape[0], cols = ws.shape[1];
    const m = xs.size / cols;
    const { stride, packed } = ws.matrix;
    // Held back (for fusion with a norm before, more products on the same input, a residual add or
    // a conv after), except one row of x too long for matvec1, which goes to the tiled kernel now.
    if (m >= 2 || stride / 4 <= MATVEC_MAX_X4) {
      const pl = this.#pendingLinear;
      if (pl?.conv && this.#holdAfterConv(pl, o, ws, xs, bs, m, rows, cols)) return;
      if (
        pl && !pl.resid && !pl.conv && pl.items.length < 4 && pl.input === xs && pl.m === m &&
        pl.cols === cols &&
        pl.stride === stride && pl.packed === packed && !writes(pl, o)
      ) {
        pl.items.push({ out: o, w: ws, bias: bs, rows });
        return;
      }
      let norm = this.#pendingNorm;
      if (norm && (norm.out !== xs || norm.m !== m || norm.d !== cols || o === norm.x)) norm = undefined;
      if (norm) this.#pendingNorm = undefined;
      this.#emit();
      this.#pendingLinear = {
        input: xs,
        norm,
        m,
        cols,
        stride,
        packed,
        items: [{ out: o, w: ws, bias: bs, rows }],
      };
      return;
    }
    this.#emit();
    this.#gemm({ input: xs, m, cols, stride, packed, items: [{ out: o, w: ws, bias: bs, rows }] });
  }

  /**
   * Holds back a product on the output of the conv fused into `pl` (x_proj, up to three matrices), or
   * then one on an output of those (dt_proj, with a bias), on as many rows as the conv's, for
   * selectiveScan to fuse (one sequence, or 2..32 on split-k: see #fusedScan). Whether it did.
   */
  #holdAfterConv(
    pl: PendingLinear,
    o: GpuTensor,
    ws: GpuTensor,
    xs: GpuTensor,
    bs: GpuTensor | undefined,
    m: number,
    rows: number,
    cols: number,
  ): boolean {
    const { stride, packed } = ws.matrix!;
    if (m !== pl.m || pl.dtProj || touches(pl, o) || o === xs) return false;
    const item = { out: o, w: ws, bias: bs, rows };
    const xp = pl.xproj;
    if (xs === pl.conv!.out && !bs && xs.size === m * cols) {
      if (!xp) {
        pl.xproj = { input: xs, m, cols, stride, packed, items: [item] };
        return true;
      }
      if (xp.items.length < 3 && xp.stride === stride && xp.packed === packed) {
        xp.items.push(item);
        return true;
      }
      return false;
    }
    if (xp && bs && writes(xp, xs)) {
      pl.dtProj = { input: xs, m, cols, stride, packed, items: [item] };
      return true;
    }
    return false;
  }

  /** Dispatches what was held back (argmax_partials, matrix-vector products, a norm), before any other op. */
  #emit(): void {
    const pa = this.#pendingArgmax;
    if (pa) {
      this.#pendingArgmax = undefined;
      this.#argmaxPartials(pa);
    }
    const pl = this.#pendingLinear;
    if (pl) {
      this.#pendingLinear = undefined;
      this.#matvec(pl);
      // products held back after a conv, not taken by a scan: after it, as recorded
      if (pl.xproj) this.#matvec(pl.xproj);
      if (pl.dtProj) this.#matvec(pl.dtProj);
    }
    const norm = this.#pendingNorm;
    if (norm) {
      this.#pendingNorm = undefined;
      this.#rmsNorm(norm.out, norm.x, norm.w, norm.eps, norm.m, norm.d);
    }
  }

  /** Which kernels #matvec gives the held-back products: the tiled one, split-k, or matvec / matvec1. */
  #route(pl: PendingLinear): "gemm" | "splitk" | "matvec" {
    const x4 = pl.stride / 4;
    const big = x4 > MATVEC_MAX_X4 || pl.items.some((it) => it.rows >= GEMM_MIN_ROWS);
    const outputs = pl.m * pl.items.reduce((a, it) => a + it.rows, 0);
    const mode = LINEAR_TUNING.splitk;
    const splitk = pl.m >= 2 && pl.m <= SPLITK_MAX_M && mode !== "never" &&
      (mode === "always" || big ||
        (outputs >= SPLITK_MIN_OUTPUTS && outputs * pl.cols >= SPLITK_MIN_WORK));
    if (pl.m > MATVEC_MAX_M || (pl.m >= 2 && !splitk && big)) return "gemm";
    return splitk ? "splitk" : "matvec";
  }

  #matvec(pl: PendingLinear): void {
    const route = this.#route(pl);
    if (route === "gemm") return this.#gemm(pl);
    const splitk = route === "splitk";
    // The products of the last emission on this weight again (every decode step): its dispatches as
    // they are.
    const w = pl.items[0].w;
    let memo = w.memo;
    if (
      !memo || (pl.argmax && memo.partials !== this.#partials) ||
      (memo.scratch && memo.scratch !== this.#splitScratch) || (memo.dispatches.length > 1) !== splitk ||
      !sameLinear(memo.pl, pl)
    ) {
      if (splitk) {
        const dispatches = this.#splitk(pl);
        memo = w.memo = { pl, dispatches, scratch: this.#splitScratch, partials: this.#partials };
      } else {
        const dispatch = pl.m === 1 ? this.#matvec1(pl) : this.#matvecRows(pl);
        memo = w.memo = { pl, dispatches: [dispatch], partials: this.#partials };
      }
    }
    for (const d of memo.dispatches) this.#replay(d);
    if (pl.argmax) {
      // matvec1's workgroups (split-k: its reduce's, per row of x) left their best rows in #partials;
      // the best of them to out[outRow] by argmax_partials, held back: the next step's embed of that
      // row joins it (see embed)
      const groups = splitk ? Math.ceil(pl.items[0].rows / 256) : memo.dispatches[0].x;
      this.#pendingArgmax = { ...pl.argmax, m: pl.m, groups, partials: memo.partials! };
    }
  }

  /** argmax_partials for `a`, with the embedding of its ids into `embed.out` when given. */
  #argmaxPartials(a: PendingArgmax, embed?: { out: GpuTensor; table: GpuTensor; d: number }): void {
    const table = embed?.table;
    this.#run(
      "argmax_partials",
      {},
      [a.out.buffer, a.partials, table?.buffer ?? this.#dummyRead, embed?.out.buffer ?? this.#dummyRw],
      [
        a.m,
        a.groups,
        a.outRow,
        embed ? 1 : 0,
        embed?.d ?? 0,
        table ? table.matrix?.stride ?? embed!.d : 0,
        table?.matrix?.packed === "f16" ? 1 : 0,
        0,
      ],
      "uuuuuuuu",
      [a.m, 1, 1],
    );
  }

  /**
   * The products of 2 <= m <= 32 rows of x, split over k: wgsl/splitk.wgsl leaves the partial sums
   * of the slices of k in #splitScratch, wgsl/splitk_reduce.wgsl adds them up with the epilogue.
   */
  #splitk(pl: PendingLinear): [Dispatch, Dispatch] {
    const x4 = pl.stride / 4;
    const rows = pl.items.map((it) => it.rows);
    const f16 = pl.packed === "f16";
    const tile = { ...splitkTile(pl.m, rows, x4, f16), ...LINEAR_TUNING.tile };
    const { MB, WG, KC4, S, RW } = tile;
    const wc = f16 ? KC4 / 2 : KC4;
    if (RW * wc > 16 || KC4 % 2 !== 0 || (wc > 1 && wc % 2 !== 0)) {
      const held = `${RW * wc} vec4 of weights a thread (KC4 ${KC4})`;
      throw new ConfigError(
        `Cannot run the split-k kernel: its tile holds ${held}, expected at most 16, even`,
      );
    }
    const l4 = Math.ceil(x4 / S / KC4) * KC4;
    const nsl = Math.ceil(x4 / l4);
    const { os, starts, hasBias, total } = groupsOf(pl, WG * RW);
    const full = splitkFull(tile, pl.m, rows, pl.cols, x4);
    const cols = [0, 0, 0, 0];
    let t = 0;
    for (let j = 0; j < pl.items.length; j++) {
      cols[j] = t;
      t += pl.items[j].rows;
    }
    for (let j = pl.items.length; j < 4; j++) cols[j] = t;
    const floats = nsl * pl.m * (t + 1);
    const scratch = this.#splitScratch = this.#atLeast(this.#splitScratch, 4 * floats);
    const x = pl.norm ? pl.norm.x.buffer : pl.input.buffer;
    const ws: GPUBuffer[] = [];
    for (let j = 0; j < 4; j++) ws.push(pl.items[j]?.w.buffer ?? this.#dummyRead);
    const nw = pl.norm ? pl.norm.w.buffer : this.#dummyRead;
    const n = pl.items.length;
    const hasNorm = pl.norm ? 1 : 0;
    const first = this.#prepare(
      "splitk",
      { WG, MB, KC4, RW, F16: f16 ? 1 : 0, FULL: full ? 1 : 0 },
      [x, ...ws, nw, scratch],
      [...os, ...starts, ...cols, pl.m, pl.cols, x4, n, hasNorm, nsl, l4, t, total],
      "uuuuuuuuuuuuuuuuuuuuu",
      this.#grid2(total * nsl),
    );
    const outs: GPUBuffer[] = [], biases: GPUBuffer[] = [];
    for (let j = 0; j < 4; j++) {
      outs.push(pl.items[j]?.out.buffer ?? this.#dummyRw);
      biases.push(pl.items[j]?.bias?.buffer ?? this.#dummyRead);
    }
    const xn = pl.norm ? pl.norm.out.buffer : this.#dummyRw;
    let last = pl.resid?.buffer ?? this.#dummyRw;
    // the reduce's epilogue: 1 the conv of x's new step, 2 the best row per 256 outputs of each row
    let epi = 0, k = 0, groups = 0;
    let grid = this.#grid1(pl.m * (t + hasNorm * pl.cols), 256);
    let xw = this.#dummyRead, xrows = 0, xstride4 = 0, xpb = 0;
    if (pl.conv) {
      epi = 1;
      k = pl.conv.k;
      outs[2] = pl.conv.state.buffer;
      outs[3] = pl.conv.out.buffer;
      biases[2] = pl.conv.bias?.buffer ?? this.#dummyRead;
      biases[3] = pl.conv.w.buffer;
      hasBias[2] = pl.conv.bias ? 1 : 0;
      if (pl.xp) {
        // x_proj's partial products too, per 256 columns of each row (see #fusedScan)
        xw = pl.xp.w;
        xrows = pl.xp.rows;
        xstride4 = pl.xp.stride / (pl.packed === "f16" ? 8 : 4);
        last = pl.xp.partials;
        xpb = pl.xp.seqs;
        // blocks of xpb sequences and 256 / xpb channels of x, then the other columns, then xn
        const o0 = pl.items[0].rows;
        grid = this.#grid2(
          Math.ceil(pl.m / xpb) * Math.ceil(o0 / (256 / xpb)) + Math.ceil((pl.m * (t - o0)) / 256) +
            Math.ceil((hasNorm * pl.m * pl.cols) / 256),
        );
      }
    } else if (pl.argmax) {
      epi = 2;
      groups = Math.ceil(t / 256);
      last = this.#partials = this.#atLeast(this.#partials, 8 * pl.m * groups);
      grid = this.#grid2(pl.m * groups + Math.ceil((hasNorm * pl.m * pl.cols) / 256));
    }
    const then = this.#prepare(
      "splitk_reduce",
      xpb > 1 ? { XPB: xpb } : {},
      [scratch, ...outs, ...biases, x, nw, xn, last, xw],
      [
        ...os,
        ...cols,
        ...hasBias,
        pl.m,
        pl.cols,
        n,
        nsl,
        t,
        hasNorm,
        pl.resid ? 1 : 0,
        pl.norm?.eps ?? 0,
        epi,
        k,
        groups,
        xrows,
        xstride4,
        pl.packed === "f16" ? 1 : 0,
      ],
      "uuuuuuuuuuuuuuuuuuufuuuuuu",
      grid,
    );
    return [first, then];
  }

  /** The products of m >= 2 rows of x: wgsl/matvec.wgsl. */
  #matvecRows(pl: PendingLinear): Dispatch {
    const x4 = pl.stride / 4;
    // Rows of x per workgroup: a power of two (few pipelines to compile) that workgroup memory holds
    // (x rows and partial sums), at most MATVEC_MAX_MB, blocks about evenly filled.
    const limit = this.#device.limits.maxComputeWorkgroupStorageSize;
    const xmaxOf = (mb: number) => Math.ceil((mb * x4) / 128) * 128;
    let most = MATVEC_MAX_MB;
    while (most > 1 && (most / 2 >= pl.m || xmaxOf(most) * 16 + 256 * most * 4 > limit)) most /= 2;
    const nmb = Math.ceil(pl.m / most);
    let mb = 1;
    while (mb < Math.ceil(pl.m / nmb)) mb *= 2;
    // Output rows per workgroup: 8 (32 with several rows of x, so that staging x in workgroup memory
    // is shared by more weight rows) where that still leaves many workgroups, fewer for small
    // matrices (so that they spread over the GPU), and fewer threads per row for short rows.
    const allRows = pl.items.reduce((a, it) => a + it.rows, 0) * nmb;
    let perGroup = mb > 1 ? 32 : 8;
    while (perGroup > 1 && allRows / perGroup < MATVEC_MIN_GROUPS) perGroup /= 2;
    while (perGroup < 32 && 256 / perGroup > 2 * x4) perGroup *= 2;
    const tpr = 256 / perGroup;
    const xmax = xmaxOf(mb);
    const n = pl.items.length;
    const { os, starts, hasBias, total } = groupsOf(pl, perGroup);
    const buffers = this.#linearBuffers(pl, slotsOf(pl), pl.resid?.buffer ?? this.#dummyRw);
    const last = n === 4 ? total - starts[3] : 0;
    const flags = [pl.m, pl.cols, x4, n, pl.norm ? 1 : 0, pl.resid ? 1 : 0, pl.norm?.eps ?? 0, nmb, last];
    const kernel = pl.packed === "f16" ? "matvec_f16" : "matvec";
    return this.#prepare(
      kernel,
      { WG: 256, TPR: tpr, MB: mb, XMAX: xmax },
      buffers,
      [...os, ...starts, ...hasBias, ...flags],
      "uuuuuuuuuuuuuuuuuufuu",
      this.#grid2(total * nmb),
    );
  }

  /**
   * The products of one row of x (decode at batch 1), with their fused epilogues: wgsl/matvec1.wgsl.
   * With argmax, its workgroups leave their best rows in #partials, one per workgroup (x).
   */
  #matvec1(pl: PendingLinear): Dispatch {
    const x4 = pl.stride / 4;
    const f16 = pl.packed === "f16";
    const stride4 = f16 ? pl.stride / 8 : x4;
    const rows = pl.items.reduce((a, it) => a + it.rows, 0);
    // Threads per output row: from MATVEC1_TUNING.minTpr up, while that leaves fewer than
    // MATVEC1_TUNING.groups workgroups and a thread still has a whole vec4 of the row (short rows and
    // small matrices spread wider).
    let tpr = MATVEC1_TUNING.minTpr;
    while (tpr < 256 && tpr < stride4 && Math.ceil(rows / (256 / tpr)) < MATVEC1_TUNING.groups) tpr *= 2;
    // x_proj's partial products: a set number of channels per workgroup (few partials to add up)
    if (pl.xp) tpr = 256 / XPROJ_TUNING.rowsPerGroup;
    const perGroup = 256 / tpr;
    const n = pl.items.length;
    const { os, starts, hasBias, total } = groupsOf(pl, perGroup);
    const slots = slotsOf(pl);
    let mode = 0, k = 0;
    let extra = this.#dummyRw;
    if (pl.resid) {
      mode = 1;
      extra = pl.resid.buffer;
    } else if (pl.argmax) {
      mode = 2;
      extra = this.#partials = this.#atLeast(this.#partials, 8 * total);
    } else if (pl.conv) {
      mode = 3;
      k = pl.conv.k;
      slots[2] = { out: pl.conv.state.buffer, w: pl.conv.w.buffer, bias: pl.conv.bias?.buffer };
      slots[3] = { out: pl.conv.out.buffer, w: pl.xp?.w };
      hasBias[2] = pl.conv.bias ? 1 : 0;
      if (pl.xp) extra = pl.xp.partials;
    }
    const buffers = this.#linearBuffers(pl, slots, extra);
    const xrows = pl.xp?.rows ?? 0, xstride4 = pl.xp ? pl.xp.stride / (f16 ? 8 : 4) : 0;
    const flags = [pl.cols, stride4, n, total, pl.norm ? 1 : 0, pl.norm?.eps ?? 0, mode, k, xrows, xstride4];
    const np = Math.min(MATVEC1_TUNING.preload, Math.ceil(stride4 / tpr));
    return this.#prepare(
      "matvec1",
      { WG: 256, TPR: tpr, XMAX: Math.ceil(x4 / 64) * 64, F16: f16 ? 1 : 0, MODE: mode, NP: np, COUNT: n },
      buffers,
      [...os, ...starts, ...hasBias, ...flags],
      "uuuuuuuuuuuuuuuuufuuuu",
      [total, 1, 1],
    );
  }

  /**
   * The storage bindings of matvec, matvec1 and gemm (see wgsl/matvec.wgsl): x; out, w and bias of
   * the four matrix slots; norm_w; xn; then `last` (the residual, or matvec1's extra). Dummies where a
   * slot or the norm is unused.
   */
  #linearBuffers(pl: PendingLinear, slots: Slot[], last: GPUBuffer): GPUBuffer[] {
    const buffers: GPUBuffer[] = [pl.norm ? pl.norm.x.buffer : pl.input.buffer];
    for (let j = 0; j < 4; j++) buffers.push(slots[j]?.out ?? this.#dummyRw);
    for (let j = 0; j < 4; j++) buffers.push(slots[j]?.w ?? this.#dummyRead);
    for (let j = 0; j < 4; j++) buffers.push(slots[j]?.bias ?? this.#dummyRead);
    buffers.push(pl.norm ? pl.norm.w.buffer : this.#dummyRead);
    buffers.push(pl.norm ? pl.norm.out.buffer : this.#dummyRw);
    buffers.push(last);
    return buffers;
  }

  /**
   * `buf` when it holds `bytes`, else a new buffer of that many bytes (to 16) with `buf` back in the
   * pool (directly: this runs while held-back ops are being dispatched, which free() would emit).
   */
  #atLeast(buf: GPUBuffer | undefined, bytes: number): GPUBuffer {
    if (buf && buf.size >= bytes) return buf;
    if (buf) this.#release(buf);
    return this.#buffer(Math.max(16, Math.ceil(bytes / 16) * 16));
  }

  /** Products on m >= 2 rows of x (and rows too long for matvec): the tiled kernel, wgsl/gemm.wgsl. */
  #gemm(pl: PendingLinear): void {
    const norm = pl.norm;
    if (norm && pl.m > MATVEC_MAX_M && GEMM_TUNING.prenorm !== false) {
      // Prefill: the norm as a pass of its own (xn written once), then the plain product on xn.
      this.#rmsNorm(norm.out, norm.x, norm.w, norm.eps, norm.m, norm.d);
      pl = { ...pl, norm: undefined };
    }
    for (const d of this.#gemmDispatches(pl)) this.#replay(d);
  }

  /** The tiled kernel's dispatches for `pl` (one, or two when split over k), prepared. */
  #gemmDispatches(pl: PendingLinear): Dispatch[] {
    const rows = pl.items.map((it) => it.rows);
    const storage = this.#device.limits.maxComputeWorkgroupStorageSize;
    const threads = this.adapter.isFallbackAdapter ? GEMM_FALLBACK_THREADS : GEMM_MAX_THREADS;
    const canSplit = !(pl.norm && pl.resid);
    const forced = GEMM_TUNING.plan;
    const { tile, splits, tps } = forced && (forced.splits === 1 || canSplit)
      ? { tile: forced.tile, ...gemmSplitsOf(forced.tile, pl.cols, forced.splits) }
      : gemmPlan(pl.m, rows, pl.cols, storage, threads, canSplit);
    const n = pl.items.length;
    const { os, starts, hasBias, total } = groupsOf(pl, tile.BN);
    const buffers = this.#linearBuffers(pl, slotsOf(pl), pl.resid?.buffer ?? this.#dummyRw);
    const nmb = Math.ceil(pl.m / tile.BM);
    const flags = [
      pl.m,
      pl.cols,
      pl.stride / 4,
      n,
      pl.norm ? 1 : 0,
      pl.resid ? 1 : 0,
      pl.norm?.eps ?? 0,
      nmb,
      total,
    ];
    const constants: Record<string, number> = { ...tile, F16: pl.packed === "f16" ? 1 : 0 };
    if (GEMM_TUNING.full !== false && gemmFull(tile, pl.m, rows, pl.cols)) constants.FULL = 1;
    const params = [...os, ...starts, ...hasBias, ...flags];
    const types = "uuuuuuuuuuuuuuuuuufuuuuu";
    if (splits === 1) {
      return [
        this.#prepare("gemm", constants, buffers, [...params, 0, 1, 0], types, this.#grid2(total * nmb)),
      ];
    }
    // Split over k: the splits' sums in #splitScratch (the xn binding, or resid's with the norm), then
    // added up with the epilogue.
    const cells = pl.m * total * tile.BN;
    const sums = this.#splitScratch = this.#atLeast(this.#splitScratch, 4 * splits * (cells + pl.m));
    buffers[pl.norm ? 15 : 14] = sums;
    const threadsPer = (tile.BM / tile.TM) * (tile.BN / tile.TN) * tile.KS;
    const reduce = this.#grid2(Math.ceil(cells / threadsPer));
    return [
      this.#prepare(
        "gemm",
        constants,
        buffers,
        [...params, 1, splits, tps],
        types,
        this.#grid2(splits * total * nmb),
      ),
      this.#prepare("gemm", constants, buffers, [...params, 2, splits, tps], types, reduce),
    ];
  }

  conv1dSilu(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | undefined, state: Tensor): void {
    const pl = this.#pendingLinear;
    // One new step: the conv runs in the epilogue of the product that makes x, for one sequence
    // (matvec1) or 2..32 on split-k (its reduce).
    if (
      pl && pl.items.length <= 2 && !pl.resid && !pl.conv && !pl.argmax &&
      (pl.m === 1 || (pl.m >= 2 && this.#route(pl) === "splitk"))
    ) {
      const xs = gt(x), ws = gt(w), o = gt(out), st = gt(state);
      const at = pl.items.findIndex((it) => it.out === xs);
      const [b, l, c] = xs.shape;
      const k = ws.shape[1];
      if (
        at >= 0 && b === pl.m && l === 1 && c === pl.items[at].rows && ws.shape[0] === c &&
        st.size === b * c * (k - 1) && !writes(pl, o) && !writes(pl, st) && o !== xs && o !== st
      ) {
        if (at !== 0) pl.items.unshift(...pl.items.splice(at, 1));
        pl.conv = { out: o, w: ws, bias: bias ? gt(bias) : undefined, state: st, k };
        // still held, as x_proj's products on `out` may join it (see #holdAfterConv)
        return;
      }
    }
    this.#emit();
    const o = gt(out), xs = gt(x), ws = gt(w), bs = bias ? gt(bias) : undefined, st = gt(state);
    const memo = ws.opMemo;
    if (memo && memo.a === o && memo.b === xs && memo.c === bs && memo.d === st) {
      this.#replay(memo.dispatch); // the same one-dispatch conv as last time on these weights
      return;
    }
    const [b, l, c] = xs.shape;
    const k = ws.shape[1];
    const buffers = [o.buffer, xs.buffer, ws.buffer, bs?.buffer ?? this.#dummyRead, st.buffer];
    const params = [b, l, c, k, bs ? 1 : 0, 0, 0, 0];
    if (l >= CONV_PARALLEL_L) {
      // One thread per output, then the state update in a second dispatch (it overwrites inputs).
      params[5] = 1;
      this.#run("conv1d_silu", { WG: 64 }, buffers, params, "uuuuuuuu", this.#grid1(b * l * c, 64));
      params[5] = 2;
      this.#run("conv1d_silu", { WG: 64 }, buffers, params, "uuuuuuuu", this.#grid1(b * c, 64));
      return;
    }
    const dispatch = this.#prepare(
      "conv1d_silu",
      { WG: 64 },
      buffers,
      params,
      "uuuuuuuu",
      this.#grid1(b * c, 64),
    );
    ws.opMemo = { a: o, b: xs, c: bs, d: st, eps: 0, dispatch };
    this.#replay(dispatch);
  }

  selectiveScan(a: ScanArgs): void {
    if (gt(a.x).shape[1] >= SCAN_CHUNKED_L && gt(a.A).shape[1] <= 256) {
      this.#emit();
      this.#chunkedScan(a);
      return;
    }
    const held = this.#pendingLinear;
    if (held?.dtProj) {
      if (this.#fusedScan(held, a)) return;
      // Not this scan's: the products as recorded, dt_proj still held back for the fusion below.
      this.#pendingLinear = undefined;
      this.#matvec(held);
      this.#matvec(held.xproj!);
      this.#pendingLinear = held.dtProj;
    }
    // dt_proj held back as a single matrix-vector product on dt: fused into the scan.
    const pl = this.#pendingLinear;
    let proj: PendingLinear["items"][0] | undefined;
    let low: GpuTensor | undefined;
    if (
      pl && pl.items.length === 1 && !pl.norm && !pl.resid && !pl.conv && pl.items[0].out === a.dt &&
      pl.items[0].bias
    ) {
      proj = pl.items[0];
      low = pl.input;
      this.#pendingLinear = undefined;
    }
    this.#emit();
    const t = [a.y, a.x, a.dt, a.A, a.B, a.C, a.D, a.z, a.h].map(gt);
    const [b, l, di] = t[1].shape;
    const n = t[3].shape[1];
    const buffers = t.map((x) => x.buffer);
    buffers.push(low?.buffer ?? this.#dummyRead, proj?.w.buffer ?? this.#dummyRead);
    buffers.push(proj?.bias?.buffer ?? this.#dummyRead);
    const stepBuffers = [...buffers, this.#dummyRead];
    stepBuffers[9] = low?.buffer ?? this.#dummyRw; // read_write in scan_step
    const r = proj ? proj.w.shape[1] : 0;
    const stride = proj?.w.matrix?.stride ?? 0;
    const f16 = proj?.w.matrix?.packed === "f16" ? 1 : 0;
    if (l === 1 && n <= 256) {
      // One step: K = n / q threads per channel (q states each), the channels in parallel.
      const k = n / scanStepStates(n);
      const wg = Math.max(SCAN_TUNING.stepGroup, k);
      this.#run(
        "scan_step",
        scanStepConstants(n, wg, r, f16 === 1),
        stepBuffers,
        [b, di, stride, 0],
        "uuuu",
        this.#grid1(b * di, Math.floor(wg / k)),
      );
      return;
    }
    const wg = scanGroup(2 * n, 32); // h and A in workgroup memory
    this.#run(
      "selective_scan",
      { WG: wg, N: n, R: r },
      buffers,
      [b, l, di, n, proj ? 1 : 0, r, stride, f16],
      "uuuuuuuu",
      this.#grid1(b * di, wg),
    );
  }

  /**
   * One step with x_proj and dt_proj fused (one sequence, or 2..32 on split-k), when the products held
   * back after the conv (`pl`) are the scan's: x_proj's three products on the conv's output make
   * exactly its dt_low (the input of dt_proj), B and C, and dt_proj makes its dt. Then the in_proj +
   * conv dispatch (matvec1, or split-k's reduce) also leaves x_proj's partial products per workgroup
   * (over its channels of xc, the matrices joined: #joined), and scan_step adds them up per sequence
   * (XG groups) and writes dt_low, B and C out: one dispatch fewer. Whether it did (nothing recorded
   * when not).
   */
  #fusedScan(pl: PendingLinear, a: ScanArgs): boolean {
    const t = [a.y, a.x, a.dt, a.A, a.B, a.C, a.D, a.z, a.h].map(gt);
    const [b, l, di] = t[1].shape;
    const n = t[3].shape[1];
    const xp = pl.xproj!, dp = pl.dtProj!, proj = dp.items[0];
    // one sequence on matvec1, or 2..32 on split-k (the conv was taken only there)
    const splitk = b >= 2 && this.#route(pl) === "splitk";
    if (
      b !== pl.m || (b !== 1 && !splitk) || l !== 1 || n > 256 || t[1] !== pl.conv!.out ||
      t[2] !== proj.out || !proj.bias || xp.items.length !== 3 || xp.packed !== pl.packed ||
      (b === 1 && XPROJ_TUNING.rowsPerGroup % 8 !== 0)
    ) return false;
    let low, bm, cm;
    for (const it of xp.items) {
      if (it.out === dp.input) low = it;
      else if (it.out === t[4]) bm = it;
      else if (it.out === t[5]) cm = it;
    }
    if (!low || !bm || !cm) return false;
    const r = low.rows;
    if (bm.rows !== n || cm.rows !== n || dp.cols !== r || t[4].size !== b * n || t[5].size !== b * n) {
      return false;
    }
    if (touches(pl, t[0]) || touches(pl, t[8]) || touches(pl, t[3]) || touches(pl, t[6])) return false;
    this.#pendingLinear = undefined;
    this.#emit();
    const rows = r + 2 * n;
    // x_proj's partial products per sequence: one per workgroup of matvec1's channels, or of the
    // split-k reduce's (seqs sequences of 256 / seqs channels)
    let seqs = 1;
    if (splitk) {
      seqs = [1, 2, 4, 8].includes(XPROJ_TUNING.splitkSeqs) ? XPROJ_TUNING.splitkSeqs : 1;
      while (seqs > 1 && seqs / 2 >= b) seqs /= 2;
    }
    const groups = Math.ceil(pl.items[0].rows / (splitk ? 256 / seqs : XPROJ_TUNING.rowsPerGroup));
    const quads = Math.ceil(rows / 4);
    const partials = this.#xpPartials = this.#atLeast(this.#xpPartials, 16 * quads * groups * b);
    const w = this.#joined([low.w, bm.w, cm.w]);
    pl.xp = { w, rows, stride: xp.stride, partials, seqs };
    this.#matvec(pl);
    const k = n / scanStepStates(n);
    const wg = Math.max(XPROJ_TUNING.scanGroup, k);
    const buffers = t.map((x) => x.buffer);
    buffers.push(dp.input.buffer, proj.w.buffer, proj.bias.buffer, partials);
    const A = t[3];
    let memo = A.scanMemo;
    let same = !!memo && memo.b === b && memo.di === di && memo.wg === wg && memo.groups === groups;
    for (let i = 0; same && i < buffers.length; i++) same = memo!.buffers[i] === buffers[i];
    if (!memo || !same) {
      // slices of the groups: as many as the threads take, at most one per 8 groups
      const xs = Math.max(1, Math.min(Math.floor(wg / quads), Math.ceil(groups / 8)));
      const matrix = proj.w.matrix!;
      const dispatch = this.#prepare(
        "scan_step",
        { ...scanStepConstants(n, wg, r, matrix.packed === "f16"), XG: groups, XS: xs, XP: (xs + 1) * quads },
        buffers,
        [b, di, matrix.stride, 0],
        "uuuu",
        // per sequence, its channels in workgroups of wg / k
        this.#grid2(b * Math.ceil(di / Math.floor(wg / k))),
      );
      memo = A.scanMemo = { buffers, b, di, wg, groups, dispatch };
    }
    this.#replay(memo.dispatch);
    return true;
  }

  /**
   * The matrices `ws` (same stride and packing) one under another in one buffer, copied on the GPU
   * once and kept with ws[0] (matrices are never written after upload).
   */
  #joined(ws: GpuTensor[]): GPUBuffer {
    const known = ws[0].joined;
    let same = !!known && known.ws.length === ws.length;
    for (let i = 1; same && i < ws.length; i++) same = known!.ws[i] === ws[i];
    if (same) return known!.buffer;
    if (known) this.#release(known.buffer);
    const total = ws.reduce((a, w) => a + w.bytes, 0);
    const buffer = this.#buffer(Math.max(16, Math.ceil(total / 16) * 16));
    // a submission of its own, now: the weights are already there, and every op recorded after this
    // is submitted after it (recordOnly, which drops what it records, keeps it too)
    const encoder = this.#device.createCommandEncoder();
    let at = 0;
    for (const w of ws) {
      encoder.copyBufferToBuffer(w.buffer, 0, buffer, at, w.bytes);
      at += w.bytes;
    }
    this.#device.queue.submit([encoder.finish()]);
    ws[0].joined = { ws: ws.slice(), buffer };
    return buffer;
  }

  /**
   * The selective scan in chunks of SCAN_CHUNK steps: each chunk's end state from zero, the
   * chunks' start states by a prefix scan over chunks, then each chunk again from its start state.
   */
  #chunkedScan(a: ScanArgs): void {
    const t = [a.y, a.x, a.dt, a.A, a.B, a.C, a.D, a.z].map(gt);
    const h = gt(a.h);
    const [b, l, di] = t[1].shape;
    const n = t[3].shape[1];
    const nc = Math.ceil(l / SCAN_CHUNK);
    const need = 4 * b * nc * di * (n + 1); // (b, nc, di, n) states, (b, nc, di) delta sums
    const hc = this.#scanScratch = this.#atLeast(this.#scanScratch, need);
    const ch = scanChunkChannels(n);
    const buffers = [...t.map((x) => x.buffer), hc];
    // workgroup memory: the staged (step, channel) tile's two values, then two buffers of a value per thread
    const over = { WG: ch * n, CH: ch, N: n, WM: Math.max(2 * SCAN_CHUNK * ch, 2 * ch * n) };
    const groups = this.#grid2(b * nc * Math.ceil(di / ch));
    const params = [b, l, di, n, nc, 0, 0, 0];
    this.#run("scan_chunks", { ...over, MODE: 0 }, buffers, params, "uuuuuuuu", groups);
    // P chunks at a time (a power of two), S = 256 / P states per workgroup
    const P = Math.min(SCAN_TUNING.carryChunks, 2 ** Math.ceil(Math.log2(nc)));
    this.#run(
      "scan_carry",
      { WG: 256, P },
      [hc, h.buffer, t[3].buffer],
      [b, nc, di, n],
      "uuuu",
      this.#grid2(b * Math.ceil((di * n) / (256 / P))),
    );
    this.#run("scan_chunks", { ...over, MODE: 1 }, buffers, params, "uuuuuuuu", groups);
  }

  ssdScan(a: SsdArgs): void {
    this.#emit();
    if (gt(a.x).shape[1] >= SSD_CHUNK) {
      this.#chunkedSsd(a);
      return;
    }
    const t = [a.y, a.x, a.dt, a.dtBias, a.A, a.B, a.C, a.D, a.state].map(gt);
    const [b, l, h, p] = t[1].shape;
    const [, , g, n] = t[5].shape;
    const wg = scanGroup(n, 32);
    this.#run(
      "ssd_scan",
      { WG: wg, N: n },
      t.map((x) => x.buffer),
      [b, l, h, p, g, n, a.dtMin, a.dtMax],
      "uuuuuuff",
      this.#grid1(b * h * p, wg),
    );
  }

  /** The SSD scan in chunks of SSD_CHUNK steps: chunk states from zero, carry, quadratic form per chunk. */
  #chunkedSsd(a: SsdArgs): void {
    const t = [a.y, a.x, a.dt, a.dtBias, a.A, a.B, a.C, a.D].map(gt);
    const state = gt(a.state);
    const [b, l, h, p] = t[1].shape;
    const [, , g, n] = t[5].shape;
    const nc = Math.ceil(l / SSD_CHUNK);
    const need = 4 * b * nc * h * (p * n + 1); // (b, nc, h, p, n) states, (b, nc, h) delta sums
    const hc = this.#scanScratch = this.#atLeast(this.#scanScratch, need);
    const buffers = [...t.map((x) => x.buffer), hc];
    const over = { WG: 256, T: SSD_CHUNK };
    const params = [b, l, h, p, g, n, nc, 0, a.dtMin, a.dtMax, 0, 0];
    const grid = this.#grid2(b * nc * h);
    this.#run("ssd_chunks", over, buffers, params, "uuuuuuuuffuu", grid);
    this.#run(
      "ssd_carry",
      {},
      [hc, state.buffer, t[4].buffer],
      [b, nc, h, p * n],
      "uuuu",
      this.#grid1(b * h * p * n, 256),
    );
    params[7] = 1;
    this.#run("ssd_chunks", over, buffers, params, "uuuuuuuuffuu", grid);
  }

  gatedRmsNorm(out: Tensor, y: Tensor, z: Tensor, w: Tensor, eps: number, groupSize: number): void {
    this.#emit();
    const o = gt(out), ys = gt(y), zs = gt(z), ws = gt(w);
    let memo = ws.opMemo;
    if (
      !memo || memo.a !== o || memo.b !== ys || memo.c !== zs || memo.eps !== eps ||
      memo.groupSize !== groupSize
    ) {
      const groups = ys.size / groupSize;
      const dispatch = this.#prepare(
        "gated_rms_norm",
        {},
        [o.buffer, ys.buffer, zs.buffer, ws.buffer],
        [groups, groupSize, ws.shape[0], eps],
        "uuuf",
        this.#grid2(groups),
      );
      memo = ws.opMemo = { a: o, b: ys, c: zs, eps, groupSize, dispatch };
    }
    this.#replay(memo.dispatch);
  }

  sample(a: SampleArgs): void {
    const pl = this.#pendingLinear;
    if (
      pl && pl.m === 1 && pl.items.length === 1 && pl.items[0].out === a.logits && !pl.resid && !pl.conv &&
      !pl.argmax && a.params.temperature <= 0 && !a.seen
    ) {
      // Greedy at batch 1: each workgroup of the lm_head keeps its best row, a second dispatch the best.
      pl.argmax = { out: gt(a.out), outRow: a.outRow };
      this.#emit();
      return;
    }
    if (
      pl && pl.m >= 2 && pl.items.length === 1 && pl.items[0].out === a.logits && !pl.resid && !pl.conv &&
      !pl.argmax && a.params.temperature <= 0 && !a.seen && gt(a.logits).shape[0] === pl.m &&
      this.#route(pl) === "splitk"
    ) {
      // Greedy at batch 2..32 on split-k: the reduce's workgroups keep their best rows, a second
      // dispatch the best of each row.
      pl.argmax = { out: gt(a.out), outRow: a.outRow };
      this.#emit();
      return;
    }
    this.#emit();
    const out = gt(a.out), logits = gt(a.logits), seen = a.seen ? gt(a.seen) : undefined;
    const [b, v] = logits.shape;
    const pr = a.params;
    const hasSeen = seen ? 1 : 0;
    const seenBuf = seen?.buffer ?? this.#dummyRw;
    if (pr.temperature <= 0) {
      this.#run(
        "argmax",
        {},
        [out.buffer, logits.buffer, seenBuf],
        [b, v, a.outRow, hasSeen, pr.repetitionPenalty, 0, 0, 0],
        "uuuufuuu",
        [b, 1, 1],
      );
      return;
    }
    const need = Math.max(16, b * 2 * v * 4);
    this.#scratch = this.#atLeast(this.#scratch, need);
    this.#run(
      "sample",
      {},
      [out.buffer, logits.buffer, seenBuf, this.#scratch],
      [
        b,
        v,
        a.outRow,
        hasSeen,
        pr.repetitionPenalty,
        pr.temperature,
        pr.topK,
        pr.topP,
        pr.minP,
        pr.seed,
        a.step,
        0,
      ],
      "uuuuffuffuuu",
      [b, 1, 1],
    );
  }

  /** Compiles every kernel's module now; a shader the device refuses is a BackendError. */
  async compileShaders(): Promise<void> {
    for (const kernel of Object.keys(KERNELS)) {
      const module = this.#module(kernel);
      const info = await module.getCompilationInfo();
      const err = info.messages.find((msg) => msg.type === "error");
      if (err) {
        throw new BackendError(
          `Cannot create webgpu backend: shader wgsl/${kernel}.wgsl does not compile on this device: ${err.message}`,
        );
      }
    }
  }

  /** Submits every recorded op and waits until the GPU has run them. */
  async sync(): Promise<void> {
    this.#check();
    this.#flush();
    await this.#device.queue.onSubmittedWorkDone();
    this.#throwIfFailed();
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    try {
      this.#flush();
    } catch {
      // disposing anyway
    }
    this.#disposed = true;
    for (const b of this.#owned) b.destroy();
    this.#owned.clear();
    this.#pool.clear();
    this.#bindGroups.clear();
    this.#device.destroy();
    await Promise.resolve();
  }

  // ---- machinery ----

  #check(): void {
    if (this.#disposed) throw new BackendError("Cannot use webgpu backend: it was disposed");
    if (this.#lost) throw new BackendError(`Cannot use webgpu backend: device is lost (${this.#lost})`);
  }

  #throwIfFailed(): void {
    if (this.#lost) throw new BackendError(`Cannot run on webgpu: device is lost (${this.#lost})`);
    if (this.#failure) {
      const f = this.#failure;
      this.#failure = undefined;
      throw new BackendError(`Cannot run on webgpu: ${f}`);
    }
  }

  #buffer(size: number, usage = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST) {
    const buf = this.#device.createBuffer({ size, usage });
    this.#owned.add(buf);
    return buf;
  }

  /** A new buffer holding `data` (written at creation: no ordering with recorded ops needed). */
  #filled(data: Float32Array | Uint16Array): GPUBuffer {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    const buf = this.#device.createBuffer({
      size,
      usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buf.unmap();
    this.#owned.add(buf);
    return buf;
  }

  /** Workgroups for `n` threads in groups of `wg`, split over x and y. */
  #grid1(n: number, wg: number): [number, number, number] {
    return this.#grid2(Math.ceil(n / wg));
  }

  /** `groups` workgroups (at least one), split over x and y. */
  #grid2(groups: number): [number, number, number] {
    const g = Math.max(1, groups);
    if (g <= MAX_GROUPS) return [g, 1, 1];
    const y = Math.ceil(g / MAX_GROUPS);
    return [Math.ceil(g / y), y, 1];
  }

  #layout(kernel: string) {
    let l = this.#layouts.get(kernel);
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [
        {
          binding: 0,
          visibility: ShaderStage.COMPUTE,
          buffer: { type: "uniform", hasDynamicOffset: true },
        },
        ...KERNELS[kernel].map((access, i): GPUBindGroupLayoutEntry => ({
          binding: i + 1,
          visibility: ShaderStage.COMPUTE,
          buffer: { type: access === "rw" ? "storage" : "read-only-storage" },
        })),
      ];
      const group = this.#device.createBindGroupLayout({ entries });
      l = { group, pipeline: this.#device.createPipelineLayout({ bindGroupLayouts: [group] }) };
      this.#layouts.set(kernel, l);
    }
    return l;
  }

  #module(kernel: string): GPUShaderModule {
    let module = this.#modules.get(kernel);
    if (!module) {
      module = this.#device.createShaderModule({ code: SHADERS[kernel], label: kernel });
      this.#modules.set(kernel, module);
    }
    return module;
  }

  #pipeline(kernel: string, overrides: Record<string, number>): GPUComputePipeline {
    let list = this.#pipelines.get(kernel);
    if (!list) this.#pipelines.set(kernel, list = []);
    outer: for (let e = 0; e < list.length; e++) {
      const entry = list[e];
      let i = 0;
      for (const k in overrides) {
        if (entry.names[i] !== k || entry.values[i] !== overrides[k]) continue outer;
        i++;
      }
      if (i === entry.names.length) return entry.pipeline;
    }
    let key = kernel;
    for (const k in overrides) key += `|${k}=${overrides[k]}`;
    const module = this.#module(kernel);
    this.#device.pushErrorScope("validation");
    const pipeline = this.#device.createComputePipeline({
      label: key,
      layout: this.#layout(kernel).pipeline,
      compute: { module, entryPoint: kernel, constants: overrides },
    });
    this.#device.popErrorScope().then((err) => {
      if (err) this.#failure ??= `pipeline ${key} failed: ${err.message}`;
    });
    list.unshift({ names: Object.keys(overrides), values: Object.values(overrides), pipeline });
    return pipeline;
  }

  /**
   * The bind group of `kernel` over `buffers`, cached by a hash of the buffers' ids (property loads
   * and one map lookup, no strings), the buffers compared on a hit.
   */
  #bindGroup(kernel: string, buffers: GPUBuffer[]): GPUBindGroup {
    let h = 0;
    for (let i = 0; i < buffers.length; i++) {
      const b = buffers[i] as TaggedBuffer;
      const id = b[BUFFER_ID] ?? (b[BUFFER_ID] = this.#nextId++);
      h = Math.imul(h ^ id, 0x9e3779b1) + i;
    }
    h &= 0x3fffffff; // a small integer key (no heap number)
    let cache = this.#bindGroups.get(kernel);
    if (!cache) this.#bindGroups.set(kernel, cache = new Map());
    let list = cache.get(h);
    if (list) {
      outer: for (let e = 0; e < list.length; e++) {
        const known = list[e].buffers;
        if (known.length !== buffers.length) continue;
        for (let i = 0; i < known.length; i++) if (known[i] !== buffers[i]) continue outer;
        return list[e].group;
      }
    } else cache.set(h, list = []);
    const group = this.#device.createBindGroup({
      layout: this.#layout(kernel).group,
      entries: [
        { binding: 0, resource: { buffer: this.#uniform, size: SLOT } },
        ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    });
    list.push({ buffers: buffers.slice(), group });
    return group;
  }

  /** Records one dispatch of `kernel`; params are written as typed by `types` (u: u32, f: f32). */
  #run(
    kernel: string,
    overrides: Record<string, number>,
    buffers: GPUBuffer[],
    params: number[],
    types: string,
    groups: [number, number, number],
  ): void {
    const pipeline = this.#pipeline(kernel, overrides);
    const bindGroup = this.#bindGroup(kernel, buffers);
    const base = this.#slot();
    packParams(this.#arenaU32, this.#arenaF32, base, params, types);
    this.#dispatch(kernel, pipeline, bindGroup, groups[0], groups[1], groups[2]);
  }

  /** What #run would record, kept to be recorded again by #replay (its Params as 32-bit words). */
  #prepare(
    kernel: string,
    overrides: Record<string, number>,
    buffers: GPUBuffer[],
    params: number[],
    types: string,
    groups: [number, number, number],
  ): Dispatch {
    const words = new Uint32Array(params.length);
    packParams(words, new Float32Array(words.buffer), 0, params, types);
    const pipeline = this.#pipeline(kernel, overrides);
    const bindGroup = this.#bindGroup(kernel, buffers);
    return { kernel, pipeline, bindGroup, words, x: groups[0], y: groups[1], z: groups[2] };
  }

  /** Records a prepared dispatch. */
  #replay(d: Dispatch): void {
    const base = this.#slot();
    const u32 = this.#arenaU32, words = d.words;
    for (let i = 0; i < words.length; i++) u32[base + i] = words[i];
    this.#dispatch(d.kernel, d.pipeline, d.bindGroup, d.x, d.y, d.z);
  }

  /** The first word of the next Params slot of the arena (the arena submitted first when full). */
  #slot(): number {
    this.#check();
    if (this.#slots === SLOTS) this.#flush();
    return this.#slots * (SLOT / 4);
  }

  /** Records the dispatch whose Params were just written to the next slot. */
  #dispatch(
    kernel: string,
    pipeline: GPUComputePipeline,
    bindGroup: GPUBindGroup,
    x: number,
    y: number,
    z: number,
  ): void {
    if (this.#clears.length > 0) this.#endPass(); // the clears first
    const pass = this.#pass ?? this.#computePass();
    if (pipeline !== this.#lastPipeline) {
      pass.setPipeline(pipeline);
      this.#lastPipeline = pipeline;
    }
    this.#offset[0] = this.#slots * SLOT;
    pass.setBindGroup(0, bindGroup, this.#offset, 0, 1);
    pass.dispatchWorkgroups(x, y, z);
    this.#slots++;
    if (this.#timestamps?.names) {
      // profiling each dispatch: a pass of its own
      this.#timestamps.names.push(kernel);
      this.#endPass();
    }
  }

  /**
   * GPU time in microseconds of the ops that `record` records, by timestamp queries around the compute
   * passes they fill (for benchmarks; undefined where the device lacks timestamp-query). Keep it under
   * SLOTS dispatches: a submission in between would time only its last part.
   */
  async timeGpu(record: () => void): Promise<number | undefined> {
    return (await this.profileGpu(record, false))?.total;
  }

  /**
   * Like timeGpu; with `perDispatch`, each dispatch gets a compute pass of its own with its own
   * timestamps, and `kernels` sums the GPU time of each kernel (passes cost extra: the total grows).
   * At most 2048 dispatches.
   */
  async profileGpu(
    record: () => void,
    perDispatch = true,
  ): Promise<
    {
      total: number;
      kernels: Record<string, { count: number; us: number }>;
      dispatches: { name: string; us: number }[];
    } | undefined
  > {
    if (!this.#device.features.has("timestamp-query")) return undefined;
    this.#flush();
    const count = perDispatch ? 4096 : 2;
    const querySet = this.#device.createQuerySet({ type: "timestamp", count });
    const resolve = this.#device.createBuffer({
      size: 8 * count,
      usage: 0x200 /* QUERY_RESOLVE */ | BufferUsage.COPY_SRC,
    });
    const staging = this.#device.createBuffer({
      size: 8 * count,
      usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST,
    });
    const ts = { querySet, first: true, names: perDispatch ? [] as string[] : undefined };
    this.#timestamps = ts;
    try {
      record();
      this.#emit();
    } finally {
      this.#timestamps = undefined;
    }
    const used = perDispatch ? 2 * ts.names!.length : 2;
    const encoder = this.#endPass();
    encoder.resolveQuerySet(querySet, 0, used, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, staging, 0, 8 * used);
    this.#flush();
    await staging.mapAsync(MapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0, 8 * used));
    staging.destroy();
    resolve.destroy();
    querySet.destroy();
    const kernels: Record<string, { count: number; us: number }> = {};
    const dispatches = (ts.names ?? []).map((name, i) => ({
      name,
      us: Number(t[2 * i + 1] - t[2 * i]) / 1000,
    }));
    for (const { name, us } of dispatches) {
      const k = kernels[name] ??= { count: 0, us: 0 };
      k.count++;
      k.us += us;
    }
    return { total: Number(t[used - 1] - t[0]) / 1000, kernels, dispatches };
  }

  /**
   * For benchmarks: the CPU cost of recording what `record` issues, which is then dropped unrun (so
   * tensors keep their contents). Returns the milliseconds spent recording (the ops' JavaScript down to
   * the encoder calls), the milliseconds of the command encoder's finish(), and the dispatches. Keep it
   * under 4096 dispatches (a full uniform arena is submitted: that throws here).
   */
  recordOnly(record: () => void): { recordMs: number; finishMs: number; dispatches: number } {
    this.#flush();
    const submissions = this.#submissions;
    const t0 = performance.now();
    record();
    this.#emit();
    const t1 = performance.now();
    const dispatches = this.#slots;
    const encoder = this.#endPass();
    encoder.finish();
    const t2 = performance.now();
    this.#encoder = undefined;
    this.#slots = 0;
    if (this.#submissions !== submissions) {
      throw new BackendError(
        `Cannot time recording: it was submitted, expected fewer than ${SLOTS} dispatches`,
      );
    }
    return { recordMs: t1 - t0, finishMs: t2 - t1, dispatches };
  }

  #computePass(): GPUComputePassEncoder {
    if (!this.#pass) {
      this.#encoder ??= this.#device.createCommandEncoder();
      const ts = this.#timestamps;
      const at = ts?.names ? 2 * ts.names.length : 0;
      this.#pass = this.#encoder.beginComputePass(
        ts
          ? {
            timestampWrites: {
              querySet: ts.querySet,
              beginningOfPassWriteIndex: ts.first || ts.names ? at : undefined,
              endOfPassWriteIndex: at + 1,
            },
          }
          : undefined,
      );
      if (ts) ts.first = false;
      this.#lastPipeline = undefined;
    }
    return this.#pass;
  }

  /** Ends the compute pass, if any, and records the clears that zeros asked for. */
  #endPass(): GPUCommandEncoder {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = undefined;
    }
    const encoder = this.#encoder ??= this.#device.createCommandEncoder();
    if (this.#clears.length > 0) {
      for (const buf of this.#clears) encoder.clearBuffer(buf);
      this.#clears = [];
    }
    return encoder;
  }

  /** Submits what was recorded, with its Params. */
  #flush(): void {
    this.#emit();
    if (!this.#encoder && this.#clears.length === 0) return;
    const encoder = this.#endPass();
    if (this.#slots > 0) this.#device.queue.writeBuffer(this.#uniform, 0, this.#arena, 0, this.#slots * SLOT);
    const commands = encoder.finish();
    // reads waiting for their mapping (see #readBytes): theirs is the work submitted so far
    const maps = this.#maps;
    this.#maps = [];
    for (const start of maps) start();
    this.#device.queue.submit([commands]);
    this.#submissions++;
    this.#encoder = undefined;
    this.#slots = 0;
  }

  async #readBytes(g: GpuTensor): Promise<ArrayBuffer> {
    this.#emit();
    this.#check();
    const size = Math.max(4, Math.ceil(g.bytes / 4) * 4);
    const staging = this.#device.createBuffer({
      size,
      usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST,
    });
    this.#endPass().copyBufferToBuffer(g.buffer, 0, staging, 0, size);
    this.#flush();
    // Deno's mapAsync blocks until the GPU has run everything submitted so far. Called now, it would
    // keep the CPU idle while the GPU runs this submission, then the GPU idle while the CPU records
    // the next. So the mapping starts just before the next submission (#flush), when the CPU has
    // recorded it, or when the caller yields, whichever comes first.
    const mapped = new Promise<void>((resolve, reject) => {
      let started = false;
      const start = () => {
        if (started) return;
        started = true;
        staging.mapAsync(MapMode.READ).then(resolve, reject);
      };
      this.#maps.push(start);
      setTimeout(start, 0);
    });
    try {
      await mapped;
    } catch (e) {
      staging.destroy();
      this.#throwIfFailed();
      throw new BackendError(`Cannot read from webgpu: mapAsync failed: ${(e as Error).message}`);
    }
    const bytes = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.#throwIfFailed();
    return bytes;
  }
}

/** A tile of the tiled kernel, wgsl/gemm.wgsl: its override constants (see the kernel's header). */
export interface GemmTile {
  /** rows of x, and of w, per workgroup */
  BM: number;
  BN: number;
  /** rows of x, and of w, per thread */
  TM: number;
  TN: number;
  /** columns per k-tile */
  BK: number;
  /** k-slices of threads per workgroup */
  KS: number;
}

/**
 * The tiled kernel takes smaller tiles until it has this many workgroups (one per SM of an H100),
 * and splits k over slices of threads below twice as many.
 */
const GEMM_MIN_GROUPS = 132;
/**
 * Threads per workgroup of the tiled kernel, at most: on a fallback (software) adapter fewer, and
 * k-tiles of 8 columns, because llvmpipe takes seconds to compile each larger tile.
 */
const GEMM_MAX_THREADS = 256;
const GEMM_FALLBACK_THREADS = 64;
/** Each k-slice of the tiled kernel gets at least this many k-tiles. */
const GEMM_MIN_TILES = 4;

/**
 * The tile of the tiled kernel for m rows of x times matrices of `rows` rows and `cols` columns:
 * BM rows of x per workgroup as few as cover m (8, 16, 32, 64 from 33 rows on), the first tile that
 * makes GEMM_MIN_GROUPS workgroups (else the one that makes most), then k-slices while workgroups
 * are few and threads, k-tiles per slice and workgroup memory (`storage` bytes) allow.
 * (128 x 128 and 128 x 64 tiles were slower than 64 x 64 on an H100 through Vulkan, bench/gemm.ts.
 * Swept again with timestamp queries after the checks-free loads, f32, prefill in_proj at m = 512:
 * 64 x 64 206 us, 64 x 32 in 2 k-slices 251, 64 x 64 with 32-column k-tiles 798; two k-tiles in
 * workgroup memory with one barrier each ran slower too: out_proj 133 against 108 us. After the k loop
 * was unrolled and a k-tile's loads indexed by constants, in_proj without the norm: 64 x 64 4 x 4
 * 107 us, 8 x 4 100, 8 x 4 in 2 k-slices 119, in one sweep; 8 x 4 is not yet tried end to end.)
 */
export function gemmTile(
  m: number,
  rows: number[],
  cols: number,
  storage: number,
  maxThreads = GEMM_MAX_THREADS,
): GemmTile {
  const groups = (bm: number, bn: number) => gemmGroups(m, rows, bm, bn);
  // [BM, BN, TM, TN], largest first
  const options = m <= 8
    ? [[8, 64, 4, 4], [8, 32, 4, 4]]
    : m <= 16
    ? [[16, 64, 4, 4], [16, 32, 4, 4]]
    : m <= 32
    ? [[32, 64, 4, 4], [32, 32, 4, 4]]
    : m <= 64
    ? [[64, 64, 8, 4], [64, 32, 4, 4], [64, 32, 8, 4]]
    : [[64, 64, 4, 4], [64, 32, 4, 4], [64, 64, 8, 8], [64, 32, 8, 4]];
  const fits = options.filter(([bm, bn, tm, tn]) => (bm / tm) * (bn / tn) <= maxThreads);
  const most = fits.reduce((a, b) => (groups(b[0], b[1]) > groups(a[0], a[1]) ? b : a));
  const [BM, BN, TM, TN] = fits.find(([bm, bn]) => groups(bm, bn) >= GEMM_MIN_GROUPS) ?? most;
  const BK = maxThreads <= GEMM_FALLBACK_THREADS ? 8 : 16;
  const threads = (BM / TM) * (BN / TN);
  const bytes = (ks: number) => ks * (BK * (BM + BN + 8) * 4 + BM * BK) + BM * 4;
  let KS = 1;
  while (
    groups(BM, BN) < 2 * GEMM_MIN_GROUPS && 2 * KS * threads <= maxThreads &&
    Math.ceil(cols / BK) >= 2 * KS * GEMM_MIN_TILES &&
    (2 * KS - 1) * BM * BN <= 2 * KS * BK * (BM + BN) && bytes(2 * KS) <= storage
  ) KS *= 2;
  return { BM, BN, TM, TN, BK, KS };
}

/** Workgroups of the tiled kernel for m rows of x times matrices of `rows` rows, in tiles of bm x bn. */
function gemmGroups(m: number, rows: number[], bm: number, bn: number): number {
  return Math.ceil(m / bm) * rows.reduce((a, r) => a + Math.ceil(r / bn), 0);
}

/**
 * Splits of k over workgroups for `groups` workgroups of `tile` on rows of `cols` columns: doubled
 * (at most to 16) while the workgroups stay within `most` and each k-slice keeps `minTiles` k-tiles;
 * `tps` k-tiles per split, a multiple of KS.
 */
export function gemmSplits(
  tile: GemmTile,
  groups: number,
  cols: number,
  minTiles = GEMM_MIN_TILES,
  most = 528,
): { splits: number; tps: number } {
  const tiles = Math.ceil(cols / tile.BK);
  let splits = 1;
  while (
    splits < 16 && 2 * splits * groups <= most && tiles / (2 * splits * tile.KS) >= minTiles
  ) splits *= 2;
  return gemmSplitsOf(tile, cols, splits);
}

/**
 * Rows of `cols` columns cut into about `splits` ranges of k-tiles of `tile`: `tps` k-tiles each, a
 * multiple of KS, and the splits that makes.
 */
export function gemmSplitsOf(tile: GemmTile, cols: number, splits: number): { splits: number; tps: number } {
  const tiles = Math.ceil(cols / tile.BK);
  const tps = Math.ceil(tiles / splits / tile.KS) * tile.KS;
  return { splits: Math.ceil(tiles / tps), tps };
}

/** A tile of the tiled kernel and its splits of k over workgroups (see wgsl/gemm.wgsl). */
export interface GemmPlan {
  tile: GemmTile;
  splits: number;
  /** k-tiles per split */
  tps: number;
}

/**
 * How the tiled kernel runs m rows of x times matrices of `rows` rows and `cols` columns. Split over
 * k where its workgroups would be few (unless the norm and the residual add are both fused: the
 * splits' sums then have no binding). On an adapter of GEMM_MAX_THREADS threads, the tiles and
 * splits that were fastest on an H100 (bench/gemm.ts --sweep; mamba-130m, f32, us):
 * m = 512: x_proj 93 -> 34 to 57 (64 x 64, 8 splits), out_proj 158 -> 95 to 121 (64 x 64, 8 splits),
 * spread over runs on two machines; after the k loop was unrolled, out_proj 71 with 4 splits against
 * 75 with 8 and 94 with 2 or 16, x_proj 32.5 with 8 against 65 with 16 (splits are doubled while the
 * workgroups stay within 384). Products
 * on 2..32 rows of x go to the split-k kernels instead (see SPLITK_MIN_OUTPUTS), or are not split.
 * On a fallback adapter: gemmTile's tile, split while k-slices keep GEMM_MIN_TILES k-tiles.
 */
export function gemmPlan(
  m: number,
  rows: number[],
  cols: number,
  storage: number,
  maxThreads: number,
  canSplit: boolean,
): GemmPlan {
  const tile = gemmTile(m, rows, cols, storage, maxThreads);
  const whole = { tile, splits: 1, tps: 0 };
  if (!canSplit) return whole;
  if (maxThreads < GEMM_MAX_THREADS) {
    return { tile, ...gemmSplits(tile, gemmGroups(m, rows, tile.BM, tile.BN), cols) };
  }
  if (m <= 32) return whole; // 2..32 rows of x: the split-k kernels (#splitk) where they win
  const big: GemmTile = { BM: 64, BN: 64, TM: 4, TN: 4, BK: 16, KS: 1 };
  const groups = gemmGroups(m, rows, big.BM, big.BN);
  if (groups >= 2 * GEMM_MIN_GROUPS) return whole;
  const split = gemmSplits(big, groups, cols, 12, 384);
  return split.splits > 1 ? { tile: big, ...split } : whole;
}

/**
 * For benchmarks and tests: `plan` replaces gemmPlan's choice for every product of the tiled kernel,
 * its tile and about its number of splits of k (none where the splits' sums have no binding), so
 * that the plans chosen for a large GPU run at small sizes too.
 */
export const GEMM_TUNING: {
  plan?: { tile: GemmTile; splits: number };
  /** false: products that lie in full tiles run the general pipeline too (see gemmFull) */
  full?: boolean;
  /** false: the RMSNorm before a product on more than 32 rows of x stays fused into it */
  prenorm?: boolean;
} = {};

/**
 * Whether m rows of x times matrices of `rows` rows and `cols` columns lie in full tiles of `tile`,
 * with every thread's loads of x in a k-tile inside it: then the tiled kernel runs a pipeline without
 * bounds logic (wgsl/gemm.wgsl, FULL).
 */
export function gemmFull(tile: GemmTile, m: number, rows: number[], cols: number): boolean {
  const threads = (tile.BM / tile.TM) * (tile.BN / tile.TN);
  return m % tile.BM === 0 && rows.every((r) => r % tile.BN === 0) && cols % tile.BK === 0 &&
    ((tile.BM * tile.BK) / 4) % threads === 0;
}

/** Products on up to this many rows of x (from 2) go to the split-k kernels. */
const SPLITK_MAX_M = 32;
/**
 * Products on 2..32 rows of x go to the split-k kernels from this many outputs (m * rows) and
 * SPLITK_MIN_WORK multiply-adds (m * rows * cols) on, and always where matvec would send them to the
 * tiled kernel; to matvec below. On an H100 (bench/splitk.ts, f32 and f16): in_proj (2 x 1536 x 768)
 * about even at m = 4 (15 us), split-k ahead from m = 8 (18 against 26 us) to m = 32 (28 against 91
 * us); out_proj (768 x 1536) behind at m = 16 (19 against 16 us), ahead at m = 32 (24 against 29);
 * x_proj (80 x 1536) and dt_proj (1536 x 48) behind at every m (20 against 7 us at m = 32: two
 * dispatches of 4 us or more); the lm_head (50280 x 768) 2x to 5x ahead of gemm at every m.
 */
const SPLITK_MIN_OUTPUTS = 2 ** 14;
const SPLITK_MIN_WORK = 2 ** 24;
/** The split-k kernels cut k into slices until the products have this many workgroups ... */
const SPLITK_MIN_GROUPS = 384;
/** ... into at most this many slices with two output rows per thread (the lm_head) ... */
const SPLITK_MAX_SLICES = 12;
/**
 * ... and with one row per thread, slices of one chunk, at most this many. On an H100 (bench/splitk.ts
 * --sweep --rounds 3, us per product, both dispatches, f32 / f16, m = 32): out_proj (768 x 1536) 20.1
 * / 18.9 with 24 slices against 23.9 / 28 with 12. A register-blocked first phase (4 x 4 sums a thread,
 * 64 rows a workgroup, tried and removed) was at best 0.3 to 0.6 us faster on out_proj and no faster
 * on in_proj (2 x 1536 x 768: 25.5 / 24.6 with 12 slices). Issuing all of a chunk's weight loads
 * before x is staged, fused multiply-adds and a FULL pipeline: in f16, in_proj 24.7 -> 22.7 us a
 * product, out_proj 18.8 -> 17.7, the lm_head 167 -> 139 (chunks of 8); in f32 with chunks of 4 (see
 * SPLITK_MAX_SLICES_ROWS_F32), in_proj 25.6 -> 21.1, out_proj 19.9 -> 18.3, the lm_head 155 -> 160;
 * at m = 8 and 4 within 1 us of before, but the f32 lm_head (96 -> 106 at m = 8). One run, before
 * and after, `bench/splitk.ts --m 32,8,4 --only in_proj,out_proj,lm_head`. Where the rest goes
 * (in_proj f32, m = 32, chunks of 16, profiled first phase 20.6 us, ~2.7 of it the profiling's own
 * pass, the helper's measurement): without the weight loads 16.6, with 1/8 of the workgroup-memory reads
 * 18.5, without both 13.3; the 2048 fused multiply-adds a thread and the dispatch remain. More rows of
 * w per thread (2, or 4 with the 32 rows of x split over two threads), 64 or 256 threads and other
 * slice counts were no faster; lm_head in f16: 2 rows a thread and chunks of 8 vec4 the best.
 */
const SPLITK_MAX_SLICES_ROWS = 24;
/**
 * With f32 weights and one row a thread, chunks of 4 vec4 and at most this many slices. On an H100
 * (bench/splitk.ts --m 32 --dtype f32 --sweep --rounds 2, us a product, both dispatches): in_proj 21.3
 * with chunks of 4 and 16 slices against 31.5 with one chunk of 16 (12 slices); out_proj 20.6 with 48
 * slices against 21.6; the lm_head 159 with chunks of 4 (2 rows a thread, 2 slices) against 248 with
 * chunks of 8. A thread holds a chunk's weights in registers, and 16 vec4 of f32 cost the threads an
 * SM can keep.
 */
const SPLITK_MAX_SLICES_ROWS_F32 = 48;
/** The split-k kernels give each thread two output rows from this many tiles of rows on. */
const SPLITK_RW2_TILES = 192;

/**
 * The split-k kernels' shape (see wgsl/splitk.wgsl): MB rows of x, WG threads of RW output rows each,
 * S slices of k staged KC4 vec4 at a time.
 */
export interface SplitkTile {
  MB: number;
  WG: number;
  RW: number;
  KC4: number;
  S: number;
}

/**
 * For benchmarks and tests: `splitk` "never" sends products on 2..32 rows of x to matvec and gemm as
 * before the split-k kernels, "always" to split-k, "auto" as SPLITK_MIN_OUTPUTS says; `tile`
 * overrides splitkTile's choice.
 */
export const LINEAR_TUNING: { splitk: "auto" | "always" | "never"; tile?: Partial<SplitkTile> } = {
  splitk: "auto",
};

/**
 * The split-k tile for m (2..32) rows of x times matrices of `rows` rows and x4 vec4 of columns, MB
 * the power of two from 4 that covers m; `f16`: the weights are f16 pairs. For large matrices (the
 * lm_head), two output rows a thread, chunks of 8 vec4 in f16 and 4 in f32, and S slices of k, as many
 * as make SPLITK_MIN_GROUPS workgroups, SPLITK_MAX_SLICES at most. Otherwise one row a thread: in f16,
 * slices of one chunk of 16 vec4 (SPLITK_MAX_SLICES_ROWS at most); in f32, chunks of 4 vec4 and as many
 * slices as make SPLITK_MIN_GROUPS workgroups (SPLITK_MAX_SLICES_ROWS_F32 at most).
 */
export function splitkTile(m: number, rows: number[], x4: number, f16 = false): SplitkTile {
  let MB = 4;
  while (MB < m) MB *= 2;
  const WG = 128;
  const tilesOf = (perGroup: number) => rows.reduce((a, r) => a + Math.ceil(r / perGroup), 0);
  const slices = (KC4: number, tiles: number, most: number) =>
    Math.max(1, Math.min(Math.ceil(x4 / KC4), Math.ceil(SPLITK_MIN_GROUPS / tiles), most));
  if (tilesOf(WG) >= SPLITK_RW2_TILES) {
    const KC4 = f16 ? 8 : 4;
    return { MB, WG, RW: 2, KC4, S: slices(KC4, tilesOf(2 * WG), SPLITK_MAX_SLICES) };
  }
  if (!f16) return { MB, WG, RW: 1, KC4: 4, S: slices(4, tilesOf(WG), SPLITK_MAX_SLICES_ROWS_F32) };
  return { MB, WG, RW: 1, KC4: 16, S: Math.max(1, Math.min(Math.ceil(x4 / 16), SPLITK_MAX_SLICES_ROWS)) };
}

/**
 * Whether m rows of x times matrices of `rows` rows and `cols` columns (x4 vec4 a row of x) fill the
 * split-k kernel's chunks and tiles of `tile`, with m = MB: then wgsl/splitk.wgsl runs a pipeline
 * without bounds logic (FULL).
 */
export function splitkFull(tile: SplitkTile, m: number, rows: number[], cols: number, x4: number): boolean {
  return m === tile.MB && cols === 4 * x4 && x4 % tile.KC4 === 0 &&
    rows.every((r) => r % (tile.WG * tile.RW) === 0);
}

/** What one of the four matrix slots of matvec, matvec1 and gemm binds. */
interface Slot {
  out: GPUBuffer;
  w?: GPUBuffer;
  bias?: GPUBuffer;
}

/** The slots of the held-back products, in order. */
function slotsOf(pl: PendingLinear): Slot[] {
  return pl.items.map((it) => ({ out: it.out.buffer, w: it.w.buffer, bias: it.bias?.buffer }));
}

/** Writes Params words from `base` on, each as `types` says (u: u32, f: f32); u32 and f32 share a buffer. */
function packParams(
  u32: Uint32Array,
  f32: Float32Array,
  base: number,
  params: number[],
  types: string,
): void {
  for (let i = 0; i < params.length; i++) {
    if (types.charCodeAt(i) === 102) f32[base + i] = params[i]; // "f"
    else u32[base + i] = params[i];
  }
}

/**
 * Whether `t` is one of the tensors the held-back products read or write (their input, the norm's,
 * outputs, the conv's output and state), those held back after the conv included.
 */
function touches(pl: PendingLinear, t: GpuTensor): boolean {
  if (t === pl.input || writes(pl, t) || t === pl.resid) return true;
  if (pl.norm && (t === pl.norm.x || t === pl.norm.out)) return true;
  if (pl.conv && (t === pl.conv.out || t === pl.conv.state)) return true;
  return (!!pl.xproj && touches(pl.xproj, t)) || (!!pl.dtProj && touches(pl.dtProj, t));
}

/** Whether one of the held-back products writes `t`. */
function writes(pl: PendingLinear, t: GpuTensor): boolean {
  for (let j = 0; j < pl.items.length; j++) if (pl.items[j].out === t) return true;
  return false;
}

/**
 * Whether two held-back emissions dispatch the same: the same tensors in every role and the same
 * scalars (m, cols, stride and packing follow from the input and the weights; argmax's row is not
 * part of the products' dispatch).
 */
function sameLinear(a: PendingLinear, b: PendingLinear): boolean {
  if (a.input !== b.input || a.resid !== b.resid || a.items.length !== b.items.length) return false;
  if (!a.argmax !== !b.argmax) return false;
  for (let j = 0; j < a.items.length; j++) {
    const p = a.items[j], q = b.items[j];
    if (p.out !== q.out || p.w !== q.w || p.bias !== q.bias) return false;
  }
  const n = a.norm, o = b.norm;
  if (n !== o && (!n || !o || n.out !== o.out || n.x !== o.x || n.w !== o.w || n.eps !== o.eps)) return false;
  const x = a.xp, y = b.xp;
  if (
    x !== y &&
    (!x || !y || x.w !== y.w || x.rows !== y.rows || x.partials !== y.partials || x.seqs !== y.seqs)
  ) return false;
  const c = a.conv, e = b.conv;
  return c === e ||
    (!!c && !!e && c.out === e.out && c.w === e.w && c.bias === e.bias && c.state === e.state);
}

/**
 * How matvec, matvec1 and gemm share workgroups among the products: matrix j (rows os[j]) owns the
 * groups [starts[j], starts[j + 1]) of `rowsPerGroup` output rows each; unused slots start at total.
 */
function groupsOf(pl: PendingLinear, rowsPerGroup: number) {
  const os = [0, 0, 0, 0], starts = [0, 0, 0, 0], hasBias = [0, 0, 0, 0];
  let total = 0;
  for (let j = 0; j < 4; j++) {
    starts[j] = total;
    const it = pl.items[j];
    if (!it) continue;
    os[j] = it.rows;
    hasBias[j] = it.bias ? 1 : 0;
    total += Math.ceil(it.rows / rowsPerGroup);
  }
  return { os, starts, hasBias, total };
}

/**
 * States per thread of the one-step scan (scan_step) for n states: 4 where n allows it, else 1 (on
 * an H100 at the mamba-130m shape, 4 was the faster both at b = 1 and b = 32: bench/gpu_scan.ts).
 */
export function scanStepStates(n: number): 1 | 4 {
  return n % 4 !== 0 || SCAN_TUNING.stepStates === 1 ? 1 : 4;
}

/**
 * scan_step's pipeline constants for n states in workgroups of wg threads, with dt_proj's r columns
 * fused (r > 0) or not (r = 0); f16: dt_proj's weights are f16 pairs.
 */
function scanStepConstants(n: number, wg: number, r: number, f16: boolean): Record<string, number> {
  const q = scanStepStates(n), k = n / q;
  return {
    WG: wg,
    N: n,
    Q: q,
    K: k,
    DTPROJ: r > 0 ? 1 : 0,
    R: Math.max(r, 1),
    // chunks of dt_proj's row a thread takes (vec4 of 4 f32 or 8 f16 values)
    RJ: r > 0 ? Math.ceil(Math.ceil(r / (f16 ? 8 : 4)) / k) : 1,
    F16: f16 ? 1 : 0,
  };
}

/**
 * Channels per workgroup of scan_chunks for n states (a thread per state, at most 256 threads, at most
 * SCAN_CHUNK channels: its (step, channel) tile then fits one thread each when n = SCAN_CHUNK).
 */
export function scanChunkChannels(n: number): number {
  return Math.max(1, Math.min(SCAN_CHUNK, Math.floor(256 / n)));
}

/** Threads per workgroup of a scan whose n states per thread sit in workgroup memory (<= 16 KiB). */
function scanGroup(n: number, most: number): number {
  let wg = most;
  while (wg > 4 && wg * n * 4 > 16384) wg /= 2;
  return wg;
}

/** The (rows, cols) f32 values of a stored matrix. */
function unpackMatrix(bytes: ArrayBuffer, shape: Shape, m: { stride: number; packed: "f32" | "f16" }) {
  const [rows, cols] = shape;
  const out = new Float32Array(rows * cols);
  if (m.packed === "f32") {
    const src = new Float32Array(bytes, 0, rows * m.stride);
    for (let r = 0; r < rows; r++) out.set(src.subarray(r * m.stride, r * m.stride + cols), r * cols);
    return out;
  }
  const src = new Uint16Array(bytes, 0, rows * m.stride);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = fromHalf(src[r * m.stride + c]);
  }
  return out;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** The IEEE half nearest to v (ties to even), as its 16 bits. */
export function toHalf(v: number): number {
  F32[0] = v;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** The value of an IEEE half given as its 16 bits. */
export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
