// embed_f16: out[i_m, i_d] = f32(table[ids[offset + i_m], i_d])   (table packed as f16 pairs in u32)
//
// | binding | name  | access     | type             | shape                        |
// |---------|-------|------------|------------------|------------------------------|
// | 0       | p     | uniform    | Params           | m, d, stride, offset         |
// | 1       | out   | read_write | f32              | (m, d)                       |
// | 2       | table | read       | u32 (2 x f16)    | (v, stride / 2), stride even |
// | 3       | ids   | read       | i32              | (offset + m)                 |
//
// Dispatch: ceil(m*d / WG) workgroups, split over x and y.

struct Params {
  m: u32,
  d: u32,
  stride: u32,
  offset: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read> ids: array<i32>;

@compute @workgroup_size(WG)
fn embed_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.m * p.d) {
    return;
  }
  let i_m = idx / p.d;
  let i_d = idx % p.d;
  let i_v = u32(ids[p.offset + i_m]);
  let e = i_v * p.stride + i_d;
  out[idx] = unpack2x16float(table[e >> 1u])[e & 1u];
}
