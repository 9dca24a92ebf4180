// matvec: out[i_m, i_o] = sum_i w[i_o, i] * x[i_m, i] + bias[i_o]   (f32 weights; decode, m small)
//
// Each workgroup computes WG / TPR output rows for one row i_m of x: x[i_m] is staged in workgroup
// memory as vec4, TPR threads share an output row (vec4 loads of w, coalesced), and their partial
// sums are reduced in workgroup memory.
//
// | binding | name | access     | type      | shape                                      |
// |---------|------|------------|-----------|--------------------------------------------|
// | 0       | p    | uniform    | Params    | o, i, i4 = stride / 4, has_bias            |
// | 1       | out  | read_write | f32       | (m, o)                                     |
// | 2       | w    | read       | vec4<f32> | (o, i4): rows padded with zeros to stride  |
// | 3       | x    | read       | f32       | (m, i)                                     |
// | 4       | bias | read       | f32       | (o), read only when has_bias = 1           |
//
// Dispatch: (ceil(o / (WG / TPR)), m) workgroups. Needs i4 <= XMAX.

struct Params {
  o: u32,
  i: u32,
  i4: u32,
  has_bias: u32,
}

override WG: u32 = 256;
override TPR: u32 = 32;
override XMAX: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> xs: array<vec4<f32>, XMAX>;
var<workgroup> partial: array<f32, WG>;

fn x_at(row: u32, i_i: u32) -> f32 {
  if (i_i < p.i) {
    return x[row + i_i];
  }
  return 0.0;
}

@compute @workgroup_size(WG)
fn matvec(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let i_m = wid.y;
  let row = i_m * p.i;
  for (var j = lid.x; j < p.i4; j += WG) {
    let i_i = 4u * j;
    xs[j] = vec4<f32>(x_at(row, i_i), x_at(row, i_i + 1u), x_at(row, i_i + 2u), x_at(row, i_i + 3u));
  }
  workgroupBarrier();
  let lane = lid.x % TPR;
  let i_o = wid.x * (WG / TPR) + lid.x / TPR;
  var acc = 0.0;
  if (i_o < p.o) {
    let base = i_o * p.i4;
    for (var j = lane; j < p.i4; j += TPR) {
      acc += dot(w[base + j], xs[j]);
    }
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial[lid.x] += partial[lid.x + s];
    }
    workgroupBarrier();
  }
  if (lane == 0u && i_o < p.o) {
    var v = partial[lid.x];
    if (p.has_bias == 1u) {
      v += bias[i_o];
    }
    out[i_m * p.o + i_o] = v;
  }
}
