// Causal depthwise conv1d over time + SiLU, continuing from a (b, c, k-1) state; vectorized over
// channels c, four at a time.

import { SCRATCH, silu4, storeN, transpose4 } from "./math";

/**
 * Channels [lo, hi) (lo a multiple of 4): out, x (b, l, c); w (c, k); bias (c) or 0; state (b, c, k-1).
 * With xs = concat(state, x) along time: out[t] = silu(bias + sum_j w[j] * xs[t + j]); then state
 * keeps the last k-1 steps of xs.
 */
export function conv1d_silu(
  lo: i32,
  hi: i32,
  tid: i32,
  out: usize,
  x: usize,
  w: usize,
  bias: usize,
  state: usize,
  b: i32,
  l: i32,
  c: i32,
  k: i32,
  scr: usize,
): void {
  const wb = scr + <usize> tid * SCRATCH; // (k) v128: w transposed for four channels
  const sb = wb + (<usize> k << 4); // (k-1) v128: state transposed for four channels
  const km = k - 1;
  for (let ib = 0; ib < b; ib++) {
    for (let cc = lo; cc < hi; cc += 4) {
      const cnt = min(4, hi - cc);
      if (cnt == 4) {
        transpose4(w + (<usize> (cc * k) << 2), <usize> k << 2, wb, k, true);
        transpose4(state + ((<usize> (ib * c + cc) * <usize> km) << 2), <usize> km << 2, sb, km, true);
      } else {
        for (let lane = 0; lane < 4; lane++) {
          const ch = cc + lane;
          const sr = state + ((<usize> (ib * c + ch) * <usize> km) << 2);
          for (let j = 0; j < k; j++) {
            const v: f32 = lane < cnt ? load<f32>(w + (<usize> (ch * k + j) << 2)) : 0;
            store<f32>(wb + (<usize> j << 4) + (<usize> lane << 2), v);
          }
          for (let j = 0; j < km; j++) {
            const v: f32 = lane < cnt ? load<f32>(sr + (<usize> j << 2)) : 0;
            store<f32>(sb + (<usize> j << 4) + (<usize> lane << 2), v);
          }
        }
      }
      const bv = bias ? v128.load(bias + (<usize> cc << 2)) : f32x4.splat(0);
      for (let t = 0; t < l; t++) {
        let acc = bv;
        for (let j = 0; j < k; j++) {
          const tt = t + j;
          const xv = tt < km
            ? v128.load(sb + (<usize> tt << 4))
            : v128.load(x + ((<usize> (ib * l + tt - km) * <usize> c + <usize> cc) << 2));
          acc = f32x4.add(acc, f32x4.mul(v128.load(wb + (<usize> j << 4)), xv));
        }
        storeN(out + ((<usize> (ib * l + t) * <usize> c + <usize> cc) << 2), silu4(acc), cnt);
      }
      for (let lane = 0; lane < cnt; lane++) {
        const ch = cc + lane;
        const sr = state + ((<usize> (ib * c + ch) * <usize> km) << 2);
        for (let j = 0; j < km; j++) {
          const tt = l + j;
          const v = tt < km
            ? load<f32>(sb + (<usize> tt << 4) + (<usize> lane << 2))
            : load<f32>(x + ((<usize> (ib * l + tt - km) * <usize> c + <usize> ch) << 2));
          store<f32>(sr + (<usize> j << 2), v);
        }
      }
    }
  }
}
