// gated_rms_norm (Mamba-2): u = y * silu(z); each group of gs channels:
//   out[j] = w[j % di] * u[j] / sqrt(mean_group(u^2) + eps)   (out may alias y)
//
// | binding | name | access     | type   | shape                 |
// |---------|------|------------|--------|-----------------------|
// | 0       | p    | uniform    | Params | groups, gs, di, eps   |
// | 1       | out  | read_write | f32    | (groups * gs)         |
// | 2       | y    | read_write | f32    | (groups * gs)         |
// | 3       | z    | read       | f32    | (groups * gs)         |
// | 4       | w    | read       | f32    | (di)                  |
//
// One workgroup per group. Dispatch: groups workgroups over x and y.

struct Params {
  groups: u32,
  gs: u32,
  di: u32,
  eps: f32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> z: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;

var<workgroup> partial: array<f32, WG>;

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

@compute @workgroup_size(WG)
fn gated_rms_norm(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i_grp = wid.x + wid.y * nwg.x;
  let g0 = i_grp * p.gs;
  var ss = 0.0;
  if (i_grp < p.groups) {
    for (var j = lid.x; j < p.gs; j += WG) {
      let u = y[g0 + j] * silu(z[g0 + j]);
      ss += u * u;
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
  if (i_grp >= p.groups) {
    return;
  }
  let scale = 1.0 / sqrt(partial[0] / f32(p.gs) + p.eps);
  for (var j = lid.x; j < p.gs; j += WG) {
    let u = y[g0 + j] * silu(z[g0 + j]);
    out[g0 + j] = w[(g0 + j) % p.di] * (u * scale);
  }
}
