// Causal depthwise conv1d over time + SiLU, continuing from a (b, c, k-1) state; vectorized over
// channels c, four at a time.

import { hsum4, SCRATCH, silu4, storeN, transpose4, transposePartial } from "./math";

/**
 * Channels [lo, hi) (lo a multiple of 4): out, x (b, l, c); w (c, k); bias (c) or 0; state (b, c, k-1).
 * With xs = concat(state, x) along time: out[t] = silu(bias + sum_j w[j] * xs[t + j]); then state
 * keeps the last k-1 steps of xs. w and the state of a chunk of channels are transposed into thread
 * scratch, (k, channels), so that each step reads and writes rows contiguously.
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
  if (l == 1 && k == 4) {
    step4(lo, hi, out, x, w, bias, state, b, c);
    return;
  }
  const km = k - 1;
  const ks = <usize> k << 2, kms = <usize> km << 2;
  const chunk = l < 8 ? 4 : max(4, <i32> (SCRATCH / 2 / ks) & ~3);
  const wT = scr + <usize> tid * SCRATCH;
  for (let c0 = lo; c0 < hi; c0 += chunk) {
    const c1 = min(c0 + chunk, hi);
    const cs = <usize> ((c1 - c0 + 3) & ~3) << 2;
    const sT = wT + cs * <usize> k;
    for (let cc = c0; cc < c1; cc += 4) {
      const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
      if (cnt == 4) transpose4(w + <usize> cc * ks, ks, wT + col, cs, k, true);
      else transposePartial(w + <usize> cc * ks, ks, wT + col, cs, k, cnt, true);
    }
    for (let ib = 0; ib < b; ib++) {
      const sb = state + <usize> (ib * c) * kms;
      for (let cc = c0; cc < c1; cc += 4) {
        const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
        if (cnt == 4) transpose4(sb + <usize> cc * kms, kms, sT + col, cs, km, true);
        else transposePartial(sb + <usize> cc * kms, kms, sT + col, cs, km, cnt, true);
      }
      for (let t = 0; t < l; t++) {
        for (let cc = c0; cc < c1; cc += 4) {
          const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
          let acc = bias ? v128.load(bias + (<usize> cc << 2)) : f32x4.splat(0);
          for (let j = 0; j < k; j++) {
            const tt = t + j;
            const xv = tt < km
              ? v128.load(sT + <usize> tt * cs + col)
              : v128.load(x + ((<usize> (ib * l + tt - km) * <usize> c + <usize> cc) << 2));
            acc = f32x4.add(acc, f32x4.mul(v128.load(wT + <usize> j * cs + col), xv));
          }
          storeN(out + ((<usize> (ib * l + t) * <usize> c + <usize> cc) << 2), silu4(acc), cnt);
        }
      }
      // the new state: the last k-1 steps of xs, shifted through the transposed window
      for (let j = 0; j < km; j++) {
        const tt = l + j;
        for (let cc = c0; cc < c1; cc += 4) {
          const col = <usize> (cc - c0) << 2;
          const v = tt < km
            ? v128.load(sT + <usize> tt * cs + col)
            : v128.load(x + ((<usize> (ib * l + tt - km) * <usize> c + <usize> cc) << 2));
          v128.store(sT + <usize> j * cs + col, v);
        }
      }
      for (let cc = c0; cc < c1; cc += 4) {
        const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
        if (cnt == 4) transpose4(sb + <usize> cc * kms, kms, sT + col, cs, km, false);
        else transposePartial(sb + <usize> cc * kms, kms, sT + col, cs, km, cnt, false);
      }
    }
  }
}

/**
 * One step with k = 4, per channel: the window is the 3 state values and x, so each channel is a
 * dot of two v128 (its w row and its window); four channels' dots are summed together, and the
 * shifted window is the new state.
 */
function step4(
  lo: i32,
  hi: i32,
  out: usize,
  x: usize,
  w: usize,
  bias: usize,
  state: usize,
  b: i32,
  c: i32,
): void {
  for (let ib = 0; ib < b; ib++) {
    const xb = x + (<usize> (ib * c) << 2), ob = out + (<usize> (ib * c) << 2);
    const sb = state + <usize> (ib * c) * 12;
    for (let cc = lo; cc < hi; cc += 4) {
      const cnt = min(4, hi - cc);
      let d0 = f32x4.splat(0), d1 = d0, d2 = d0, d3 = d0;
      for (let j = 0; j < cnt; j++) {
        const ch = cc + j;
        const sp = sb + <usize> ch * 12;
        // window: state[ch, 0..3) then x[ch]
        const win = v128.load64_zero(sp);
        const win2 = f32x4.replace_lane(
          f32x4.replace_lane(win, 2, load<f32>(sp, 8)),
          3,
          load<f32>(xb + (<usize> ch << 2)),
        );
        const d = f32x4.mul(v128.load(w + (<usize> ch << 4)), win2);
        if (j == 0) d0 = d;
        else if (j == 1) d1 = d;
        else if (j == 2) d2 = d;
        else d3 = d;
        // new state: window shifted by one step
        v128.store64_lane(sp, v128.shuffle<f32>(win2, win2, 1, 2, 1, 2), 0);
        store<f32>(sp, f32x4.extract_lane(win2, 3), 8);
      }
      let acc = hsum4(d0, d1, d2, d3);
      if (bias) acc = f32x4.add(acc, v128.load(bias + (<usize> cc << 2)));
      storeN(ob + (<usize> cc << 2), silu4(acc), cnt);
    }
  }
}
