/**
 * The `js` backend: plain TypeScript loops over Float32Arrays. It is the oracle that every other backend
 * is tested against, so it favours the obvious formula over speed (accumulation in f64 where a sum runs
 * over a whole row).
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
} from "../backend.ts";
import { sampleRows } from "../../generate/sampler.ts";
import { BackendError } from "../../errors.ts";

class JsTensor implements Tensor {
  constructor(
    readonly shape: Shape,
    readonly dtype: "f32" | "i32",
    public data: Float32Array | Int32Array,
  ) {}
}

function f(t: Tensor): Float32Array {
  return (t as JsTensor).data as Float32Array;
}

function i32(t: Tensor): Int32Array {
  return (t as JsTensor).data as Int32Array;
}

/** softplus as torch computes it (threshold 20). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/** x * sigmoid(x) */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** The reference backend. */
export class JsBackend implements Backend {
  readonly name = "js" as const;
  readonly weightDType = "f32" as const;
  readonly stepsPerRead = 1;

  uploadMatrix(data: Float32Array, shape: Shape): Tensor {
    return this.upload(data, shape);
  }

  upload(data: Float32Array, shape: Shape): Tensor {
    if (data.length !== numel(shape)) {
      throw new BackendError(`Cannot upload: ${data.length} values for shape (${shape.join(", ")})`);
    }
    return new JsTensor([...shape], "f32", data.slice());
  }

  zeros(shape: Shape, dtype: "f32" | "i32" = "f32"): Tensor {
    const n = numel(shape);
    return new JsTensor([...shape], dtype, dtype === "f32" ? new Float32Array(n) : new Int32Array(n));
  }

  write(t: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    (t as JsTensor).data.set(data, offset);
  }

  copy(dst: Tensor, src: Tensor, dstOffset = 0, srcOffset = 0, length?: number): void {
    const s = (src as JsTensor).data;
    const n = length ?? s.length - srcOffset;
    (dst as JsTensor).data.set(s.subarray(srcOffset, srcOffset + n), dstOffset);
  }

  read(t: Tensor): Promise<Float32Array> {
    return Promise.resolve(f(t).slice());
  }

  readIds(t: Tensor): Promise<Int32Array> {
    return Promise.resolve(i32(t).slice());
  }

  free(t: Tensor): void {
    (t as JsTensor).data = new Float32Array(0);
  }

  embed(out: Tensor, table: Tensor, ids: Tensor, idsOffset = 0): void {
    const d = table.shape[1];
    const m = numel(out.shape) / d;
    const o = f(out), tab = f(table), id = i32(ids);
    for (let i = 0; i < m; i++) {
      const row = id[idsOffset + i];
      o.set(tab.subarray(row * d, (row + 1) * d), i * d);
    }
  }

  rmsNorm(out: Tensor, x: Tensor, w: Tensor, eps: number): void {
    const d = x.shape[x.shape.length - 1];
    const m = numel(x.shape) / d;
    const o = f(out), xs = f(x), ws = f(w);
    for (let i = 0; i < m; i++) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += xs[i * d + j] * xs[i * d + j];
      const scale = 1 / Math.sqrt(ss / d + eps);
      for (let j = 0; j < d; j++) o[i * d + j] = Math.fround(xs[i * d + j] * scale) * ws[j];
    }
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = f(out), as = f(a), bs = f(b);
    for (let i = 0; i < o.length; i++) o[i] = as[i] + bs[i];
  }

  linear(out: Tensor, w: Tensor, x: Tensor, bias?: Tensor): void {
    const [o, i] = w.shape;
    const m = numel(x.shape) / i;
    const ys = f(out), ws = f(w), xs = f(x), bs = bias ? f(bias) : undefined;
    for (let r = 0; r < m; r++) {
      for (let c = 0; c < o; c++) {
        let acc = 0;
        for (let j = 0; j < i; j++) acc += ws[c * i + j] * xs[r * i + j];
        ys[r * o + c] = acc + (bs ? bs[c] : 0);
      }
    }
  }

  conv1dSilu(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | undefined, state: Tensor): void {
    const [b, l, c] = x.shape;
    const k = w.shape[1];
    const o = f(out), xs = f(x), ws = f(w), bs = bias ? f(bias) : undefined, st = f(state);
    const window = new Float32Array(l + k - 1);
    for (let ib = 0; ib < b; ib++) {
      for (let ic = 0; ic < c; ic++) {
        const s0 = (ib * c + ic) * (k - 1);
        for (let j = 0; j < k - 1; j++) window[j] = st[s0 + j];
        for (let t = 0; t < l; t++) window[k - 1 + t] = xs[(ib * l + t) * c + ic];
        for (let t = 0; t < l; t++) {
          let acc = bs ? bs[ic] : 0;
          for (let j = 0; j < k; j++) acc += ws[ic * k + j] * window[t + j];
          o[(ib * l + t) * c + ic] = silu(Math.fround(acc));
        }
        for (let j = 0; j < k - 1; j++) st[s0 + j] = window[l + j];
      }
    }
  }

  selectiveScan(a: ScanArgs): void {
    const [b, l, di] = a.x.shape;
    const n = a.A.shape[1];
    const y = f(a.y), x = f(a.x), dt = f(a.dt), A = f(a.A), B = f(a.B), C = f(a.C), D = f(a.D), z = f(a.z);
    const h = f(a.h);
    for (let ib = 0; ib < b; ib++) {
      for (let t = 0; t < l; t++) {
        const row = ib * l + t;
        for (let c = 0; c < di; c++) {
          const delta = Math.fround(softplus(dt[row * di + c]));
          const u = x[row * di + c];
          const du = Math.fround(delta * u);
          let acc = 0;
          for (let s = 0; s < n; s++) {
            const hi = (ib * di + c) * n + s;
            const dA = Math.fround(Math.exp(Math.fround(delta * A[c * n + s])));
            h[hi] = Math.fround(dA * h[hi]) + Math.fround(du * B[row * n + s]);
            acc += h[hi] * C[row * n + s];
          }
          const yv = Math.fround(acc) + u * D[c];
          y[row * di + c] = Math.fround(yv) * silu(z[row * di + c]);
        }
      }
    }
  }

  ssdScan(a: SsdArgs): void {
    const [b, l, nh, p] = a.x.shape;
    const [, , g, n] = a.B.shape;
    const headsPerGroup = nh / g;
    const y = f(a.y), x = f(a.x), dt = f(a.dt), dtBias = f(a.dtBias), A = f(a.A), B = f(a.B), C = f(a.C);
    const D = f(a.D), st = f(a.state);
    for (let ib = 0; ib < b; ib++) {
      for (let t = 0; t < l; t++) {
        const row = ib * l + t;
        for (let ih = 0; ih < nh; ih++) {
          const ig = Math.floor(ih / headsPerGroup);
          let delta = Math.fround(softplus(Math.fround(dt[row * nh + ih] + dtBias[ih])));
          delta = Math.min(Math.max(delta, a.dtMin), a.dtMax);
          const dA = Math.fround(Math.exp(Math.fround(delta * A[ih])));
          const bc = (row * g + ig) * n;
          for (let ip = 0; ip < p; ip++) {
            const xi = (row * nh + ih) * p + ip;
            const u = x[xi];
            const du = Math.fround(delta * u);
            let acc = 0;
            for (let s = 0; s < n; s++) {
              const hi = ((ib * nh + ih) * p + ip) * n + s;
              st[hi] = Math.fround(dA * st[hi]) + Math.fround(du * B[bc + s]);
              acc += st[hi] * C[bc + s];
            }
            y[xi] = Math.fround(acc) + u * D[ih];
          }
        }
      }
    }
  }

  gatedRmsNorm(out: Tensor, y: Tensor, z: Tensor, w: Tensor, eps: number, groupSize: number): void {
    const o = f(out), ys = f(y), zs = f(z), ws = f(w);
    const di = w.shape[0];
    const u = new Float32Array(groupSize);
    for (let g0 = 0; g0 < ys.length; g0 += groupSize) {
      let ss = 0;
      for (let j = 0; j < groupSize; j++) {
        u[j] = ys[g0 + j] * silu(zs[g0 + j]);
        ss += u[j] * u[j];
      }
      const scale = 1 / Math.sqrt(ss / groupSize + eps);
      for (let j = 0; j < groupSize; j++) o[g0 + j] = ws[(g0 + j) % di] * Math.fround(u[j] * scale);
    }
  }

  sample(a: SampleArgs): void {
    const [b, v] = a.logits.shape;
    const ids = new Int32Array(b);
    sampleRows(ids, f(a.logits), v, a.params, a.step, a.seen ? f(a.seen) : undefined);
    i32(a.out).set(ids, a.outRow * b);
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }
}
