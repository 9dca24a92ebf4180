// splitk_tile: the first half of a split-k product, register blocked, on 2 <= m <= 32 rows of x
// (batched decode); the same sums as splitk.wgsl, in the same layout, for splitk_reduce.wgsl:
//   part[s, i_m, c_j + i_o] = sum_{i in slice s} w_j[i_o, i] * x[i_m, i] * (has_norm ? norm_w[i] : 1)
//   ss[s, i_m] = sum_{i in slice s} x[i_m, i]^2        (has_norm: at part[nsl * m * T + s * m + i_m])
//
// A workgroup takes all m rows of x (MB >= m), BN rows of one matrix and one slice of l4 vec4 of k,
// walked KC4 vec4 (4 * KC4 values of k) at a time. Both tiles are staged in workgroup memory with k
// outermost (xs[k][MB], ws[k][BN], vec4 along rows); thread (t_m, t_o) keeps the 4 x 4 block of
// sums of x rows 4 t_m .. 4 t_m + 3 by w rows 4 t_o .. 4 t_o + 3, so that each k reads one vec4 of
// each tile for 16 multiply-adds. The next chunk's loads are in flight (in registers) while the
// chunk is summed. The workgroups of the first tile (g = 0) take the sums of squares.
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
// the tiles g in [start[j], start[j + 1]) (start[j + 1] - start[j] = ceil(o_j / BN)), tiles = their
// total; nsl * l4 >= i4 > (nsl - 1) * l4, l4 a multiple of KC4. MB in {4, 8, 16, 32}, BN a multiple
// of 4, NT = MB * BN / 16 threads; KC4 even, KC4 <= BN / 8 (two vec4 of x per thread at most),
// KC4 <= MB / 2 (f32) or MB (f16) (eight vec4<u32> of w per thread at most).

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

override MB: u32 = 32;
override BN: u32 = 64;
override KC4: u32 = 2;
override F16: bool = false;
// threads, and vec4<u32> of one row of w per chunk
override NT: u32 = MB * BN / 16u;
override WC: u32 = select(KC4, KC4 / 2u, F16);
// vec4 of x and vec4<u32> of w each thread stages per chunk
override QX: u32 = (MB * KC4 + NT - 1u) / NT;
override QW: u32 = (BN * WC + NT - 1u) / NT;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w2: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w3: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> norm_w: array<f32>;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;

// (4 KC4, MB) and (4 KC4, BN): vec4 of 4 rows at one k
var<workgroup> xs: array<vec4<f32>, KC4 * MB>;
var<workgroup> ws: array<vec4<f32>, KC4 * BN>;

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
  if (i_i + 3u < p.i) {
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

// the vec4 of x that thread element e stages for the chunk from k4 (zero beyond m and hi)
fn x_load(e: u32, k4: u32, hi: u32) -> vec4<f32> {
  let r = e / KC4;
  let c = e % KC4;
  if (e < MB * KC4 && r < p.m && k4 + c < hi) {
    return x4_at(r, 4u * (k4 + c));
  }
  return vec4<f32>(0.0);
}

// the vec4<u32> of w that thread element e stages for the chunk from k4 (zero beyond o_j and hi)
fn w_load(e: u32, j: u32, o0: u32, k4: u32, hi: u32) -> vec4<u32> {
  let per = select(1u, 2u, F16);
  let row = e / WC;
  let c = k4 / per + e % WC;
  if (e < BN * WC && o0 + row < p.o[j] && c < hi / per) {
    return w_at(j, (o0 + row) * (p.i4 / per) + c);
  }
  return vec4<u32>(0u);
}

// stores the four values of v at rows `row` of k = kk .. kk + 3 of ws
fn put_w(row: u32, kk: u32, v: vec4<f32>) {
  let b = kk * (BN / 4u) + row / 4u;
  let q = row % 4u;
  ws[b][q] = v.x;
  ws[b + BN / 4u][q] = v.y;
  ws[b + 2u * (BN / 4u)][q] = v.z;
  ws[b + 3u * (BN / 4u)][q] = v.w;
}

@compute @workgroup_size(NT)
fn splitk_tile(
  @builtin(local_invocation_index) tl: u32,
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
  let o0 = (g - p.start[j]) * BN;
  let t_o = tl % (BN / 4u);
  let t_m = tl / (BN / 4u);
  let lo = s * p.l4;
  let hi = min(lo + p.l4, p.i4);
  let norm = p.has_norm == 1u;
  // the chunk in flight: the (at most) 2 vec4 of x and 8 vec4<u32> of w this thread stages
  var px: array<vec4<f32>, 2>;
  var pw: array<vec4<u32>, 8>;
  // the sums of squares of the x values this thread stages (two rows at most)
  var ss = vec2<f32>(0.0);
  var c0 = vec4<f32>(0.0);
  var c1 = vec4<f32>(0.0);
  var c2 = vec4<f32>(0.0);
  var c3 = vec4<f32>(0.0);
  for (var q = 0u; q < QX; q++) {
    px[q] = x_load(tl + q * NT, lo, hi);
  }
  for (var q = 0u; q < QW; q++) {
    pw[q] = w_load(tl + q * NT, j, o0, lo, hi);
  }
  for (var k4 = lo; k4 < hi; k4 += KC4) {
    workgroupBarrier();
    for (var q = 0u; q < QX; q++) {
      let e = tl + q * NT;
      if (e < MB * KC4) {
        let r = e / KC4;
        let c = e % KC4;
        var v = px[q];
        if (norm) {
          ss[q] += dot(v, v);
          v *= nw4_at(4u * (k4 + c));
        }
        let b = 4u * c * (MB / 4u) + r / 4u;
        xs[b][r % 4u] = v.x;
        xs[b + MB / 4u][r % 4u] = v.y;
        xs[b + 2u * (MB / 4u)][r % 4u] = v.z;
        xs[b + 3u * (MB / 4u)][r % 4u] = v.w;
      }
    }
    for (var q = 0u; q < QW; q++) {
      let e = tl + q * NT;
      if (e < BN * WC) {
        let row = e / WC;
        let c = e % WC;
        let v = pw[q];
        if (F16) {
          put_w(row, 8u * c, vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)));
          put_w(row, 8u * c + 4u, vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
        } else {
          put_w(row, 4u * c, bitcast<vec4<f32>>(v));
        }
      }
    }
    workgroupBarrier();
    let next = k4 + KC4;
    if (next < hi) {
      for (var q = 0u; q < QX; q++) {
        px[q] = x_load(tl + q * NT, next, hi);
      }
      for (var q = 0u; q < QW; q++) {
        pw[q] = w_load(tl + q * NT, j, o0, next, hi);
      }
    }
    for (var kk = 0u; kk < 4u * KC4; kk++) {
      let a = xs[kk * (MB / 4u) + t_m];
      let b = ws[kk * (BN / 4u) + t_o];
      c0 += a.x * b;
      c1 += a.y * b;
      c2 += a.z * b;
      c3 += a.w * b;
    }
  }
  if (norm && g == 0u) {
    // each row's sums of squares: KC4 threads' values, side by side in xs
    workgroupBarrier();
    for (var q = 0u; q < QX; q++) {
      let e = tl + q * NT;
      if (e < MB * KC4) {
        xs[e] = vec4<f32>(ss[q], 0.0, 0.0, 0.0);
      }
    }
    workgroupBarrier();
    if (tl < p.m) {
      var sum = 0.0;
      for (var c = 0u; c < KC4; c++) {
        sum += xs[tl * KC4 + c].x;
      }
      part[p.nsl * p.m * p.t + s * p.m + tl] = sum;
    }
  }
  let col = p.col[j] + o0 + 4u * t_o;
  let live = p.o[j] - min(p.o[j], o0 + 4u * t_o); // rows of this thread's block that exist
  for (var r = 0u; r < 4u; r++) {
    let i_m = 4u * t_m + r;
    if (i_m < p.m) {
      let v = select(select(select(c3, c2, r == 2u), c1, r == 1u), c0, r == 0u);
      let b = (s * p.m + i_m) * p.t + col;
      for (var c = 0u; c < min(live, 4u); c++) {
        part[b + c] = v[c];
      }
    }
  }
}
