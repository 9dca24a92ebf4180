// scan_chunks (Mamba-1 prefill, chunked selective scan): passes 1 and 3 of three (scan_carry is
// pass 2). The l steps of each (i_b, i_di) are cut into nc = ceil(l / T) chunks of T = 16 steps. With
// delta = softplus(dt[i_b, t, i_di]), u = x[i_b, t, i_di], a step is
//   h[i_n] = exp(delta * A[i_di, i_n]) * h[i_n] + delta * u * B[i_b, t, i_n]
// and since A is constant over t, the decay over a chunk is exp(A[i_di, i_n] * sum_t delta).
//
// MODE 0: from h = 0, writes each chunk's end state hc[i_b, i_c, i_di, i_n] and its delta sum
//         ds[i_b, i_c, i_di] (at offset b * nc * di * n in the same buffer).
// MODE 1: from h = hc[i_b, i_c, i_di, i_n] (the chunk's start state, written by scan_carry), writes
//   y[i_b, t, i_di] = (sum_n h[i_n] * C[i_b, t, i_n] + D[i_di] * u) * silu(z[i_b, t, i_di])
//
// | binding | name | access     | type   | shape                                         |
// |---------|------|------------|--------|-----------------------------------------------|
// | 0       | p    | uniform    | Params | b, l, di, n, nc                               |
// | 1       | y    | read_write | f32    | (b, l, di), written in MODE 1                 |
// | 2       | x    | read       | f32    | (b, l, di)                                    |
// | 3       | dt   | read       | f32    | (b, l, di)                                    |
// | 4       | A    | read       | f32    | (di, n)                                       |
// | 5       | B    | read       | f32    | (b, l, n)                                     |
// | 6       | C    | read       | f32    | (b, l, n), read in MODE 1                     |
// | 7       | D    | read       | f32    | (di), read in MODE 1                          |
// | 8       | z    | read       | f32    | (b, l, di), read in MODE 1                    |
// | 9       | hc   | read_write | f32    | (b, nc, di, n) states, then (b, nc, di) sums  |
//
// A workgroup takes one chunk of CH channels: a thread per (channel, state), WG = CH * N. Its global
// reads come first, together: the chunk's delta, delta * u (and u, z), computed once per (step,
// channel), and B (and C) go to workgroup memory. Steps past l are staged as delta = 0, which leaves
// h as it is, so the T steps are written out (no loop: WGSL loops compile with an iteration bound
// that keeps drivers from unrolling them). In MODE 1 each thread leaves h * C of every step in
// workgroup memory, and a thread per (step, channel) then sums them over n into y.
// Dispatch: b * nc * ceil(di / CH) workgroups over x and y. Needs n = N.

struct Params {
  b: u32,
  l: u32,
  di: u32,
  n: u32,
  nc: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

const T: u32 = 16u;
override WG: u32 = 256;
override CH: u32 = 16;
override N: u32 = 16;
override MODE: u32 = 0;

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

var<workgroup> s_delta: array<f32, T * CH>; // [step][channel]
var<workgroup> s_du: array<f32, T * CH>; // delta * u
var<workgroup> s_u: array<f32, T * CH * MODE + 1>; // u, MODE 1
var<workgroup> s_z: array<f32, T * CH * MODE + 1>; // z, MODE 1
var<workgroup> s_b: array<f32, T * N>; // [step][state]
var<workgroup> s_c: array<f32, T * N * MODE + 1>; // C, MODE 1
var<workgroup> part: array<f32, T * CH * (N + 1) * MODE + 1>; // h * C, [step][channel][state], rows of N + 1

// this thread's channel in the workgroup, state, decay rate, state value and delta sum
var<private> c: u32;
var<private> i_n: u32;
var<private> a: f32;
var<private> h: f32;
var<private> dsum: f32;

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

/** Step s, MODE 0. */
fn step0(s: u32) {
  let delta = s_delta[s * CH + c];
  dsum += delta;
  h = exp(delta * a) * h + s_du[s * CH + c] * s_b[s * N + i_n];
}

/** Step s, MODE 1. */
fn step1(s: u32) {
  h = exp(s_delta[s * CH + c] * a) * h + s_du[s * CH + c] * s_b[s * N + i_n];
  part[(s * CH + c) * (N + 1u) + i_n] = h * s_c[s * N + i_n];
}

/** The N values of part from `base` summed. */
fn row_sum(base: u32) -> f32 {
  if (N == 16u) {
    let s0 = (part[base] + part[base + 1u]) + (part[base + 2u] + part[base + 3u]);
    let s1 = (part[base + 4u] + part[base + 5u]) + (part[base + 6u] + part[base + 7u]);
    let s2 = (part[base + 8u] + part[base + 9u]) + (part[base + 10u] + part[base + 11u]);
    let s3 = (part[base + 12u] + part[base + 13u]) + (part[base + 14u] + part[base + 15u]);
    return (s0 + s1) + (s2 + s3);
  }
  var acc = 0.0;
  for (var k = 0u; k < N; k++) {
    acc += part[base + k];
  }
  return acc;
}

@compute @workgroup_size(WG)
fn scan_chunks(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let groups = (p.di + CH - 1u) / CH;
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.b * p.nc * groups) {
    return; // the whole workgroup: the grid's padding
  }
  let tid = lid.x;
  let g = w % groups;
  let i_c = (w / groups) % p.nc;
  let i_b = w / (groups * p.nc);
  let c0 = g * CH;
  let t0 = i_c * T;
  let len = min(T, p.l - t0);
  let row0 = i_b * p.l + t0;
  c = tid / N;
  i_n = tid % N;
  let ch = c0 + c;
  let live = c < CH && ch < p.di;
  let hi = ((i_b * p.nc + i_c) * p.di + ch) * N + i_n;
  if (live) {
    a = A[ch * N + i_n];
    if (MODE == 1u) {
      h = hc[hi];
    }
  }

  // staging: element e of the (step, channel) and of the (step, state) tiles
  for (var e = tid; e < T * max(CH, N); e += WG) {
    let s = e / CH;
    let chs = c0 + e % CH;
    var dv = 0.0;
    var uv = 0.0;
    var zv = 0.0;
    let on = e < T * CH && s < len && chs < p.di;
    if (on) {
      let k = (row0 + s) * p.di + chs;
      dv = dt[k];
      uv = x[k];
      if (MODE == 1u) {
        zv = z[k];
      }
    }
    let sn = e / N;
    var bv = 0.0;
    var cv = 0.0;
    if (e < T * N && sn < len) {
      bv = B[(row0 + sn) * N + e % N];
      if (MODE == 1u) {
        cv = C[(row0 + sn) * N + e % N];
      }
    }
    if (e < T * CH) {
      if (on) {
        dv = softplus(dv);
      }
      s_delta[e] = dv;
      s_du[e] = dv * uv;
      if (MODE == 1u) {
        s_u[e] = uv;
        s_z[e] = zv;
      }
    }
    if (e < T * N) {
      s_b[e] = bv;
      if (MODE == 1u) {
        s_c[e] = cv;
      }
    }
  }
  workgroupBarrier();

  if (MODE == 0u) {
    step0(0u); step0(1u); step0(2u); step0(3u);
    step0(4u); step0(5u); step0(6u); step0(7u);
    step0(8u); step0(9u); step0(10u); step0(11u);
    step0(12u); step0(13u); step0(14u); step0(15u);
    if (live) {
      hc[hi] = h;
      if (i_n == 0u) {
        hc[p.b * p.nc * p.di * N + (i_b * p.nc + i_c) * p.di + ch] = dsum;
      }
    }
    return;
  }
  step1(0u); step1(1u); step1(2u); step1(3u);
  step1(4u); step1(5u); step1(6u); step1(7u);
  step1(8u); step1(9u); step1(10u); step1(11u);
  step1(12u); step1(13u); step1(14u); step1(15u);
  workgroupBarrier();
  for (var e = tid; e < T * CH; e += WG) {
    let s = e / CH;
    let cc = e % CH;
    let ch2 = c0 + cc;
    if (s < len && ch2 < p.di) {
      let acc = row_sum(e * (N + 1u));
      y[(row0 + s) * p.di + ch2] = (acc + s_u[e] * D[ch2]) * silu(s_z[e]);
    }
  }
}
