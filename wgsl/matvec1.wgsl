// matvec1: decode-time matrix-vector products, one row of x per workgroup row (grid y = i_m), for
// `count` (<= 4) matrices w_j sharing the input x:
//   xn = has_norm ? x / sqrt(mean(x^2) + eps) * norm_w : x
//   out_j[i_m, i_o] = sum_i w_j[i_o, i] * xn[i_m, i] + bias_j[i_o]        (f32 sums)
// then, by mode (count = 1 unless said):
//   0: nothing more
//   1: extra[i_m, i_o] += out_0[i_m, i_o]                                 (the residual add)
//   2: extra[i_m, 2 g], extra[i_m, 2 g + 1] = the largest out_0 of workgroup g's rows and its id (as
//      f32 bits; none: 0xffffffff), NaN and -inf never win, the lowest id among equals (greedy
//      sampling; argmax_partials finishes it)
//   3: (count = 2, matrix 0 gives x of the conv) the causal depthwise conv1d + SiLU of one new step,
//      with its state of k - 1 earlier inputs per channel, shifted in place:
//      xc[i_m, c] = silu(conv_b[c] + sum_t<k-1 conv_w[c, t] * state[i_m, c, t] + conv_w[c, k-1] * out_0)
//      and with xrows > 0 (m = 1), x_proj's products on xc split by workgroup: each workgroup g of
//      matrix 0 (channels [c0, c1) = g's output rows) leaves, for the xrows rows of w_3 (x_proj's
//      matrices one under another, rows of xstride4 vec4<u32>, stored as the weights),
//        extra[g * xrows4 + j] = sum_{c in [c0, c1)} w_3[j, c] * xc[c]    (g < start[1], xrows4 =
//      xrows rounded up to a multiple of 4)
//      for scan_step to add up (its XG). Needs WG / TPR a multiple of 8.
// Weights: F16 = false: f32 bits, rows of `stride` values (4 per vec4<u32>); F16 = true: f16 pairs,
// 8 per vec4<u32>; padding is zero. x is staged in workgroup memory (times norm_w; the norm's scale
// multiplies the sums); TPR threads share an output row, their partial sums reduced in workgroup
// memory. Every global read that does not need x (a thread's first NP vec4 of weights, bias, residual,
// conv weights and state, x_proj's weights) is issued before x is staged, so that one memory latency
// covers them all (decode at batch 1 is bound by the serial latencies, not by bandwidth).
//
// | binding | name    | access     | type        | shape / use                                  |
// |---------|---------|------------|-------------|----------------------------------------------|
// | 0       | p       | uniform    | Params      |                                              |
// | 1       | x       | read       | f32         | (m, i)                                       |
// | 2..5    | out_j   | read_write | f32         | (m, o_j); mode 3: out_2 = conv state (m, o_0, k-1), out_3 = xc (m, o_0) |
// | 6..9    | w_j     | read       | vec4<u32>   | (o_j, stride4); mode 3: w_2 = conv_w (o_0, k) f32, w_3 = x_proj (xrows, xstride4) |
// | 10..13  | bias_j  | read       | f32         | (o_j) when has_bias[j]; mode 3: bias_2 = conv_b when has_bias[2] |
// | 14      | norm_w  | read       | f32         | (i), when has_norm                           |
// | 15      | xn      | read_write | f32         | (m, i), written when has_norm                |
// | 16      | extra   | read_write | f32         | mode 1: (m, o_0); mode 2: (m, 2 * groups); mode 3 with xrows: (start[1], xrows4) |
//
// Dispatch: (groups, m) workgroups; matrix j owns the groups in [start[j], start[j + 1]), each WG / TPR
// output rows. Needs ceil(i / 4) <= XMAX.

struct Params {
  o: vec4<u32>,
  start: vec4<u32>,
  has_bias: vec4<u32>,
  i: u32,
  stride4: u32,
  count: u32,
  groups: u32,
  has_norm: u32,
  eps: f32,
  mode: u32,
  k: u32,
  xrows: u32,
  xstride4: u32,
}

override WG: u32 = 256;
override TPR: u32 = 32;
override XMAX: u32 = 256;
override F16: bool = false;
// the mode (see the header; Params.mode is the same), and vec4 of weights a thread reads before
// staging x (at most 12): constants of the pipeline, so that each one keeps only the registers and
// code that it uses (registers limit how many workgroups an SM holds)
override MODE: u32 = 0;
override NP: u32 = 12;
override COUNT: u32 = 1; // Params.count, likewise (with 1, every weight read is of w_0)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
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
@group(0) @binding(14) var<storage, read> norm_w: array<f32>;
@group(0) @binding(15) var<storage, read_write> xn: array<f32>;
@group(0) @binding(16) var<storage, read_write> extra: array<f32>;

var<workgroup> xs: array<vec4<f32>, XMAX>;
var<workgroup> partial: array<f32, WG>;
var<workgroup> red: array<f32, 16>;
var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> xcs: array<f32, WG / TPR>; // mode 3 with xrows: xc of this workgroup's rows

//#include w_at.wgsl

fn bias_at(j: u32, i_o: u32) -> f32 {
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

//#include store.wgsl

// The dot product of one stored vec4<u32> of weights with the x values it covers (e: its index in
// the row).
fn dot_w(wv: vec4<u32>, e: u32) -> f32 {
  if (F16) {
    let a = xs[2u * e];
    let b = xs[2u * e + 1u];
    let w01 = unpack2x16float(wv.x);
    let w23 = unpack2x16float(wv.y);
    let w45 = unpack2x16float(wv.z);
    let w67 = unpack2x16float(wv.w);
    return dot(vec4<f32>(w01, w23), a) + dot(vec4<f32>(w45, w67), b);
  }
  return dot(bitcast<vec4<f32>>(wv), xs[e]);
}

fn x_at(base: u32, i_i: u32) -> f32 {
  if (i_i < p.i) {
    return x[base + i_i];
  }
  return 0.0;
}

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

// Weights vec4 lane + q TPR of row `base` of matrix j (q < NP), zero past the row or for a dead row.
fn w_pre(j: u32, base: u32, lane: u32, q: u32, live: bool) -> vec4<u32> {
  let e = lane + q * TPR;
  if (q < NP && live && e < p.stride4) {
    return w_at(j, base + e);
  }
  return vec4<u32>(0u);
}

// dot_w of w_pre's weights, 0 past the row or from NP on.
fn dot_pre(wv: vec4<u32>, lane: u32, q: u32) -> f32 {
  let e = lane + q * TPR;
  if (q < NP && e < p.stride4) {
    return dot_w(wv, e);
  }
  return 0.0;
}

// conv_w[i_o, q] (f32 bits in w_2), 0 for q >= k.
fn conv_w_at(i_o: u32, q: u32) -> f32 {
  if (q >= p.k) {
    return 0.0;
  }
  let cw = i_o * p.k + q;
  return bitcast<f32>(w2[cw / 4u][cw % 4u]);
}

// The conv state's value q of channel row e (state base sbase), 0 for q >= k - 1.
fn state_at(sbase: u32, q: u32) -> f32 {
  if (q + 1u >= p.k) {
    return 0.0;
  }
  return out2[sbase + q];
}

@compute @workgroup_size(WG)
fn matvec1(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.x;
  let i_m = wid.y;
  let t = lid.x;
  let xbase = i_m * p.i;
  var j = 0u;
  for (var q = 1u; q < COUNT; q++) {
    if (g >= p.start[q]) {
      j = q;
    }
  }
  let lane = t % TPR;
  let i_o = (g - p.start[j]) * (WG / TPR) + t / TPR;
  let o = p.o[j];
  let live = i_o < o;
  let head = live && lane == 0u; // the thread that finishes row i_o
  let e_out = i_m * o + i_o;
  // Every global read that does not wait for x is issued first, so that their latencies overlap:
  // this thread's first NP vec4 of weights, its row's bias, residual, conv weights and state, and
  // x_proj's weights (mode 3 with xrows).
  let base = i_o * p.stride4;
  let w0 = w_pre(j, base, lane, 0u, live);
  let w1 = w_pre(j, base, lane, 1u, live);
  let w2v = w_pre(j, base, lane, 2u, live);
  let w3v = w_pre(j, base, lane, 3u, live);
  let w4 = w_pre(j, base, lane, 4u, live);
  let w5 = w_pre(j, base, lane, 5u, live);
  let w6 = w_pre(j, base, lane, 6u, live);
  let w7 = w_pre(j, base, lane, 7u, live);
  let w8 = w_pre(j, base, lane, 8u, live);
  let w9 = w_pre(j, base, lane, 9u, live);
  let w10 = w_pre(j, base, lane, 10u, live);
  let w11 = w_pre(j, base, lane, 11u, live);
  var bias = 0.0;
  var cbias = 0.0; // the conv's
  var resid = 0.0;
  var cw = vec4<f32>(0.0);
  var win = vec4<f32>(0.0); // the conv's window: the state's k - 1 values, then this step's (k <= 4)
  let conv = MODE == 3u && j == 0u && head;
  let sbase = e_out * (p.k - 1u);
  if (head) {
    if (p.has_bias[j] == 1u) {
      bias = bias_at(j, i_o);
    }
    if (MODE == 1u) {
      resid = extra[e_out];
    }
  }
  if (conv) {
    if (p.has_bias[2] == 1u) {
      cbias = bias2[i_o];
    }
    cw = vec4<f32>(conv_w_at(i_o, 0u), conv_w_at(i_o, 1u), conv_w_at(i_o, 2u), conv_w_at(i_o, 3u));
    win = vec4<f32>(state_at(sbase, 0u), state_at(sbase, 1u), state_at(sbase, 2u), 0.0);
  }
  var xw = array<vec4<u32>, 4>();
  if (MODE == 3u && p.xrows > 0u && g < p.start[1]) {
    xw = array<vec4<u32>, 4>(xw_at(g, t, 0u), xw_at(g, t, 1u), xw_at(g, t, 2u), xw_at(g, t, 3u));
  }
  // Stage x times the norm's weights (zero past i, up to the padded row), summing squares of x on
  // the way: the norm's scale multiplies the sums at the end.
  let n4 = select(p.stride4, 2u * p.stride4, F16);
  var ss = 0.0;
  for (var e = t; e < n4; e += WG) {
    let i_i = 4u * e;
    let v = vec4<f32>(
      x_at(xbase, i_i),
      x_at(xbase, i_i + 1u),
      x_at(xbase, i_i + 2u),
      x_at(xbase, i_i + 3u),
    );
    ss += dot(v, v);
    if (p.has_norm == 1u) {
      xs[e] = v * vec4<f32>(nw_at(i_i), nw_at(i_i + 1u), nw_at(i_i + 2u), nw_at(i_i + 3u));
    } else {
      xs[e] = v;
    }
  }
  var scale = 1.0;
  if (p.has_norm == 1u) {
    partial[t] = ss;
    workgroupBarrier();
    if (t < 16u) {
      var s = 0.0;
      for (var q = t; q < WG; q += 16u) {
        s += partial[q];
      }
      red[t] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var q = 0u; q < 16u; q++) {
      total += red[q];
    }
    scale = 1.0 / sqrt(total / f32(p.i) + p.eps);
    if (g == 0u) {
      let i4 = (p.i + 3u) / 4u;
      for (var e = t; e < i4; e += WG) {
        let v = xs[e] * scale;
        for (var c = 0u; c < 4u; c++) {
          if (4u * e + c < p.i) {
            xn[xbase + 4u * e + c] = v[c];
          }
        }
      }
    }
  } else {
    workgroupBarrier();
  }
  var a0 = (dot_pre(w0, lane, 0u) + dot_pre(w1, lane, 1u)) + (dot_pre(w2v, lane, 2u) + dot_pre(w3v, lane, 3u));
  var a1 = (dot_pre(w4, lane, 4u) + dot_pre(w5, lane, 5u)) + (dot_pre(w6, lane, 6u) + dot_pre(w7, lane, 7u));
  let a2 = (dot_pre(w8, lane, 8u) + dot_pre(w9, lane, 9u)) +
    (dot_pre(w10, lane, 10u) + dot_pre(w11, lane, 11u));
  if (live) {
    // the rest of the row, two vec4 at a time
    var e = lane + NP * TPR;
    for (; e + TPR < p.stride4; e += 2u * TPR) {
      let u0 = w_at(j, base + e);
      let u1 = w_at(j, base + e + TPR);
      a0 += dot_w(u0, e);
      a1 += dot_w(u1, e + TPR);
    }
    if (e < p.stride4) {
      a0 += dot_w(w_at(j, base + e), e);
    }
  }
  partial[t] = a0 + (a1 + a2);
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial[t] += partial[t + s];
    }
    workgroupBarrier();
  }
  var v = 0.0;
  var id = 0xffffffffu;
  var xcv = 0.0;
  if (head) {
    v = partial[t] * scale + bias;
    store(j, e_out, v);
    if (MODE == 1u) {
      extra[e_out] = resid + v;
    } else if (conv) {
      // conv1d + SiLU of this step for channel i_o: w2 holds conv_w (o, k) as f32 bits.
      let k = p.k;
      var acc = cbias;
      if (k <= 4u) {
        win[k - 1u] = v;
        acc += dot(cw, win);
        for (var q = 0u; q + 1u < k; q++) {
          out2[sbase + q] = win[q + 1u];
        }
      } else {
        for (var q = 0u; q + 1u < k; q++) {
          acc += conv_w_at(i_o, q) * out2[sbase + q];
        }
        acc += conv_w_at(i_o, k - 1u) * v;
        for (var q = 0u; q + 2u < k; q++) {
          out2[sbase + q] = out2[sbase + q + 1u];
        }
        out2[sbase + k - 2u] = v;
      }
      xcv = silu(acc);
      out3[e_out] = xcv;
    }
    // As the js reference, which starts from -inf: NaN and -inf never win.
    if (v > -3.4028235e38 || v == -3.4028235e38) {
      id = i_o;
    }
  }
  if (MODE == 3u && p.xrows > 0u) {
    xproj_partials(g, j, t, xcv, xw);
  }
  if (MODE == 2u) {
    best_v[t] = v;
    best_i[t] = id;
    workgroupBarrier();
    if (t == 0u) {
      var bv = 0.0;
      var bi = 0xffffffffu;
      for (var q = 0u; q < WG; q += TPR) {
        let qi = best_i[q];
        if (qi != 0xffffffffu && (bi == 0xffffffffu || best_v[q] > bv)) {
          bv = best_v[q];
          bi = qi;
        }
      }
      extra[2u * (i_m * p.groups + g)] = bv;
      extra[2u * (i_m * p.groups + g) + 1u] = bitcast<f32>(bi);
    }
  }
}

// norm_w[i_i], 0 past i.
fn nw_at(i_i: u32) -> f32 {
  if (i_i < p.i) {
    return norm_w[i_i];
  }
  return 0.0;
}

// Channels per vec4<u32> of weights.
fn vals_of() -> u32 {
  return select(4u, 8u, F16);
}

// x_proj's weights (w_3) of row i_x, vec4 q of workgroup g's channels; zero past them.
fn xw_at(g: u32, i_x: u32, q: u32) -> vec4<u32> {
  let vals = vals_of();
  let per = WG / TPR;
  let e = g * per / vals + q;
  if (i_x >= p.xrows || q >= per / vals || e >= p.xstride4) {
    return vec4<u32>(0u);
  }
  return w3[i_x * p.xstride4 + e];
}

// Mode 3 with xrows: x_proj's products over this workgroup's channels of xc (see the header). `xcv`:
// the xc this thread made (lane 0 of a live row of matrix 0), else 0; `xw`: row t's weights (xw_at).
fn xproj_partials(g: u32, j: u32, t: u32, xcv: f32, xw: array<vec4<u32>, 4>) {
  let per = WG / TPR;
  if (t % TPR == 0u) {
    xcs[t / TPR] = xcv;
  }
  workgroupBarrier();
  if (j != 0u) {
    return;
  }
  let ne = per / vals_of();
  for (var i_x = t; i_x < p.xrows; i_x += WG) {
    var w = xw;
    if (i_x != t) {
      w = array<vec4<u32>, 4>(xw_at(g, i_x, 0u), xw_at(g, i_x, 1u), xw_at(g, i_x, 2u), xw_at(g, i_x, 3u));
    }
    var acc = (xdot(w[0], 0u) + xdot(w[1], 1u)) + (xdot(w[2], 2u) + xdot(w[3], 3u));
    for (var q = 4u; q < ne; q++) {
      acc += xdot(xw_at(g, i_x, q), q);
    }
    extra[g * ((p.xrows + 3u) / 4u * 4u) + i_x] = acc;
  }
}

// The dot product of x_proj's weights `wv` (vec4 q of this workgroup's channels) with their xc.
fn xdot(wv: vec4<u32>, q: u32) -> f32 {
  let c = q * vals_of();
  if (c >= WG / TPR) {
    return 0.0;
  }
  let a = vec4<f32>(xcs[c], xcs[c + 1u], xcs[c + 2u], xcs[c + 3u]);
  if (F16) {
    let b = vec4<f32>(xcs[c + 4u], xcs[c + 5u], xcs[c + 6u], xcs[c + 7u]);
    let w01 = unpack2x16float(wv.x);
    let w23 = unpack2x16float(wv.y);
    let w45 = unpack2x16float(wv.z);
    let w67 = unpack2x16float(wv.w);
    return dot(vec4<f32>(w01, w23), a) + dot(vec4<f32>(w45, w67), b);
  }
  return dot(bitcast<vec4<f32>>(wv), a);
}
