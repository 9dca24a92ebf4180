// matvec: for each of `count` (<= 4) matrices w_j sharing one input x (decode: m small),
//   xn = has_norm ? x / sqrt(mean(x^2) + eps) * norm_w : x          (per row of x)
//   out_j[i_m, i_o] = sum_i w_j[i_o, i] * xn[i_m, i] + bias_j[i_o]   (f32 weights, f32 sums)
//   resid[i_m, i_o] += out_j[i_m, i_o]                              (has_resid, count = 1)
// This fuses RMSNorm -> several linears on the normed input -> residual add into one dispatch.
//
// A workgroup takes MB rows of x, staged in workgroup memory as vec4 (normalized there when
// has_norm; the workgroups of column 0 also write xn), and WG / TPR output rows of one matrix: TPR
// threads share an output row (coalesced vec4 loads of w, each reused for the MB rows of x), and
// their partial sums are reduced in workgroup memory.
//
// | binding | name    | access     | type      | shape                                         |
// |---------|---------|------------|-----------|-----------------------------------------------|
// | 0       | p       | uniform    | Params    | m, i, i4, count, o, start, has_bias, norm ... |
// | 1       | x       | read       | f32       | (m, i)                                        |
// | 2..5    | out_j   | read_write | f32       | (m, o_j)                                      |
// | 6..9    | w_j     | read       | vec4<f32> | (o_j, i4): rows padded with zeros to 4 * i4   |
// | 10..13  | bias_j  | read       | f32       | (o_j), read when has_bias[j] = 1              |
// | 14      | norm_w  | read       | f32       | (i), read when has_norm = 1                   |
// | 15      | xn      | read_write | f32       | (m, i), written when has_norm = 1             |
// | 16      | resid   | read_write | f32       | (m, o_0), updated when has_resid = 1          |
//
// Dispatch: at least (start[3] + last) * nmb workgroups over x and y, nmb = ceil(m / MB); linear
// workgroup index g * nmb + (block of rows of x); matrix j owns the g in [start[j], start[j+1]),
// start[j+1] - start[j] = ceil(o_j / (WG / TPR)); last = that count for matrix 3 (0 when unused).
// Needs MB * i4 <= XMAX, MB in {1, 2, 4, 8}.

struct Params {
  o: vec4<u32>,
  start: vec4<u32>,
  has_bias: vec4<u32>,
  m: u32,
  i: u32,
  i4: u32,
  count: u32,
  has_norm: u32,
  has_resid: u32,
  eps: f32,
  nmb: u32,
  last: u32,
}

override WG: u32 = 256;
override TPR: u32 = 32;
override MB: u32 = 1;
override XMAX: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
@group(0) @binding(3) var<storage, read_write> out1: array<f32>;
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out3: array<f32>;
@group(0) @binding(6) var<storage, read> w0: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> w1: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> w2: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> w3: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> bias0: array<f32>;
@group(0) @binding(11) var<storage, read> bias1: array<f32>;
@group(0) @binding(12) var<storage, read> bias2: array<f32>;
@group(0) @binding(13) var<storage, read> bias3: array<f32>;
@group(0) @binding(14) var<storage, read> norm_w: array<f32>;
@group(0) @binding(15) var<storage, read_write> xn: array<f32>;
@group(0) @binding(16) var<storage, read_write> resid: array<f32>;

var<workgroup> xs: array<vec4<f32>, XMAX>;
var<workgroup> partial: array<f32, WG * MB>;

fn x_at(row: u32, i_i: u32) -> f32 {
  if (i_i < p.i) {
    return x[row * p.i + i_i];
  }
  return 0.0;
}

fn nw_at(i_i: u32) -> f32 {
  if (i_i < p.i) {
    return norm_w[i_i];
  }
  return 0.0;
}

fn w_at(j: u32, idx: u32) -> vec4<f32> {
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

//#include bias_at.wgsl

//#include store.wgsl

@compute @workgroup_size(WG)
fn matvec(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  // Workgroups that share output rows (one per block of MB rows of x) are neighbours, so a weight
  // row read from memory by one is found in cache by the others.
  let wlin = wid.x + wid.y * nwg.x;
  let g = wlin / p.nmb;
  if (g >= p.start[3] + p.last) {
    return;
  }
  let m0 = (wlin % p.nmb) * MB;
  let i4 = p.i4;
  for (var e = lid.x; e < MB * i4; e += WG) {
    let r = e / i4;
    let i_i = 4u * (e % i4);
    var v = vec4<f32>(0.0);
    if (m0 + r < p.m) {
      v = vec4<f32>(x_at(m0 + r, i_i), x_at(m0 + r, i_i + 1u), x_at(m0 + r, i_i + 2u), x_at(m0 + r, i_i + 3u));
    }
    xs[e] = v;
  }
  workgroupBarrier();
  if (p.has_norm == 1u) {
    for (var r = 0u; r < MB; r++) {
      var ss = 0.0;
      for (var j4 = lid.x; j4 < i4; j4 += WG) {
        let v = xs[r * i4 + j4];
        ss += dot(v, v);
      }
      partial[r * WG + lid.x] = ss;
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid.x < s) {
        for (var r = 0u; r < MB; r++) {
          partial[r * WG + lid.x] += partial[r * WG + lid.x + s];
        }
      }
      workgroupBarrier();
    }
    for (var e = lid.x; e < MB * i4; e += WG) {
      let r = e / i4;
      let i_i = 4u * (e % i4);
      let scale = 1.0 / sqrt(partial[r * WG] / f32(p.i) + p.eps);
      let nw = vec4<f32>(nw_at(i_i), nw_at(i_i + 1u), nw_at(i_i + 2u), nw_at(i_i + 3u));
      let v = (xs[e] * scale) * nw;
      xs[e] = v;
      if (g == 0u && m0 + r < p.m) {
        for (var c = 0u; c < 4u; c++) {
          if (i_i + c < p.i) {
            xn[(m0 + r) * p.i + i_i + c] = v[c];
          }
        }
      }
    }
    workgroupBarrier();
  }
  var j = 0u;
  for (var k = 1u; k < p.count; k++) {
    if (g >= p.start[k]) {
      j = k;
    }
  }
  let lane = lid.x % TPR;
  let i_o = (g - p.start[j]) * (WG / TPR) + lid.x / TPR;
  let o = p.o[j];
  // Per-row sums in two vec4 (rows 0..3, 4..7), unrolled by MB (no indexed local array).
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  if (i_o < o) {
    let base = i_o * i4;
    for (var j4 = lane; j4 < i4; j4 += TPR) {
      let w4 = w_at(j, base + j4);
      a0.x += dot(w4, xs[0u * i4 + j4]);
      if (MB > 1u) {
        a0.y += dot(w4, xs[1u * i4 + j4]);
      }
      if (MB > 2u) {
        a0.z += dot(w4, xs[2u * i4 + j4]);
        a0.w += dot(w4, xs[3u * i4 + j4]);
      }
      if (MB > 4u) {
        a1 += vec4<f32>(dot(w4, xs[4u * i4 + j4]), dot(w4, xs[5u * i4 + j4]), dot(w4, xs[6u * i4 + j4]), dot(w4, xs[7u * i4 + j4]));
      }
    }
  }
  let s0 = lid.x;
  partial[s0] = a0.x;
  if (MB > 1u) {
    partial[WG + s0] = a0.y;
  }
  if (MB > 2u) {
    partial[2u * WG + s0] = a0.z;
    partial[3u * WG + s0] = a0.w;
  }
  if (MB > 4u) {
    partial[4u * WG + s0] = a1.x;
    partial[5u * WG + s0] = a1.y;
    partial[6u * WG + s0] = a1.z;
    partial[7u * WG + s0] = a1.w;
  }
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var r = 0u; r < MB; r++) {
        partial[r * WG + lid.x] += partial[r * WG + lid.x + s];
      }
    }
    workgroupBarrier();
  }
  if (lane == 0u && i_o < o) {
    let b = bias_at(j, i_o);
    for (var r = 0u; r < MB; r++) {
      let i_m = m0 + r;
      if (i_m < p.m) {
        let v = partial[r * WG + lid.x] + b;
        store(j, i_m * o + i_o, v);
        if (p.has_resid == 1u) {
          resid[i_m * o + i_o] += v;
        }
      }
    }
  }
}
