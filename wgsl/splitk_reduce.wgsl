// splitk_reduce: the second half of a split-k product (see splitk.wgsl): adds up the nsl slices of
// the partial sums and applies the epilogue, one thread per output (then one per element of xn):
//   rs[i_m] = has_norm ? 1 / sqrt(sum_s ss[s, i_m] / i + eps) : 1
//   out_j[i_m, i_o] = rs[i_m] * sum_s part[s, i_m, c_j + i_o] + bias_j[i_o]
//   resid[i_m, i_o] += out_j[i_m, i_o]                        (has_resid, count = 1)
//   xn[i_m, i_i] = x[i_m, i_i] * rs[i_m] * norm_w[i_i]        (has_norm)
// then, by epi:
//   0: nothing more
//   1: (count <= 2, matrix 0 gives x of the conv) the causal depthwise conv1d + SiLU of one new step
//      of each of the m sequences, with its state of k - 1 earlier inputs per channel, shifted in place:
//      xc[i_m, c] = silu(conv_b[c] + sum_t<k-1 conv_w[c, t] * state[i_m, c, t] + conv_w[c, k-1] * out_0)
//      and with xrows > 0, x_proj's products on xc split by workgroup: workgroup g of row i_m takes
//      the columns [256 g, 256 g + 256) of that row (as epi 2), and each with channels of xc (g < XG =
//      ceil(o_0 / 256)) leaves, for the xrows rows of xw (x_proj's matrices one under another, rows of
//      xstride4 vec4<u32>, f32 bits or f16 pairs when xf16 = 1),
//        pairs[(i_m * XG + g) * xrows4 + i_x] = sum_{c in [256 g, 256 g + 256), c < o_0} xw[i_x, c] * xc[i_m, c]
//      (xrows4 = xrows rounded up to a multiple of 4) for scan_step to add up (its XG)
//   2: (count = 1; greedy sampling) workgroup g of row i_m takes the columns [256 g, 256 g + 256) of
//      that row and leaves the largest out_0 among them and its id (as f32 bits; none: 0xffffffff) in
//      pairs[i_m, 2 g], pairs[i_m, 2 g + 1]; NaN and -inf never win, the lowest id among equals
//      (argmax_partials finishes it)
//
// | binding | name   | access     | type   | shape                                       |
// |---------|--------|------------|--------|---------------------------------------------|
// | 0       | p      | uniform    | Params | o, col, has_bias, m, i, count, nsl, t ...   |
// | 1       | part   | read       | f32    | (nsl, m, T) then (nsl, m) sums of squares   |
// | 2..5    | out_j  | read_write | f32    | (m, o_j); epi 1: out_2 = conv state (m, o_0, k - 1), out_3 = xc (m, o_0) |
// | 6..9    | bias_j | read       | f32    | (o_j), read when has_bias[j] = 1; epi 1: bias_2 = conv_b when has_bias[2] = 1, bias_3 = conv_w (o_0, k) |
// | 10      | x      | read       | f32    | (m, i), read when has_norm = 1              |
// | 11      | norm_w | read       | f32    | (i), read when has_norm = 1                 |
// | 12      | xn     | read_write | f32    | (m, i), written when has_norm = 1           |
// | 13      | resid  | read_write | f32    | (m, o_0), updated when has_resid = 1; epi 2: pairs (m, 2 * groups); epi 1 with xrows: pairs (m, XG, xrows4) |
// | 14      | xw     | read       | vec4<u32> | (xrows, xstride4), epi 1 with xrows > 0  |
//
// Dispatch: at least ceil(m * (T + has_norm * i) / 256) workgroups over x and y; T = sum of o_j,
// matrix j's columns start at col[j]. epi 2: m * groups workgroups for the outputs (groups =
// ceil(T / 256)), then ceil(has_norm * m * i / 256) for xn; so too epi 1 with xrows > 0.

struct Params {
  o: vec4<u32>,
  col: vec4<u32>,
  has_bias: vec4<u32>,
  m: u32,
  i: u32,
  count: u32,
  nsl: u32,
  t: u32,
  has_norm: u32,
  has_resid: u32,
  eps: f32,
  epi: u32,
  k: u32,
  groups: u32,
  xrows: u32,
  xstride4: u32,
  xf16: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
@group(0) @binding(3) var<storage, read_write> out1: array<f32>;
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out3: array<f32>;
@group(0) @binding(6) var<storage, read> bias0: array<f32>;
@group(0) @binding(7) var<storage, read> bias1: array<f32>;
@group(0) @binding(8) var<storage, read> bias2: array<f32>;
@group(0) @binding(9) var<storage, read> bias3: array<f32>;
@group(0) @binding(10) var<storage, read> x: array<f32>;
@group(0) @binding(11) var<storage, read> norm_w: array<f32>;
@group(0) @binding(12) var<storage, read_write> xn: array<f32>;
@group(0) @binding(13) var<storage, read_write> resid: array<f32>;
@group(0) @binding(14) var<storage, read> xw: array<vec4<u32>>;

// epi 1: the xc this thread made (0 where it made none)
var<private> xcv: f32;

fn bias_at(j: u32, i_o: u32) -> f32 {
  if (p.has_bias[j] == 0u) {
    return 0.0;
  }
  switch j {
    case 0u: {
      return bias0[i_o];
    }
    case 1u: {
      return bias1[i_o];
    }
    case 2u: {
      return bias2[i_o];
    }
    default: {
      return bias3[i_o];
    }
  }
}

fn store(j: u32, idx: u32, v: f32) {
  switch j {
    case 0u: {
      out0[idx] = v;
    }
    case 1u: {
      out1[idx] = v;
    }
    case 2u: {
      out2[idx] = v;
    }
    default: {
      out3[idx] = v;
    }
  }
}

// 1 / rms of row i_m of x, from the slices' sums of squares
fn rs_of(i_m: u32) -> f32 {
  let ss = slices(p.nsl * p.m * p.t + i_m, p.m);
  return 1.0 / sqrt(ss / f32(p.i) + p.eps);
}

// the sum of part[b + s * stride] over the nsl slices, read four at a time (loads in flight together)
fn slices(b: u32, stride: u32) -> f32 {
  var acc = vec4<f32>(0.0);
  var s = 0u;
  for (; s + 4u <= p.nsl; s += 4u) {
    let e = b + s * stride;
    acc += vec4<f32>(part[e], part[e + stride], part[e + 2u * stride], part[e + 3u * stride]);
  }
  for (; s < p.nsl; s++) {
    acc.x += part[b + s * stride];
  }
  return (acc.x + acc.y) + (acc.z + acc.w);
}

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

// xn at element e (has_norm; e < m * i)
fn put_xn(e: u32) {
  if (p.has_norm == 1u && e < p.m * p.i) {
    xn[e] = x[e] * rs_of(e / p.i) * norm_w[e % p.i];
  }
}

// The output at column c of row i_m with its epilogue, stored; returns it.
fn finish(i_m: u32, c: u32) -> f32 {
  var sum = slices(i_m * p.t + c, p.m * p.t);
  if (p.has_norm == 1u) {
    sum *= rs_of(i_m);
  }
  var j = 0u;
  for (var k = 1u; k < p.count; k++) {
    if (c >= p.col[k]) {
      j = k;
    }
  }
  let i_o = c - p.col[j];
  let v = sum + bias_at(j, i_o);
  let e = i_m * p.o[j] + i_o;
  store(j, e, v);
  if (p.has_resid == 1u) {
    resid[e] += v;
  }
  if (p.epi == 1u && j == 0u) {
    // conv1d + SiLU of this step for channel i_o of sequence i_m: bias_3 holds conv_w (o_0, k).
    let k = p.k;
    let sbase = e * (k - 1u); // this channel's state
    var acc = 0.0;
    if (p.has_bias[2] == 1u) {
      acc = bias2[i_o];
    }
    for (var q = 0u; q + 1u < k; q++) {
      acc += bias3[i_o * k + q] * out2[sbase + q];
    }
    acc += bias3[i_o * k + k - 1u] * v;
    for (var q = 0u; q + 2u < k; q++) {
      out2[sbase + q] = out2[sbase + q + 1u];
    }
    if (k > 1u) {
      out2[sbase + k - 2u] = v;
    }
    xcv = silu(acc);
    out3[e] = xcv;
  }
  return v;
}

const NONE: u32 = 0xffffffffu;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  if (ia == NONE) {
    return false;
  }
  return ib == NONE || va > vb || (va == vb && ia < ib);
}

// epi 2: workgroup wlin = i_m * groups + g takes columns [256 g, 256 g + 256) of row i_m and leaves
// their best (value, id) pair; the workgroups after the m * groups of the outputs write xn.
fn argmax_groups(wlin: u32, t: u32) {
  let cells = p.m * p.groups;
  if (wlin >= cells) {
    put_xn((wlin - cells) * 256u + t);
    return;
  }
  let i_m = wlin / p.groups;
  let c = (wlin % p.groups) * 256u + t;
  var bv = 0.0;
  var bi = NONE;
  if (c < p.t) {
    let v = finish(i_m, c);
    // As the js reference, which starts from -inf: NaN and -inf never win.
    if (v > -3.4028235e38 || v == -3.4028235e38) {
      bv = v;
      bi = c;
    }
  }
  best_v[t] = bv;
  best_i[t] = bi;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (t < s && better(best_v[t + s], best_i[t + s], best_v[t], best_i[t])) {
      best_v[t] = best_v[t + s];
      best_i[t] = best_i[t + s];
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    resid[2u * wlin] = best_v[0];
    resid[2u * wlin + 1u] = bitcast<f32>(best_i[0]);
  }
}

// epi 1 with xrows > 0: workgroup wlin = i_m * groups + g takes columns [256 g, 256 g + 256) of row
// i_m, then (g < XG) leaves x_proj's partial products over its channels of xc; the workgroups after
// the m * groups of the outputs write xn.
fn conv_groups(wlin: u32, t: u32) {
  let cells = p.m * p.groups;
  if (wlin >= cells) {
    put_xn((wlin - cells) * 256u + t);
    return;
  }
  let i_m = wlin / p.groups;
  let g = wlin % p.groups;
  let c = g * 256u + t;
  xcv = 0.0;
  if (c < p.t) {
    _ = finish(i_m, c);
  }
  let xg = (p.o[0] + 255u) / 256u;
  if (g >= xg) {
    return;
  }
  best_v[t] = xcv;
  workgroupBarrier();
  // lanes threads per row of xw (each vec4 lanes apart), rows_per rows at a time
  let lanes = max(1u, 256u / p.xrows);
  let lane = t % lanes;
  let rows_per = 256u / lanes;
  let vals = select(4u, 8u, p.xf16 == 1u);
  let ne = 256u / vals; // vec4<u32> of xw per row over 256 channels
  let e0 = g * ne;
  let n4 = min(ne, p.xstride4 - e0); // this row's vec4 over the workgroup's channels (e0 < xstride4)
  var acc = 0.0;
  for (var i_x = t / lanes; i_x < p.xrows; i_x += rows_per) {
    let row = i_x * p.xstride4 + e0;
    var a = vec4<f32>(0.0);
    var q = lane;
    // four vec4 of weights at a time (loads in flight together)
    for (; q + 3u * lanes < n4; q += 4u * lanes) {
      let w0 = xw[row + q];
      let w1 = xw[row + q + lanes];
      let w2 = xw[row + q + 2u * lanes];
      let w3 = xw[row + q + 3u * lanes];
      a += (xw_dot(w0, q * vals, vals) + xw_dot(w1, (q + lanes) * vals, vals)) +
        (xw_dot(w2, (q + 2u * lanes) * vals, vals) + xw_dot(w3, (q + 3u * lanes) * vals, vals));
    }
    for (; q < n4; q += lanes) {
      a += xw_dot(xw[row + q], q * vals, vals);
    }
    acc = (a.x + a.y) + (a.z + a.w);
    if (lanes == 1u) {
      resid[(i_m * xg + g) * ((p.xrows + 3u) / 4u * 4u) + i_x] = acc;
    }
  }
  if (lanes > 1u) {
    // one pass (lanes * xrows <= 256): the lanes' sums added up
    best_i[t] = bitcast<u32>(acc);
    workgroupBarrier();
    let i_x = t / lanes;
    if (lane == 0u && i_x < p.xrows) {
      var v = 0.0;
      for (var q = 0u; q < lanes; q++) {
        v += bitcast<f32>(best_i[t + q]);
      }
      resid[(i_m * xg + g) * ((p.xrows + 3u) / 4u * 4u) + i_x] = v;
    }
  }
}

// The products of the weights `wv` (vals of them, f32 bits or f16 pairs) with xc of channels c..
// of this workgroup (best_v), as a vec4 of sums.
fn xw_dot(wv: vec4<u32>, c: u32, vals: u32) -> vec4<f32> {
  let a = vec4<f32>(best_v[c], best_v[c + 1u], best_v[c + 2u], best_v[c + 3u]);
  if (vals == 8u) {
    let b = vec4<f32>(best_v[c + 4u], best_v[c + 5u], best_v[c + 6u], best_v[c + 7u]);
    return vec4<f32>(unpack2x16float(wv.x), unpack2x16float(wv.y)) * a +
      vec4<f32>(unpack2x16float(wv.z), unpack2x16float(wv.w)) * b;
  }
  return bitcast<vec4<f32>>(wv) * a;
}

@compute @workgroup_size(256)
fn splitk_reduce(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let wlin = wid.x + wid.y * nwg.x;
  if (p.epi == 2u) {
    argmax_groups(wlin, lid.x);
    return;
  }
  if (p.epi == 1u && p.xrows > 0u) {
    conv_groups(wlin, lid.x);
    return;
  }
  let idx = wlin * 256u + lid.x;
  let mt = p.m * p.t;
  if (idx >= mt) {
    put_xn(idx - mt);
    return;
  }
  _ = finish(idx / p.t, idx % p.t);
}
