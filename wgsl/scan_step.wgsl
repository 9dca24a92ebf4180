// scan_step: the selective scan (Mamba-1) of one time step (l = 1):
//   delta = softplus(dt[i_b, i_di]), u = x[i_b, i_di]
//   h[i_b, i_di, i_n] = exp(delta * A[i_di, i_n]) * h[i_b, i_di, i_n] + delta * u * B[i_b, i_n]
//   y[i_b, i_di] = (sum_n h[i_b, i_di, i_n] * C[i_b, i_n] + D[i_di] * u) * silu(z[i_b, i_di])
// With DTPROJ = 1, dt_proj is fused in:
//   dt[i_b, i_di] = sum_r dt_w[i_di, r] * dt_low[i_b, r] + dt_bias[i_di]   (also written out)
// with dt_w a stored matrix (rows of dt_stride elements, f32 bits, or f16 pairs when F16 = 1).
// Same bindings as selective_scan.
//
// | binding | name    | access     | type   | shape                            |
// |---------|---------|------------|--------|----------------------------------|
// | 0       | p       | uniform    | Params | b, di, dt_stride                 |
// | 1       | y       | read_write | f32    | (b, di)                          |
// | 2       | x       | read       | f32    | (b, di)                          |
// | 3       | dt      | read_write | f32    | (b, di)                          |
// | 4       | A       | read       | f32    | (di, n)                          |
// | 5       | B       | read       | f32    | (b, n)                           |
// | 6       | C       | read       | f32    | (b, n)                           |
// | 7       | D       | read       | f32    | (di)                             |
// | 8       | z       | read       | f32    | (b, di)                          |
// | 9       | h       | read_write | f32    | (b, di, n)                       |
// | 10      | dt_low  | read       | f32    | (b, R), when DTPROJ = 1          |
// | 11      | dt_w    | read       | u32    | (di, dt_stride), when DTPROJ = 1 |
// | 12      | dt_bias | read       | f32    | (di), when DTPROJ = 1            |
//
// K = N / Q threads per channel (i_b, i_di), each with Q (4 or 1) adjacent states and the products
// r = lane + K * j (j < RJ = ceil(R / K)) of dt_proj. All global reads are issued first, together
// (the code is written out rather than looped: WGSL loops compile with an iteration bound that keeps
// drivers from unrolling them); the two sums across the K threads (dt, then y) go through workgroup
// memory. Dispatch: ceil(b * di / (WG / K)) workgroups over x and y. Needs n = N, and r = R when
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

var<workgroup> part: array<f32, 2 * WG>; // per thread: its share of dt, then of y

// this thread's channel: its batch row and dt_proj row, and its lane
var<private> i_b: u32;
var<private> i_di: u32;
var<private> lane: u32;

fn dt_w_at(e: u32) -> f32 {
  if (F16 == 1u) {
    return unpack2x16float(dt_w[e >> 1u])[e & 1u];
  }
  return bitcast<f32>(dt_w[e]);
}

/** Product j of this thread's share of dt_proj (0 past r). */
fn dt_term(j: u32) -> f32 {
  let i_r = lane + j * K;
  if (j >= RJ || i_r >= R) {
    return 0.0;
  }
  return dt_w_at(i_di * p.dt_stride + i_r) * dt_low[i_b * R + i_r];
}

/** The sum of part over the K threads of a channel, from `first`. */
fn lanes_sum(first: u32) -> f32 {
  if (K == 4u) {
    return (part[first] + part[first + 1u]) + (part[first + 2u] + part[first + 3u]);
  }
  var acc = 0.0;
  for (var q = 0u; q < K; q++) {
    acc += part[first + q];
  }
  return acc;
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
  let idx0 = (wid.x + wid.y * nwg.x) * (WG / K) + c_local; // i_b * di + i_di
  let live = c_local < WG / K && idx0 < p.b * p.di;
  let idx = select(0u, idx0, live); // reads of dead threads go to channel 0
  i_b = idx / p.di;
  i_di = idx % p.di;
  let n0 = lane * Q;
  let e = idx * N + n0;
  let an = i_di * N + n0;
  let bn = i_b * N + n0;

  // every global read
  var h4 = vec4<f32>(h[e], 0.0, 0.0, 0.0);
  var a4 = vec4<f32>(A[an], 0.0, 0.0, 0.0);
  var b4 = vec4<f32>(B[bn], 0.0, 0.0, 0.0);
  var c4 = vec4<f32>(C[bn], 0.0, 0.0, 0.0);
  if (Q == 4u) {
    h4 = vec4<f32>(h4.x, h[e + 1u], h[e + 2u], h[e + 3u]);
    a4 = vec4<f32>(a4.x, A[an + 1u], A[an + 2u], A[an + 3u]);
    b4 = vec4<f32>(b4.x, B[bn + 1u], B[bn + 2u], B[bn + 3u]);
    c4 = vec4<f32>(c4.x, C[bn + 1u], C[bn + 2u], C[bn + 3u]);
  }
  let u = x[idx];
  let zv = z[idx];
  let d_skip = D[i_di];
  var dt_raw = 0.0;
  if (DTPROJ == 1u) {
    let s0 = (dt_term(0u) + dt_term(1u)) + (dt_term(2u) + dt_term(3u));
    let s1 = (dt_term(4u) + dt_term(5u)) + (dt_term(6u) + dt_term(7u));
    let s2 = (dt_term(8u) + dt_term(9u)) + (dt_term(10u) + dt_term(11u));
    let s3 = (dt_term(12u) + dt_term(13u)) + (dt_term(14u) + dt_term(15u));
    var s4 = 0.0;
    for (var j = 16u; j < RJ; j++) {
      s4 += dt_term(j);
    }
    let bias = dt_bias[i_di];
    part[t] = ((s0 + s1) + (s2 + s3)) + s4;
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
    h[e] = hv.x;
    if (Q == 4u) {
      h[e + 1u] = hv.y;
      h[e + 2u] = hv.z;
      h[e + 3u] = hv.w;
    }
  }
  var acc = prod;
  if (K > 1u) {
    part[WG + t] = prod;
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
