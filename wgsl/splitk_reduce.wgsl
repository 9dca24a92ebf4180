// splitk_reduce: the second half of a split-k product (see splitk.wgsl): adds up the nsl slices of
// the partial sums and applies the epilogue, one thread per output (then one per element of xn):
//   rs[i_m] = has_norm ? 1 / sqrt(sum_s ss[s, i_m] / i + eps) : 1
//   out_j[i_m, i_o] = rs[i_m] * sum_s part[s, i_m, c_j + i_o] + bias_j[i_o]
//   resid[i_m, i_o] += out_j[i_m, i_o]                        (has_resid, count = 1)
//   xn[i_m, i_i] = x[i_m, i_i] * rs[i_m] * norm_w[i_i]        (has_norm)
//
// | binding | name   | access     | type   | shape                                       |
// |---------|--------|------------|--------|---------------------------------------------|
// | 0       | p      | uniform    | Params | o, col, has_bias, m, i, count, nsl, t ...   |
// | 1       | part   | read       | f32    | (nsl, m, T) then (nsl, m) sums of squares   |
// | 2..5    | out_j  | read_write | f32    | (m, o_j)                                    |
// | 6..9    | bias_j | read       | f32    | (o_j), read when has_bias[j] = 1            |
// | 10      | x      | read       | f32    | (m, i), read when has_norm = 1              |
// | 11      | norm_w | read       | f32    | (i), read when has_norm = 1                 |
// | 12      | xn     | read_write | f32    | (m, i), written when has_norm = 1           |
// | 13      | resid  | read_write | f32    | (m, o_0), updated when has_resid = 1        |
//
// Dispatch: at least ceil(m * (T + has_norm * i) / 256) workgroups over x and y; T = sum of o_j,
// matrix j's columns start at col[j].

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
  var ss = 0.0;
  let b = p.nsl * p.m * p.t + i_m;
  for (var s = 0u; s < p.nsl; s++) {
    ss += part[b + s * p.m];
  }
  return 1.0 / sqrt(ss / f32(p.i) + p.eps);
}

@compute @workgroup_size(256)
fn splitk_reduce(
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let idx = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  let mt = p.m * p.t;
  if (idx >= mt) {
    let e = idx - mt;
    if (p.has_norm == 1u && e < p.m * p.i) {
      xn[e] = x[e] * rs_of(e / p.i) * norm_w[e % p.i];
    }
    return;
  }
  let i_m = idx / p.t;
  let c = idx % p.t;
  var sum = 0.0;
  for (var s = 0u; s < p.nsl; s++) {
    sum += part[(s * p.m + i_m) * p.t + c];
  }
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
  store(j, i_m * p.o[j] + i_o, v);
  if (p.has_resid == 1u) {
    resid[i_m * p.o[0] + i_o] += v;
  }
}
