// ssd_carry (Mamba-2 prefill, chunked SSD): pass 2 of three (see ssd_chunks.wgsl). For each
// (i_b, i_h, i_p, i_n), walks the nc chunks in order carrying the state:
//   start = state[i_b, i_h, i_p, i_n]; for i_c: hc[i_b, i_c, i_h, i_p, i_n] <- start (was the chunk's
//   end state from zero, e); start = exp(A[i_h] * ds[i_b, i_c, i_h]) * start + e
// and writes the final state back to state.
//
// | binding | name  | access     | type   | shape                                          |
// |---------|-------|------------|--------|------------------------------------------------|
// | 0       | p     | uniform    | Params | b, nc, h, p*n                                  |
// | 1       | hc    | read_write | f32    | (b, nc, h, p, n) states, then (b, nc, h) sums  |
// | 2       | state | read_write | f32    | (b, h, p, n)                                   |
// | 3       | A     | read       | f32    | (h)                                            |
//
// One thread per (i_b, i_h, i_p, i_n). Dispatch: ceil(b * h * p * n / 256) workgroups over x and y.

struct Params {
  b: u32,
  nc: u32,
  h: u32,
  pn: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> hc: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;

@compute @workgroup_size(256)
fn ssd_carry(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let hpn = p.h * p.pn;
  if (idx >= p.b * hpn) {
    return;
  }
  let i_b = idx / hpn;
  let i_hpn = idx % hpn; // (i_h * p + i_p) * n + i_n
  let i_h = i_hpn / p.pn;
  let a = A[i_h];
  let sums = p.b * p.nc * hpn;
  var s = state[idx];
  for (var i_c = 0u; i_c < p.nc; i_c++) {
    let k = (i_b * p.nc + i_c) * hpn + i_hpn;
    let e = hc[k];
    hc[k] = s;
    s = exp(a * hc[sums + (i_b * p.nc + i_c) * p.h + i_h]) * s + e;
  }
  state[idx] = s;
}
