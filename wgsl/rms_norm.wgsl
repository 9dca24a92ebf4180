// rms_norm: out[i_m, i_d] = x[i_m, i_d] / sqrt(mean_d(x[i_m]^2) + eps) * w[i_d]   (out may alias x)
//
// | binding | name | access     | type   | shape     |
// |---------|------|------------|--------|-----------|
// | 0       | p    | uniform    | Params | m, d, eps |
// | 1       | out  | read_write | f32    | (m, d)    |
// | 2       | x    | read_write | f32    | (m, d)    |
// | 3       | w    | read       | f32    | (d)       |
//
// Dispatch: one workgroup per row, m workgroups over x and y (x*y >= m).

struct Params {
  m: u32,
  d: u32,
  eps: f32,
  _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn rms_norm(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i_m = wid.x + wid.y * nwg.x;
  let row = i_m * p.d;
  var ss = 0.0;
  if (i_m < p.m) {
    for (var i_d = lid.x; i_d < p.d; i_d += WG) {
      let v = x[row + i_d];
      ss += v * v;
    }
  }
  partial[lid.x] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) {
      partial[lid.x] += partial[lid.x + s];
    }
    workgroupBarrier();
  }
  if (i_m >= p.m) {
    return;
  }
  let scale = 1.0 / sqrt(partial[0] / f32(p.d) + p.eps);
  for (var i_d = lid.x; i_d < p.d; i_d += WG) {
    out[row + i_d] = (x[row + i_d] * scale) * w[i_d];
  }
}
