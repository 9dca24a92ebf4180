// scan_chunks (Mamba-1 prefill, chunked selective scan): passes 1 and 3 of three (scan_carry is
// pass 2). The l steps of each (i_b, i_di) are cut into nc = ceil(l / T) chunks of T steps. With
// delta = softplus(dt[i_b, t, i_di]), u = x[i_b, t, i_di], a step is
//   h[i_n] = exp(delta * A[i_di, i_n]) * h[i_n] + delta * u * B[i_b, t, i_n]
// and since A is constant over t, the decay over a chunk is exp(A[i_di, i_n] * sum_t delta).
//
// mode 0: from h = 0, writes each chunk's end state hc[i_b, i_c, i_di, i_n] and its delta sum
//         ds[i_b, i_c, i_di] (at offset b * nc * di * n in the same buffer).
// mode 1: from h = hc[i_b, i_c, i_di, i_n] (the chunk's start state, written by scan_carry), writes
//   y[i_b, t, i_di] = (sum_n h[i_n] * C[i_b, t, i_n] + D[i_di] * u) * silu(z[i_b, t, i_di])
//
// | binding | name | access     | type   | shape                                         |
// |---------|------|------------|--------|-----------------------------------------------|
// | 0       | p    | uniform    | Params | b, l, di, n, nc, mode                         |
// | 1       | y    | read_write | f32    | (b, l, di), written in mode 1                 |
// | 2       | x    | read       | f32    | (b, l, di)                                    |
// | 3       | dt   | read       | f32    | (b, l, di)                                    |
// | 4       | A    | read       | f32    | (di, n)                                       |
// | 5       | B    | read       | f32    | (b, l, n)                                     |
// | 6       | C    | read       | f32    | (b, l, n)                                     |
// | 7       | D    | read       | f32    | (di)                                          |
// | 8       | z    | read       | f32    | (b, l, di)                                    |
// | 9       | hc   | read_write | f32    | (b, nc, di, n) states, then (b, nc, di) sums  |
//
// One thread per (i_b, i_c, i_di) (i_di fastest), its n states and row of A in workgroup memory
// (hs[i_n * WG + lane]). Dispatch: ceil(b * nc * di / WG) workgroups over x and y. Needs n = N.

struct Params {
  b: u32,
  l: u32,
  di: u32,
  n: u32,
  nc: u32,
  mode: u32,
  _pad0: u32,
  _pad1: u32,
}

override WG: u32 = 64;
override N: u32 = 16;
override T: u32 = 16;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dt: array<f32>;
@group(0) @binding(4) var<storage, read> A: array<f32>;
@group(0) @binding(5) var<storage, read> B: array<f32>;
@group(0) @binding(6) var<storage, read> C: array<f32>;
@group(0) @binding(7) var<storage, read> D: array<f32>;
@group(0) @binding(8) var<storage, read> z: array<f32>;
@group(0) @binding(9) var<storage, read_write> hc: array<f32>;

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
fn scan_chunks(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.b * p.nc * p.di) {
    return;
  }
  let i_di = idx % p.di;
  let i_c = (idx / p.di) % p.nc;
  let i_b = idx / (p.di * p.nc);
  let lane = lid.x;
  let mode = p.mode;
  for (var i_n = 0u; i_n < N; i_n++) {
    var h0 = 0.0;
    if (mode == 1u) {
      h0 = hc[idx * N + i_n];
    }
    hs[i_n * WG + lane] = h0;
    as_[i_n * WG + lane] = A[i_di * N + i_n];
  }
  let d_skip = D[i_di];
  let t0 = i_c * T;
  let t1 = min(t0 + T, p.l);
  var dsum = 0.0;
  for (var t = t0; t < t1; t++) {
    let row = i_b * p.l + t;
    let e = row * p.di + i_di;
    let u = x[e];
    let delta = softplus(dt[e]);
    dsum += delta;
    let du = delta * u;
    var acc = 0.0;
    for (var i_n = 0u; i_n < N; i_n++) {
      let s = i_n * WG + lane;
      let hv = exp(delta * as_[s]) * hs[s] + du * B[row * N + i_n];
      hs[s] = hv;
      acc += hv * C[row * N + i_n];
    }
    if (mode == 1u) {
      y[e] = (acc + u * d_skip) * silu(z[e]);
    }
  }
  if (mode == 0u) {
    for (var i_n = 0u; i_n < N; i_n++) {
      hc[idx * N + i_n] = hs[i_n * WG + lane];
    }
    hc[p.b * p.nc * p.di * N + idx] = dsum;
  }
}
