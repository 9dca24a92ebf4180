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
//      and with xrows > 0, x_proj's products on xc split by workgroup: the first workgroups each take
//      XPB sequences (a block pb: i_m = pb * XPB + i_p) and XC = 256 / XPB channels of xc (a group g:
//      channels [XC g, XC g + XC) of matrix 0), workgroup g * ceil(m / XPB) + pb, one thread per
//      output, and leave for the xrows rows of xw (x_proj's matrices one under another, rows of
//      xstride4 vec4<u32>, f32 bits or f16 pairs when xf16 = 1), each weight read once for XPB rows,
//        pairs[(i_m * XG + g) * xrows4 + i_x] = sum_{c in [XC g, XC g + XC), c < o_0} xw[i_x, c] * xc[i_m, c]
//      (XG = ceil(o_0 / XC), xrows4 = xrows rounded up to a multiple of 4) for scan_step to add up
//      (its XG); the workgroups after those take the other columns of all rows, one thread per output
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
// XPB (1, 2, 4 or 8; an override): sequences per workgroup of epi 1 with xrows > 0.
//
// Dispatch: at least ceil(m * (T + has_norm * i) / 256) workgroups over x and y; T = sum of o_j,
// matrix j's columns start at col[j]. epi 2: m * groups workgroups for the outputs (groups =
// ceil(T / 256)), then ceil(has_norm * m * i / 256) for xn. epi 1 with xrows > 0: ceil(m / XPB) * XG
// workgroups for xc, ceil(m * (T - o_0) / 256) for the other columns, then those for xn.

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

override XPB: u32 = 1;

// epi 1: the xc this thread made (0 where it made none)
var<private> xcv: f32;

//#include bias_at.wgsl

//#include store.wgsl

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

// epi 1 with xrows > 0 (see the header): the workgroups of XPB sequences and XC channels of xc, each
// then leaving x_proj's partial products over them; then those of the other columns; then xn.
fn conv_groups(wlin: u32, t: u32) {
  let xc_n = 256u / XPB; // XC
  let xg = (p.o[0] + xc_n - 1u) / xc_n;
  let npb = (p.m + XPB - 1u) / XPB;
  let nx = npb * xg;
  if (wlin >= nx) {
    // the other columns of all rows, then xn
    let rest = p.t - p.o[0];
    let nr = (p.m * rest + 255u) / 256u;
    if (wlin >= nx + nr) {
      put_xn((wlin - nx - nr) * 256u + t);
      return;
    }
    let f = (wlin - nx) * 256u + t;
    if (f < p.m * rest) {
      _ = finish(f / rest, p.o[0] + f % rest);
    }
    return;
  }
  let g = wlin / npb;
  let pb = wlin % npb;
  let i_m = pb * XPB + t / xc_n;
  let c = g * xc_n + t % xc_n;
  xcv = 0.0;
  if (i_m < p.m && c < p.o[0]) {
    _ = finish(i_m, c);
  }
  best_v[t] = xcv;
  workgroupBarrier();
  // lanes threads per row of xw (each vec4 lanes apart), rows_per rows at a time
  let vals = select(4u, 8u, p.xf16 == 1u);
  let ne = xc_n / vals; // vec4<u32> of xw per row over the workgroup's channels
  let e0 = g * ne;
  let n4 = min(ne, p.xstride4 - e0); // (e0 < xstride4)
  let lanes = min(ne, max(1u, 256u / p.xrows));
  let lane = t % lanes;
  let rows_per = 256u / lanes;
  let xrows4 = (p.xrows + 3u) / 4u * 4u;
  var a0 = vec4<f32>(0.0); // sequences 0..3 of the block
  var a1 = vec4<f32>(0.0); // 4..7
  for (var i_x = t / lanes; i_x < p.xrows; i_x += rows_per) {
    let row = i_x * p.xstride4 + e0;
    a0 = vec4<f32>(0.0);
    a1 = vec4<f32>(0.0);
    var q = lane;
    // four vec4 of weights at a time (loads in flight together)
    for (; q + 3u * lanes < n4; q += 4u * lanes) {
      let w0 = xw[row + q];
      let w1 = xw[row + q + lanes];
      let w2 = xw[row + q + 2u * lanes];
      let w3 = xw[row + q + 3u * lanes];
      xw_dots(w0, q * vals, vals, &a0, &a1);
      xw_dots(w1, (q + lanes) * vals, vals, &a0, &a1);
      xw_dots(w2, (q + 2u * lanes) * vals, vals, &a0, &a1);
      xw_dots(w3, (q + 3u * lanes) * vals, vals, &a0, &a1);
    }
    for (; q < n4; q += lanes) {
      xw_dots(xw[row + q], q * vals, vals, &a0, &a1);
    }
    if (lanes == 1u) {
      for (var i_p = 0u; i_p < XPB; i_p++) {
        let i_s = pb * XPB + i_p;
        if (i_s < p.m) {
          resid[(i_s * xg + g) * xrows4 + i_x] = seq_of(a0, a1, i_p);
        }
      }
    }
  }
  if (lanes > 1u) {
    // one pass (lanes * xrows <= 256): the lanes' sums added up, a sequence at a time
    let i_x = t / lanes;
    for (var i_p = 0u; i_p < XPB; i_p++) {
      workgroupBarrier();
      best_i[t] = bitcast<u32>(seq_of(a0, a1, i_p));
      workgroupBarrier();
      let i_s = pb * XPB + i_p;
      if (lane == 0u && i_x < p.xrows && i_s < p.m) {
        var v = 0.0;
        for (var q = 0u; q < lanes; q++) {
          v += bitcast<f32>(best_i[t + q]);
        }
        resid[(i_s * xg + g) * xrows4 + i_x] = v;
      }
    }
  }
}

// The sum of sequence i_p of the block (a0: 0..3, a1: 4..7).
fn seq_of(a0: vec4<f32>, a1: vec4<f32>, i_p: u32) -> f32 {
  return select(a1[i_p % 4u], a0[i_p % 4u], i_p < 4u);
}

// xc of channels c..c + 3 of the workgroup's sequence i_p (best_v)
fn xc4(i_p: u32, c: u32) -> vec4<f32> {
  let e = i_p * (256u / XPB) + c;
  return vec4<f32>(best_v[e], best_v[e + 1u], best_v[e + 2u], best_v[e + 3u]);
}

// The products of the weights lo, hi (channels c..c + 7; hi unused when vals = 4) with xc of
// sequence i_p of the block.
fn xw_dot(lo: vec4<f32>, hi: vec4<f32>, i_p: u32, c: u32, vals: u32) -> f32 {
  if (vals == 8u) {
    return dot(lo, xc4(i_p, c)) + dot(hi, xc4(i_p, c + 4u));
  }
  return dot(lo, xc4(i_p, c));
}

// Adds the products of the weights `wv` (vals of them from channel c: f32 bits or f16 pairs) with
// xc of each of the block's sequences to a0 (sequences 0..3) and a1 (4..7).
fn xw_dots(wv: vec4<u32>, c: u32, vals: u32, a0: ptr<function, vec4<f32>>, a1: ptr<function, vec4<f32>>) {
  var lo = bitcast<vec4<f32>>(wv);
  var hi = vec4<f32>(0.0);
  if (vals == 8u) {
    lo = vec4<f32>(unpack2x16float(wv.x), unpack2x16float(wv.y));
    hi = vec4<f32>(unpack2x16float(wv.z), unpack2x16float(wv.w));
  }
  var d = vec4<f32>(xw_dot(lo, hi, 0u, c, vals), 0.0, 0.0, 0.0);
  if (XPB > 1u) {
    d.y = xw_dot(lo, hi, 1u, c, vals);
  }
  if (XPB > 2u) {
    d.z = xw_dot(lo, hi, 2u, c, vals);
    d.w = xw_dot(lo, hi, 3u, c, vals);
  }
  *a0 += d;
  if (XPB > 4u) {
    *a1 += vec4<f32>(
      xw_dot(lo, hi, 4u, c, vals),
      xw_dot(lo, hi, 5u, c, vals),
      xw_dot(lo, hi, 6u, c, vals),
      xw_dot(lo, hi, 7u, c, vals),
    );
  }
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
