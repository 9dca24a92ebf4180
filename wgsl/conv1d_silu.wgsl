// conv1d_silu: causal depthwise conv over time, then SiLU, continuing from state.
//   xs = concat(state[i_b, i_c], x[i_b, :, i_c]) along time  (length k - 1 + l)
//   out[i_b, t, i_c] = silu(bias[i_c] + sum_j w[i_c, j] * xs[t + j]);  afterwards state = xs[l ..]
//
// | binding | name  | access     | type   | shape                        |
// |---------|-------|------------|--------|------------------------------|
// | 0       | p     | uniform    | Params | b, l, c, k, has_bias         |
// | 1       | out   | read_write | f32    | (b, l, c)                    |
// | 2       | x     | read       | f32    | (b, l, c)                    |
// | 3       | w     | read       | f32    | (c, k)                       |
// | 4       | bias  | read       | f32    | (c), read when has_bias = 1  |
// | 5       | state | read_write | f32    | (b, c, k - 1)                |
//
// mode 0: one thread per (i_b, i_c), sequential over t, then the state update. Dispatch:
//   ceil(b*c / WG) workgroups over x and y.
// mode 1 (long l): one thread per (i_b, t, i_c), out only; dispatch ceil(b*l*c / WG) workgroups.
// mode 2: one thread per (i_b, i_c), the state update only (after mode 1, in a later dispatch).

struct Params {
  b: u32,
  l: u32,
  c: u32,
  k: u32,
  has_bias: u32,
  mode: u32,
  _pad1: u32,
  _pad2: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

fn xs_at(s0: u32, i_b: u32, i_c: u32, pos: u32) -> f32 {
  let km1 = p.k - 1u;
  if (pos < km1) {
    return state[s0 + pos];
  }
  return x[(i_b * p.l + pos - km1) * p.c + i_c];
}

@compute @workgroup_size(WG)
fn conv1d_silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (p.mode == 1u) {
    if (idx >= p.b * p.l * p.c) {
      return;
    }
    let i_c1 = idx % p.c;
    let row = idx / p.c;
    let i_b1 = row / p.l;
    let t1 = row % p.l;
    var acc1 = 0.0;
    if (p.has_bias == 1u) {
      acc1 = bias[i_c1];
    }
    for (var j = 0u; j < p.k; j++) {
      acc1 += w[i_c1 * p.k + j] * xs_at((i_b1 * p.c + i_c1) * (p.k - 1u), i_b1, i_c1, t1 + j);
    }
    out[idx] = silu(acc1);
    return;
  }
  if (idx >= p.b * p.c) {
    return;
  }
  let i_b = idx / p.c;
  let i_c = idx % p.c;
  let km1 = p.k - 1u;
  let s0 = idx * km1;
  var b0 = 0.0;
  if (p.has_bias == 1u) {
    b0 = bias[i_c];
  }
  for (var t = 0u; t < select(p.l, 0u, p.mode == 2u); t++) {
    var acc = b0;
    for (var j = 0u; j < p.k; j++) {
      let pos = t + j;
      var v: f32;
      if (pos < km1) {
        v = state[s0 + pos];
      } else {
        v = x[(i_b * p.l + pos - km1) * p.c + i_c];
      }
      acc += w[i_c * p.k + j] * v;
    }
    out[(i_b * p.l + t) * p.c + i_c] = silu(acc);
  }
  // state[j] = xs[l + j]; xs[l + j] for l + j < k - 1 is state[l + j], not yet overwritten.
  for (var j = 0u; j < km1; j++) {
    let pos = p.l + j;
    var v: f32;
    if (pos < km1) {
      v = state[s0 + pos];
    } else {
      v = x[(i_b * p.l + pos - km1) * p.c + i_c];
    }
    state[s0 + j] = v;
  }
}
