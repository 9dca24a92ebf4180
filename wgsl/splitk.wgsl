// splitk: the first half of a split-k product on 2 <= m <= 32 rows of x (batched decode), for
// `count` (<= 4) matrices w_j sharing x, their output columns side by side (column c_j + i_o of T):
//   part[s, i_m, c_j + i_o] = sum_{i in slice s} w_j[i_o, i] * x[i_m, i] * (has_norm ? norm_w[i] : 1)
//   ss[s, i_m] = sum_{i in slice s} x[i_m, i]^2        (has_norm: at part[nsl * m * T + s * m + i_m])
// splitk_reduce.wgsl then adds up the nsl slices and applies the epilogue (1 / rms, bias, residual,
// xn), so that a product has many workgroups with short k loops and reads each weight once.
//
// A workgroup takes all m rows of x (MB >= m, staged in workgroup memory times norm_w, zero beyond m
// and i), WG * RW output rows of one matrix (RW per thread: rows t and t + WG of the tile) and one
// slice of l4 vec4 of k, walked in chunks of KC4 vec4. Each chunk, a thread first issues all its
// loads of w (RW * WC vec4<u32>, WC = KC4 in f32, KC4 / 2 in f16: at most 16, in registers), then
// stages x, then uses each vec4 of x it reads from workgroup memory (the same address in every
// thread: a broadcast) for its RW rows, with RW * MB sums in registers (fused multiply-adds). The
// code that indexes registers is written out rather than looped (WGSL loops carry an iteration bound
// that keeps drivers from unrolling them), but for the products' loop over groups of four columns.
// FULL = true: m = MB, i = 4 i4, i4 a multiple of KC4 and every o_j a multiple of WG * RW: no bounds
// logic. The workgroups of the first tile (g = 0) take the sums of squares.
// Weights: F16 = false: f32 bits, 4 per vec4<u32>; F16 = true: two f16 to a u32, 8 per vec4<u32>,
// unpacked with unpack2x16float (no shader-f16 needed). i4 counts vec4 of f32 per row either way.
//
// | binding | name   | access     | type      | shape                                         |
// |---------|--------|------------|-----------|-----------------------------------------------|
// | 0       | p      | uniform    | Params    | o, start, col, m, i, i4, count, has_norm ...  |
// | 1       | x      | read       | f32       | (m, i)                                        |
// | 2..5    | w_j    | read       | vec4<u32> | (o_j, i4) f32 or (o_j, i4 / 2) f16 pairs      |
// | 6       | norm_w | read       | f32       | (i), read when has_norm = 1                   |
// | 7       | part   | read_write | f32       | (nsl, m, T) then (nsl, m) sums of squares     |
//
// Dispatch: at least tiles * nsl workgroups over x and y, linear index g * nsl + s; matrix j owns
// the tiles g in [start[j], start[j + 1]) (start[j + 1] - start[j] = ceil(o_j / (WG * RW))), tiles =
// their total; nsl * l4 >= i4 > (nsl - 1) * l4, l4 a multiple of KC4; KC4 even; MB in {4, 8, 16,
// 32}; RW in {1, 2}; RW * WC <= 16; WC even or 1.

struct Params {
  o: vec4<u32>,
  start: vec4<u32>,
  col: vec4<u32>,
  m: u32,
  i: u32,
  i4: u32,
  count: u32,
  has_norm: u32,
  nsl: u32,
  l4: u32,
  t: u32,
  tiles: u32,
}

override WG: u32 = 128;
override MB: u32 = 32;
override KC4: u32 = 16;
override RW: u32 = 1;
override F16: bool = false;
override FULL: bool = false;
// vec4<u32> of a row of w per chunk
override WC: u32 = select(KC4, KC4 / 2u, F16);

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w2: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w3: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> norm_w: array<f32>;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;

var<workgroup> xs: array<vec4<f32>, MB * KC4>;

// The sums of rows 0..3, 4..7, ... of x (only the first MB / 4 are used).
var<private> a0: vec4<f32>;
var<private> a1: vec4<f32>;
var<private> a2: vec4<f32>;
var<private> a3: vec4<f32>;
var<private> a4: vec4<f32>;
var<private> a5: vec4<f32>;
var<private> a6: vec4<f32>;
var<private> a7: vec4<f32>;
// the same for the second row of w (RW = 2)
var<private> b0: vec4<f32>;
var<private> b1: vec4<f32>;
var<private> b2: vec4<f32>;
var<private> b3: vec4<f32>;
var<private> b4: vec4<f32>;
var<private> b5: vec4<f32>;
var<private> b6: vec4<f32>;
var<private> b7: vec4<f32>;
// the chunk's weights: column c of row r (a: 0, b: 1) at c * RW + r
var<private> q0: vec4<u32>;
var<private> q1: vec4<u32>;
var<private> q2: vec4<u32>;
var<private> q3: vec4<u32>;
var<private> q4: vec4<u32>;
var<private> q5: vec4<u32>;
var<private> q6: vec4<u32>;
var<private> q7: vec4<u32>;
var<private> q8: vec4<u32>;
var<private> q9: vec4<u32>;
var<private> q10: vec4<u32>;
var<private> q11: vec4<u32>;
var<private> q12: vec4<u32>;
var<private> q13: vec4<u32>;
var<private> q14: vec4<u32>;
var<private> q15: vec4<u32>;

// this thread's matrix, its rows of w (row b: a row that exists where it does not, its sums not
// written), and the end of the slice in vec4<u32> of a row
var<private> j: u32;
var<private> row_a: u32;
var<private> row_b: u32;
var<private> end_w: u32;

//#include w_at.wgsl

fn x4_at(row: u32, i_i: u32) -> vec4<f32> {
  let b = row * p.i + i_i;
  if (FULL || i_i + 3u < p.i) {
    return vec4<f32>(x[b], x[b + 1u], x[b + 2u], x[b + 3u]);
  }
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (i_i + c < p.i) {
      v[c] = x[b + c];
    }
  }
  return v;
}

fn nw4_at(i_i: u32) -> vec4<f32> {
  if (FULL || i_i + 3u < p.i) {
    return vec4<f32>(norm_w[i_i], norm_w[i_i + 1u], norm_w[i_i + 2u], norm_w[i_i + 3u]);
  }
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (i_i + c < p.i) {
      v[c] = norm_w[i_i + c];
    }
  }
  return v;
}

// the vec4 at e of the chunk of KC4 vec4 of x from k4 (zero beyond the chunk's n4, m and i), times
// norm_w when `scale`
fn x_chunk(e: u32, k4: u32, n4: u32, scale: bool) -> vec4<f32> {
  let r = e / KC4;
  let c = e % KC4;
  if (FULL || (r < p.m && c < n4)) {
    let i_i = 4u * (k4 + c);
    let v = x4_at(min(r, MB - 1u), i_i);
    if (scale) {
      return v * nw4_at(i_i);
    }
    return v;
  }
  return vec4<f32>(0.0);
}

// the weights of register n (column n / RW of row n % RW) of the chunk at kw (vec4<u32> from the
// slice's start; zero past the slice)
fn w_of(n: u32, kw: u32) -> vec4<u32> {
  let c = kw + n / RW;
  let v = w_at(j, select(row_b, row_a, n % RW == 0u) + c);
  if (FULL) {
    return v;
  }
  return select(vec4<u32>(0u), v, c < end_w);
}

// all the weights of the chunk at kw, issued together
fn w_load(kw: u32) {
  let nq = RW * WC;
  q0 = w_of(0u, kw);
  if (nq > 1u) {
    q1 = w_of(1u, kw);
  }
  if (nq > 2u) {
    q2 = w_of(2u, kw);
    q3 = w_of(3u, kw);
  }
  if (nq > 4u) {
    q4 = w_of(4u, kw);
    q5 = w_of(5u, kw);
    q6 = w_of(6u, kw);
    q7 = w_of(7u, kw);
  }
  if (nq > 8u) {
    q8 = w_of(8u, kw);
    q9 = w_of(9u, kw);
    q10 = w_of(10u, kw);
    q11 = w_of(11u, kw);
    q12 = w_of(12u, kw);
    q13 = w_of(13u, kw);
    q14 = w_of(14u, kw);
    q15 = w_of(15u, kw);
  }
}

// a + (w . x0, w . x1, w . x2, w . x3)
fn f4(a: vec4<f32>, w: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(
    fma(w.w, x0.w, fma(w.z, x0.z, fma(w.y, x0.y, fma(w.x, x0.x, a.x)))),
    fma(w.w, x1.w, fma(w.z, x1.z, fma(w.y, x1.y, fma(w.x, x1.x, a.y)))),
    fma(w.w, x2.w, fma(w.z, x2.z, fma(w.y, x2.y, fma(w.x, x2.x, a.z)))),
    fma(w.w, x3.w, fma(w.z, x3.z, fma(w.y, x3.y, fma(w.x, x3.x, a.w)))),
  );
}

// adds wa . x[r0 + 0..3] (the vec4 at column e of the chunk) to a, and wb's to b (RW = 2)
fn quad(wa: vec4<f32>, wb: vec4<f32>, r0: u32, e: u32, a: ptr<private, vec4<f32>>, b: ptr<private, vec4<f32>>) {
  let i = r0 * KC4 + e;
  let x0 = xs[i];
  let x1 = xs[i + KC4];
  let x2 = xs[i + 2u * KC4];
  let x3 = xs[i + 3u * KC4];
  *a = f4(*a, wa, x0, x1, x2, x3);
  if (RW > 1u) {
    *b = f4(*b, wb, x0, x1, x2, x3);
  }
}

// adds w . x[r] (the vec4 at column e of the chunk) to the sums of each row r < MB
fn madd(wa: vec4<f32>, wb: vec4<f32>, e: u32) {
  quad(wa, wb, 0u, e, &a0, &b0);
  if (MB > 4u) {
    quad(wa, wb, 4u, e, &a1, &b1);
  }
  if (MB > 8u) {
    quad(wa, wb, 8u, e, &a2, &b2);
    quad(wa, wb, 12u, e, &a3, &b3);
  }
  if (MB > 16u) {
    quad(wa, wb, 16u, e, &a4, &b4);
    quad(wa, wb, 20u, e, &a5, &b5);
    quad(wa, wb, 24u, e, &a6, &b6);
    quad(wa, wb, 28u, e, &a7, &b7);
  }
}

fn lo4(q: vec4<u32>) -> vec4<f32> {
  if (F16) {
    return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
  }
  return bitcast<vec4<f32>>(q);
}

fn hi4(q: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
}

// the products of the weights qa (row a), qb (row b) at vec4<u32> c of the chunk
fn column(qa: vec4<u32>, qb: vec4<u32>, c: u32) {
  if (F16) {
    madd(lo4(qa), lo4(qb), 2u * c);
    madd(hi4(qa), hi4(qb), 2u * c + 1u);
  } else {
    madd(lo4(qa), lo4(qb), c);
  }
}

// the products of the chunk's weights (registers; zero past the slice) with x: four columns at a
// time, then the next four moved down (a loop that llvmpipe compiles in a fraction of the time that
// sixteen columns written out take)
fn chunk_products() {
  let z = vec4<u32>(0u);
  for (var c = 0u; c < WC; c += 4u) {
    if (RW == 1u) {
      column(q0, z, c);
      if (c + 1u < WC) {
        column(q1, z, c + 1u);
      }
      if (c + 2u < WC) {
        column(q2, z, c + 2u);
        column(q3, z, c + 3u);
      }
      q0 = q4;
      q1 = q5;
      q2 = q6;
      q3 = q7;
      q4 = q8;
      q5 = q9;
      q6 = q10;
      q7 = q11;
      q8 = q12;
      q9 = q13;
      q10 = q14;
      q11 = q15;
    } else {
      column(q0, q1, c);
      if (c + 1u < WC) {
        column(q2, q3, c + 1u);
      }
      if (c + 2u < WC) {
        column(q4, q5, c + 2u);
        column(q6, q7, c + 3u);
      }
      q0 = q8;
      q1 = q9;
      q2 = q10;
      q3 = q11;
      q4 = q12;
      q5 = q13;
      q6 = q14;
      q7 = q15;
    }
  }
}

// writes the sums of rows r0..r0 + 3 (those < m) at column col of slice s
fn put(s: u32, r0: u32, col: u32, v: vec4<f32>) {
  for (var c = 0u; c < 4u; c++) {
    if (FULL || r0 + c < p.m) {
      part[(s * p.m + r0 + c) * p.t + col] = v[c];
    }
  }
}

@compute @workgroup_size(WG)
fn splitk(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let wlin = wid.x + wid.y * nwg.x;
  let g = wlin / p.nsl;
  let s = wlin % p.nsl;
  if (g >= p.tiles) {
    return;
  }
  j = 0u;
  for (var k = 1u; k < p.count; k++) {
    if (g >= p.start[k]) {
      j = k;
    }
  }
  let i_o = (g - p.start[j]) * WG * RW + lid.x;
  let live = FULL || i_o < p.o[j];
  let live_b = RW > 1u && (FULL || i_o + WG < p.o[j]);
  // vec4<u32> per row of w, and per vec4 of x
  let per = select(1u, 2u, F16);
  let rowlen = p.i4 / per;
  let lo = s * p.l4;
  let hi = min(lo + p.l4, p.i4);
  // (rows past o_j read row 0: their sums are not written)
  row_a = select(0u, i_o, live) * rowlen + lo / per;
  row_b = select(row_a, (i_o + WG) * rowlen + lo / per, live_b);
  end_w = (hi - lo + per - 1u) / per;
  let norm = p.has_norm == 1u;
  // the first tile's workgroups take the sums of squares of x, from xs before the scale
  let squares = norm && g == 0u;
  var ss = 0.0;
  for (var k4 = lo; k4 < hi; k4 += KC4) {
    let n4 = select(min(KC4, hi - k4), KC4, FULL);
    // the chunk's weights first, in flight while x is staged
    w_load((k4 - lo) / per);
    workgroupBarrier();
    // four vec4 of x at a time (loads in flight together)
    for (var e0 = lid.x; e0 < MB * KC4; e0 += 4u * WG) {
      let v0 = x_chunk(e0, k4, n4, norm && !squares);
      let v1 = x_chunk(e0 + WG, k4, n4, norm && !squares);
      let v2 = x_chunk(e0 + 2u * WG, k4, n4, norm && !squares);
      let v3 = x_chunk(e0 + 3u * WG, k4, n4, norm && !squares);
      xs[e0] = v0;
      if (e0 + WG < MB * KC4) {
        xs[e0 + WG] = v1;
      }
      if (e0 + 2u * WG < MB * KC4) {
        xs[e0 + 2u * WG] = v2;
      }
      if (e0 + 3u * WG < MB * KC4) {
        xs[e0 + 3u * WG] = v3;
      }
    }
    workgroupBarrier();
    if (squares) {
      if (lid.x < p.m) {
        for (var c = 0u; c < n4; c++) {
          let v = xs[lid.x * KC4 + c];
          ss += dot(v, v);
        }
      }
      workgroupBarrier();
      for (var e = lid.x; e < MB * KC4; e += WG) {
        xs[e] *= nw4_at(4u * (k4 + e % KC4));
      }
      workgroupBarrier();
    }
    chunk_products();
  }
  if (squares && lid.x < p.m) {
    part[p.nsl * p.m * p.t + s * p.m + lid.x] = ss;
  }
  if (live) {
    let col = p.col[j] + i_o;
    put(s, 0u, col, a0);
    if (MB > 4u) {
      put(s, 4u, col, a1);
    }
    if (MB > 8u) {
      put(s, 8u, col, a2);
      put(s, 12u, col, a3);
    }
    if (MB > 16u) {
      put(s, 16u, col, a4);
      put(s, 20u, col, a5);
      put(s, 24u, col, a6);
      put(s, 28u, col, a7);
    }
  }
  if (live_b) {
    let col = p.col[j] + i_o + WG;
    put(s, 0u, col, b0);
    if (MB > 4u) {
      put(s, 4u, col, b1);
    }
    if (MB > 8u) {
      put(s, 8u, col, b2);
      put(s, 12u, col, b3);
    }
    if (MB > 16u) {
      put(s, 16u, col, b4);
      put(s, 20u, col, b5);
      put(s, 24u, col, b6);
      put(s, 28u, col, b7);
    }
  }
}
