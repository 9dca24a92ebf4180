// The selective scans. Mamba-1: vectorized across channels di (four at a time), the state of those
// channels gathered into thread scratch for the whole call. Mamba-2 (SSD): one scalar decay per head,
// so each (head, p) row of the state is updated vectorized across n, step by step.

import { exp4, hsum, SCRATCH, silu4, softplus1, softplus4, storeN, transpose4 } from "./math";

/**
 * Mamba-1, channels [lo, hi) (lo a multiple of 4): y (b, l, di) = (C.h + D*x) * silu(z), with
 * h = exp(dt*A)*h + dt*B*x per step and dt = softplus(dt_in). A (di, n); B, C (b, l, n); D (di);
 * h (b, di, n) updated in place.
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
  const hb = scr + <usize> tid * SCRATCH; // (n) v128: h of four channels, transposed
  const ab = hb + (<usize> n << 4); // (n) v128: A of four channels, transposed
  const ns = <usize> n << 2;
  for (let cc = lo; cc < hi; cc += 4) {
    const cnt = min(4, hi - cc);
    gather(ab, A + <usize> cc * ns, ns, n, cnt);
    const dv = v128.load(D + (<usize> cc << 2));
    for (let ib = 0; ib < b; ib++) {
      const h0 = h + <usize> (ib * di + cc) * ns;
      gather(hb, h0, ns, n, cnt);
      for (let t = 0; t < l; t++) {
        const row = ib * l + t;
        const off = (<usize> row * <usize> di + <usize> cc) << 2;
        const u = v128.load(x + off);
        const delta = softplus4(v128.load(dt + off));
        const du = f32x4.mul(delta, u);
        const br = B + <usize> row * ns, cr = C + <usize> row * ns;
        let acc = f32x4.splat(0);
        for (let s = 0; s < n; s++) {
          const so = <usize> s << 4;
          const dA = exp4(f32x4.mul(delta, v128.load(ab + so)));
          const hv = f32x4.add(
            f32x4.mul(dA, v128.load(hb + so)),
            f32x4.mul(du, f32x4.splat(load<f32>(br + (<usize> s << 2)))),
          );
          v128.store(hb + so, hv);
          acc = f32x4.add(acc, f32x4.mul(hv, f32x4.splat(load<f32>(cr + (<usize> s << 2)))));
        }
        const yv = f32x4.mul(f32x4.add(acc, f32x4.mul(u, dv)), silu4(v128.load(z + off)));
        storeN(y + off, yv, cnt);
      }
      if (cnt == 4) transpose4(h0, ns, hb, n, false);
      else {
        for (let lane = 0; lane < cnt; lane++) {
          for (let s = 0; s < n; s++) {
            const v = load<f32>(hb + (<usize> s << 4) + (<usize> lane << 2));
            store<f32>(h0 + <usize> lane * ns + (<usize> s << 2), v);
          }
        }
      }
    }
  }
}

/** cols (n) v128 <- lanes r < cnt of rows + r*stride (n values each); missing lanes are 0. */
function gather(cols: usize, rows: usize, stride: usize, n: i32, cnt: i32): void {
  if (cnt == 4) {
    transpose4(rows, stride, cols, n, true);
    return;
  }
  for (let r = 0; r < 4; r++) {
    for (let s = 0; s < n; s++) {
      const v: f32 = r < cnt ? load<f32>(rows + <usize> r * stride + (<usize> s << 2)) : 0;
      store<f32>(cols + (<usize> s << 4) + (<usize> r << 2), v);
    }
  }
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
