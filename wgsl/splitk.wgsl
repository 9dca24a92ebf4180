// splitk: the first half of a split-k product on 2 <= m <= 32 rows of x (batched decode), for
// `count` (<= 4) matrices w_j sharing x, their output columns side by side (column c_j + i_o of T):
//   part[s, i_m, c_j + i_o] = sum_{i in slice s} w_j[i_o, i] * x[i_m, i] * (has_norm ? norm_w[i] : 1)
//   ss[s, i_m] = sum_{i in slice s} x[i_m, i]^2        (has_norm: at part[nsl * m * T + s * m + i_m])
// splitk_reduce.wgsl then adds up the nsl slices and applies the epilogue (1 / rms, bias, residual,
// xn), so that a product has many workgroups with short k loops and reads each weight once.
//
// A workgroup takes all m rows of x (MB >= m, staged in workgroup memory, zero beyond m and i), WG
// output rows of one matrix (one per thread) and one slice of l4 vec4 of k, walked in chunks of KC4
// vec4. Each thread reads its row's part of w once and uses each vec4 read for the MB rows of x
// (reads of workgroup memory that every thread of the workgroup makes at once: broadcasts), keeping
// MB sums in registers. The workgroups of the first tile (g = 0) take the sums of squares.
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
// the tiles g in [start[j], start[j + 1]) (start[j + 1] - start[j] = ceil(o_j / WG)), tiles = their
// total; nsl * l4 >= i4 > (nsl - 1) * l4, l4 a multiple of KC4; KC4 even; MB in {4, 8, 16, 32}.

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

fn nw4_at(i_i: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (i_i + c < p.i) {
      v[c] = norm_w[i_i + c];
    }
  }
  return v;
}

fn w_at(j: u32, idx: u32) -> vec4<u32> {
  switch j {
    case 0u: {
      return w0[idx];
    }
    case 1u: {
      return w1[idx];
    }
    case 2u: {
      return w2[idx];
    }
    default: {
      return w3[idx];
    }
  }
}

// w . x[r0 + 0..3] over the vec4 at column e of the chunk
fn rows4(w: vec4<f32>, r0: u32, e: u32) -> vec4<f32> {
  let b = r0 * KC4 + e;
  return vec4<f32>(dot(w, xs[b]), dot(w, xs[b + KC4]), dot(w, xs[b + 2u * KC4]), dot(w, xs[b + 3u * KC4]));
}

// adds w . x[r] (the vec4 at column e of the chunk) to the sum of each row r < MB
fn madd(w: vec4<f32>, e: u32) {
  a0 += rows4(w, 0u, e);
  if (MB > 4u) {
    a1 += rows4(w, 4u, e);
  }
  if (MB > 8u) {
    a2 += rows4(w, 8u, e);
    a3 += rows4(w, 12u, e);
  }
  if (MB > 16u) {
    a4 += rows4(w, 16u, e);
    a5 += rows4(w, 20u, e);
    a6 += rows4(w, 24u, e);
    a7 += rows4(w, 28u, e);
  }
}

// the weight vec4 (f32) or pair of vec4 (f16) at c of the chunk from row offset base
fn chunk_step(j: u32, base: u32, c: u32) {
  let q = w_at(j, base + c);
  if (F16) {
    madd(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), 2u * c);
    madd(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)), 2u * c + 1u);
  } else {
    madd(bitcast<vec4<f32>>(q), c);
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
  let i_o = (g - p.start[j]) * WG + lid.x;
  let live = i_o < p.o[j];
  // vec4<u32> per row of w, and per vec4 of x
  let per = select(1u, 2u, F16);
  let wrow = i_o * (p.i4 / per);
  let lo = s * p.l4;
  let hi = min(lo + p.l4, p.i4);
  var ss = 0.0;
  for (var k4 = lo; k4 < hi; k4 += KC4) {
    let n4 = min(KC4, hi - k4);
    workgroupBarrier();
    for (var e = lid.x; e < MB * KC4; e += WG) {
      let r = e / KC4;
      let c = e % KC4;
      var v = vec4<f32>(0.0);
      if (r < p.m && c < n4) {
        v = x4_at(r, 4u * (k4 + c));
      }
      xs[e] = v;
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
      let base = wrow + k4 / per;
      if (n4 == KC4) {
        for (var c = 0u; c < KC4 / per; c++) {
          chunk_step(j, base, c);
        }
      } else {
        for (var c = 0u; c < n4 / per; c++) {
          chunk_step(j, base, c);
        }
      }
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
}
