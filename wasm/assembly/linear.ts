// Linear layers: y (m, o) = x (m, i) @ w (o, i)^T + bias (o), for outputs [lo, hi) of every row.
//
// Every path computes one output the same way, so that results do not depend on tiling or threads:
// four lane accumulators over k in steps of 4 (madd), summed as hsum, then the k tail in order, then
// the bias. Small m (decode) streams each weight once: 8 or 4 rows at a time, one accumulator each.
// Larger m (prefill) uses 2 x 4 register tiles over panels of 64 weight rows. Packed weights (f16,
// bf16, q8) are converted in the kernel; for prefill a panel is first unpacked into thread scratch.

import { hsum, hsum4, madd, SCRATCH, storeN } from "./math";

/** Rows of x that switch from matrix-vector to tiled matrix-matrix work. */
const TILE_M: i32 = 4;
/** Weight rows per prefill panel. */
const PANEL: i32 = 64;

// @ts-ignore: decorator
@inline
function tail(s: f32, w: usize, x: usize, i4: i32, i: i32): f32 {
  for (let k = i4; k < i; k++) s += load<f32>(w + (<usize> k << 2)) * load<f32>(x + (<usize> k << 2));
  return s;
}

// @ts-ignore: decorator
@inline
function addBias(s: f32, bias: usize, c: i32): f32 {
  return bias ? s + load<f32>(bias + (<usize> c << 2)) : s;
}

/** y[c] for one output row c: w, x point at the rows. */
function dot1(y: usize, w: usize, x: usize, bias: usize, c: i32, i: i32): void {
  const i4 = i & ~3;
  let a = f32x4.splat(0);
  for (let k = 0; k < i4; k += 4) {
    const o = <usize> k << 2;
    a = madd(v128.load(w + o), v128.load(x + o), a);
  }
  store<f32>(y + (<usize> c << 2), addBias(tail(hsum(a), w, x, i4, i), bias, c));
}

/** y[c .. c+4) for one x row; w points at weight row c. */
function dot4(y: usize, w: usize, x: usize, bias: usize, c: i32, i: i32): void {
  const i4 = i & ~3;
  const rs = <usize> i << 2;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (let k = 0; k < i4; k += 4) {
    const o = <usize> k << 2;
    const xv = v128.load(x + o);
    a0 = madd(v128.load(w + o), xv, a0);
    a1 = madd(v128.load(w + rs + o), xv, a1);
    a2 = madd(v128.load(w + 2 * rs + o), xv, a2);
    a3 = madd(v128.load(w + 3 * rs + o), xv, a3);
  }
  const s = hsum4(a0, a1, a2, a3);
  store<f32>(y + (<usize> c << 2), addBias(tail(f32x4.extract_lane(s, 0), w, x, i4, i), bias, c));
  store<f32>(
    y + (<usize> (c + 1) << 2),
    addBias(tail(f32x4.extract_lane(s, 1), w + rs, x, i4, i), bias, c + 1),
  );
  store<f32>(
    y + (<usize> (c + 2) << 2),
    addBias(tail(f32x4.extract_lane(s, 2), w + 2 * rs, x, i4, i), bias, c + 2),
  );
  store<f32>(
    y + (<usize> (c + 3) << 2),
    addBias(tail(f32x4.extract_lane(s, 3), w + 3 * rs, x, i4, i), bias, c + 3),
  );
}

/** y[c .. c+8) for one x row: eight weight streams, eight independent accumulators. */
function dot8(y: usize, w: usize, x: usize, bias: usize, c: i32, i: i32): void {
  const i4 = i & ~3;
  const rs = <usize> i << 2;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  const w4 = w + 4 * rs;
  for (let k = 0; k < i4; k += 4) {
    const o = <usize> k << 2;
    const xv = v128.load(x + o);
    a0 = madd(v128.load(w + o), xv, a0);
    a1 = madd(v128.load(w + rs + o), xv, a1);
    a2 = madd(v128.load(w + 2 * rs + o), xv, a2);
    a3 = madd(v128.load(w + 3 * rs + o), xv, a3);
    a4 = madd(v128.load(w4 + o), xv, a4);
    a5 = madd(v128.load(w4 + rs + o), xv, a5);
    a6 = madd(v128.load(w4 + 2 * rs + o), xv, a6);
    a7 = madd(v128.load(w4 + 3 * rs + o), xv, a7);
  }
  const s = hsum4(a0, a1, a2, a3);
  const t = hsum4(a4, a5, a6, a7);
  store<f32>(y + (<usize> c << 2), addBias(tail(f32x4.extract_lane(s, 0), w, x, i4, i), bias, c));
  store<f32>(
    y + (<usize> (c + 1) << 2),
    addBias(tail(f32x4.extract_lane(s, 1), w + rs, x, i4, i), bias, c + 1),
  );
  store<f32>(
    y + (<usize> (c + 2) << 2),
    addBias(tail(f32x4.extract_lane(s, 2), w + 2 * rs, x, i4, i), bias, c + 2),
  );
  store<f32>(
    y + (<usize> (c + 3) << 2),
    addBias(tail(f32x4.extract_lane(s, 3), w + 3 * rs, x, i4, i), bias, c + 3),
  );
  store<f32>(y + (<usize> (c + 4) << 2), addBias(tail(f32x4.extract_lane(t, 0), w4, x, i4, i), bias, c + 4));
  store<f32>(
    y + (<usize> (c + 5) << 2),
    addBias(tail(f32x4.extract_lane(t, 1), w4 + rs, x, i4, i), bias, c + 5),
  );
  store<f32>(
    y + (<usize> (c + 6) << 2),
    addBias(tail(f32x4.extract_lane(t, 2), w4 + 2 * rs, x, i4, i), bias, c + 6),
  );
  store<f32>(
    y + (<usize> (c + 7) << 2),
    addBias(tail(f32x4.extract_lane(t, 3), w4 + 3 * rs, x, i4, i), bias, c + 7),
  );
}

/**
 * y[c], y[c+q], ..., y[c+7q] for one x row: eight rows q apart. Called for c, c+1, c+2, ... each of
 * the eight rows walks forward through its own slice of the matrix, so the hardware sees eight long
 * sequential memory streams (faster than many short ones).
 */
function dot1x8(y: usize, w: usize, x: usize, bias: usize, c: i32, q: i32, i: i32): void {
  const i4 = i & ~3;
  const rs = <usize> i << 2, qs = <usize> q * rs;
  const p0 = w + <usize> c * rs, p1 = p0 + qs, p2 = p1 + qs, p3 = p2 + qs;
  const p4 = p3 + qs, p5 = p4 + qs, p6 = p5 + qs, p7 = p6 + qs;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (let o: usize = 0, end = <usize> i4 << 2; o < end; o += 16) {
    const xv = v128.load(x + o);
    a0 = madd(v128.load(p0 + o), xv, a0);
    a1 = madd(v128.load(p1 + o), xv, a1);
    a2 = madd(v128.load(p2 + o), xv, a2);
    a3 = madd(v128.load(p3 + o), xv, a3);
    a4 = madd(v128.load(p4 + o), xv, a4);
    a5 = madd(v128.load(p5 + o), xv, a5);
    a6 = madd(v128.load(p6 + o), xv, a6);
    a7 = madd(v128.load(p7 + o), xv, a7);
  }
  const s = hsum4(a0, a1, a2, a3), t = hsum4(a4, a5, a6, a7);
  const yc = y + (<usize> c << 2), yq = <usize> q << 2;
  store<f32>(yc, addBias(tail(f32x4.extract_lane(s, 0), p0, x, i4, i), bias, c));
  store<f32>(yc + yq, addBias(tail(f32x4.extract_lane(s, 1), p1, x, i4, i), bias, c + q));
  store<f32>(yc + 2 * yq, addBias(tail(f32x4.extract_lane(s, 2), p2, x, i4, i), bias, c + 2 * q));
  store<f32>(yc + 3 * yq, addBias(tail(f32x4.extract_lane(s, 3), p3, x, i4, i), bias, c + 3 * q));
  store<f32>(yc + 4 * yq, addBias(tail(f32x4.extract_lane(t, 0), p4, x, i4, i), bias, c + 4 * q));
  store<f32>(yc + 5 * yq, addBias(tail(f32x4.extract_lane(t, 1), p5, x, i4, i), bias, c + 5 * q));
  store<f32>(yc + 6 * yq, addBias(tail(f32x4.extract_lane(t, 2), p6, x, i4, i), bias, c + 6 * q));
  store<f32>(yc + 7 * yq, addBias(tail(f32x4.extract_lane(t, 3), p7, x, i4, i), bias, c + 7 * q));
}

/** Stores four outputs c .. c+4 of one row from their lane sums s, adding the k tail and the bias. */
// @ts-ignore: decorator
@inline
function tileOut(
  y: usize,
  w: usize,
  x: usize,
  bias: usize,
  c: i32,
  i: i32,
  i4: i32,
  rs: usize,
  s: v128,
): void {
  const yc = y + (<usize> c << 2);
  if (i4 == i) { // no k tail: the same sums, added to the bias four at a time
    v128.store(yc, bias ? f32x4.add(s, v128.load(bias + (<usize> c << 2))) : s);
    return;
  }
  store<f32>(yc, addBias(tail(f32x4.extract_lane(s, 0), w, x, i4, i), bias, c));
  store<f32>(yc + 4, addBias(tail(f32x4.extract_lane(s, 1), w + rs, x, i4, i), bias, c + 1));
  store<f32>(yc + 8, addBias(tail(f32x4.extract_lane(s, 2), w + 2 * rs, x, i4, i), bias, c + 2));
  store<f32>(yc + 12, addBias(tail(f32x4.extract_lane(s, 3), w + 3 * rs, x, i4, i), bias, c + 3));
}

/**
 * y rows r, r+1, outputs c .. c+4: a 2 x 4 register tile (eight accumulators, four weight rows and
 * one x row in registers: fifteen fit; a 3 x 4 tile spilled and ran 11% slower). x points at row r,
 * w at weight row c; ys is y's row stride in bytes.
 */
function tile2x4(y: usize, ys: usize, w: usize, x: usize, bias: usize, c: i32, i: i32): void {
  const i4 = i & ~3;
  const rs = <usize> i << 2;
  let a00 = f32x4.splat(0), a01 = a00, a02 = a00, a03 = a00;
  let a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  const w1 = w + rs, w2 = w + 2 * rs, w3 = w + 3 * rs, x1 = x + rs;
  for (let o: usize = 0, end = <usize> i4 << 2; o < end; o += 16) {
    const v0 = v128.load(w + o), v1 = v128.load(w1 + o), v2 = v128.load(w2 + o), v3 = v128.load(w3 + o);
    const x0v = v128.load(x + o);
    a00 = madd(v0, x0v, a00);
    a01 = madd(v1, x0v, a01);
    a02 = madd(v2, x0v, a02);
    a03 = madd(v3, x0v, a03);
    const x1v = v128.load(x1 + o);
    a10 = madd(v0, x1v, a10);
    a11 = madd(v1, x1v, a11);
    a12 = madd(v2, x1v, a12);
    a13 = madd(v3, x1v, a13);
  }
  tileOut(y, w, x, bias, c, i, i4, rs, hsum4(a00, a01, a02, a03));
  tileOut(y + ys, w, x1, bias, c, i, i4, rs, hsum4(a10, a11, a12, a13));
}

/** Outputs [c0, c1) of every row, with w pointing at weight row c0 (f32 rows of i). */
function tiled(y: usize, w: usize, x: usize, bias: usize, m: i32, o: i32, i: i32, c0: i32, c1: i32): void {
  const rs = <usize> i << 2, ys = <usize> o << 2;
  let r = 0;
  for (; r + 2 <= m; r += 2) {
    const xr = x + <usize> r * rs, yr = y + <usize> r * ys;
    let c = c0;
    for (; c + 4 <= c1; c += 4) tile2x4(yr, ys, w + <usize> (c - c0) * rs, xr, bias, c, i);
    for (; c < c1; c++) {
      for (let j = 0; j < 2; j++) {
        dot1(yr + <usize> j * ys, w + <usize> (c - c0) * rs, xr + <usize> j * rs, bias, c, i);
      }
    }
  }
  for (; r < m; r++) {
    for (let c = c0; c < c1; c++) {
      dot1(y + <usize> r * ys, w + <usize> (c - c0) * rs, x + <usize> r * rs, bias, c, i);
    }
  }
}

/** f32 weights (o, i). */
export function linear_f32(
  lo: i32,
  hi: i32,
  _tid: i32,
  y: usize,
  w: usize,
  x: usize,
  bias: usize,
  m: i32,
  o: i32,
  i: i32,
): void {
  const rs = <usize> i << 2, ys = <usize> o << 2;
  if (m < TILE_M) {
    for (let r = 0; r < m; r++) {
      const xr = x + <usize> r * rs, yr = y + <usize> r * ys;
      // four far-apart streams of two rows each: [lo, lo+q), [lo+q, lo+2q), ... read together
      const q = (hi - lo) >> 3;
      for (let j = 0; j < q; j++) dot1x8(yr, w, xr, bias, lo + j, q, i);
      let c = lo + 8 * q;
      for (; c + 8 <= hi; c += 8) dot8(yr, w + <usize> c * rs, xr, bias, c, i);
      for (; c + 4 <= hi; c += 4) dot4(yr, w + <usize> c * rs, xr, bias, c, i);
      for (; c < hi; c++) dot1(yr, w + <usize> c * rs, xr, bias, c, i);
    }
    return;
  }
  // Blocks of x rows that stay in L2, times panels of weight rows that stay in L1.
  const mc = m;
  for (let r0 = 0; r0 < m; r0 += mc) {
    const mr = min(mc, m - r0);
    for (let c0 = lo; c0 < hi; c0 += PANEL) {
      tiled(
        y + <usize> r0 * ys,
        w + <usize> c0 * rs,
        x + <usize> r0 * rs,
        bias,
        mr,
        o,
        i,
        c0,
        min(c0 + PANEL, hi),
      );
    }
  }
}

// ---- f16 and bf16 ----

/** f16 bits (sign-extended to i32 lanes) -> f32; finite values only (packing refuses the rest). */
// @ts-ignore: decorator
@inline
function half4(h: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shl(h, 13), v128.load(HALF)), v128.load(HALF, 16));
}

/** half4's constants, read from memory (a v128.const is rematerialized in every loop iteration). */
const HALF = memory.data<u32>([
  0x8fffe000,
  0x8fffe000,
  0x8fffe000,
  0x8fffe000,
  0x77800000,
  0x77800000,
  0x77800000,
  0x77800000, // 2^112
], 16);

// @ts-ignore: decorator
@inline
function half1(h: u16): f32 {
  const v = <i32> <i16> h;
  return reinterpret<f32>((v << 13) & 0x8fffe000) * <f32> 5.192296858534828e33;
}

// @ts-ignore: decorator
@inline
function bf16lo(h: v128): v128 {
  return v128.shuffle<u16>(i16x8.splat(0), h, 0, 8, 1, 9, 2, 10, 3, 11);
}

// @ts-ignore: decorator
@inline
function bf16hi(h: v128): v128 {
  return v128.shuffle<u16>(i16x8.splat(0), h, 4, 12, 5, 13, 6, 14, 7, 15);
}

// @ts-ignore: decorator
@inline
function bf161(h: u16): f32 {
  return reinterpret<f32>(<u32> h << 16);
}

/** Unpacks rows [c0, c1) of a 16-bit matrix (o, i) into f32 rows at dst. */
function unpack16(dst: usize, w: usize, c0: i32, c1: i32, i: i32, bf: bool): void {
  const n = <usize> (c1 - c0) * <usize> i;
  const src = w + <usize> c0 * <usize> i * 2;
  const n8 = n & ~7;
  for (let k: usize = 0; k < n8; k += 8) {
    const h = v128.load(src + k * 2);
    if (bf) {
      v128.store(dst + k * 4, bf16lo(h));
      v128.store(dst + k * 4 + 16, bf16hi(h));
    } else {
      v128.store(dst + k * 4, half4(i32x4.extend_low_i16x8_s(h)));
      v128.store(dst + k * 4 + 16, half4(i32x4.extend_high_i16x8_s(h)));
    }
  }
  for (let k = n8; k < n; k++) {
    const h = load<u16>(src + k * 2);
    store<f32>(dst + k * 4, bf ? bf161(h) : half1(h));
  }
}

/** y[c .. c+4) for one x row from 16-bit weights; the same sums as dot4 on the unpacked rows. */
function dot4x16(y: usize, w: usize, x: usize, bias: usize, c: i32, q: i32, i: i32, bf: bool): void {
  const i8 = i & ~7, i4 = i & ~3;
  const rs = <usize> q * (<usize> i << 1); // bytes between the four rows
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (let k = 0; k < i8; k += 8) {
    const xo = <usize> k << 2, wo = <usize> k << 1;
    const xl = v128.load(x + xo), xh = v128.load(x + xo + 16);
    const h0 = v128.load(w + wo), h1 = v128.load(w + rs + wo);
    const h2 = v128.load(w + 2 * rs + wo), h3 = v128.load(w + 3 * rs + wo);
    if (bf) {
      a0 = madd(bf16hi(h0), xh, madd(bf16lo(h0), xl, a0));
      a1 = madd(bf16hi(h1), xh, madd(bf16lo(h1), xl, a1));
      a2 = madd(bf16hi(h2), xh, madd(bf16lo(h2), xl, a2));
      a3 = madd(bf16hi(h3), xh, madd(bf16lo(h3), xl, a3));
    } else {
      a0 = madd(half4(i32x4.extend_high_i16x8_s(h0)), xh, madd(half4(i32x4.extend_low_i16x8_s(h0)), xl, a0));
      a1 = madd(half4(i32x4.extend_high_i16x8_s(h1)), xh, madd(half4(i32x4.extend_low_i16x8_s(h1)), xl, a1));
      a2 = madd(half4(i32x4.extend_high_i16x8_s(h2)), xh, madd(half4(i32x4.extend_low_i16x8_s(h2)), xl, a2));
      a3 = madd(half4(i32x4.extend_high_i16x8_s(h3)), xh, madd(half4(i32x4.extend_low_i16x8_s(h3)), xl, a3));
    }
  }
  if (i8 < i4) {
    const xo = <usize> i8 << 2, wo = <usize> i8 << 1;
    const xl = v128.load(x + xo);
    const h0 = v128.load64_zero(w + wo), h1 = v128.load64_zero(w + rs + wo);
    const h2 = v128.load64_zero(w + 2 * rs + wo), h3 = v128.load64_zero(w + 3 * rs + wo);
    if (bf) {
      a0 = madd(bf16lo(h0), xl, a0);
      a1 = madd(bf16lo(h1), xl, a1);
      a2 = madd(bf16lo(h2), xl, a2);
      a3 = madd(bf16lo(h3), xl, a3);
    } else {
      a0 = madd(half4(i32x4.extend_low_i16x8_s(h0)), xl, a0);
      a1 = madd(half4(i32x4.extend_low_i16x8_s(h1)), xl, a1);
      a2 = madd(half4(i32x4.extend_low_i16x8_s(h2)), xl, a2);
      a3 = madd(half4(i32x4.extend_low_i16x8_s(h3)), xl, a3);
    }
  }
  const s = hsum4(a0, a1, a2, a3);
  for (let j = 0; j < 4; j++) {
    let v: f32 = j == 0
      ? f32x4.extract_lane(s, 0)
      : j == 1
      ? f32x4.extract_lane(s, 1)
      : j == 2
      ? f32x4.extract_lane(s, 2)
      : f32x4.extract_lane(s, 3);
    const wr = w + <usize> j * rs;
    for (let k = i4; k < i; k++) {
      const h = load<u16>(wr + (<usize> k << 1));
      v += (bf ? bf161(h) : half1(h)) * load<f32>(x + (<usize> k << 2));
    }
    store<f32>(y + (<usize> (c + j * q) << 2), addBias(v, bias, c + j * q));
  }
}

/** y[c] for one x row from 16-bit weights, in dot1's order. */
function dot1x16(y: usize, w: usize, x: usize, bias: usize, c: i32, i: i32, bf: bool): void {
  const i4 = i & ~3;
  let a = f32x4.splat(0);
  for (let k = 0; k < i4; k += 4) {
    const h = v128.load64_zero(w + (<usize> k << 1));
    const wv = bf ? bf16lo(h) : half4(i32x4.extend_low_i16x8_s(h));
    a = madd(wv, v128.load(x + (<usize> k << 2)), a);
  }
  let v = hsum(a);
  for (let k = i4; k < i; k++) {
    const h = load<u16>(w + (<usize> k << 1));
    v += (bf ? bf161(h) : half1(h)) * load<f32>(x + (<usize> k << 2));
  }
  store<f32>(y + (<usize> c << 2), addBias(v, bias, c));
}

function linear16(
  lo: i32,
  hi: i32,
  tid: i32,
  y: usize,
  w: usize,
  x: usize,
  bias: usize,
  m: i32,
  o: i32,
  i: i32,
  scr: usize,
  bf: bool,
): void {
  const rs = <usize> i << 1, xs = <usize> i << 2, ys = <usize> o << 2;
  if (m < TILE_M) {
    for (let r = 0; r < m; r++) {
      const xr = x + <usize> r * xs, yr = y + <usize> r * ys;
      // four rows q apart at a time: four long memory streams
      const q = (hi - lo) >> 2;
      for (let j = 0; j < q; j++) dot4x16(yr, w + <usize> (lo + j) * rs, xr, bias, lo + j, q, i, bf);
      let c = lo + 4 * q;
      for (; c + 4 <= hi; c += 4) dot4x16(yr, w + <usize> c * rs, xr, bias, c, 1, i, bf);
      for (; c < hi; c++) dot1x16(yr, w + <usize> c * rs, xr, bias, c, i, bf);
    }
    return;
  }
  const panel = scr + <usize> tid * SCRATCH;
  const rows = <i32> max<usize>(1, min<usize>(<usize> PANEL, SCRATCH / xs));
  for (let c0 = lo; c0 < hi; c0 += rows) {
    const c1 = min(c0 + rows, hi);
    unpack16(panel, w, c0, c1, i, bf);
    tiled(y, panel, x, bias, m, o, i, c0, c1);
  }
}

/** f16 weights (o, i), 2 bytes each. */
export function linear_f16(
  lo: i32,
  hi: i32,
  tid: i32,
  y: usize,
  w: usize,
  x: usize,
  bias: usize,
  m: i32,
  o: i32,
  i: i32,
  scr: usize,
): void {
  linear16(lo, hi, tid, y, w, x, bias, m, o, i, scr, false);
}

/** bf16 weights (o, i), 2 bytes each. */
export function linear_bf16(
  lo: i32,
  hi: i32,
  tid: i32,
  y: usize,
  w: usize,
  x: usize,
  bias: usize,
  m: i32,
  o: i32,
  i: i32,
  scr: usize,
): void {
  linear16(lo, hi, tid, y, w, x, bias, m, o, i, scr, true);
}

// ---- q8: int8 weights in blocks of 32 along i, one f32 scale per block ----
// Rows go in groups of four (o padded with zero rows to a multiple of 4), interleaved per block so that
// a group is one contiguous stream: q (o/4, nb, 4, 32) i8, s (o/4, nb, 4) f32; nb = ceil(i / 32), the
// last block zero-padded. Decode quantizes x to i16 per block (xq (m, nb*32), xs (m, nb)) and sums
// with integer dot products; the four rows' block sums are scaled together.

/** Byte offset of row c's block bk in q (its scale is at s + this / 8). */
// @ts-ignore: decorator
@inline
function q8at(c: i32, bk: i32, nb: i32): usize {
  return (((<usize> (c >> 2) * <usize> nb + <usize> bk) << 2) + <usize> (c & 3)) << 5;
}

/** x (m, i) -> xq (m, nb*32) i16, xs (m, nb) f32 with x ~ xq * xs. */
function quantize_x(x: usize, xq: usize, xs: usize, m: i32, i: i32): void {
  const nb = (i + 31) >> 5;
  const full = i >> 5; // blocks without padding
  const magic = f32x4.splat(12582912.0), bits = i32x4.splat(0x4b400000);
  const absMask = i32x4.splat(0x7fffffff);
  for (let r = 0; r < m; r++) {
    const xr = x + <usize> r * (<usize> i << 2);
    for (let bk = 0; bk < nb; bk++) {
      const xb = xr + (<usize> bk << 7);
      const qb = xq + ((<usize> r * nb + bk) << 6);
      if (bk < full) {
        let mx = v128.and(v128.load(xb), absMask);
        for (let k = 16; k < 128; k += 16) mx = f32x4.pmax(mx, v128.and(v128.load(xb + <usize> k), absMask));
        mx = f32x4.pmax(mx, v128.shuffle<f32>(mx, mx, 2, 3, 0, 1));
        const amax = max(f32x4.extract_lane(mx, 0), f32x4.extract_lane(mx, 1));
        store<f32>(xs + ((<usize> r * nb + bk) << 2), amax / 32767);
        const inv = f32x4.splat(amax > 0 ? 32767 / amax : 0);
        for (let k = 0; k < 128; k += 32) {
          const a = i32x4.sub(f32x4.add(f32x4.mul(v128.load(xb + <usize> k), inv), magic), bits);
          const b = i32x4.sub(f32x4.add(f32x4.mul(v128.load(xb + <usize> k + 16), inv), magic), bits);
          v128.store(qb + (<usize> k >> 1), i16x8.narrow_i32x4_s(a, b));
        }
        continue;
      }
      const k0 = bk << 5, k1 = min(k0 + 32, i);
      let amax: f32 = 0;
      for (let k = k0; k < k1; k++) amax = max(amax, abs(load<f32>(xr + (<usize> k << 2))));
      const scale: f32 = amax / 32767;
      const inv: f32 = amax > 0 ? 32767 / amax : 0;
      store<f32>(xs + ((<usize> r * nb + bk) << 2), scale);
      for (let k = k0; k < k0 + 32; k++) {
        const v: f32 = k < k1 ? load<f32>(xr + (<usize> k << 2)) : 0;
        store<i16>(qb + (<usize> (k - k0) << 1), <i16> <i32> nearest(v * inv));
      }
    }
  }
}

/** One row's block of 32: i8 weights at q times the i16 activations x0..x3, as an i32x4. */
// @ts-ignore: decorator
@inline
function row32(q: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const d0 = i32x4.dot_i16x8_s(v128.load8x8_s(q), x0);
  const d1 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 8), x1);
  const d2 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 16), x2);
  const d3 = i32x4.dot_i16x8_s(v128.load8x8_s(q, 24), x3);
  return i32x4.add(i32x4.add(d0, d1), i32x4.add(d2, d3));
}

/** The four rows' sums of one block of the group at qb, scaled: a madd term for the accumulator. */
// @ts-ignore: decorator
@inline
function q8block(qb: usize, sv: v128, x0: v128, x1: v128, x2: v128, x3: v128, acc: v128): v128 {
  const r0 = row32(qb, x0, x1, x2, x3), r1 = row32(qb + 32, x0, x1, x2, x3);
  const r2 = row32(qb + 64, x0, x1, x2, x3), r3 = row32(qb + 96, x0, x1, x2, x3);
  // lane j of `sum` = the four lanes of r_j added
  const u01 = i32x4.add(v128.shuffle<i32>(r0, r1, 0, 4, 2, 6), v128.shuffle<i32>(r0, r1, 1, 5, 3, 7));
  const u23 = i32x4.add(v128.shuffle<i32>(r2, r3, 0, 4, 2, 6), v128.shuffle<i32>(r2, r3, 1, 5, 3, 7));
  const sum = i32x4.add(v128.shuffle<i32>(u01, u23, 0, 1, 4, 5), v128.shuffle<i32>(u01, u23, 2, 3, 6, 7));
  return madd(f32x4.convert_i32x4_s(sum), sv, acc);
}

/**
 * Outputs of the row groups starting at c and c2 (cnt, cnt2 of their 4 rows stored; cnt2 0: none)
 * for one x row. Two groups far apart make two memory streams, which read faster than one.
 */
function q8group(
  y: usize,
  q: usize,
  s: usize,
  xq: usize,
  xs: usize,
  bias: usize,
  c: i32,
  cnt: i32,
  c2: i32,
  cnt2: i32,
  nb: i32,
): void {
  let acc = f32x4.splat(0), acc2 = acc;
  const g = <usize> (c >> 2) * <usize> nb, g2 = <usize> (c2 >> 2) * <usize> nb;
  for (let bk = 0; bk < nb; bk++) {
    const xb = xq + (<usize> bk << 6);
    const x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    const xsv = f32x4.splat(load<f32>(xs + (<usize> bk << 2)));
    acc = q8block(
      q + ((g + <usize> bk) << 7),
      f32x4.mul(v128.load(s + ((g + <usize> bk) << 4)), xsv),
      x0,
      x1,
      x2,
      x3,
      acc,
    );
    if (cnt2) {
      const sv2 = f32x4.mul(v128.load(s + ((g2 + <usize> bk) << 4)), xsv);
      acc2 = q8block(q + ((g2 + <usize> bk) << 7), sv2, x0, x1, x2, x3, acc2);
    }
  }
  if (bias) acc = f32x4.add(acc, v128.load(bias + (<usize> c << 2)));
  storeN(y + (<usize> c << 2), acc, cnt);
  if (cnt2) {
    if (bias) acc2 = f32x4.add(acc2, v128.load(bias + (<usize> c2 << 2)));
    storeN(y + (<usize> c2 << 2), acc2, cnt2);
  }
}

/** Four full row groups at rows c, c+qr, c+2qr, c+3qr for one x row: four long memory streams. */
function q8quad(
  y: usize,
  q: usize,
  s: usize,
  xq: usize,
  xs: usize,
  bias: usize,
  c: i32,
  qr: i32,
  nb: i32,
): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const step = <usize> (qr >> 2) * <usize> nb;
  const g0 = <usize> (c >> 2) * <usize> nb, g1 = g0 + step, g2 = g1 + step, g3 = g2 + step;
  for (let bk = 0; bk < nb; bk++) {
    const xb = xq + (<usize> bk << 6);
    const x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    const xsv = f32x4.splat(load<f32>(xs + (<usize> bk << 2)));
    const b = <usize> bk;
    a0 = q8block(q + ((g0 + b) << 7), f32x4.mul(v128.load(s + ((g0 + b) << 4)), xsv), x0, x1, x2, x3, a0);
    a1 = q8block(q + ((g1 + b) << 7), f32x4.mul(v128.load(s + ((g1 + b) << 4)), xsv), x0, x1, x2, x3, a1);
    a2 = q8block(q + ((g2 + b) << 7), f32x4.mul(v128.load(s + ((g2 + b) << 4)), xsv), x0, x1, x2, x3, a2);
    a3 = q8block(q + ((g3 + b) << 7), f32x4.mul(v128.load(s + ((g3 + b) << 4)), xsv), x0, x1, x2, x3, a3);
  }
  const yc = y + (<usize> c << 2), yq = <usize> qr << 2;
  if (bias) {
    const bc = bias + (<usize> c << 2);
    a0 = f32x4.add(a0, v128.load(bc));
    a1 = f32x4.add(a1, v128.load(bc + yq));
    a2 = f32x4.add(a2, v128.load(bc + 2 * yq));
    a3 = f32x4.add(a3, v128.load(bc + 3 * yq));
  }
  v128.store(yc, a0);
  v128.store(yc + yq, a1);
  v128.store(yc + 2 * yq, a2);
  v128.store(yc + 3 * yq, a3);
}

/** Unpacks rows [c0, c1) of a q8 matrix into f32 rows (o, i) at dst. */
function unpackQ8(dst: usize, q: usize, s: usize, c0: i32, c1: i32, i: i32): void {
  const nb = (i + 31) >> 5;
  for (let c = c0; c < c1; c++) {
    const dr = dst + <usize> (c - c0) * (<usize> i << 2);
    for (let bk = 0; bk < nb; bk++) {
      const at = q8at(c, bk, nb);
      const qb = q + at;
      const sc = f32x4.splat(load<f32>(s + (at >> 3)));
      const k0 = bk << 5;
      if (k0 + 32 <= i) {
        for (let k = 0; k < 32; k += 8) {
          const v = v128.load8x8_s(qb + <usize> k);
          const o = dr + (<usize> (k0 + k) << 2);
          v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)), sc));
          v128.store(o + 16, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), sc));
        }
      } else {
        for (let k = k0; k < i; k++) {
          store<f32>(
            dr + (<usize> k << 2),
            <f32> load<i8>(qb + <usize> (k - k0)) * f32x4.extract_lane(sc, 0),
          );
        }
      }
    }
  }
}

/**
 * q8 weights (see the layout above). Decode quantizes x into the thread's scratch first (every thread
 * the same values, so results do not depend on the threads).
 */
export function linear_q8(
  lo: i32,
  hi: i32,
  tid: i32,
  y: usize,
  q: usize,
  s: usize,
  x: usize,
  bias: usize,
  m: i32,
  o: i32,
  i: i32,
  scr: usize,
): void {
  const nb = (i + 31) >> 5;
  const ss = <usize> nb << 2, ys = <usize> o << 2;
  if (m < TILE_M) {
    const xq = scr + <usize> tid * SCRATCH, xs = xq + <usize> m * (<usize> nb << 6);
    quantize_x(x, xq, xs, m, i);
    for (let r = 0; r < m; r++) {
      const yr = y + <usize> r * ys, xqr = xq + <usize> r * (<usize> nb << 6), xsr = xs + <usize> r * ss;
      // four far-apart groups at a time (four memory streams), then the leftover groups one by one
      const qr = ((hi - lo) >> 4) << 2;
      for (let c = lo; c < lo + qr; c += 4) q8quad(yr, q, s, xqr, xsr, bias, c, qr, nb);
      for (let c = lo + 4 * qr; c < hi; c += 4) {
        q8group(yr, q, s, xqr, xsr, bias, c, min(4, hi - c), 0, 0, nb);
      }
    }
    return;
  }
  const panel = scr + <usize> tid * SCRATCH;
  const rows = <i32> max<usize>(1, min<usize>(<usize> PANEL, SCRATCH / (<usize> i << 2)));
  for (let c0 = lo; c0 < hi; c0 += rows) {
    const c1 = min(c0 + rows, hi);
    unpackQ8(panel, q, s, c0, c1, i);
    tiled(y, panel, x, bias, m, o, i, c0, c1);
  }
}

// ---- packing (at load) ----

/** f32 -> f16 bits, round to nearest even. */
function toHalf(f: f32): u16 {
  let u = reinterpret<u32>(f);
  const sign = (u >> 16) & 0x8000;
  u &= 0x7fffffff;
  let o: u32;
  if (u >= 0x47800000) {
    o = u > 0x7f800000 ? 0x7e00 : 0x7c00;
  } else if (u < 0x38800000) {
    const v = reinterpret<f32>(u) + reinterpret<f32>(<u32> 0x3f000000);
    o = reinterpret<u32>(v) - 0x3f000000;
  } else {
    const odd = (u >> 13) & 1;
    u += 0xc8000fff + odd; // rebias the exponent (15 - 127) << 23, round
    o = u >> 13;
  }
  return <u16> (o | sign);
}

/** src f32 (n) -> dst f16 (n). Returns how many values were out of f16's finite range. */
export function pack_f16(dst: usize, src: usize, n: usize): i32 {
  let bad = 0;
  for (let k: usize = 0; k < n; k++) {
    const h = toHalf(load<f32>(src + (k << 2)));
    if ((h & 0x7c00) == 0x7c00) bad++;
    store<u16>(dst + (k << 1), h);
  }
  return bad;
}

/** src f32 (n) -> dst bf16 (n), round to nearest even. */
export function pack_bf16(dst: usize, src: usize, n: usize): void {
  for (let k: usize = 0; k < n; k++) {
    const u = load<u32>(src + (k << 2));
    const r = (u & 0x7fffffff) > 0x7f800000 ? (u >> 16) | 0x40 : (u + 0x7fff + ((u >> 16) & 1)) >> 16;
    store<u16>(dst + (k << 1), <u16> r);
  }
}

/** src f32 (o, i) -> q, s in the q8 layout above: per block, scale = max|w| / 127. */
export function pack_q8(q: usize, s: usize, src: usize, o: i32, i: i32): void {
  const nb = (i + 31) >> 5;
  const og = (o + 3) & ~3;
  for (let c = 0; c < og; c++) {
    const wr = src + <usize> c * (<usize> i << 2);
    for (let bk = 0; bk < nb; bk++) {
      const k0 = bk << 5, k1 = c < o ? min(k0 + 32, i) : k0;
      let amax: f32 = 0;
      for (let k = k0; k < k1; k++) amax = max(amax, abs(load<f32>(wr + (<usize> k << 2))));
      const inv: f32 = amax > 0 ? 127 / amax : 0;
      const at = q8at(c, bk, nb);
      store<f32>(s + (at >> 3), amax / 127);
      for (let k = k0; k < k0 + 32; k++) {
        const v: f32 = k < k1 ? load<f32>(wr + (<usize> k << 2)) : 0;
        store<i8>(q + at + <usize> (k - k0), <i8> <i32> nearest(v * inv));
      }
    }
  }
}
