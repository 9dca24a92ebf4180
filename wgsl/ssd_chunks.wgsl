// ssd_chunks (Mamba-2 prefill, chunked SSD): passes 1 and 3 of three (ssd_carry is pass 2). The l
// steps of each (i_b, i_h) are cut into nc = ceil(l / T) chunks of T steps (the last may be shorter).
// Within chunk i_c, with i_g = i_h / (h / g), a = A[i_h], steps s of the chunk (t = i_c * T + s),
// delta_s = clamp(softplus(dt[i_b, t, i_h] + dt_bias[i_h]), dt_min, dt_max), cum_s = delta_0 + .. + delta_s,
// x_s = x[i_b, t, i_h, :] (p), B_s = B[i_b, t, i_g, :], C_s = C[i_b, t, i_g, :] (n):
//
// mode 0: the chunk's end state from zero and its delta sum (A is one scalar per head, so the chunk
//   decays the state by exp(a * cum_last)):
//     hc[i_b, i_c, i_h, i_p, i_n] = sum_s exp(a * (cum_last - cum_s)) * delta_s * x_s[i_p] * B_s[i_n]
//     ds[i_b, i_c, i_h] = cum_last                 (at offset b * nc * h * p * n in the same buffer)
// mode 1: from the chunk's start state h0 = hc[i_b, i_c, i_h] (p, n) (written by ssd_carry), the
//   quadratic (attention-like) form of the SSD inside the chunk:
//     y[i_b, t, i_h, i_p] = sum_{r <= s} G[s, r] * x_r[i_p] + exp(a * cum_s) * (C_s . h0[i_p, :]) + D[i_h] * x_s[i_p]
//     with G[s, r] = (C_s . B_r) * exp(a * (cum_s - cum_r)) * delta_r
//
// | binding | name    | access     | type   | shape                                           |
// |---------|---------|------------|--------|-------------------------------------------------|
// | 0       | p       | uniform    | Params | b, l, h, p, g, n, nc, mode, dt_min, dt_max      |
// | 1       | y       | read_write | f32    | (b, l, h, p), written in mode 1                 |
// | 2       | x       | read       | f32    | (b, l, h, p)                                    |
// | 3       | dt      | read       | f32    | (b, l, h)                                       |
// | 4       | dt_bias | read       | f32    | (h)                                             |
// | 5       | A       | read       | f32    | (h)                                             |
// | 6       | B       | read       | f32    | (b, l, g, n)                                    |
// | 7       | C       | read       | f32    | (b, l, g, n)                                    |
// | 8       | D       | read       | f32    | (h)                                             |
// | 9       | hc      | read_write | f32    | (b, nc, h, p, n) states, then (b, nc, h) sums   |
//
// One workgroup per (i_b, i_c, i_h) (i_h fastest); delta, cum and G in workgroup memory; threads
// stride over (i_p, i_n) in mode 0 and over (s, i_p) in mode 1. Dispatch: b * nc * h workgroups.

struct Params {
  b: u32,
  l: u32,
  h: u32,
  p: u32,
  g: u32,
  n: u32,
  nc: u32,
  mode: u32,
  dt_min: f32,
  dt_max: f32,
  _pad0: u32,
  _pad1: u32,
}

override WG: u32 = 256;
override T: u32 = 32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dt: array<f32>;
@group(0) @binding(4) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(5) var<storage, read> A: array<f32>;
@group(0) @binding(6) var<storage, read> B: array<f32>;
@group(0) @binding(7) var<storage, read> C: array<f32>;
@group(0) @binding(8) var<storage, read> D: array<f32>;
@group(0) @binding(9) var<storage, read_write> hc: array<f32>;

var<workgroup> deltas: array<f32, T>;
var<workgroup> cum: array<f32, T>;
var<workgroup> w: array<f32, T>;
var<workgroup> gm: array<f32, T * T>;

fn softplus(v: f32) -> f32 {
  if (v > 20.0) {
    return v;
  }
  if (v < -15.0) {
    return exp(v);
  }
  return log(1.0 + exp(v));
}

@compute @workgroup_size(WG)
fn ssd_chunks(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.b * p.nc * p.h) {
    return;
  }
  let i_h = idx % p.h;
  let i_c = (idx / p.h) % p.nc;
  let i_b = idx / (p.h * p.nc);
  let i_g = i_h / (p.h / p.g);
  let lane = lid.x;
  let row0 = i_b * p.l + i_c * T; // row (i_b, t) of step 0 of the chunk
  let len = min(T, p.l - i_c * T);
  let a = A[i_h];
  if (lane < len) {
    deltas[lane] = clamp(softplus(dt[(row0 + lane) * p.h + i_h] + dt_bias[i_h]), p.dt_min, p.dt_max);
  }
  workgroupBarrier();
  if (lane == 0u) {
    var sum = 0.0;
    for (var s = 0u; s < len; s++) {
      sum += deltas[s];
      cum[s] = sum;
    }
  }
  workgroupBarrier();
  let pn = p.p * p.n;
  if (p.mode == 0u) {
    let last = cum[len - 1u];
    if (lane < len) {
      w[lane] = exp(a * (last - cum[lane])) * deltas[lane];
    }
    workgroupBarrier();
    for (var e = lane; e < pn; e += WG) {
      let i_p = e / p.n;
      let i_n = e % p.n;
      var acc = 0.0;
      for (var s = 0u; s < len; s++) {
        let row = row0 + s;
        acc += w[s] * x[(row * p.h + i_h) * p.p + i_p] * B[(row * p.g + i_g) * p.n + i_n];
      }
      hc[idx * pn + e] = acc;
    }
    if (lane == 0u) {
      hc[p.b * p.nc * p.h * pn + idx] = last;
    }
    return;
  }
  for (var e = lane; e < T * T; e += WG) {
    let s = e / T;
    let r = e % T;
    var gv = 0.0;
    if (r <= s && s < len) {
      let cs = ((row0 + s) * p.g + i_g) * p.n;
      let br = ((row0 + r) * p.g + i_g) * p.n;
      var dot = 0.0;
      for (var i_n = 0u; i_n < p.n; i_n++) {
        dot += C[cs + i_n] * B[br + i_n];
      }
      gv = dot * exp(a * (cum[s] - cum[r])) * deltas[r];
    }
    gm[e] = gv;
  }
  workgroupBarrier();
  let d_skip = D[i_h];
  for (var e = lane; e < len * p.p; e += WG) {
    let s = e / p.p;
    let i_p = e % p.p;
    var acc = 0.0;
    for (var r = 0u; r <= s; r++) {
      acc += gm[s * T + r] * x[((row0 + r) * p.h + i_h) * p.p + i_p];
    }
    let cs = ((row0 + s) * p.g + i_g) * p.n;
    let h0 = (idx * p.p + i_p) * p.n;
    var carried = 0.0;
    for (var i_n = 0u; i_n < p.n; i_n++) {
      carried += C[cs + i_n] * hc[h0 + i_n];
    }
    let xi = ((row0 + s) * p.h + i_h) * p.p + i_p;
    y[xi] = acc + exp(a * cum[s]) * carried + d_skip * x[xi];
  }
}
