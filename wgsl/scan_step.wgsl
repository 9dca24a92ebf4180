// scan_step: the selective scan (Mamba-1) of one time step (l = 1), one thread per (i_b, i_di, i_n):
//   delta = softplus(dt[i_b, i_di]), u = x[i_b, i_di]
//   h[i_b, i_di, i_n] = exp(delta * A[i_di, i_n]) * h[i_b, i_di, i_n] + delta * u * B[i_b, i_n]
//   y[i_b, i_di] = (sum_n h[i_b, i_di, i_n] * C[i_b, i_n] + D[i_di] * u) * silu(z[i_b, i_di])
// With has_dtproj = 1, dt_proj is fused in (the N threads of a channel share its r products):
//   dt[i_b, i_di] = dt_bias[i_di] + sum_r dt_w[i_di, r] * dt_low[i_b, r]   (also written out)
// with dt_w a stored matrix (rows of dt_stride elements, f32 bits, or f16 pairs when dt_f16 = 1).
// Same bindings as selective_scan.
//
// | binding | name    | access     | type   | shape                                   |
// |---------|---------|------------|--------|-----------------------------------------|
// | 0       | p       | uniform    | Params | b, di, has_dtproj, r, dt_stride, dt_f16 |
// | 1       | y       | read_write | f32    | (b, di)                                 |
// | 2       | x       | read       | f32    | (b, di)                                 |
// | 3       | dt      | read_write | f32    | (b, di)                                 |
// | 4       | A       | read       | f32    | (di, n)                                 |
// | 5       | B       | read       | f32    | (b, n)                                  |
// | 6       | C       | read       | f32    | (b, n)                                  |
// | 7       | D       | read       | f32    | (di)                                    |
// | 8       | z       | read       | f32    | (b, di)                                 |
// | 9       | h       | read_write | f32    | (b, di, n)                              |
// | 10      | dt_low  | read       | f32    | (b, r), when has_dtproj = 1             |
// | 11      | dt_w    | read       | u32    | (di, dt_stride), when has_dtproj = 1    |
// | 12      | dt_bias | read       | f32    | (di), when has_dtproj = 1               |
//
// A workgroup holds WG / N channels. Dispatch: ceil(b * di / (WG / N)) workgroups over x and y.
// Needs n = N.

struct Params {
  b: u32,
  di: u32,
  has_dtproj: u32,
  r: u32,
  dt_stride: u32,
  dt_f16: u32,
  _pad0: u32,
  _pad1: u32,
}

override WG: u32 = 256;
override N: u32 = 16;

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

var<workgroup> part: array<f32, WG>;

fn dt_w_at(e: u32) -> f32 {
  if (p.dt_f16 == 1u) {
    return unpack2x16float(dt_w[e >> 1u])[e & 1u];
  }
  return bitcast<f32>(dt_w[e]);
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
  let ch = WG / N;
  let c_local = t / N;
  let i_n = t % N;
  let idx = (wid.x + wid.y * nwg.x) * ch + c_local; // i_b * di + i_di
  let live = c_local < ch && idx < p.b * p.di;
  let i_b = idx / p.di;
  let i_di = idx % p.di;
  let first = c_local * N;
  var dt_raw = 0.0;
  if (p.has_dtproj == 1u) {
    var s = 0.0;
    if (live) {
      for (var i_r = i_n; i_r < p.r; i_r += N) {
        s += dt_w_at(i_di * p.dt_stride + i_r) * dt_low[i_b * p.r + i_r];
      }
    }
    part[t] = s;
    workgroupBarrier();
    if (live) {
      dt_raw = dt_bias[i_di];
      for (var q = 0u; q < N; q++) {
        dt_raw += part[first + q];
      }
    }
    workgroupBarrier();
  } else if (live) {
    dt_raw = dt[idx];
  }
  var prod = 0.0;
  var u = 0.0;
  if (live) {
    let delta = softplus(dt_raw);
    u = x[idx];
    let e = idx * N + i_n;
    let hv = exp(delta * A[i_di * N + i_n]) * h[e] + delta * u * B[i_b * N + i_n];
    h[e] = hv;
    prod = hv * C[i_b * N + i_n];
  }
  part[t] = prod;
  workgroupBarrier();
  if (live && i_n == 0u) {
    var acc = 0.0;
    for (var q = 0u; q < N; q++) {
      acc += part[first + q];
    }
    y[idx] = (acc + u * D[i_di]) * silu(z[idx]);
    if (p.has_dtproj == 1u) {
      dt[idx] = dt_raw;
    }
  }
}
