// The selective scans. Mamba-1: vectorized across channels di (four at a time), the state of those
// channels gathered into thread scratch for the whole call; a single step (decode) instead goes
// across each channel's n states in place. Mamba-2 (SSD): one scalar decay per head,
// so each (head, p) row of the state is updated vectorized across n, step by step.

import {
  exp4,
  hsum,
  madd,
  SCRATCH,
  silu4,
  softplus1,
  softplus4,
  storeN,
  transpose4,
  transposePartial,
} from "./math";

/**
 * Mamba-1, channels [lo, hi) (lo a multiple of 4): y (b, l, di) = (C.h + D*x) * silu(z), with
 * h = exp(dt*A)*h + dt*B*x per step and dt = softplus(dt_in). A (di, n); B, C (b, l, n); D (di);
 * h (b, di, n) updated in place.
 *
 * The state and A of a chunk of channels are transposed into thread scratch, (n, channels), so that
 * each step reads the rows of x, dt, z and writes y contiguously, four channels per v128.
 */
export function selective_scan(
  lo: i32,
  hi: i32,
  tid: i32,
  y: usize,
  x: usize,
  dt: usize,
  A: usize,
  B: usize,
  C: usize,
  D: usize,
  z: usize,
  h: usize,
  b: i32,
  l: i32,
  di: i32,
  n: i32,
  scr: usize,
): void {
  const ns = <usize> n << 2;
  if (l == 1 && (n & 3) == 0) {
    scanStep(lo, hi, y, x, dt, A, B, C, D, z, h, b, di, n);
    return;
  }
  // channels per pass: all that fit the scratch for long l; four (everything in L1) for a few steps
  const chunk = l < 8 ? 4 : max(4, <i32> (SCRATCH / 2 / ns) & ~3);
  const hT = scr + <usize> tid * SCRATCH;
  for (let c0 = lo; c0 < hi; c0 += chunk) {
    const c1 = min(c0 + chunk, hi);
    const cs = <usize> ((c1 - c0 + 3) & ~3) << 2; // bytes of one transposed row
    const aT = hT + cs * <usize> n;
    for (let cc = c0; cc < c1; cc += 4) {
      const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
      if (cnt == 4) transpose4(A + <usize> cc * ns, ns, aT + col, cs, n, true);
      else transposePartial(A + <usize> cc * ns, ns, aT + col, cs, n, cnt, true);
    }
    for (let ib = 0; ib < b; ib++) {
      const hb = h + <usize> (ib * di) * ns;
      for (let cc = c0; cc < c1; cc += 4) {
        const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
        if (cnt == 4) transpose4(hb + <usize> cc * ns, ns, hT + col, cs, n, true);
        else transposePartial(hb + <usize> cc * ns, ns, hT + col, cs, n, cnt, true);
      }
      for (let t = 0; t < l; t++) {
        const row = ib * l + t;
        const br = B + <usize> row * ns, cr = C + <usize> row * ns;
        for (let cc = c0; cc < c1; cc += 4) {
          const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
          const off = (<usize> row * <usize> di + <usize> cc) << 2;
          const u = v128.load(x + off);
          const delta = softplus4(v128.load(dt + off));
          const du = f32x4.mul(delta, u);
          let acc = f32x4.splat(0);
          let hp = hT + col, ap = aT + col;
          for (let s = 0; s < n; s++, hp += cs, ap += cs) {
            const dA = exp4(f32x4.mul(delta, v128.load(ap)));
            const hv = madd(dA, v128.load(hp), f32x4.mul(du, f32x4.splat(load<f32>(br + (<usize> s << 2)))));
            v128.store(hp, hv);
            acc = madd(hv, f32x4.splat(load<f32>(cr + (<usize> s << 2))), acc);
          }
          const yv = f32x4.mul(madd(u, v128.load(D + (<usize> cc << 2)), acc), silu4(v128.load(z + off)));
          storeN(y + off, yv, cnt);
        }
      }
      for (let cc = c0; cc < c1; cc += 4) {
        const cnt = min(4, c1 - cc), col = <usize> (cc - c0) << 2;
        if (cnt == 4) transpose4(hb + <usize> cc * ns, ns, hT + col, cs, n, false);
        else transposePartial(hb + <usize> cc * ns, ns, hT + col, cs, n, cnt, false);
      }
    }
  }
}

/**
 * One step (l = 1, n a multiple of 4) of channels [lo, hi): each channel's row of h (n) is updated
 * four states per v128, with B and C read as rows too, so nothing is transposed; softplus, the D skip
 * and the gate still go four channels at a time.
 */
function scanStep(
  lo: i32,
  hi: i32,
  y: usize,
  x: usize,
  dt: usize,
  A: usize,
  B: usize,
  C: usize,
  D: usize,
  z: usize,
  h: usize,
  b: i32,
  di: i32,
  n: i32,
): void {
  const ns = <usize> n << 2;
  for (let ib = 0; ib < b; ib++) {
    const br = B + <usize> ib * ns, cr = C + <usize> ib * ns;
    const hb = h + <usize> ib * <usize> di * ns;
    for (let cc = lo; cc < hi; cc += 4) {
      const cnt = min(4, hi - cc);
      const off = (<usize> ib * <usize> di + <usize> cc) << 2;
      const u = v128.load(x + off);
      const delta = softplus4(v128.load(dt + off));
      const du = f32x4.mul(delta, u);
      const hc = hb + <usize> cc * ns, ac = A + <usize> cc * ns;
      // lane j of yv: C.h of channel cc + j, its delta and du splatted
      let yv = f32x4.splat(stateRow(hc, ac, br, cr, ns, lane(delta, 0), lane(du, 0)));
      if (cnt > 1) {
        yv = f32x4.replace_lane(yv, 1, stateRow(hc + ns, ac + ns, br, cr, ns, lane(delta, 1), lane(du, 1)));
      }
      if (cnt > 2) {
        yv = f32x4.replace_lane(yv, 2, stateRow(hc + 2 * ns, ac + 2 * ns, br, cr, ns, lane(delta, 2), lane(du, 2)));
      }
      if (cnt > 3) {
        yv = f32x4.replace_lane(yv, 3, stateRow(hc + 3 * ns, ac + 3 * ns, br, cr, ns, lane(delta, 3), lane(du, 3)));
      }
      const yo = f32x4.mul(madd(u, v128.load(D + (<usize> cc << 2)), yv), silu4(v128.load(z + off)));
      storeN(y + off, yo, cnt);
    }
  }
}

/** Lane j of v in every lane. */
// @ts-ignore: decorator
@inline
function lane(v: v128, j: i32): v128 {
  if (j == 0) return v128.shuffle<f32>(v, v, 0, 0, 0, 0);
  if (j == 1) return v128.shuffle<f32>(v, v, 1, 1, 1, 1);
  if (j == 2) return v128.shuffle<f32>(v, v, 2, 2, 2, 2);
  return v128.shuffle<f32>(v, v, 3, 3, 3, 3);
}

/** h = exp(delta*A)*h + du*B over one channel's row (ns bytes); returns C.h. */
// @ts-ignore: decorator
@inline
function stateRow(hp: usize, ap: usize, br: usize, cr: usize, ns: usize, delta: v128, du: v128): f32 {
  let a0 = f32x4.splat(0), a1 = a0;
  let o: usize = 0;
  for (; o + 32 <= ns; o += 32) {
    const e0 = exp4(f32x4.mul(delta, v128.load(ap + o))), e1 = exp4(f32x4.mul(delta, v128.load(ap + o, 16)));
    const h0 = madd(e0, v128.load(hp + o), f32x4.mul(du, v128.load(br + o)));
    const h1 = madd(e1, v128.load(hp + o, 16), f32x4.mul(du, v128.load(br + o, 16)));
    v128.store(hp + o, h0);
    v128.store(hp + o, h1, 16);
    a0 = madd(h0, v128.load(cr + o), a0);
    a1 = madd(h1, v128.load(cr + o, 16), a1);
  }
  if (o < ns) {
    const e0 = exp4(f32x4.mul(delta, v128.load(ap + o)));
    const h0 = madd(e0, v128.load(hp + o), f32x4.mul(du, v128.load(br + o)));
    v128.store(hp + o, h0);
    a0 = madd(h0, v128.load(cr + o), a0);
  }
  return hsum(f32x4.add(a0, a1));
}

/**
 * Mamba-2 SSD, (batch, head) items [lo, hi) of b*nh: y (b, l, nh, p) = C.h + D*x with
 * h = exp(dt*A)*h + dt*x*B, dt = clamp(softplus(dt_in + dtBias), dtMin, dtMax). A, D, dtBias (nh);
 * B, C (b, l, g, n); state (b, nh, p, n) updated in place.
 */
export function ssd_scan(
  lo: i32,
  hi: i32,
  _tid: i32,
  y: usize,
  x: usize,
  dt: usize,
  dtBias: usize,
  A: usize,
  B: usize,
  C: usize,
  D: usize,
  st: usize,
  _b: i32,
  l: i32,
  nh: i32,
  p: i32,
  g: i32,
  n: i32,
  dtMin: f32,
  dtMax: f32,
): void {
  const hpg = nh / g;
  const n8 = n & ~7, n4 = n & ~3;
  const ns = <usize> n << 2;
  for (let item = lo; item < hi; item++) {
    const ib = item / nh, ih = item % nh, ig = ih / hpg;
    const a = load<f32>(A + (<usize> ih << 2)), dd = load<f32>(D + (<usize> ih << 2));
    const bias = load<f32>(dtBias + (<usize> ih << 2));
    const sh = st + <usize> item * <usize> p * ns;
    for (let t = 0; t < l; t++) {
      const row = ib * l + t;
      let delta = softplus1(load<f32>(dt + (<usize> (row * nh + ih) << 2)) + bias);
      delta = min(max(delta, dtMin), dtMax);
      const dA = Mathf.exp(delta * a);
      const dAv = f32x4.splat(dA);
      const bc = (<usize> (row * g + ig)) * ns;
      const br = B + bc, cr = C + bc;
      const xr = x + ((<usize> (row * nh + ih) * <usize> p) << 2);
      for (let ip = 0; ip < p; ip++) {
        const u = load<f32>(xr + (<usize> ip << 2));
        const du = delta * u;
        const duv = f32x4.splat(du);
        const sp = sh + <usize> ip * ns;
        let a0 = f32x4.splat(0), a1 = a0;
        let s = 0;
        for (; s < n8; s += 8) {
          const o = <usize> s << 2;
          const h0 = f32x4.add(f32x4.mul(dAv, v128.load(sp + o)), f32x4.mul(duv, v128.load(br + o)));
          const h1 = f32x4.add(
            f32x4.mul(dAv, v128.load(sp + o + 16)),
            f32x4.mul(duv, v128.load(br + o + 16)),
          );
          v128.store(sp + o, h0);
          v128.store(sp + o + 16, h1);
          a0 = f32x4.add(a0, f32x4.mul(h0, v128.load(cr + o)));
          a1 = f32x4.add(a1, f32x4.mul(h1, v128.load(cr + o + 16)));
        }
        for (; s < n4; s += 4) {
          const o = <usize> s << 2;
          const h0 = f32x4.add(f32x4.mul(dAv, v128.load(sp + o)), f32x4.mul(duv, v128.load(br + o)));
          v128.store(sp + o, h0);
          a0 = f32x4.add(a0, f32x4.mul(h0, v128.load(cr + o)));
        }
        let acc = hsum(f32x4.add(a0, a1));
        for (; s < n; s++) {
          const o = <usize> s << 2;
          const hv = dA * load<f32>(sp + o) + du * load<f32>(br + o);
          store<f32>(sp + o, hv);
          acc += hv * load<f32>(cr + o);
        }
        store<f32>(y + ((<usize> (row * nh + ih) * <usize> p + <usize> ip) << 2), acc + u * dd);
      }
    }
  }
}
