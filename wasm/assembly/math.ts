// Vector math on f32x4 lanes: exp, log, softplus, silu; plus helpers shared by the kernels.

/** a*b + c; fused (relaxed SIMD) in the relaxed build, a multiply and an add otherwise. */
// @ts-ignore: decorator
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** (l0 + l1) + (l2 + l3): the one order every kernel sums lanes in. */
// @ts-ignore: decorator
@inline
export function hsum(a: v128): f32 {
  return (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) +
    (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3));
}

/** [hsum(a0), hsum(a1), hsum(a2), hsum(a3)], summed in the same order as hsum. */
// @ts-ignore: decorator
@inline
export function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 2, 6), v128.shuffle<f32>(a0, a1, 1, 5, 3, 7));
  const u23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 2, 6), v128.shuffle<f32>(a2, a3, 1, 5, 3, 7));
  return f32x4.add(v128.shuffle<f32>(u01, u23, 0, 1, 4, 5), v128.shuffle<f32>(u01, u23, 2, 3, 6, 7));
}

/**
 * Constants of the vector math, each splatted to a v128, read from memory: engines rematerialize a
 * v128.const inside every loop iteration (several instructions each), while a load folds into the op.
 */
const KTAB = memory.data<f32>([
  -87.33654,
  -87.33654,
  -87.33654,
  -87.33654, // 0
  88.0,
  88.0,
  88.0,
  88.0, // 1
  12582912.0,
  12582912.0,
  12582912.0,
  12582912.0, // 2
  1.44269504088896341,
  1.44269504088896341,
  1.44269504088896341,
  1.44269504088896341, // 3
  -0.693359375,
  -0.693359375,
  -0.693359375,
  -0.693359375, // 4
  2.12194440e-4,
  2.12194440e-4,
  2.12194440e-4,
  2.12194440e-4, // 5
  1.9875691500e-4,
  1.9875691500e-4,
  1.9875691500e-4,
  1.9875691500e-4, // 6
  1.3981999507e-3,
  1.3981999507e-3,
  1.3981999507e-3,
  1.3981999507e-3, // 7
  8.3334519073e-3,
  8.3334519073e-3,
  8.3334519073e-3,
  8.3334519073e-3, // 8
  4.1665795894e-2,
  4.1665795894e-2,
  4.1665795894e-2,
  4.1665795894e-2, // 9
  1.6666665459e-1,
  1.6666665459e-1,
  1.6666665459e-1,
  1.6666665459e-1, // 10
  5.0000001201e-1,
  5.0000001201e-1,
  5.0000001201e-1,
  5.0000001201e-1, // 11
  1.0,
  1.0,
  1.0,
  1.0, // 12
  0.707106781186547524,
  0.707106781186547524,
  0.707106781186547524,
  0.707106781186547524, // 13
  7.0376836292e-2,
  7.0376836292e-2,
  7.0376836292e-2,
  7.0376836292e-2, // 14
  -1.1514610310e-1,
  -1.1514610310e-1,
  -1.1514610310e-1,
  -1.1514610310e-1, // 15
  1.1676998740e-1,
  1.1676998740e-1,
  1.1676998740e-1,
  1.1676998740e-1, // 16
  -1.2420140846e-1,
  -1.2420140846e-1,
  -1.2420140846e-1,
  -1.2420140846e-1, // 17
  1.4249322787e-1,
  1.4249322787e-1,
  1.4249322787e-1,
  1.4249322787e-1, // 18
  -1.6668057665e-1,
  -1.6668057665e-1,
  -1.6668057665e-1,
  -1.6668057665e-1, // 19
  2.0000714765e-1,
  2.0000714765e-1,
  2.0000714765e-1,
  2.0000714765e-1, // 20
  -2.4999993993e-1,
  -2.4999993993e-1,
  -2.4999993993e-1,
  -2.4999993993e-1, // 21
  3.3333331174e-1,
  3.3333331174e-1,
  3.3333331174e-1,
  3.3333331174e-1, // 22
  -2.12194440e-4,
  -2.12194440e-4,
  -2.12194440e-4,
  -2.12194440e-4, // 23
  -0.5,
  -0.5,
  -0.5,
  -0.5, // 24
  0.693359375,
  0.693359375,
  0.693359375,
  0.693359375, // 25
  20.0,
  20.0,
  20.0,
  20.0, // 26
  reinterpret<f32>(<i32> (127 - 0x4b400000)),
  reinterpret<f32>(<i32> (127 - 0x4b400000)),
  reinterpret<f32>(<i32> (127 - 0x4b400000)),
  reinterpret<f32>(<i32> (127 - 0x4b400000)),
  reinterpret<f32>(<i32> (126)),
  reinterpret<f32>(<i32> (126)),
  reinterpret<f32>(<i32> (126)),
  reinterpret<f32>(<i32> (126)),
  reinterpret<f32>(<i32> (0x807fffff)),
  reinterpret<f32>(<i32> (0x807fffff)),
  reinterpret<f32>(<i32> (0x807fffff)),
  reinterpret<f32>(<i32> (0x807fffff)),
  reinterpret<f32>(<i32> (0x3f000000)),
  reinterpret<f32>(<i32> (0x3f000000)),
  reinterpret<f32>(<i32> (0x3f000000)),
  reinterpret<f32>(<i32> (0x3f000000)),
], 16);

// @ts-ignore: decorator
@inline
function kc(i: i32): v128 {
  return v128.load(KTAB + (<usize> i << 4));
}

/**
 * exp(x) per lane (cephes-style polynomial; |rel err| ~ 2 ulp); x clamped to [-87.3, 88]. Uses
 * pmin/pmax (one instruction each, unlike min/max) and a magic-number round instead of nearest and
 * trunc_sat, which engines expand into long sequences.
 */
// @ts-ignore: decorator
@inline
export function exp4(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, kc(0)), kc(1));
  const magic = kc(2); // 1.5 * 2^23: adding it rounds to an integer
  const v = madd(x, kc(3), magic);
  const fx = f32x4.sub(v, magic);
  let r = madd(fx, kc(4), x);
  r = madd(fx, kc(5), r);
  let p = kc(6);
  p = madd(p, r, kc(7));
  p = madd(p, r, kc(8));
  p = madd(p, r, kc(9));
  p = madd(p, r, kc(10));
  p = madd(p, r, kc(11));
  const y = madd(f32x4.mul(p, r), r, f32x4.add(r, kc(12)));
  const e = i32x4.shl(i32x4.add(v, kc(27)), 23); // 2^fx
  return f32x4.mul(y, e);
}

/** log(x) per lane for finite x > 0 (cephes-style polynomial). */
// @ts-ignore: decorator
@inline
export function log4(x: v128): v128 {
  let e = i32x4.sub(i32x4.shr_u(x, 23), kc(28));
  const m = v128.or(v128.and(x, kc(29)), kc(30)); // [0.5, 1)
  const small = f32x4.lt(m, kc(13));
  e = i32x4.add(e, small); // small lanes: e - 1
  const t = f32x4.sub(f32x4.add(m, v128.and(m, small)), kc(12)); // m or 2m, minus 1
  let p = kc(14);
  p = madd(p, t, kc(15));
  p = madd(p, t, kc(16));
  p = madd(p, t, kc(17));
  p = madd(p, t, kc(18));
  p = madd(p, t, kc(19));
  p = madd(p, t, kc(20));
  p = madd(p, t, kc(21));
  p = madd(p, t, kc(22));
  const z = f32x4.mul(t, t);
  const fe = f32x4.convert_i32x4_s(e);
  let y = f32x4.mul(f32x4.mul(t, z), p);
  y = madd(fe, kc(23), y);
  y = madd(z, kc(24), y);
  return f32x4.add(f32x4.add(t, y), f32x4.mul(fe, kc(25)));
}

/** softplus as torch computes it: x above 20, else log1p(exp(x)) (compensated for small exp(x)). */
// @ts-ignore: decorator
@inline
export function softplus4(x: v128): v128 {
  const e = exp4(x);
  const u = f32x4.add(e, kc(12));
  const lg = log4(u);
  const fix = f32x4.div(f32x4.sub(f32x4.sub(u, kc(12)), e), u);
  const r = f32x4.sub(lg, fix);
  return v128.bitselect(x, r, f32x4.gt(x, kc(26)));
}

/** x * sigmoid(x) per lane. */
// @ts-ignore: decorator
@inline
export function silu4(x: v128): v128 {
  return f32x4.div(x, f32x4.add(kc(12), exp4(f32x4.neg(x))));
}

/** softplus of one value, as torch computes it. */
export function softplus1(x: f32): f32 {
  return x > 20 ? x : Mathf.log1p(Mathf.exp(x));
}

/** Stores the first `cnt` lanes of v at p (cnt in 1..4). */
// @ts-ignore: decorator
@inline
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
 * Moves four rows into lanes and back: for s < n, value s of row r (at rows + r*rowStride + 4s) is
 * lane r of the v128 at cols + s*colStride. `toCols` picks the direction. 4 x 4 SIMD transposes, the
 * n & 3 leftover columns one value at a time.
 */
export function transpose4(
  rows: usize,
  rowStride: usize,
  cols: usize,
  colStride: usize,
  n: i32,
  toCols: bool,
): void {
  const n4 = n & ~3;
  const r1p = rows + rowStride, r2p = rows + 2 * rowStride, r3p = rows + 3 * rowStride;
  for (let s = 0; s < n4; s += 4) {
    const ro = <usize> s << 2;
    const c0p = cols + <usize> s * colStride,
      c1p = c0p + colStride,
      c2p = c1p + colStride,
      c3p = c2p + colStride;
    let r0: v128, r1: v128, r2: v128, r3: v128;
    if (toCols) {
      r0 = v128.load(rows + ro);
      r1 = v128.load(r1p + ro);
      r2 = v128.load(r2p + ro);
      r3 = v128.load(r3p + ro);
    } else {
      r0 = v128.load(c0p);
      r1 = v128.load(c1p);
      r2 = v128.load(c2p);
      r3 = v128.load(c3p);
    }
    const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
    const t2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
    const c0 = v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), c1 = v128.shuffle<f32>(t0, t1, 2, 3, 6, 7);
    const c2 = v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), c3 = v128.shuffle<f32>(t2, t3, 2, 3, 6, 7);
    if (toCols) {
      v128.store(c0p, c0);
      v128.store(c1p, c1);
      v128.store(c2p, c2);
      v128.store(c3p, c3);
    } else {
      v128.store(rows + ro, c0);
      v128.store(r1p + ro, c1);
      v128.store(r2p + ro, c2);
      v128.store(r3p + ro, c3);
    }
  }
  for (let s = n4; s < n; s++) {
    for (let r = 0; r < 4; r++) {
      const rp = rows + <usize> r * rowStride + (<usize> s << 2),
        cp = cols + <usize> s * colStride + (<usize> r << 2);
      if (toCols) store<f32>(cp, load<f32>(rp));
      else store<f32>(rp, load<f32>(cp));
    }
  }
}

/**
 * Like transpose4 for the first `cnt` (< 4) rows only: missing lanes read as 0 and are not written back.
 */
export function transposePartial(
  rows: usize,
  rowStride: usize,
  cols: usize,
  colStride: usize,
  n: i32,
  cnt: i32,
  toCols: bool,
): void {
  for (let s = 0; s < n; s++) {
    for (let r = 0; r < 4; r++) {
      const rp = rows + <usize> r * rowStride + (<usize> s << 2),
        cp = cols + <usize> s * colStride + (<usize> r << 2);
      if (toCols) store<f32>(cp, r < cnt ? load<f32>(rp) : 0);
      else if (r < cnt) store<f32>(rp, load<f32>(cp));
    }
  }
}
