// selective_scan (Mamba-1), for t in 0..l, with delta = softplus(dt[i_b, t, i_di]), u = x[i_b, t, i_di]:
//   h[i_b, i_di, i_n] = exp(delta * A[i_di, i_n]) * h[i_b, i_di, i_n] + delta * u * B[i_b, t, i_n]
//   y[i_b, t, i_di] = (sum_n h[i_b, i_di, i_n] * C[i_b, t, i_n] + D[i_di] * u) * silu(z[i_b, t, i_di])
// With has_dtproj = 1, dt_proj is fused in: first
//   dt[i_b, t, i_di] = dt_bias[i_di] + sum_r dt_w[i_di, r] * dt_low[i_b, t, r]   (also written out)
// with dt_w a stored matrix (rows of dt_stride elements, f32 bits, or f16 pairs when dt_f16 = 1).
//
// | binding | name | access     | type   | shape         |
// |---------|------|------------|--------|---------------|
// | 0       | p    | uniform    | Params | b, l, di, n, has_dtproj, r, dt_stride, dt_f16 |
// | 1       | y    | read_write | f32    | (b, l, di)    |
// | 2       | x    | read       | f32    | (b, l, di)    |
// | 3       | dt   | read_write | f32    | (b, l, di)    |
// | 4       | A    | read       | f32    | (di, n)       |
// | 5       | B    | read       | f32    | (b, l, n)     |
// | 6       | C    | read       | f32    | (b, l, n)     |
// | 7       | D    | read       | f32    | (di)          |
// | 8       | z    | read       | f32    | (b, l, di)    |
// | 9       | h    | read_write | f32    | (b, di, n)    |
// | 10      | dt_low  | read    | f32    | (b, l, r), read when has_dtproj = 1        |
// | 11      | dt_w    | read    | u32    | (di, dt_stride) f32 bits or f16 pairs      |
// | 12      | dt_bias | read    | f32    | (di), read when has_dtproj = 1             |
//
// One thread per (i_b, i_di), sequential over t; its n states and its row of A live in workgroup
// memory (hs[i_n * WG + lane]); loops over n run to the override N (= n), so the compiler can unroll
// them; the next step's dt, x and z are loaded before this step's scan. Dispatch: ceil(b*di / WG)
// workgroups over x and y. Needs n = N, and r = R when has_dtproj = 1.

struct Params {
  b: u32,
  l: u32,
  di: u32,
  n: u32,
  has_dtproj: u32,
  r: u32,
  dt_stride: u32,
  dt_f16: u32,
}

override WG: u32 = 64;
override N: u32 = 16;
// = r when has_dtproj = 1 (a constant trip count: the loads of the dt_proj loop can all be in flight)
override R: u32 = 0;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dt: array<f32>;
@group(0) @binding(4) var<storage, read> A: array<f32>;
@group(0) @binding(5) var<storage, read> B: array<f32>;
@group(0) @binding(6) var<storage, read> C: array<f32>;
@group(0) @binding(7) var<storage, read> D: array<f32>;
@group(0) @binding(8) var<storage, read> z: array<f32>;
@group(0) @binding(9) var<storage, read_write> h: array<f32>;
@group(0) @binding(10) var<storage, read> dt_low: array<f32>;
@group(0) @binding(11) var<storage, read> dt_w: array<u32>;
@group(0) @binding(12) var<storage, read> dt_bias: array<f32>;

fn dt_w_at(e: u32) -> f32 {
  if (p.dt_f16 == 1u) {
    return unpack2x16float(dt_w[e >> 1u])[e & 1u];
  }
  return bitcast<f32>(dt_w[e]);
}

var<workgroup> hs: array<f32, N * WG>;
var<workgroup> as_: array<f32, N * WG>;

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
fn selective_scan(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.b * p.di) {
    return;
  }
  let i_b = idx / p.di;
  let i_di = idx % p.di;
  let lane = lid.x;
  for (var i_n = 0u; i_n < N; i_n++) {
    hs[i_n * WG + lane] = h[idx * N + i_n];
    as_[i_n * WG + lane] = A[i_di * N + i_n];
  }
  let d_skip = D[i_di];
  var next_x = 0.0;
  var next_z = 0.0;
  var next_dt = 0.0;
  if (p.l > 0u) {
    let e0 = i_b * p.l * p.di + i_di;
    next_x = x[e0];
    next_z = z[e0];
    if (p.has_dtproj == 0u) {
      next_dt = dt[e0];
    }
  }
  for (var t = 0u; t < p.l; t++) {
    let row = i_b * p.l + t;
    let e = row * p.di + i_di;
    let u = next_x;
    let zv = next_z;
    var dt_raw = next_dt;
    if (t + 1u < p.l) {
      next_x = x[e + p.di];
      next_z = z[e + p.di];
      if (p.has_dtproj == 0u) {
        next_dt = dt[e + p.di];
      }
    }
    if (p.has_dtproj == 1u) {
      dt_raw = dt_bias[i_di];
      for (var i_r = 0u; i_r < R; i_r++) {
        dt_raw += dt_w_at(i_di * p.dt_stride + i_r) * dt_low[row * p.r + i_r];
      }
      dt[e] = dt_raw;
    }
    let delta = softplus(dt_raw);
    let du = delta * u;
    var acc = 0.0;
    for (var i_n = 0u; i_n < N; i_n++) {
      let s = i_n * WG + lane;
      let hv = exp(delta * as_[s]) * hs[s] + du * B[row * N + i_n];
      hs[s] = hv;
      acc += hv * C[row * N + i_n];
    }
    y[e] = (acc + u * d_skip) * silu(zv);
  }
  for (var i_n = 0u; i_n < N; i_n++) {
    h[idx * N + i_n] = hs[i_n * WG + lane];
  }
}
