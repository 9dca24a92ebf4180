// matvec_f16: out[i_m, i_o] = sum_i f32(w[i_o, i]) * x[i_m, i] + bias[i_o]   (f16 weights, f32 sums)
//
// As matvec, with w packed two f16 to a u32 and read eight at a time (vec4<u32>), unpacked with
// unpack2x16float (no shader-f16 needed).
//
// | binding | name | access     | type      | shape                                          |
// |---------|------|------------|-----------|------------------------------------------------|
// | 0       | p    | uniform    | Params    | o, i, i8 = stride / 8, has_bias                |
// | 1       | out  | read_write | f32       | (m, o)                                         |
// | 2       | w    | read       | vec4<u32> | (o, i8): 8 f16 each, rows padded with zeros    |
// | 3       | x    | read       | f32       | (m, i)                                         |
// | 4       | bias | read       | f32       | (o), read only when has_bias = 1               |
//
// Dispatch: (ceil(o / (WG / TPR)), m) workgroups. Needs 2 * i8 <= XMAX.

struct Params {
  o: u32,
  i: u32,
  i8: u32,
  has_bias: u32,
}

override WG: u32 = 256;
override TPR: u32 = 32;
override XMAX: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
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
fn matvec_f16(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let i_m = wid.y;
  let row = i_m * p.i;
  for (var j = lid.x; j < 2u * p.i8; j += WG) {
    let i_i = 4u * j;
    xs[j] = vec4<f32>(x_at(row, i_i), x_at(row, i_i + 1u), x_at(row, i_i + 2u), x_at(row, i_i + 3u));
  }
  workgroupBarrier();
  let lane = lid.x % TPR;
  let i_o = wid.x * (WG / TPR) + lid.x / TPR;
  var acc = 0.0;
  if (i_o < p.o) {
    let base = i_o * p.i8;
    for (var j = lane; j < p.i8; j += TPR) {
      let q = w[base + j];
      let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
      let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
      acc += dot(lo, xs[2u * j]) + dot(hi, xs[2u * j + 1u]);
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
