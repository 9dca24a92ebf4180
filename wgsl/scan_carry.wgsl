// scan_carry (Mamba-1 prefill, chunked selective scan): pass 2 of three (see scan_chunks.wgsl).
// Chunk i_c of state (i_b, i_di, i_n) maps its start state s to a * s + e, with
// a = exp(A[i_di, i_n] * ds[i_b, i_c, i_di]) and e = hc[i_b, i_c, i_di, i_n] (its end state from zero).
// This pass replaces each e by the chunk's start state (h[i_b, i_di, i_n] composed with the maps of
// the chunks before it) and writes the state after the last chunk back to h.
//
// | binding | name | access     | type   | shape                                         |
// |---------|------|------------|--------|-----------------------------------------------|
// | 0       | p    | uniform    | Params | b, nc, di, n                                  |
// | 1       | hc   | read_write | f32    | (b, nc, di, n) states, then (b, nc, di) sums  |
// | 2       | h    | read_write | f32    | (b, di, n)                                    |
// | 3       | A    | read       | f32    | (di, n)                                       |
//
// A workgroup takes S = WG / P states (adjacent (i_di, i_n) of one i_b) and walks their chunks P at a
// time: a thread per (chunk, state) loads its map, the maps are composed by a parallel prefix scan
// over the P chunks in workgroup memory (log2 P rounds), and the start states follow from the state
// carried in. P is a power of two dividing WG. Dispatch: b * ceil(di * n / S) workgroups over x and y.

struct Params {
  b: u32,
  nc: u32,
  di: u32,
  n: u32,
}

override WG: u32 = 256;
override P: u32 = 32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> hc: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<storage, read> A: array<f32>;

var<workgroup> wa: array<f32, WG>; // [chunk][state]: decays
var<workgroup> wb: array<f32, WG>; // offsets

@compute @workgroup_size(WG)
fn scan_carry(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let S = WG / P;
  let dn = p.di * p.n;
  let groups = (dn + S - 1u) / S;
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.b * groups) {
    return; // the whole workgroup: the grid's padding
  }
  let tid = lid.x;
  let j = tid / S;
  let q = tid % S;
  let i_b = w / groups;
  let i_din = (w % groups) * S + q; // i_di * n + i_n
  let live = i_din < dn;
  let sums = p.b * p.nc * dn;
  var a = 0.0;
  var carried = 0.0;
  if (live) {
    a = A[i_din];
    carried = h[i_b * dn + i_din];
  }
  for (var c0 = 0u; c0 < p.nc; c0 += P) {
    let i_c = c0 + j;
    let k = (i_b * p.nc + i_c) * dn + i_din;
    var ma = 1.0; // chunks past nc: the identity map
    var mb = 0.0;
    if (live && i_c < p.nc) {
      mb = hc[k];
      ma = exp(a * hc[sums + (i_b * p.nc + i_c) * p.di + i_din / p.n]);
    }
    // inclusive scan over the chunks: (ma, mb) becomes the map of chunks c0..i_c
    for (var off = 1u; off < P; off <<= 1u) {
      wa[tid] = ma;
      wb[tid] = mb;
      workgroupBarrier();
      if (j >= off) {
        mb = ma * wb[tid - off * S] + mb;
        ma = ma * wa[tid - off * S];
      }
      workgroupBarrier();
    }
    wa[tid] = ma;
    wb[tid] = mb;
    workgroupBarrier();
    var start = carried;
    if (j > 0u) {
      start = wa[tid - S] * carried + wb[tid - S];
    }
    if (live && i_c < p.nc) {
      hc[k] = start;
    }
    carried = wa[(P - 1u) * S + q] * carried + wb[(P - 1u) * S + q];
    workgroupBarrier();
  }
  if (live && j == 0u) {
    h[i_b * dn + i_din] = carried;
  }
}
