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

/** exp(x) per lane (cephes-style polynomial; |rel err| ~ 2 ulp); x clamped to [-87.3, 88]. */
// @ts-ignore: decorator

export function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-87.33654)), f32x4.splat(88.0));
  const fx = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const y = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1.0));
  const e = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(fx), i32x4.splat(127)), 23);
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
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-1.1514610310e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(1.1676998740e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-1.2420140846e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(1.4249322787e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-1.6668057665e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(2.0000714765e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-2.4999993993e-1));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(3.3333331174e-1));
  const z = f32x4.mul(t, t);
  const fe = f32x4.convert_i32x4_s(e);
  let y = f32x4.mul(f32x4.mul(t, z), p);
  y = f32x4.add(y, f32x4.mul(fe, f32x4.splat(-2.12194440e-4)));
  y = f32x4.sub(y, f32x4.mul(z, f32x4.splat(0.5)));
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
