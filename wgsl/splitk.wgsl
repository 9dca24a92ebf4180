// splitk: the first half of a split-k product on 2 <= m <= 32 rows of x (batched decode), for
// `count` (<= 4) matrices w_j sharing x, their output columns side by side (column c_j + i_o of T):
//   part[s, i_m, c_j + i_o] = sum_{i in slice s} w_j[i_o, i] * x[i_m, i] * (has_norm ? norm_w[i] : 1)
//   ss[s, i_m] = sum_{i in slice s} x[i_m, i]^2        (has_norm: at part[nsl * m * T + s * m + i_m])
// splitk_reduce.wgsl then adds up the nsl slices and applies the epilogue (1 / rms, bias, residual,
// xn), so that a product has many workgroups with short k loops and reads each weight once.
//
// A workgroup takes all m rows of x (MB >= m, staged in workgroup memory, zero beyond m and i), WG *
// RW output rows of one matrix (RW per thread: rows t and t + WG of the tile) and one slice of l4
// vec4 of k, walked in chunks of KC4 vec4. Each thread reads its rows' part of w once and uses each
// vec4 read for the MB rows of x (reads of workgroup memory that every thread of the workgroup makes
// at once: broadcasts, each used for RW rows of w), keeping RW * MB sums in registers. The workgroups of the first tile (g = 0) take the sums of squares.
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
// the tiles g in [start[j], start[j + 1]) (start[j + 1] - start[j] = ceil(o_j / (WG * RW))), tiles = their
// total; nsl * l4 >= i4 > (nsl - 1) * l4, l4 a multiple of KC4; KC4 even; MB in {4, 8, 16, 32};
// RW in {1, 2}.

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

override WG: u32 = 64;
override MB: u32 = 32;
override KC4: u32 = 16;
override RW: u32 = 1;
override F16: bool = false;

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

fn x4_at(row: u32, i_i: u32) -> vec4<f32> {
  let b = row * p.i + i_i;
  if (i_i + 3u < p.i) {
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

// the vec4 at e of the chunk of KC4 vec4 of x from k4 (zero beyond the chunk's n4, m and i)
fn x_chunk(e: u32, k4: u32, n4: u32) -> vec4<f32> {
  let r = e / KC4;
  let c = e % KC4;
  if (r < p.m && c < n4) {
    return x4_at(r, 4u * (k4 + c));
  }
  return vec4<f32>(0.0);
}

fn nw4_at(i_i: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (i_i + c < p.i) {
      v[c] = norm_w[i_i + c];
    }
  }
  return v;
}

//#include w_at.wgsl

// adds wa . x[r0 + 0..3] (the vec4 at column e of the chunk) to a, and wb's to b (RW = 2)
fn quad(wa: vec4<f32>, wb: vec4<f32>, r0: u32, e: u32, a: ptr<private, vec4<f32>>, b: ptr<private, vec4<f32>>) {
  let i = r0 * KC4 + e;
  let x0 = xs[i];
  let x1 = xs[i + KC4];
  let x2 = xs[i + 2u * KC4];
  let x3 = xs[i + 3u * KC4];
  *a += vec4<f32>(dot(wa, x0), dot(wa, x1), dot(wa, x2), dot(wa, x3));
  if (RW > 1u) {
    *b += vec4<f32>(dot(wb, x0), dot(wb, x1), dot(wb, x2), dot(wb, x3));
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

// the weight vec4 (f32) or pair of vec4 (f16) qa (row a), qb (row b) at c of the chunk
fn wb_at(j: u32, idx: u32) -> vec4<u32> {
  if (RW > 1u) {
    return w_at(j, idx);
  }
  return vec4<u32>(0u);
}

// the n vec4<u32> of the rows of w at ba, bb: read four at a time (loads in flight together), then used
fn chunk_run(j: u32, ba: u32, bb: u32, n: u32) {
  var c = 0u;
  for (; c + 4u <= n; c += 4u) {
    let qa0 = w_at(j, ba + c);
    let qa1 = w_at(j, ba + c + 1u);
    let qa2 = w_at(j, ba + c + 2u);
    let qa3 = w_at(j, ba + c + 3u);
    let qb0 = wb_at(j, bb + c);
    let qb1 = wb_at(j, bb + c + 1u);
    let qb2 = wb_at(j, bb + c + 2u);
    let qb3 = wb_at(j, bb + c + 3u);
    chunk_step(qa0, qb0, c);
    chunk_step(qa1, qb1, c + 1u);
    chunk_step(qa2, qb2, c + 2u);
    chunk_step(qa3, qb3, c + 3u);
  }
  for (; c < n; c++) {
    chunk_step(w_at(j, ba + c), wb_at(j, bb + c), c);
  }
}

fn chunk_step(qa: vec4<u32>, qb: vec4<u32>, c: u32) {
  if (F16) {
    madd(lo4(qa), lo4(qb), 2u * c);
    madd(hi4(qa), hi4(qb), 2u * c + 1u);
  } else {
    madd(lo4(qa), lo4(qb), c);
  }
}

// writes the sums of rows r0..r0 + 3 (those < m) at column col of slice s
fn put(s: u32, r0: u32, col: u32, v: vec4<f32>) {
  for (var c = 0u; c < 4u; c++) {
    if (r0 + c < p.m) {
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
  var j = 0u;
  for (var k = 1u; k < p.count; k++) {
    if (g >= p.start[k]) {
      j = k;
    }
  }
  let i_o = (g - p.start[j]) * WG * RW + lid.x;
  let live = i_o < p.o[j];
  let live_b = RW > 1u && i_o + WG < p.o[j];
  // vec4<u32> per row of w, and per vec4 of x
  let per = select(1u, 2u, F16);
  let wrow = i_o * (p.i4 / per);
  // the second row: a row that exists where it does not (its sums are not written)
  let wrow_b = select(wrow, (i_o + WG) * (p.i4 / per), live_b);
  let lo = s * p.l4;
  let hi = min(lo + p.l4, p.i4);
  var ss = 0.0;
  for (var k4 = lo; k4 < hi; k4 += KC4) {
    let n4 = min(KC4, hi - k4);
    workgroupBarrier();
    // four vec4 of x at a time (loads in flight together)
    for (var e0 = lid.x; e0 < MB * KC4; e0 += 4u * WG) {
      let v0 = x_chunk(e0, k4, n4);
      let v1 = x_chunk(e0 + WG, k4, n4);
      let v2 = x_chunk(e0 + 2u * WG, k4, n4);
      let v3 = x_chunk(e0 + 3u * WG, k4, n4);
      for (var q = 0u; q < 4u; q++) {
        let e = e0 + q * WG;
        if (e < MB * KC4) {
          xs[e] = select(select(select(v3, v2, q == 2u), v1, q == 1u), v0, q == 0u);
        }
      }
    }
    workgroupBarrier();
    if (p.has_norm == 1u) {
      if (g == 0u && lid.x < p.m) {
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
    if (live) {
      let ba = wrow + k4 / per;
      let bb = wrow_b + k4 / per;
      chunk_run(j, ba, bb, n4 / per);
    }
  }
  if (p.has_norm == 1u && g == 0u && lid.x < p.m) {
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
