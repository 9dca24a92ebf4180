// embed: out[i_m, i_d] = table[ids[offset + i_m], i_d]   (f32 table)
//
// | binding | name  | access     | type   | shape                  |
// |---------|-------|------------|--------|------------------------|
// | 0       | p     | uniform    | Params | m, d, stride, offset   |
// | 1       | out   | read_write | f32    | (m, d)                 |
// | 2       | table | read       | f32    | (v, stride), stride>=d |
// | 3       | ids   | read       | i32    | (offset + m)           |
//
// Dispatch: ceil(m*d / WG) workgroups, split over x and y (x*WG*y covers m*d).

struct Params {
  m: u32,
  d: u32,
  stride: u32,
  offset: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> ids: array<i32>;

@compute @workgroup_size(WG)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.m * p.d) {
    return;
  }
  let i_m = idx / p.d;
  let i_d = idx % p.d;
  let i_v = u32(ids[p.offset + i_m]);
  out[idx] = table[i_v * p.stride + i_d];
}
