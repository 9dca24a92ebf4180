// scan_carry (Mamba-1 prefill, chunked selective scan): pass 2 of three (see scan_chunks.wgsl).
// For each (i_b, i_di, i_n), walks the nc chunks in order carrying the state:
//   start = h[i_b, i_di, i_n]; for i_c: hc[i_b, i_c, i_di, i_n] <- start (was the chunk's end state
//   from zero, e); start = exp(A[i_di, i_n] * ds[i_b, i_c, i_di]) * start + e
// and writes the final state back to h.
//
// | binding | name | access     | type   | shape                                         |
// |---------|------|------------|--------|-----------------------------------------------|
// | 0       | p    | uniform    | Params | b, nc, di, n                                  |
// | 1       | hc   | read_write | f32    | (b, nc, di, n) states, then (b, nc, di) sums  |
// | 2       | h    | read_write | f32    | (b, di, n)                                    |
// | 3       | A    | read       | f32    | (di, n)                                       |
//
// One thread per (i_b, i_di, i_n). Dispatch: ceil(b * di * n / 256) workgroups over x and y.

struct Params {
  b: u32,
  nc: u32,
  di: u32,
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> hc: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;

@compute @workgroup_size(256)
fn scan_carry(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let dn = p.di * p.n;
  if (idx >= p.b * dn) {
    return;
  }
  let i_b = idx / dn;
  let i_din = idx % dn; // i_di * n + i_n
  let a = A[i_din];
  let sums = p.b * p.nc * dn;
  var s = h[idx];
  for (var i_c = 0u; i_c < p.nc; i_c++) {
    let k = (i_b * p.nc + i_c) * dn + i_din;
    let e = hc[k];
    hc[k] = s;
    s = exp(a * hc[sums + (i_b * p.nc + i_c) * p.di + i_din / p.n]) * s + e;
  }
  h[idx] = s;
}
