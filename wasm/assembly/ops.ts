// Elementwise and row ops: RMSNorm, gated RMSNorm, residual add, embedding rows, argmax, and the
// memory-bandwidth probe.

import { hsum, silu4, storeN } from "./math";

/** Rows [lo, hi) of out (m, d) = x / sqrt(mean(x^2) + eps) * w; out may alias x. */
export function rms_norm(
  lo: i32,
  hi: i32,
  _tid: i32,
  out: usize,
  x: usize,
  w: usize,
  eps: f32,
  d: i32,
): void {
  const d4 = d & ~3;
  for (let r = lo; r < hi; r++) {
    const xr = x + (<usize> r * <usize> d << 2), or = out + (<usize> r * <usize> d << 2);
    let a = f32x4.splat(0);
    for (let j = 0; j < d4; j += 4) {
      const v = v128.load(xr + (<usize> j << 2));
      a = f32x4.add(a, f32x4.mul(v, v));
    }
    let ss = hsum(a);
    for (let j = d4; j < d; j++) {
      const v = load<f32>(xr + (<usize> j << 2));
      ss += v * v;
    }
    const scale = <f32> (1 / Math.sqrt(<f64> ss / <f64> d + <f64> eps));
    const sv = f32x4.splat(scale);
    for (let j = 0; j < d4; j += 4) {
      const o = <usize> j << 2;
      v128.store(or + o, f32x4.mul(f32x4.mul(v128.load(xr + o), sv), v128.load(w + o)));
    }
    for (let j = d4; j < d; j++) {
      const o = <usize> j << 2;
      store<f32>(or + o, load<f32>(xr + o) * scale * load<f32>(w + o));
    }
  }
}

/** Elements [lo, hi) of out = a + b; out may alias a or b. */
export function add(lo: i32, hi: i32, _tid: i32, out: usize, a: usize, b: usize): void {
  let j = lo;
  for (; j + 4 <= hi; j += 4) {
    const o = <usize> j << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; j < hi; j++) {
    const o = <usize> j << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/**
 * Mamba-2 gated RMSNorm, groups [lo, hi) (of gs channels each): u = y * silu(z); each group is
 * normalized and scaled by w (di). out may alias y.
 */
export function gated_rms_norm(
  lo: i32,
  hi: i32,
  _tid: i32,
  out: usize,
  y: usize,
  z: usize,
  w: usize,
  eps: f32,
  gs: i32,
  di: i32,
): void {
  for (let g0 = lo * gs; g0 < hi * gs; g0 += gs) {
    let a = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= gs; j += 4) {
      const o = <usize> (g0 + j) << 2;
      const u = f32x4.mul(v128.load(y + o), silu4(v128.load(z + o)));
      v128.store(out + o, u);
      a = f32x4.add(a, f32x4.mul(u, u));
    }
    let ss = hsum(a);
    if (j < gs) {
      const o = <usize> (g0 + j) << 2;
      const u = f32x4.mul(v128.load(y + o), silu4(v128.load(z + o)));
      const cnt = gs - j;
      storeN(out + o, u, cnt);
      for (let t = 0; t < cnt; t++) {
        const v = load<f32>(out + o + (<usize> t << 2));
        ss += v * v;
      }
    }
    const scale = <f32> (1 / Math.sqrt(<f64> ss / <f64> gs + <f64> eps));
    const sv = f32x4.splat(scale);
    const wb = w + (<usize> (g0 % di) << 2);
    j = 0;
    for (; j + 4 <= gs; j += 4) {
      const o = <usize> (g0 + j) << 2;
      v128.store(out + o, f32x4.mul(v128.load(wb + (<usize> j << 2)), f32x4.mul(v128.load(out + o), sv)));
    }
    for (; j < gs; j++) {
      const o = <usize> (g0 + j) << 2;
      store<f32>(out + o, load<f32>(wb + (<usize> j << 2)) * (load<f32>(out + o) * scale));
    }
  }
}

/** Rows [lo, hi) of out (m, d) = table (v, d)[ids[r]] for f32 tables. */
export function embed_f32(lo: i32, hi: i32, _tid: i32, out: usize, table: usize, ids: usize, d: i32): void {
  const rs = <usize> d << 2;
  for (let r = lo; r < hi; r++) {
    memory.copy(out + <usize> r * rs, table + <usize> load<i32>(ids + (<usize> r << 2)) * rs, rs);
  }
}

/** Rows [lo, hi) of out (m, d) = table (v, d)[ids[r]] for 16-bit tables (bf: bfloat16, else f16). */
export function embed16(
  lo: i32,
  hi: i32,
  _tid: i32,
  out: usize,
  table: usize,
  ids: usize,
  d: i32,
  bf: bool,
): void {
  for (let r = lo; r < hi; r++) {
    const row = table + (<usize> load<i32>(ids + (<usize> r << 2)) * <usize> d << 1);
    const or = out + (<usize> r * <usize> d << 2);
    for (let j = 0; j < d; j++) {
      const h = load<u16>(row + (<usize> j << 1));
      const v: f32 = bf
        ? reinterpret<f32>(<u32> h << 16)
        : reinterpret<f32>((<i32> <i16> h << 13) & 0x8fffe000) * <f32> 5.192296858534828e33;
      store<f32>(or + (<usize> j << 2), v);
    }
  }
}

/** Rows [lo, hi) of out (m, d) from a q8 table (the layout of linear.ts: rows in groups of four, per block). */
export function embed_q8(
  lo: i32,
  hi: i32,
  _tid: i32,
  out: usize,
  q: usize,
  s: usize,
  ids: usize,
  d: i32,
): void {
  const nb = (d + 31) >> 5;
  for (let r = lo; r < hi; r++) {
    const id = load<i32>(ids + (<usize> r << 2));
    const or = out + (<usize> r * <usize> d << 2);
    for (let j = 0; j < d; j++) {
      const at = (((<usize> (id >> 2) * <usize> nb + <usize> (j >> 5)) << 2) + <usize> (id & 3)) << 5;
      store<f32>(or + (<usize> j << 2), <f32> load<i8>(q + at + <usize> (j & 31)) * load<f32>(s + (at >> 3)));
    }
  }
}

/** out[r] = argmax of row r of x (m, v), for rows [lo, hi); i32 ids. */
export function argmax_rows(lo: i32, hi: i32, _tid: i32, out: usize, x: usize, v: i32): void {
  for (let r = lo; r < hi; r++) {
    store<i32>(out + (<usize> r << 2), argmax(x + <usize> r * (<usize> v << 2), v));
  }
}

/** Index of the largest of x (v); the lowest index wins ties; NaN never wins; 0 when none beats -inf. */
function argmax(x: usize, v: i32): i32 {
  const v4 = v & ~3;
  let mv = f32x4.splat(-Infinity);
  for (let k = 0; k < v4; k += 4) mv = f32x4.pmax(mv, v128.load(x + (<usize> k << 2)));
  let best: f32 = -Infinity;
  for (let lane = 0; lane < 4; lane++) {
    const e = lane == 0
      ? f32x4.extract_lane(mv, 0)
      : lane == 1
      ? f32x4.extract_lane(mv, 1)
      : lane == 2
      ? f32x4.extract_lane(mv, 2)
      : f32x4.extract_lane(mv, 3);
    if (e > best) best = e;
  }
  for (let k = v4; k < v; k++) {
    const e = load<f32>(x + (<usize> k << 2));
    if (e > best) best = e;
  }
  if (!(best > -Infinity)) return 0;
  const bv = f32x4.splat(best);
  for (let k = 0; k < v4; k += 4) {
    const mask = i32x4.bitmask(f32x4.eq(v128.load(x + (<usize> k << 2)), bv));
    if (mask) return k + ctz(mask);
  }
  for (let k = v4; k < v; k++) if (load<f32>(x + (<usize> k << 2)) == best) return k;
  return 0;
}

/**
 * Memory-bandwidth probe: sums the f32 values of 64-byte lines [lo, hi) of the buffer at p, as four
 * streams (the quarters of the range) read together, which the hardware prefetches better than one;
 * the sum goes to out[tid] so that the loads cannot be dropped.
 */
export function bw_sum(lo: i32, hi: i32, tid: i32, p: usize, out: usize): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const q = <usize> ((hi - lo) >> 2) << 6;
  const p0 = p + (<usize> lo << 6), p1 = p0 + q, p2 = p1 + q, p3 = p2 + q;
  for (let o: usize = 0; o < q; o += 64) {
    a0 = f32x4.add(
      a0,
      f32x4.add(
        f32x4.add(v128.load(p0 + o), v128.load(p0 + o, 16)),
        f32x4.add(v128.load(p0 + o, 32), v128.load(p0 + o, 48)),
      ),
    );
    a1 = f32x4.add(
      a1,
      f32x4.add(
        f32x4.add(v128.load(p1 + o), v128.load(p1 + o, 16)),
        f32x4.add(v128.load(p1 + o, 32), v128.load(p1 + o, 48)),
      ),
    );
    a2 = f32x4.add(
      a2,
      f32x4.add(
        f32x4.add(v128.load(p2 + o), v128.load(p2 + o, 16)),
        f32x4.add(v128.load(p2 + o, 32), v128.load(p2 + o, 48)),
      ),
    );
    a3 = f32x4.add(
      a3,
      f32x4.add(
        f32x4.add(v128.load(p3 + o), v128.load(p3 + o, 16)),
        f32x4.add(v128.load(p3 + o, 32), v128.load(p3 + o, 48)),
      ),
    );
  }
  for (let r = p0 + 4 * q, end = p + (<usize> hi << 6); r < end; r += 64) a0 = f32x4.add(a0, v128.load(r));
  store<f32>(out + (<usize> tid << 2), hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))));
}
