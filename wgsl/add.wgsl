// add: out[i] = a[i] + b[i]   (out may alias a or b)
//
// | binding | name | access     | type   | shape |
// |---------|------|------------|--------|-------|
// | 0       | p    | uniform    | Params | count |
// | 1       | out  | read_write | f32    | (count) |
// | 2       | a    | read_write | f32    | (count) |
// | 3       | b    | read_write | f32    | (count) |
//
// Dispatch: ceil(count / WG) workgroups, split over x and y.

struct Params {
  count: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.count) {
    out[i] = a[i] + b[i];
  }
}
