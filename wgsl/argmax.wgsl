// argmax (greedy sampling): out[out_row, i_b] = argmax_v x[i_b, v], the lowest id among equals, NaN
// never wins, where x = logits with the repetition penalty (seen tokens: x / rp when x > 0, x * rp
// otherwise) when has_seen = 1; then seen[i_b, id] = 1.
//
// | binding | name   | access     | type   | shape                         |
// |---------|--------|------------|--------|-------------------------------|
// | 0       | p      | uniform    | Params | b, v, out_row, has_seen, rp   |
// | 1       | out    | read_write | i32    | (rows, b)                     |
// | 2       | logits | read       | f32    | (b, v)                        |
// | 3       | seen   | read_write | f32    | (b, v), used when has_seen = 1 |
//
// One workgroup per sequence. Dispatch: (b) workgroups.

struct Params {
  b: u32,
  v: u32,
  out_row: u32,
  has_seen: u32,
  rp: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override WG: u32 = 256;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> seen: array<f32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_id: array<u32, WG>;

fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  if (ib == NONE) {
    return ia != NONE;
  }
  if (ia == NONE) {
    return false;
  }
  return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let i_b = wid.x;
  let row = i_b * p.v;
  var bv = 0.0;
  var bi = NONE;
  // Four elements per round, loaded together (so their loads are in flight at once), then taken in
  // increasing id order.
  let last = p.v - 1u;
  for (var i0 = lid.x; i0 < p.v; i0 += 4u * WG) {
    let ids = vec4<u32>(i0, i0 + WG, i0 + 2u * WG, i0 + 3u * WG);
    let at = min(ids, vec4<u32>(last)) + vec4<u32>(row);
    var xs = vec4<f32>(logits[at.x], logits[at.y], logits[at.z], logits[at.w]);
    if (p.has_seen == 1u) {
      let sn = vec4<f32>(seen[at.x], seen[at.y], seen[at.z], seen[at.w]);
      xs = select(xs, select(xs * p.rp, xs / p.rp, xs > vec4<f32>(0.0)), sn != vec4<f32>(0.0));
    }
    for (var u = 0u; u < 4u; u++) {
      let xv = xs[u];
      // NaN fails both comparisons; -inf never beats the js reference's start of -inf.
      if (ids[u] < p.v && (xv > -3.4028235e38 || xv == -3.4028235e38)) {
        if (bi == NONE || xv > bv) {
          bv = xv;
          bi = ids[u];
        }
      }
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
  if (lid.x == 0u) {
    var id = best_id[0];
    if (id == NONE) {
      id = 0u;
    }
    out[p.out_row * p.b + i_b] = i32(id);
    if (p.has_seen == 1u) {
      seen[row + id] = 1.0;
    }
  }
}
