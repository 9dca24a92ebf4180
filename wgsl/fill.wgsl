// fill: dst[i] = value for i < count   (32-bit words; zeroes a pooled buffer)
//
// | binding | name | access     | type   | shape        |
// |---------|------|------------|--------|--------------|
// | 0       | p    | uniform    | Params | count, value |
// | 1       | dst  | read_write | u32    | (count)      |
//
// Dispatch: ceil(count / WG) workgroups, split over x and y.

struct Params {
  count: u32,
  value: u32,
  _pad0: u32,
  _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.count) {
    dst[i] = p.value;
  }
}
