// scan_step: the selective scan (Mamba-1) of one time step (l = 1):
//   delta = softplus(dt[i_b, i_di]), u = x[i_b, i_di]
//   h[i_b, i_di, i_n] = exp(delta * A[i_di, i_n]) * h[i_b, i_di, i_n] + delta * u * B[i_b, i_n]
//   y[i_b, i_di] = (sum_n h[i_b, i_di, i_n] * C[i_b, i_n] + D[i_di] * u) * silu(z[i_b, i_di])
// With DTPROJ = 1, dt_proj is fused in:
//   dt[i_b, i_di] = sum_r dt_w[i_di, r] * dt_low[i_b, r] + dt_bias[i_di]   (also written out)
// with dt_w a stored matrix (rows of dt_stride elements, f32 bits, or f16 pairs when F16 = 1).
// With XG > 0 (b = 1, DTPROJ = 1), x_proj is fused in too: dt_low, B and C are the sums over XG groups
// of the partial products that matvec1 left in `part` (its mode 3 with xrows: value i_x of
// (dt_low, B, C), i_x < XR = R + 2 N, sums part[g * XQ * 4 + i_x] over g, XQ = ceil(XR / 4)), each
// workgroup adding them up for itself (vec4 loads: XS slices of the groups per 4 values, then the
// slices, in workgroup memory); workgroup 0 also writes them to dt_low, B and C. The other global reads are issued before those sums are waited for.
// With b > 1 (the partials from splitk_reduce's epi 1 with xrows), part holds (b, XG, XQ) vec4: each
// workgroup takes channels of one sequence (workgroup w: sequence w / nb, channels (w % nb) * WG / K
// onwards, nb = ceil(di / (WG / K))), sums that sequence's groups, and the first of each sequence's
// writes its dt_low, B and C.
// The bindings of selective_scan, B, C and dt_low read_write, and part.
//
// | binding | name    | access     | type   | shape                            |
// |---------|---------|------------|--------|----------------------------------|
// | 0       | p       | uniform    | Params | b, di, dt_stride                 |
// | 1       | y       | read_write | f32    | (b, di)                          |
// | 2       | x       | read       | f32    | (b, di)                          |
// | 3       | dt      | read_write | f32    | (b, di)                          |
// | 4       | A       | read       | vec4   | (di, n) as vec4 (whole with Q = 4) |
// | 5       | B       | read_write | f32    | (b, n), written when XG > 0      |
// | 6       | C       | read_write | f32    | (b, n), written when XG > 0      |
// | 7       | D       | read       | f32    | (di)                             |
// | 8       | z       | read       | f32    | (b, di)                          |
// | 9       | h       | read_write | vec4   | (b, di, n) as vec4 (whole with Q = 4) |
// | 10      | dt_low  | read_write | f32    | (b, R), when DTPROJ = 1; written when XG > 0 |
// | 11      | dt_w    | read       | vec4<u32> | (di, dt_stride), when DTPROJ = 1 |
// | 12      | dt_bias | read       | f32    | (di), when DTPROJ = 1            |
// | 13      | part    | read       | vec4   | (b, XG, XQ), when XG > 0         |
//
// K = N / Q threads per channel (i_b, i_di), each with Q (4 or 1) adjacent states (one vec4 of h and A
// when Q = 4) and the chunks lane + K * j (j < RJ) of dt_proj's row: vec4 of dt_w, 4 values (f32) or
// 8 (f16) each, RJ = ceil(ceil(R / values) / K). All global reads are issued first, together
// (the code is written out rather than looped: WGSL loops compile with an iteration bound that keeps
// drivers from unrolling them); the two sums across the K threads (dt, then y) go through workgroup
// memory. Dispatch: ceil(b * di / (WG / K)) workgroups over x and y (XG > 0: b * nb). Needs n = N, and r = R when
// DTPROJ = 1.

struct Params {
  b: u32,
  di: u32,
  dt_stride: u32,
  _pad0: u32,
}

override WG: u32 = 64;
override N: u32 = 16;
override Q: u32 = 4;
override K: u32 = 4;
override DTPROJ: u32 = 0;
override R: u32 = 1;
override RJ: u32 = 1;
override F16: u32 = 0;
override XG: u32 = 0;
override XS: u32 = 1;
override XP: u32 = 1; // (XS + 1) * XQ when XG > 0

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dt: array<f32>;
@group(0) @binding(4) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> B: array<f32>;
@group(0) @binding(6) var<storage, read_write> C: array<f32>;
@group(0) @binding(7) var<storage, read> D: array<f32>;
@group(0) @binding(8) var<storage, read> z: array<f32>;
@group(0) @binding(9) var<storage, read_write> h: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> dt_low: array<f32>;
@group(0) @binding(11) var<storage, read> dt_w: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(13) var<storage, read> part: array<vec4<f32>>;

var<workgroup> shares: array<f32, 2 * WG>; // per thread: its share of dt, then of y
// XG > 0: slice s's sums of values 4 q .. 4 q + 3 at s * XQ + q, their totals at XS * XQ + q
var<workgroup> xp: array<vec4<f32>, XP>;

// this thread's channel: its batch row and dt_proj row, and its lane
var<private> i_b: u32;
var<private> i_di: u32;
var<private> lane: u32;
// XG > 0: the sequence of this workgroup (every thread's, dead or not)
var<private> x_b: u32;

/** dt_w's values per vec4: 4 f32, or 8 f16. */
fn vals() -> u32 {
  return select(4u, 8u, F16 == 1u);
}

/**
 * The vec4 of dt_w (row i_di) of this thread's chunk j of dt_proj (chunk lane + K j of the row; 0 from
 * RJ on and past r: the index clamped, so that the load is issued whatever the chunk).
 */
fn dt_w_chunk(j: u32) -> vec4<u32> {
  let rc = (R + vals() - 1u) / vals();
  let cq = lane + j * K;
  if (j >= RJ) {
    return vec4<u32>(0u);
  }
  return select(vec4<u32>(0u), dt_w[i_di * (p.dt_stride / vals()) + min(cq, rc - 1u)], cq < rc);
}

/** dt_low[i_b, v0 .. v0 + 3] (v0 a multiple of 4; 0 past r). */
fn low4(v0: u32) -> vec4<f32> {
  let on = v0 + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(R);
  if (XG > 0u) {
    return select(vec4<f32>(0.0), xp[XS * xq() + min(v0 / 4u, xq() - 1u)], on);
  }
  let b = i_b * R;
  let v = vec4<f32>(
    dt_low[b + min(v0, R - 1u)],
    dt_low[b + min(v0 + 1u, R - 1u)],
    dt_low[b + min(v0 + 2u, R - 1u)],
    dt_low[b + min(v0 + 3u, R - 1u)],
  );
  return select(vec4<f32>(0.0), v, on);
}

/** The products of chunk j of dt_proj (its weights wv) added up. */
fn dt_dot(wv: vec4<u32>, j: u32) -> f32 {
  if (j >= RJ) {
    return 0.0;
  }
  let v0 = (lane + j * K) * vals();
  if (F16 == 1u) {
    let lo = vec4<f32>(unpack2x16float(wv.x), unpack2x16float(wv.y));
    let hi = vec4<f32>(unpack2x16float(wv.z), unpack2x16float(wv.w));
    return dot(lo, low4(v0)) + dot(hi, low4(v0 + 4u));
  }
  return dot(bitcast<vec4<f32>>(wv), low4(v0));
}

/** Values 4 q .. 4 q + 3 of (dt_low, B, C) come in a vec4: XQ of them. */
fn xq() -> u32 {
  return (R + 2u * N + 3u) / 4u;
}

/** Value i_x of (dt_low, B, C), summed (XG > 0). */
fn xp_at(i_x: u32) -> f32 {
  return xp[XS * xq() + i_x / 4u][i_x % 4u];
}

/** part[g, q], 0 past the groups (always read: every load is issued before any is waited for). */
fn part_at(g: u32, q: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), part[(x_b * XG + min(g, XG - 1u)) * xq() + q], g < XG);
}

/**
 * XG > 0: the sums of part[g, q] over g, into xp: slice s (g = s mod XS) for the XS * XQ (q, s)
 * pairs spread over the threads, their first 8 groups' reads written out; then over the slices.
 */
fn xproj_sums(t: u32) {
  let nq = xq();
  for (var task = t; task < XS * nq; task += WG) {
    let q = task % nq;
    let s = task / nq;
    var a = (part_at(s, q) + part_at(s + XS, q)) + (part_at(s + 2u * XS, q) + part_at(s + 3u * XS, q));
    let b = (part_at(s + 4u * XS, q) + part_at(s + 5u * XS, q)) +
      (part_at(s + 6u * XS, q) + part_at(s + 7u * XS, q));
    for (var g = s + 8u * XS; g < XG; g += XS) {
      a += part_at(g, q);
    }
    xp[task] = a + b;
  }
  workgroupBarrier();
  for (var q = t; q < nq; q += WG) {
    var v = xp[q];
    for (var s = 1u; s < XS; s++) {
      v += xp[s * nq + q];
    }
    xp[XS * nq + q] = v;
  }
  workgroupBarrier();
}

/** The sum of shares over the K threads of a channel, from `first`. */
fn lanes_sum(first: u32) -> f32 {
  if (K == 4u) {
    return (shares[first] + shares[first + 1u]) + (shares[first + 2u] + shares[first + 3u]);
  }
  var acc = 0.0;
  for (var q = 0u; q < K; q++) {
    acc += shares[first + q];
  }
  return acc;
}

/** B[e] (e = i_b * N + i_n): read, or (XG > 0, b = 1) summed from the partial products. */
fn b_at(e: u32) -> f32 {
  if (XG > 0u) {
    return xp_at(R + e % N);
  }
  return B[e];
}

/** C[e], as b_at. */
fn c_at(e: u32) -> f32 {
  if (XG > 0u) {
    return xp_at(R + N + e % N);
  }
  return C[e];
}

fn softplus(v: f32) -> f32 {
  if (v > 20.0) {
    return v;
  }
  if (v < -15.0) {
    return exp(v);
  }
  return log(1.0 + exp(v));
}

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

@compute @workgroup_size(WG)
fn scan_step(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let t = lid.x;
  let c_local = t / K;
  lane = t % K;
  let first = c_local * K;
  let wlin = wid.x + wid.y * nwg.x;
  var idx0 = wlin * (WG / K) + c_local; // i_b * di + i_di
  var live = c_local < WG / K && idx0 < p.b * p.di;
  let nb = (p.di + WG / K - 1u) / (WG / K);
  if (XG > 0u) {
    // one sequence per workgroup (the same channels as above when b = 1)
    let i_d = (wlin % nb) * (WG / K) + c_local;
    x_b = min(wlin / nb, p.b - 1u);
    idx0 = x_b * p.di + i_d;
    live = c_local < WG / K && wlin / nb < p.b && i_d < p.di;
  }
  let idx = select(0u, idx0, live); // reads of dead threads go to channel 0
  i_b = idx / p.di;
  i_di = idx % p.di;
  let n0 = lane * Q;
  let e = idx * N + n0;
  let an = i_di * N + n0;
  let bn = i_b * N + n0;
  // every global read (with XG > 0: the partial products' after the others)
  var h4 = vec4<f32>(h[e / 4u][e % 4u], 0.0, 0.0, 0.0);
  var a4 = vec4<f32>(A[an / 4u][an % 4u], 0.0, 0.0, 0.0);
  if (Q == 4u) {
    h4 = h[e / 4u];
    a4 = A[an / 4u];
  }
  let u = x[idx];
  let zv = z[idx];
  let d_skip = D[i_di];
  var dw0 = vec4<u32>(0u);
  var dw1 = vec4<u32>(0u);
  var dw2 = vec4<u32>(0u);
  var dw3 = vec4<u32>(0u);
  var bias = 0.0;
  if (DTPROJ == 1u) {
    dw0 = dt_w_chunk(0u);
    dw1 = dt_w_chunk(1u);
    dw2 = dt_w_chunk(2u);
    dw3 = dt_w_chunk(3u);
    bias = dt_bias[i_di];
  }
  if (XG > 0u) {
    xproj_sums(t);
    if (wlin % nb == 0u && wlin / nb < p.b) {
      // the x_proj products to their tensors, once per sequence
      for (var i_x = t; i_x < R + 2u * N; i_x += WG) {
        let v = xp_at(i_x);
        if (i_x < R) {
          dt_low[x_b * R + i_x] = v;
        } else if (i_x < R + N) {
          B[x_b * N + i_x - R] = v;
        } else {
          C[x_b * N + i_x - R - N] = v;
        }
      }
    }
  }
  var b4 = vec4<f32>(b_at(bn), 0.0, 0.0, 0.0);
  var c4 = vec4<f32>(c_at(bn), 0.0, 0.0, 0.0);
  if (Q == 4u) {
    b4 = vec4<f32>(b4.x, b_at(bn + 1u), b_at(bn + 2u), b_at(bn + 3u));
    c4 = vec4<f32>(c4.x, c_at(bn + 1u), c_at(bn + 2u), c_at(bn + 3u));
  }
  var dt_raw = 0.0;
  if (DTPROJ == 1u) {
    let s01 = dt_dot(dw0, 0u) + dt_dot(dw1, 1u);
    let s23 = dt_dot(dw2, 2u) + dt_dot(dw3, 3u);
    var s4 = 0.0;
    for (var j = 4u; j < RJ; j++) {
      s4 += dt_dot(dt_w_chunk(j), j);
    }
    shares[t] = (s01 + s23) + s4;
    workgroupBarrier();
    dt_raw = lanes_sum(first) + bias;
  } else {
    dt_raw = dt[idx];
  }

  let delta = softplus(dt_raw);
  let hv = exp(delta * a4) * h4 + (delta * u) * b4;
  var prod = hv.x * c4.x;
  if (Q == 4u) {
    prod = (prod + hv.y * c4.y) + (hv.z * c4.z + hv.w * c4.w);
  }
  if (live) {
    if (Q == 4u) {
      h[e / 4u] = hv;
    } else {
      h[e / 4u][e % 4u] = hv.x;
    }
  }
  var acc = prod;
  if (K > 1u) {
    shares[WG + t] = prod;
    workgroupBarrier();
    acc = lanes_sum(WG + first);
  }
  if (live && lane == 0u) {
    y[idx] = (acc + u * d_skip) * silu(zv);
    if (DTPROJ == 1u) {
      dt[idx] = dt_raw;
    }
  }
}
