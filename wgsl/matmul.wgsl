// matmul: out[i_m, i_o] = sum_i x[i_m, i] * w[i_o, i] + bias[i_o]   (f32 weights; prefill, m large)
//
// Tiled: a workgroup of 16 x 16 threads computes a 64 x 64 tile of out, each thread a 4 x 4 block
// of it; tiles of x and w, TK deep, go through workgroup memory, read back as vec4 (4 rows at once).
//
// | binding | name | access     | type   | shape                                   |
// |---------|------|------------|--------|-----------------------------------------|
// | 0       | p    | uniform    | Params | m, o, i, stride, has_bias               |
// | 1       | out  | read_write | f32    | (m, o)                                  |
// | 2       | w    | read       | f32    | (o, stride): rows padded to stride >= i |
// | 3       | x    | read       | f32    | (m, i)                                  |
// | 4       | bias | read       | f32    | (o), read only when has_bias = 1        |
//
// Dispatch: (ceil(o / 64), ceil(m / 64)) workgroups.

struct Params {
  m: u32,
  o: u32,
  i: u32,
  stride: u32,
  has_bias: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override TK: u32 = 16;
const TM: u32 = 64u;
const TO: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> xs: array<vec4<f32>, TK * TM / 4u>; // [k][m / 4]
var<workgroup> ws: array<vec4<f32>, TK * TO / 4u>; // [k][o / 4]

@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * TM;
  let o0 = wid.x * TO;
  let t_o = t % 16u;
  let t_m = t / 16u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < p.i; k0 += TK) {
    for (var e = t; e < TK * TM; e += 256u) {
      let r = e / TK;
      let kk = e % TK;
      let i_i = k0 + kk;
      var xv = 0.0;
      if (m0 + r < p.m && i_i < p.i) {
        xv = x[(m0 + r) * p.i + i_i];
      }
      xs[(kk * TM + r) / 4u][r % 4u] = xv;
      var wv = 0.0;
      if (o0 + r < p.o && i_i < p.i) {
        wv = w[(o0 + r) * p.stride + i_i];
      }
      ws[(kk * TO + r) / 4u][r % 4u] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let a = xs[kk * (TM / 4u) + t_m];
      let b = ws[kk * (TO / 4u) + t_o];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  for (var a = 0u; a < 4u; a++) {
    let i_m = m0 + 4u * t_m + a;
    if (i_m >= p.m) {
      continue;
    }
    for (var c = 0u; c < 4u; c++) {
      let i_o = o0 + 4u * t_o + c;
      if (i_o < p.o) {
        var v = acc[a][c];
        if (p.has_bias == 1u) {
          v += bias[i_o];
        }
        out[i_m * p.o + i_o] = v;
      }
    }
  }
}
