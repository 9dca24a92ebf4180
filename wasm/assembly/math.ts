// Vector math on f32x4 lanes: exp, log, softplus, silu; plus helpers shared by the kernels.

/** a*b + c; fused (relaxed SIMD) in the relaxed build, a multiply and an add otherwise. */
// @ts-ignore: decorator

export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** (l0 + l1) + (l2 + l3): the one order every kernel sums lanes in. */
// @ts-ignore: decorator

export function hsum(a: v128): f32 {
  return (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) +
    (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3));
}

/** [hsum(a0), hsum(a1), hsum(a2), hsum(a3)], summed in the same order as hsum. */
// @ts-ignore: decorator

export function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 2, 6), v128.shuffle<f32>(a0, a1, 1, 5, 3, 7));
  const u23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 2, 6), v128.shuffle<f32>(a2, a3, 1, 5, 3, 7));
  return f32x4.add(v128.shuffle<f32>(u01, u23, 0, 1, 4, 5), v128.shuffle<f32>(u01, u23, 2, 3, 6, 7));
}

/**
 * exp(x) per lane (cephes-style polynomial; |rel err| ~ 2 ulp); x clamped to [-87.3, 88]. Uses
 * pmin/pmax (one instruction each, unlike min/max) and a magic-number round instead of nearest and
 * trunc_sat, which engines expand into long sequences.
 */
// @ts-ignore: decorator

export function exp4(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.33654)), f32x4.splat(88.0));
  const magic = f32x4.splat(12582912.0); // 1.5 * 2^23: adding it rounds to an integer
  const v = madd(x, f32x4.splat(1.44269504088896341), magic);
  const fx = f32x4.sub(v, magic);
  let r = madd(fx, f32x4.splat(-0.693359375), x);
  r = madd(fx, f32x4.splat(2.12194440e-4), r);
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  const y = madd(f32x4.mul(p, r), r, f32x4.add(r, f32x4.splat(1.0)));
  const e = i32x4.shl(i32x4.add(v, i32x4.splat(127 - 0x4b400000)), 23); // 2^fx
  return f32x4.mul(y, e);
}

/** log(x) per lane for finite x > 0 (cephes-style polynomial). */
// @ts-ignore: decorator

export function log4(x: v128): v128 {
  let e = i32x4.sub(i32x4.shr_u(x, 23), i32x4.splat(126));
  const m = v128.or(v128.and(x, i32x4.splat(0x807fffff)), i32x4.splat(0x3f000000)); // [0.5, 1)
  const small = f32x4.lt(m, f32x4.splat(0.707106781186547524));
  e = i32x4.add(e, small); // small lanes: e - 1
  const t = f32x4.sub(f32x4.add(m, v128.and(m, small)), f32x4.splat(1.0)); // m or 2m, minus 1
  let p = f32x4.splat(7.0376836292e-2);
  p = madd(p, t, f32x4.splat(-1.1514610310e-1));
  p = madd(p, t, f32x4.splat(1.1676998740e-1));
  p = madd(p, t, f32x4.splat(-1.2420140846e-1));
  p = madd(p, t, f32x4.splat(1.4249322787e-1));
  p = madd(p, t, f32x4.splat(-1.6668057665e-1));
  p = madd(p, t, f32x4.splat(2.0000714765e-1));
  p = madd(p, t, f32x4.splat(-2.4999993993e-1));
  p = madd(p, t, f32x4.splat(3.3333331174e-1));
  const z = f32x4.mul(t, t);
  const fe = f32x4.convert_i32x4_s(e);
  let y = f32x4.mul(f32x4.mul(t, z), p);
  y = madd(fe, f32x4.splat(-2.12194440e-4), y);
  y = madd(z, f32x4.splat(-0.5), y);
  return f32x4.add(f32x4.add(t, y), f32x4.mul(fe, f32x4.splat(0.693359375)));
}

/** softplus as torch computes it: x above 20, else log1p(exp(x)) (compensated for small exp(x)). */
// @ts-ignore: decorator

export function softplus4(x: v128): v128 {
  const e = exp4(x);
  const u = f32x4.add(e, f32x4.splat(1.0));
  const lg = log4(u);
  const fix = f32x4.div(f32x4.sub(f32x4.sub(u, f32x4.splat(1.0)), e), u);
  const r = f32x4.sub(lg, fix);
  return v128.bitselect(x, r, f32x4.gt(x, f32x4.splat(20.0)));
}

/** x * sigmoid(x) per lane. */
// @ts-ignore: decorator

export function silu4(x: v128): v128 {
  return f32x4.div(x, f32x4.add(f32x4.splat(1.0), exp4(f32x4.neg(x))));
}

/** softplus of one value, as torch computes it. */
export function softplus1(x: f32): f32 {
  return x > 20 ? x : Mathf.log1p(Mathf.exp(x));
}

/** Stores the first `cnt` lanes of v at p (cnt in 1..4). */
// @ts-ignore: decorator

export function storeN(p: usize, v: v128, cnt: i32): void {
  if (cnt >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (cnt > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (cnt > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** Bytes of scratch each thread owns (see the wasm backend's layout). */
export const SCRATCH: usize = 1 << 20;

/**
 * 4 x 4 transposes between rows and columns: for s in [0, n & ~3), the four values at
 * rows + r*stride + 4s (r < 4) become the lanes of the v128 at cols + 16s, and back. The n & 3
 * leftover columns are moved one value at a time. Its own inverse.
 */
export function transpose4(rows: usize, stride: usize, cols: usize, n: i32, toCols: bool): void {
  const n4 = n & ~3;
  for (let s = 0; s < n4; s += 4) {
    const ro = <usize> s << 2, co = <usize> s << 4;
    let r0: v128, r1: v128, r2: v128, r3: v128;
    if (toCols) {
      r0 = v128.load(rows + ro);
      r1 = v128.load(rows + stride + ro);
      r2 = v128.load(rows + 2 * stride + ro);
      r3 = v128.load(rows + 3 * stride + ro);
    } else {
      r0 = v128.load(cols + co);
      r1 = v128.load(cols + co + 16);
      r2 = v128.load(cols + co + 32);
      r3 = v128.load(cols + co + 48);
    }
    const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
    const t2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
    const c0 = v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), c1 = v128.shuffle<f32>(t0, t1, 2, 3, 6, 7);
    const c2 = v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), c3 = v128.shuffle<f32>(t2, t3, 2, 3, 6, 7);
    if (toCols) {
      v128.store(cols + co, c0);
      v128.store(cols + co + 16, c1);
      v128.store(cols + co + 32, c2);
      v128.store(cols + co + 48, c3);
    } else {
      v128.store(rows + ro, c0);
      v128.store(rows + stride + ro, c1);
      v128.store(rows + 2 * stride + ro, c2);
      v128.store(rows + 3 * stride + ro, c3);
    }
  }
  for (let s = n4; s < n; s++) {
    for (let r = 0; r < 4; r++) {
      const rp = rows + <usize> r * stride + (<usize> s << 2),
        cp = cols + (<usize> s << 4) + (<usize> r << 2);
      if (toCols) store<f32>(cp, load<f32>(rp));
      else store<f32>(rp, load<f32>(cp));
    }
  }
}
