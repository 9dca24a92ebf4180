// ssd_scan (Mamba-2), for t in 0..l, with i_g = i_h / (h / g),
// delta = clamp(softplus(dt[i_b, t, i_h] + dt_bias[i_h]), dt_min, dt_max), u = x[i_b, t, i_h, i_p]:
//   state[i_b, i_h, i_p, i_n] = exp(delta * A[i_h]) * state[..] + delta * u * B[i_b, t, i_g, i_n]
//   y[i_b, t, i_h, i_p] = sum_n state[i_b, i_h, i_p, i_n] * C[i_b, t, i_g, i_n] + D[i_h] * u
//
// | binding | name    | access     | type   | shape                            |
// |---------|---------|------------|--------|----------------------------------|
// | 0       | p       | uniform    | Params | b, l, h, p, g, n, dt_min, dt_max |
// | 1       | y       | read_write | f32    | (b, l, h, p)                     |
// | 2       | x       | read       | f32    | (b, l, h, p)                     |
// | 3       | dt      | read       | f32    | (b, l, h)                        |
// | 4       | dt_bias | read       | f32    | (h)                              |
// | 5       | A       | read       | f32    | (h)                              |
// | 6       | B       | read       | f32    | (b, l, g, n)                     |
// | 7       | C       | read       | f32    | (b, l, g, n)                     |
// | 8       | D       | read       | f32    | (h)                              |
// | 9       | state   | read_write | f32    | (b, h, p, n)                     |
//
// One thread per (i_b, i_h, i_p), sequential over t; its n states live in workgroup memory; loops
// over n run to the override N (= n), so the compiler can unroll them; the next step's x and dt are
// loaded before this step's scan. Dispatch: ceil(b*h*p / WG) workgroups over x and y. Needs n = N.

struct Params {
  b: u32,
  l: u32,
  h: u32,
  p: u32,
  g: u32,
  n: u32,
  dt_min: f32,
  dt_max: f32,
}

override WG: u32 = 32;
override N: u32 = 128;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dt: array<f32>;
@group(0) @binding(4) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(5) var<storage, read> A: array<f32>;
@group(0) @binding(6) var<storage, read> B: array<f32>;
@group(0) @binding(7) var<storage, read> C: array<f32>;
@group(0) @binding(8) var<storage, read> D: array<f32>;
@group(0) @binding(9) var<storage, read_write> state: array<f32>;

var<workgroup> hs: array<f32, N * WG>;

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
fn ssd_scan(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.b * p.h * p.p) {
    return;
  }
  let i_p = idx % p.p;
  let i_h = (idx / p.p) % p.h;
  let i_b = idx / (p.p * p.h);
  let i_g = i_h / (p.h / p.g);
  let lane = lid.x;
  for (var i_n = 0u; i_n < N; i_n++) {
    hs[i_n * WG + lane] = state[idx * N + i_n];
  }
  let a = A[i_h];
  let d_skip = D[i_h];
  let bias = dt_bias[i_h];
  var next_u = 0.0;
  var next_dt = 0.0;
  if (p.l > 0u) {
    next_u = x[((i_b * p.l) * p.h + i_h) * p.p + i_p];
    next_dt = dt[(i_b * p.l) * p.h + i_h];
  }
  for (var t = 0u; t < p.l; t++) {
    let row = i_b * p.l + t;
    let xi = (row * p.h + i_h) * p.p + i_p;
    let u = next_u;
    let dt_raw = next_dt;
    if (t + 1u < p.l) {
      next_u = x[xi + p.h * p.p];
      next_dt = dt[(row + 1u) * p.h + i_h];
    }
    let delta = clamp(softplus(dt_raw + bias), p.dt_min, p.dt_max);
    let decay = exp(delta * a);
    let du = delta * u;
    let bc = (row * p.g + i_g) * N;
    var acc = 0.0;
    for (var i_n = 0u; i_n < N; i_n++) {
      let s = i_n * WG + lane;
      let hv = decay * hs[s] + du * B[bc + i_n];
      hs[s] = hv;
      acc += hv * C[bc + i_n];
    }
    y[xi] = acc + u * d_skip;
  }
  for (var i_n = 0u; i_n < N; i_n++) {
    state[idx * N + i_n] = hs[i_n * WG + lane];
  }
}
