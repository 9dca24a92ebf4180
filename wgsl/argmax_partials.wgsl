// argmax_partials (greedy sampling, second half of matvec1's mode 2): out[out_row, i_b] = the id of
// the largest value among the groups' (value, id) pairs of sequence i_b, the lowest id among equals;
// 0 when no pair has an id (every logit NaN or -inf, as the js reference). With embed = 1, the next
// step's embedding of that id too (the embed op fused in):
//   hidden[i_b, i_d] = table[out[out_row, i_b], i_d]
//
// | binding | name   | access     | type   | shape                                       |
// |---------|--------|------------|--------|---------------------------------------------|
// | 0       | p      | uniform    | Params | b, groups, out_row, embed, d, stride, f16   |
// | 1       | out    | read_write | i32    | (rows, b)                                   |
// | 2       | pairs  | read       | f32    | (b, 2 * groups): value, id as f32 bits      |
// | 3       | table  | read       | u32    | (v, stride): f32 bits, or f16 pairs (f16 = 1), when embed |
// | 4       | hidden | read_write | f32    | (b, d), when embed                          |
//
// One workgroup per sequence. Dispatch: (b) workgroups.

struct Params {
  b: u32,
  groups: u32,
  out_row: u32,
  embed: u32,
  d: u32,
  stride: u32,
  f16: u32,
  _pad: u32,
}

override WG: u32 = 256;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<storage, read> pairs: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read_write> hidden: array<f32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_id: array<u32, WG>;

fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  if (ia == NONE) {
    return false;
  }
  return ib == NONE || va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(WG)
fn argmax_partials(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let i_b = wid.x;
  let base = 2u * i_b * p.groups;
  var bv = 0.0;
  var bi = NONE;
  for (var g = lid.x; g < p.groups; g += WG) {
    let v = pairs[base + 2u * g];
    let id = bitcast<u32>(pairs[base + 2u * g + 1u]);
    if (better(v, id, bv, bi)) {
      bv = v;
      bi = id;
    }
  }
  best_value[lid.x] = bv;
  best_id[lid.x] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s && better(best_value[lid.x + s], best_id[lid.x + s], best_value[lid.x], best_id[lid.x])) {
      best_value[lid.x] = best_value[lid.x + s];
      best_id[lid.x] = best_id[lid.x + s];
    }
    workgroupBarrier();
  }
  var id = best_id[0];
  if (id == NONE) {
    id = 0u;
  }
  if (lid.x == 0u) {
    out[p.out_row * p.b + i_b] = i32(id);
  }
  if (p.embed == 1u) {
    for (var i_d = lid.x; i_d < p.d; i_d += WG) {
      let e = id * p.stride + i_d;
      if (p.f16 == 1u) {
        hidden[i_b * p.d + i_d] = unpack2x16float(table[e >> 1u])[e & 1u];
      } else {
        hidden[i_b * p.d + i_d] = bitcast<f32>(table[e]);
      }
    }
  }
}
