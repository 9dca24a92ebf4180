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
// A workgroup takes one chunk of CH channels: a thread per (channel, state), WG = CH * N, thread
// tid = i_n * CH + c. Its global reads come first, together: thread tid stages element tid (and
// more, as a loop, when T * CH > WG) of the chunk's (step, channel) tile, delta and delta * u
// (softplus once per step and channel), in workgroup memory, and reads the B (and C) of its state
// for the T steps into registers. Steps past l are staged as delta = 0, which leaves h as it is, so
// the T steps are written out (no loop: WGSL loops compile with an iteration bound that keeps drivers
// from unrolling them). In MODE 1 each thread keeps h * C of every step in registers, and the sums
// over the N states of a channel go through a small workgroup buffer: for N = 16 = T a halving
// exchange between the lanes of a channel (after which lane i_n holds step i_n: the (step, channel)
// that the same thread staged, whose u, z and D it kept), otherwise a step at a time.
// Workgroup memory stays at WM = max(2 * T * CH, 2 * WG) floats: Mesa's llvmpipe compiles a shader's
// workgroup memory zero-fill element by element, and its compile time grows much faster than the
// element count (seconds from about 1000 floats, minutes from 4000).
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
override WM: u32 = 512; // max(2 * T * CH, 2 * WG)

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

// the staged delta [step][channel] at 0 and delta * u at T * CH; then (MODE 1) two buffers of WG
// for the sums over n
var<workgroup> wm: array<f32, WM>;

// this thread's index, channel in the workgroup, state, decay rate, state value and delta sum
var<private> tid: u32;
var<private> c: u32;
var<private> i_n: u32;
var<private> a: f32;
var<private> h: f32;
var<private> dsum: f32;
// B and C of this thread's state for each step (C in MODE 1), then h * C of each step (MODE 1)
var<private> bv: array<f32, T>;
var<private> cv: array<f32, T>;
var<private> v: array<f32, T>;

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

/** B (and C) of step s from global row `row` (clamped to the last row of the chunk by the caller). */
fn load(s: u32, row: u32) {
  bv[s] = B[row * N + i_n];
  if (MODE == 1u) {
    cv[s] = C[row * N + i_n];
  }
}

/** Step s, MODE 0. */
fn step0(s: u32) {
  let delta = wm[s * CH + c];
  dsum += delta;
  h = exp(delta * a) * h + wm[T * CH + s * CH + c] * bv[s];
}

/** Step s, MODE 1. */
fn step1(s: u32) {
  h = exp(wm[s * CH + c] * a) * h + wm[T * CH + s * CH + c] * bv[s];
  v[s] = h * cv[s];
}

/**
 * Exchange k (buffer k % 2) of the halving sum with half `hf` (N = 16, lanes i_n and i_n ^ hf of a
 * channel): the lane with bit hf keeps the upper values j + hf, the other the lower values j.
 */
fn halve(hf: u32, j: u32, k: u32) {
  let up = (i_n & hf) != 0u;
  let base = (k % 2u) * WG;
  wm[base + tid] = select(v[j + hf], v[j], up);
  workgroupBarrier();
  v[j] = select(v[j], v[j + hf], up) + wm[base + select(tid + hf * CH, tid - hf * CH, up)];
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
  tid = lid.x;
  let g = w % groups;
  let i_c = (w / groups) % p.nc;
  let i_b = w / (groups * p.nc);
  let c0 = g * CH;
  let t0 = i_c * T;
  let len = min(T, p.l - t0);
  let row0 = i_b * p.l + t0;
  c = tid % CH;
  i_n = tid / CH;
  let ch = c0 + c;
  let live = ch < p.di;
  let hi = ((i_b * p.nc + i_c) * p.di + ch) * N + i_n;
  if (live) {
    a = A[ch * N + i_n];
    if (MODE == 1u) {
      h = hc[hi];
    }
  }
  let last = row0 + len - 1u;
  load(0u, min(row0, last)); load(1u, min(row0 + 1u, last));
  load(2u, min(row0 + 2u, last)); load(3u, min(row0 + 3u, last));
  load(4u, min(row0 + 4u, last)); load(5u, min(row0 + 5u, last));
  load(6u, min(row0 + 6u, last)); load(7u, min(row0 + 7u, last));
  load(8u, min(row0 + 8u, last)); load(9u, min(row0 + 9u, last));
  load(10u, min(row0 + 10u, last)); load(11u, min(row0 + 11u, last));
  load(12u, min(row0 + 12u, last)); load(13u, min(row0 + 13u, last));
  load(14u, min(row0 + 14u, last)); load(15u, min(row0 + 15u, last));

  // staging: element e of the (step, channel) tile; u and z of element tid kept (MODE 1)
  var u_kept = 0.0;
  var z_kept = 0.0;
  var d_kept = 0.0;
  for (var e = tid; e < T * CH; e += WG) {
    let s = e / CH;
    let chs = c0 + e % CH;
    var dv = 0.0;
    var uv = 0.0;
    if (s < len && chs < p.di) {
      let k = (row0 + s) * p.di + chs;
      dv = softplus(dt[k]);
      uv = x[k];
      if (MODE == 1u && N == T && e == tid) {
        u_kept = uv;
        z_kept = z[k];
        d_kept = D[chs];
      }
    }
    wm[e] = dv;
    wm[T * CH + e] = dv * uv;
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
  workgroupBarrier(); // the staged tile read by every thread: wm is free
  if (N == T) {
    // halving sums: lane i_n of channel c ends with the sum for step i_n, element tid of the tile
    halve(8u, 0u, 0u); halve(8u, 1u, 1u); halve(8u, 2u, 2u); halve(8u, 3u, 3u);
    halve(8u, 4u, 4u); halve(8u, 5u, 5u); halve(8u, 6u, 6u); halve(8u, 7u, 7u);
    halve(4u, 0u, 8u); halve(4u, 1u, 9u); halve(4u, 2u, 10u); halve(4u, 3u, 11u);
    halve(2u, 0u, 12u); halve(2u, 1u, 13u);
    halve(1u, 0u, 14u);
    if (i_n < len && live) {
      y[(row0 + i_n) * p.di + ch] = (v[0] + u_kept * d_kept) * silu(z_kept);
    }
    return;
  }
  // a step at a time: the thread of state 0 sums its channel's N values
  for (var s = 0u; s < T; s++) {
    let base = (s % 2u) * WG;
    wm[base + tid] = v[s];
    workgroupBarrier();
    if (i_n == 0u && s < len && live) {
      var acc = 0.0;
      for (var k = 0u; k < N; k++) {
        acc += wm[base + k * CH + c];
      }
      let e = (row0 + s) * p.di + ch;
      y[e] = (acc + x[e] * D[ch]) * silu(z[e]);
    }
  }
}
