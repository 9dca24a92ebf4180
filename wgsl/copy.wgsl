// copy: dst[dst_offset + i] = src[src_offset + i] for i < count   (32-bit words: f32 or i32;
// dst and src may be one buffer when the two ranges do not overlap)
//
// | binding | name | access     | type | shape                  |
// |---------|------|------------|------|------------------------|
// | 0       | p    | uniform    | Params | count, dst_offset, src_offset |
// | 1       | dst  | read_write | u32  | (dst_offset + count)   |
// | 2       | src  | read_write | u32  | (src_offset + count)   |
//
// Dispatch: ceil(count / WG) workgroups, split over x and y.

struct Params {
  count: u32,
  dst_offset: u32,
  src_offset: u32,
  _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read_write> src: array<u32>;

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.count) {
    dst[p.dst_offset + i] = src[p.src_offset + i];
  }
}
