// gemm: for each of `count` (<= 4) matrices w_j sharing one input x (m >= 2: batched decode, prefill),
//   xn = has_norm ? x / sqrt(mean(x^2) + eps) * norm_w : x          (per row of x)
//   out_j[i_m, i_o] = sum_i xn[i_m, i] * w_j[i_o, i] + bias_j[i_o]   (f32 or f16 weights, f32 sums)
//   resid[i_m, i_o] += out_j[i_m, i_o]                              (has_resid, count = 1)
// The same fusions as matvec (RMSNorm -> several linears on one input -> residual add), for any m.
// Weights: F16 = false: f32 bits, 4 per vec4<u32>; F16 = true: two f16 to a u32, 8 per vec4<u32>,
// unpacked with unpack2x16float (no shader-f16 needed). s4 counts vec4 of f32 per row either way
// (even with F16).
//
// Register-tiled: a workgroup computes a BM x BN tile of out_j (BM rows of x, BN rows of w_j), each
// thread a TM x TN block of it (rows 4 * (t_m + q * NTM) + 0..3, columns 4 * (t_o + q * NTO) + 0..3).
// Each k-tile, BK columns of x and of w_j, is read from memory once per workgroup (the next one into
// registers while the threads multiply the current one), stored transposed in workgroup memory (rows
// of BM / 4 + PAD and BN / 4 + PAD vec4 per k), and each thread reads TM / 4 + TN / 4 vec4 of it per
// k for TM * TN multiply-adds. Workgroups whose tile lies inside x and w_j, on rows of a multiple of
// BK, load without bounds checks (vec4 of x where i is a multiple of 4). KS slices of NT
// threads split the k-tiles (slice s takes tiles s, s + KS, ...) and add their sums at the end, so
// that small tiles (small m) still make workgroups of many threads.
// With has_norm, x is staged times norm_w, the sums of squares of its rows are taken while staging,
// and 1 / rms(row) scales the products at the end; the workgroups of the first block of w_0 write xn.
// (The backend runs the norm as a pass of its own before products on more than 32 rows of x: on an
// H100 that was faster than staging x times norm_w, 8 + 121 us against 151 for in_proj in prefill.)
// Products that lie in whole tiles run a pipeline of their own without bounds logic (FULL). The
// loops over k and over a thread's loads of a k-tile are spelled out through mac, load and stage:
// every WGSL loop carries an iteration bound that keeps the driver from unrolling it.
//
// Split over k across workgroups (few tiles, long rows: x_proj and out_proj in prefill, the
// projections at batch 32), in two dispatches of one pipeline:
//   phase 1: `splits` times the grid; split s takes the k-tiles [s * tps, (s + 1) * tps) and writes
//            its raw sums to part[s, i_m, g * BN + column in the tile] (with has_norm, x * norm_w
//            and, from the workgroups of g = 0, the sums of squares of x over its k-tiles to
//            part[splits * m * total * BN + s * m + i_m]);
//   phase 2: a thread per (i_m, g * BN + column) sums the splits and does the epilogue (1 / rms,
//            bias, store, residual add; with has_norm it also writes its share of xn).
// part is the xn binding, or the resid binding with has_norm (then has_resid = 0).
//
// | binding | name    | access     | type      | shape                                         |
// |---------|---------|------------|-----------|-----------------------------------------------|
// | 0       | p       | uniform    | Params    | o, start, has_bias, m, i, s4, count, ...      |
// | 1       | x       | read       | vec4<f32> | (m, i) f32, bound as vec4 (its buffer to 16 bytes) |
// | 2..5    | out_j   | read_write | f32       | (m, o_j)                                      |
// | 6..9    | w_j     | read       | vec4<u32> | (o_j, 4 * s4 / PER): PER values each, zero padded |
// | 10..13  | bias_j  | read       | f32       | (o_j), read when has_bias[j] = 1              |
// | 14      | norm_w  | read       | vec4<f32> | (i) f32 as x, read when has_norm = 1          |
// | 15      | xn      | read_write | f32       | (m, i), written when has_norm = 1; phases 1, 2: |
// |         |         |            |           | part (see above) without has_norm            |
// | 16      | resid   | read_write | f32       | (m, o_0), updated when has_resid = 1; phases  |
// |         |         |            |           | 1, 2 with has_norm: part                      |
//
// Dispatch: at least total * nmb workgroups over x and y (phase 1: splits times that; phase 2:
// ceil(m * total * BN / WG)), nmb = ceil(m / BM); linear workgroup index (s * total + g) * nmb +
// (block of rows of x); matrix j owns the g in [start[j], start[j + 1]),
// start[j + 1] - start[j] = ceil(o_j / BN); total = the g of all matrices.
// Needs TM, TN in {4, 8}; BK a multiple of 8; at most 8 k-tile loads of x and of w per thread
// (LX, LW <= 8); KS > 1 only when (KS - 1) * BM * BN <= KS * BK * (BM + BN) (the sums meet in `sh`);
// in phase 1, tps a multiple of KS.

struct Params {
  o: vec4<u32>,
  start: vec4<u32>,
  has_bias: vec4<u32>,
  m: u32,
  i: u32,
  s4: u32,
  count: u32,
  has_norm: u32,
  has_resid: u32,
  eps: f32,
  nmb: u32,
  total: u32,
  phase: u32,
  splits: u32,
  tps: u32,
}

override BM: u32 = 64;
override BN: u32 = 64;
override TM: u32 = 4;
override TN: u32 = 4;
override BK: u32 = 16;
override KS: u32 = 1;
// threads along the rows of x, along the rows of w, in one k-slice, in the workgroup
override NTM: u32 = BM / TM;
override NTO: u32 = BN / TN;
override NT: u32 = NTM * NTO;
override WG: u32 = NT * KS;
override F16: bool = false;
// The whole product lies in full tiles (m a multiple of BM, each o_j of BN, i of BK; XEVEN): a
// pipeline of its own, without bounds logic.
override FULL: bool = false;
// weight values per vec4<u32>
override PER: u32 = select(4u, 8u, F16);
// vec4 of x (vec4<u32> of w) per k-tile, and loads of them per thread
override XV: u32 = BM * BK / 4u;
override WV: u32 = BN * BK / PER;
override LX: u32 = (XV + NT - 1u) / NT;
override LW: u32 = (WV + NT - 1u) / NT;
// vec4 per k of the x tile and of the w tile in workgroup memory (PAD more than BM / 4 and BN / 4:
// the transposing stores of a warp then meet in fewer banks)
override PAD: u32 = 1;
override XS: u32 = BM / 4u + PAD;
override WS: u32 = BN / 4u + PAD;
// vec4 of workgroup memory per k-slice: x tile [k][XS], then w tile [k][WS]
override SV: u32 = BK * (XS + WS);
// whether every thread's loads of a k-tile are all inside it (LX * NT = XV, LW * NT = WV)
override XEVEN: bool = XV % NT == 0u;
override WEVEN: bool = WV % NT == 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
@group(0) @binding(3) var<storage, read_write> out1: array<f32>;
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out3: array<f32>;
@group(0) @binding(6) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> w2: array<vec4<u32>>;
@group(0) @binding(9) var<storage, read> w3: array<vec4<u32>>;
@group(0) @binding(10) var<storage, read> bias0: array<f32>;
@group(0) @binding(11) var<storage, read> bias1: array<f32>;
@group(0) @binding(12) var<storage, read> bias2: array<f32>;
@group(0) @binding(13) var<storage, read> bias3: array<f32>;
@group(0) @binding(14) var<storage, read> norm_w: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read_write> xn: array<f32>;
@group(0) @binding(16) var<storage, read_write> resid: array<f32>;

var<workgroup> sh: array<vec4<f32>, KS * SV>;
var<workgroup> rs: array<f32, KS * XV>;
var<workgroup> scale: array<f32, BM>;

//#include w_at.wgsl

// Load e of a k-tile of w_j from column k0 on (zero past the matrix): row o0 + e / (BK / PER);
// `full` as for x_tile_at (and the tile's rows inside w_j); loads past the k-tile (e >= WV) skipped.
fn w_tile_at(j: u32, o0: u32, o: u32, s4: u32, k0: u32, e: u32, full: bool) -> vec4<u32> {
  let i_o = o0 + e / (BK / PER);
  let kv = k0 / PER + e % (BK / PER);
  let row = 4u * s4 / PER;
  if ((WEVEN || e < WV) && (FULL || full || (i_o < o && kv < row))) {
    return w_at(j, i_o * row + kv);
  }
  return vec4<u32>(0u);
}

//#include bias_at.wgsl

//#include store.wgsl

/** The matrix whose workgroup columns hold column g of workgroups. */
fn matrix_of(g: u32) -> u32 {
  var j = 0u;
  for (var k = 1u; k < p.count; k++) {
    if (g >= p.start[k]) {
      j = k;
    }
  }
  return j;
}

/** The epilogue of out_j[i_m, i_o] (o_j = o) from its scaled sum v: bias, store, residual add. */
fn finish(j: u32, i_m: u32, o: u32, i_o: u32, v: f32) {
  let y = v + bias_at(j, i_o);
  store(j, i_m * o + i_o, y);
  if (p.has_resid == 1u) {
    resid[i_m * o + i_o] += y;
  }
}

/** x[idx] (x is bound as vec4). */
fn x_at(idx: u32) -> f32 {
  return x[idx / 4u][idx % 4u];
}

fn nw_at(i_i: u32) -> f32 {
  return norm_w[i_i / 4u][i_i % 4u];
}

/** x[i_m, i_i .. i_i + 3] (i_i a multiple of 4), zeros past the row or past m. */
fn x4_at(i_m: u32, i_i: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (i_m < p.m) {
    let at = i_m * p.i + i_i;
    if (p.i % 4u == 0u && i_i + 3u < p.i) {
      return x[at / 4u];
    }
    for (var c = 0u; c < 4u; c++) {
      if (i_i + c < p.i) {
        v[c] = x_at(at + c);
      }
    }
  }
  return v;
}

/** norm_w[i_i .. i_i + 3] (i_i a multiple of 4), zeros past the row. */
fn nw4_at(i_i: u32) -> vec4<f32> {
  if (FULL || i_i + 3u < p.i) {
    return norm_w[i_i / 4u];
  }
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (i_i + c < p.i) {
      v[c] = nw_at(i_i + c);
    }
  }
  return v;
}

/**
 * Load e of the k-tile of x from column k0 on for the rows m0.. (row m0 + e / (BK / 4)); `full`: the
 * tile lies inside x and p.i is a multiple of BK, so no checks.
 */
fn x_tile_at(m0: u32, k0: u32, e: u32, full: bool) -> vec4<f32> {
  let r = e / (BK / 4u);
  let kk = 4u * (e % (BK / 4u));
  if (FULL || full) {
    return x[((m0 + r) * p.i + k0 + kk) / 4u];
  }
  if (!XEVEN && e >= XV) {
    return vec4<f32>(0.0);
  }
  return x4_at(m0 + r, k0 + kk);
}

/** Whether a<q> (see gemm) holds sums: q = 8 * qa + 4 * qb + r, qa < TM / 4, qb < TN / 4. */
fn used(q: u32) -> bool {
  return q / 8u < TM / 4u && (q % 8u) / 4u < TN / 4u;
}

/** The place of a<q> among the TM * TN / 4 vec4 a thread holds. */
fn packed(q: u32) -> u32 {
  return (q / 8u) * (TN / 4u) * 4u + q % 8u;
}

/** A k-slice other than 0 leaves a<q> of thread tl in `sh`. */
fn park(q: u32, slice: u32, tl: u32, v: vec4<f32>) {
  if (used(q)) {
    sh[((slice - 1u) * (TM * TN / 4u) + packed(q)) * NT + tl] = v;
  }
}

/** The sum of a<q> of thread tl over the k-slices other than 0. */
fn gather(q: u32, tl: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (used(q)) {
    for (var s = 1u; s < KS; s++) {
      v += sh[((s - 1u) * (TM * TN / 4u) + packed(q)) * NT + tl];
    }
  }
  return v;
}

/** Writes a<q> of this thread: row 4 * (t_m + qa * NTM) + r, columns 4 * (t_o + qb * NTO) + 0..3. */
fn put(q: u32, v4: vec4<f32>) {
  if (!used(q)) {
    return;
  }
  let row = 4u * (ep.t_m + (q / 8u) * NTM) + q % 4u;
  let i_m = ep.m0 + row;
  if (!FULL && i_m >= p.m) {
    return;
  }
  var sc = 1.0;
  if (p.has_norm == 1u) {
    sc = scale[row];
  }
  for (var c = 0u; c < 4u; c++) {
    let col = 4u * (ep.t_o + ((q % 8u) / 4u) * NTO) + c;
    let i_o = ep.o0 + col;
    if (p.phase == 1u) {
      if (FULL || i_o < ep.o) {
        part_put((ep.s * p.m + i_m) * p.total * BN + ep.g * BN + col, v4[c]);
      }
    } else if (FULL || i_o < ep.o) {
      finish(ep.j, i_m, ep.o, i_o, v4[c] * sc);
    }
  }
}

/** Phases 1 and 2: the splits' sums, in xn (or in resid with has_norm). */
fn part_put(idx: u32, v: f32) {
  if (p.has_norm == 1u) {
    resid[idx] = v;
  } else {
    xn[idx] = v;
  }
}

fn part_at(idx: u32) -> f32 {
  if (p.has_norm == 1u) {
    return resid[idx];
  }
  return xn[idx];
}

/** Phase 2: element e of (m, total * BN), the splits' sums added, then the epilogue. */
fn reduce(e: u32) {
  let cols = p.total * BN;
  let i_m = e / cols;
  let col = e % cols;
  if (i_m >= p.m) {
    return;
  }
  var sc = 1.0;
  if (p.has_norm == 1u) {
    var ss = 0.0;
    for (var s = 0u; s < p.splits; s++) {
      ss += part_at(p.splits * p.m * cols + s * p.m + i_m);
    }
    sc = 1.0 / sqrt(ss / f32(p.i) + p.eps);
    for (var i_i = col; i_i < p.i; i_i += cols) {
      let idx = i_m * p.i + i_i;
      xn[idx] = x_at(idx) * sc * nw_at(i_i);
    }
  }
  let g = col / BN;
  let j = matrix_of(g);
  let o = p.o[j];
  let i_o = (g - p.start[j]) * BN + col % BN;
  if (i_o >= o) {
    return;
  }
  var sum = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    sum += part_at((s * p.m + i_m) * cols + col);
  }
  finish(j, i_m, o, i_o, sum * sc);
}

/** Where this thread's tile lies, for load, stage and put. */
struct Place {
  s: u32,
  g: u32,
  m0: u32,
  o0: u32,
  o: u32,
  j: u32,
  t_m: u32,
  t_o: u32,
  tl: u32,
  base: u32,
  full: bool,
}

var<private> ep: Place;

// The loads of the next k-tile (x, and w with PER values each) and the sums of squares of the rows
// this thread stages, indexed only with constants (see load, stage): the driver then keeps them in
// registers (WGSL loops are not unrolled: see mac).
var<private> px: array<vec4<f32>, 8>;
var<private> pw: array<vec4<u32>, 8>;
var<private> ss: array<f32, 8>;

/** Load q (< 8, a constant) of this thread of the k-tile from column k0 on into px, pw. */
fn load(q: u32, k0: u32) {
  if (q < LX) {
    px[q] = x_tile_at(ep.m0, k0, ep.tl + q * NT, ep.full);
  }
  if (q < LW) {
    pw[q] = w_tile_at(ep.j, ep.o0, ep.o, p.s4, k0, ep.tl + q * NT, ep.full);
  }
}

fn load_tile(k0: u32) {
  load(0u, k0);
  load(1u, k0);
  load(2u, k0);
  load(3u, k0);
  load(4u, k0);
  load(5u, k0);
  load(6u, k0);
  load(7u, k0);
}

/** Stores load q (a constant) of the k-tile from column k0 on, transposed, into workgroup memory. */
fn stage(q: u32, k0: u32) {
  let e = ep.tl + q * NT;
  if (q < LX && (XEVEN || e < XV)) {
    let r = e / (BK / 4u);
    let kk = 4u * (e % (BK / 4u));
    var v = px[q];
    if (p.has_norm == 1u) {
      ss[q] += dot(v, v);
      v *= nw4_at(k0 + kk);
    }
    let at = ep.base + kk * XS + r / 4u;
    sh[at][r % 4u] = v.x;
    sh[at + XS][r % 4u] = v.y;
    sh[at + 2u * XS][r % 4u] = v.z;
    sh[at + 3u * XS][r % 4u] = v.w;
  }
  if (q < LW && (WEVEN || e < WV)) {
    let r = e / (BK / PER);
    let kk = PER * (e % (BK / PER));
    let wv = pw[q];
    var lo = bitcast<vec4<f32>>(wv);
    var hi = vec4<f32>(0.0);
    if (F16) {
      lo = vec4<f32>(unpack2x16float(wv.x), unpack2x16float(wv.y));
      hi = vec4<f32>(unpack2x16float(wv.z), unpack2x16float(wv.w));
    }
    let at = ep.base + BK * XS + kk * WS + r / 4u;
    sh[at][r % 4u] = lo.x;
    sh[at + WS][r % 4u] = lo.y;
    sh[at + 2u * WS][r % 4u] = lo.z;
    sh[at + 3u * WS][r % 4u] = lo.w;
    if (F16) {
      sh[at + 4u * WS][r % 4u] = hi.x;
      sh[at + 5u * WS][r % 4u] = hi.y;
      sh[at + 6u * WS][r % 4u] = hi.z;
      sh[at + 7u * WS][r % 4u] = hi.w;
    }
  }
}

/** The sum of squares of load q (a constant) to `rs`, for the k-slice's rows. */
fn keep_ss(q: u32, slice: u32) {
  let e = ep.tl + q * NT;
  if (q < LX && e < XV) {
    rs[slice * XV + e] = ss[q];
  }
}

fn stage_tile(k0: u32) {
  stage(0u, k0);
  stage(1u, k0);
  stage(2u, k0);
  stage(3u, k0);
  stage(4u, k0);
  stage(5u, k0);
  stage(6u, k0);
  stage(7u, k0);
}

// The sums: a<q> for q = 8 * qa + 4 * qb + r, row 4 * qa + r, columns 4 * qb .. of the thread's
// block (qa < TM / 4, qb < TN / 4). Named values rather than an array: the driver then keeps them
// in registers (an array of them ran 20% slower on an H100); private, for mac.
var<private> a0: vec4<f32>;
var<private> a1: vec4<f32>;
var<private> a2: vec4<f32>;
var<private> a3: vec4<f32>;
var<private> a4: vec4<f32>;
var<private> a5: vec4<f32>;
var<private> a6: vec4<f32>;
var<private> a7: vec4<f32>;
var<private> a8: vec4<f32>;
var<private> a9: vec4<f32>;
var<private> a10: vec4<f32>;
var<private> a11: vec4<f32>;
var<private> a12: vec4<f32>;
var<private> a13: vec4<f32>;
var<private> a14: vec4<f32>;
var<private> a15: vec4<f32>;

/**
 * The multiply-adds of one k of the tile in workgroup memory: x at xk, w at wk. Called several times
 * per loop iteration: the loop's iteration bound (added to every WGSL loop) keeps the driver from
 * unrolling it, and its counting cost as much as a k's multiply-adds.
 */
fn mac(xk: u32, wk: u32) {
  let u0 = sh[xk];
  let v0 = sh[wk];
  a0 += u0.x * v0;
  a1 += u0.y * v0;
  a2 += u0.z * v0;
  a3 += u0.w * v0;
  if (TN == 8u) {
    let v1 = sh[wk + NTO];
    a4 += u0.x * v1;
    a5 += u0.y * v1;
    a6 += u0.z * v1;
    a7 += u0.w * v1;
  }
  if (TM == 8u) {
    let u1 = sh[xk + NTM];
    a8 += u1.x * v0;
    a9 += u1.y * v0;
    a10 += u1.z * v0;
    a11 += u1.w * v0;
    if (TN == 8u) {
      let v1 = sh[wk + NTO];
      a12 += u1.x * v1;
      a13 += u1.y * v1;
      a14 += u1.z * v1;
      a15 += u1.w * v1;
    }
  }
}


@compute @workgroup_size(WG)
fn gemm(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  // Workgroups that share rows of w (one per block of rows of x) are neighbours, so a weight tile
  // read from memory by one is found in cache by the others.
  let wlin = wid.x + wid.y * nwg.x;
  if (p.phase == 2u) {
    reduce(wlin * WG + lid);
    return;
  }
  let sp = wlin / (p.total * p.nmb);
  let g = (wlin / p.nmb) % p.total;
  if (sp >= p.splits) {
    return;
  }
  let m0 = (wlin % p.nmb) * BM;
  let j = matrix_of(g);
  let o0 = (g - p.start[j]) * BN;
  let o = p.o[j];
  let slice = select(0u, lid / NT, KS > 1u);
  let tl = select(lid, lid % NT, KS > 1u);
  let t_o = tl % NTO;
  let t_m = tl / NTO;
  let base = slice * SV;

  var tiles = (p.i + BK - 1u) / BK;
  var first = 0u;
  if (p.phase == 1u) {
    first = sp * p.tps;
    tiles = min(tiles - first, p.tps);
  }
  let rounds = (tiles + KS - 1u) / KS;
  // Tiles inside x and w_j on rows of whole k-tiles load without checks (a uniform branch).
  let full = FULL || (m0 + BM <= p.m && o0 + BN <= o && p.i % BK == 0u && XEVEN);
  ep = Place(sp, g, m0, o0, o, j, t_m, t_o, tl, base, full);
  var k0 = (first + slice) * BK;
  load_tile(k0);
  for (var t = 0u; t < rounds; t++) {
    workgroupBarrier();
    stage_tile(k0);
    workgroupBarrier();
    if (t + 1u < rounds) {
      load_tile(k0 + KS * BK);
    }
    // 8 k a round (BK is a multiple of 8)
    for (var kk = 0u; kk < BK; kk += 8u) {
      let xk = base + kk * XS + t_m;
      let wk = base + BK * XS + kk * WS + t_o;
      mac(xk, wk);
      mac(xk + XS, wk + WS);
      mac(xk + 2u * XS, wk + 2u * WS);
      mac(xk + 3u * XS, wk + 3u * WS);
      mac(xk + 4u * XS, wk + 4u * WS);
      mac(xk + 5u * XS, wk + 5u * WS);
      mac(xk + 6u * XS, wk + 6u * WS);
      mac(xk + 7u * XS, wk + 7u * WS);
    }
    k0 += KS * BK;
  }

  if (p.has_norm == 1u) {
    keep_ss(0u, slice);
    keep_ss(1u, slice);
    keep_ss(2u, slice);
    keep_ss(3u, slice);
    keep_ss(4u, slice);
    keep_ss(5u, slice);
    keep_ss(6u, slice);
    keep_ss(7u, slice);
    workgroupBarrier();
    for (var r = lid; r < BM; r += WG) {
      var sum = 0.0;
      for (var s = 0u; s < KS; s++) {
        for (var c = 0u; c < BK / 4u; c++) {
          sum += rs[s * XV + r * (BK / 4u) + c];
        }
      }
      if (p.phase == 0u) {
        scale[r] = 1.0 / sqrt(sum / f32(p.i) + p.eps);
      } else if (g == 0u && m0 + r < p.m) {
        part_put(p.splits * p.m * p.total * BN + sp * p.m + m0 + r, sum);
      }
    }
    workgroupBarrier();
    if (p.phase == 0u && g == 0u) {
      // xn a vec4 at a time (4 columns of a row; fewer past a row's end where i is no multiple of 4)
      let i4 = (p.i + 3u) / 4u;
      for (var e = lid; e < BM * i4; e += WG) {
        let r = e / i4;
        let i_i = 4u * (e % i4);
        if (m0 + r < p.m) {
          let v = x4_at(m0 + r, i_i) * scale[r] * nw4_at(i_i);
          let idx = (m0 + r) * p.i + i_i;
          for (var c = 0u; c < min(4u, p.i - i_i); c++) {
            xn[idx + c] = v[c];
          }
        }
      }
    }
  }

  // The other k-slices leave their sums in `sh`; slice 0 adds them to its own.
  if (KS > 1u) {
    workgroupBarrier();
    if (slice > 0u) {
      park(0u, slice, tl, a0);
      park(1u, slice, tl, a1);
      park(2u, slice, tl, a2);
      park(3u, slice, tl, a3);
      park(4u, slice, tl, a4);
      park(5u, slice, tl, a5);
      park(6u, slice, tl, a6);
      park(7u, slice, tl, a7);
      park(8u, slice, tl, a8);
      park(9u, slice, tl, a9);
      park(10u, slice, tl, a10);
      park(11u, slice, tl, a11);
      park(12u, slice, tl, a12);
      park(13u, slice, tl, a13);
      park(14u, slice, tl, a14);
      park(15u, slice, tl, a15);
    }
    workgroupBarrier();
    if (slice == 0u) {
      a0 += gather(0u, tl);
      a1 += gather(1u, tl);
      a2 += gather(2u, tl);
      a3 += gather(3u, tl);
      a4 += gather(4u, tl);
      a5 += gather(5u, tl);
      a6 += gather(6u, tl);
      a7 += gather(7u, tl);
      a8 += gather(8u, tl);
      a9 += gather(9u, tl);
      a10 += gather(10u, tl);
      a11 += gather(11u, tl);
      a12 += gather(12u, tl);
      a13 += gather(13u, tl);
      a14 += gather(14u, tl);
      a15 += gather(15u, tl);
    }
  }
  if (slice != 0u) {
    return;
  }
  put(0u, a0);
  put(1u, a1);
  put(2u, a2);
  put(3u, a3);
  put(4u, a4);
  put(5u, a5);
  put(6u, a6);
  put(7u, a7);
  put(8u, a8);
  put(9u, a9);
  put(10u, a10);
  put(11u, a11);
  put(12u, a12);
  put(13u, a13);
  put(14u, a14);
  put(15u, a15);
}
