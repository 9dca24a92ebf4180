// sample: out[out_row, i_b] = a token drawn from softmax(x[i_b] / temperature), where x = logits with
// the repetition penalty when has_seen = 1, restricted by top-k, top-p and min-p; then seen[i_b, id] = 1.
// Reproduces src/generate/sampler.ts: the filters set one threshold (the k-th largest probability, the
// smallest probability of the most likely tokens reaching top-p, min-p times the largest); a token is
// kept when its probability reaches it (ties kept); the draw walks the kept tokens in id order until
// their cumulative mass passes u * kept mass, u = uniform(seed, i_b, step) of src/generate/rng.ts.
//
// Without sorting: probability order is the order of x, kept as order-preserving bits (the key); the
// top-k and top-p thresholds are found by bisection over the key; the walk is a prefix sum over ids.
//
// | binding | name    | access     | type   | shape                                        |
// |---------|---------|------------|--------|----------------------------------------------|
// | 0       | p       | uniform    | Params | b, v, out_row, has_seen, rp, temperature,    |
// |         |         |            |        | top_k, top_p, min_p, seed, step              |
// | 1       | out     | read_write | i32    | (rows, b)                                    |
// | 2       | logits  | read       | f32    | (b, v)                                       |
// | 3       | seen    | read_write | f32    | (b, v), used when has_seen = 1               |
// | 4       | scratch | read_write | u32    | (b, 2, v): q = exp((x - max) / T) bits, keys |
//
// One workgroup per sequence. Dispatch: (b) workgroups.

struct Params {
  b: u32,
  v: u32,
  out_row: u32,
  has_seen: u32,
  rp: f32,
  temperature: f32,
  top_k: u32,
  top_p: f32,
  min_p: f32,
  seed: u32,
  step: u32,
  _pad: u32,
}

struct Stat {
  count: u32,
  mass: f32,
}

override WG: u32 = 256;
const KMAX: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> seen: array<f32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<u32>;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> uni_f: f32;
var<workgroup> uni_u: u32;

fn mix32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn uniform_draw(seed: u32, seq: u32, step: u32) -> f32 {
  let bits = mix32(mix32(mix32(seed ^ 0x9e3779b9u) + seq) + step);
  return f32(bits >> 8u) / 16777216.0;
}

fn key_of(xv: f32) -> u32 {
  let bits = bitcast<u32>(xv);
  if ((bits & 0x80000000u) != 0u) {
    return ~bits;
  }
  return bits | 0x80000000u;
}

fn value_of(k: u32) -> f32 {
  if ((k & 0x80000000u) != 0u) {
    return bitcast<f32>(k & 0x7fffffffu);
  }
  return bitcast<f32>(~k);
}

fn penalized(row: u32, i_v: u32) -> f32 {
  var xv = logits[row + i_v];
  if (p.has_seen == 1u && seen[row + i_v] != 0.0) {
    xv = select(xv * p.rp, xv / p.rp, xv > 0.0);
  }
  return xv;
}

fn reduce_max(lane: u32, value: f32) -> f32 {
  red_f[lane] = value;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      red_f[lane] = max(red_f[lane], red_f[lane + s]);
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
    uni_f = red_f[0];
  }
  return workgroupUniformLoad(&uni_f);
}

fn reduce_min_u(lane: u32, value: u32) -> u32 {
  red_u[lane] = value;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      red_u[lane] = min(red_u[lane], red_u[lane + s]);
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
    uni_u = red_u[0];
  }
  return workgroupUniformLoad(&uni_u);
}

fn reduce_stat(lane: u32, count: u32, mass: f32) -> Stat {
  red_u[lane] = count;
  red_f[lane] = mass;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      red_u[lane] += red_u[lane + s];
      red_f[lane] += red_f[lane + s];
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
    uni_u = red_u[0];
    uni_f = red_f[0];
  }
  let c = workgroupUniformLoad(&uni_u);
  let m = workgroupUniformLoad(&uni_f);
  return Stat(c, m);
}

// Count and mass of the tokens with key >= lo.
fn stat_ge(lane: u32, srow: u32, lo: u32) -> Stat {
  var c = 0u;
  var m = 0.0;
  for (var i_v = lane; i_v < p.v; i_v += WG) {
    let k = scratch[srow + p.v + i_v];
    if (k >= lo) {
      c += 1u;
      m += bitcast<f32>(scratch[srow + i_v]);
    }
  }
  return reduce_stat(lane, c, m);
}

fn ceil_half(d: u32) -> u32 {
  return (d >> 1u) + (d & 1u);
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let lane = lid.x;
  let i_b = wid.x;
  let row = i_b * p.v;
  let srow = i_b * 2u * p.v;

  // Largest x, then q = exp((x - max) / T) and rank keys.
  var mx_local = -3.4028235e38;
  for (var i_v = lane; i_v < p.v; i_v += WG) {
    let xv = penalized(row, i_v);
    if (xv == xv) {
      mx_local = max(mx_local, xv);
    }
  }
  let mx = reduce_max(lane, mx_local);
  var sum_local = 0.0;
  var kmin_local = KMAX;
  for (var i_v = lane; i_v < p.v; i_v += WG) {
    let xv = penalized(row, i_v);
    var q = 0.0;
    var k = 0u;
    if (xv == xv) {
      q = exp((xv - mx) / p.temperature);
      k = key_of(xv);
    }
    scratch[srow + i_v] = bitcast<u32>(q);
    scratch[srow + p.v + i_v] = k;
    sum_local += q;
    kmin_local = min(kmin_local, k);
  }
  let total_all = reduce_stat(lane, 0u, sum_local).mass;
  let kmin = reduce_min_u(lane, kmin_local);

  // The threshold key: every kept token has a key >= tau.
  var tau = kmin;

  // Min-p: the smallest key among tokens with q >= min_p (the top token has q = 1).
  if (p.min_p > 0.0) {
    var kl = KMAX;
    for (var i_v = lane; i_v < p.v; i_v += WG) {
      if (bitcast<f32>(scratch[srow + i_v]) >= p.min_p) {
        kl = min(kl, scratch[srow + p.v + i_v]);
      }
    }
    tau = max(tau, reduce_min_u(lane, kl));
  }

  // Top-k: the largest key with at least k tokens at or above it (the k-th largest key).
  if (p.top_k > 0u && p.top_k < p.v) {
    var lo = 0u;
    var hi = KMAX;
    for (var it = 0u; it < 33u; it++) {
      if (lo < hi) {
        let mid = lo + ceil_half(hi - lo);
        if (stat_ge(lane, srow, mid).count >= p.top_k) {
          lo = mid;
        } else {
          hi = mid - 1u;
        }
      }
    }
    tau = max(tau, lo);
  }

  // Top-p: the largest key whose tokens at or above it hold at least top_p of the mass.
  if (p.top_p < 1.0) {
    let goal_p = p.top_p * total_all;
    var lo = 0u;
    var hi = KMAX;
    for (var it = 0u; it < 33u; it++) {
      if (lo < hi) {
        let mid = lo + ceil_half(hi - lo);
        if (stat_ge(lane, srow, mid).mass >= goal_p) {
          lo = mid;
        } else {
          hi = mid - 1u;
        }
      }
    }
    tau = max(tau, lo);
  }

  // The draw: a prefix sum of kept mass over ids. Each thread owns a contiguous range of ids.
  let span = (p.v + WG - 1u) / WG;
  let start = min(lane * span, p.v);
  let end = min(start + span, p.v);
  var mass = 0.0;
  var last = KMAX;
  for (var i_v = start; i_v < end; i_v++) {
    if (scratch[srow + p.v + i_v] >= tau) {
      mass += bitcast<f32>(scratch[srow + i_v]);
      last = i_v;
    }
  }
  red_f[lane] = mass;
  red_u[lane] = last;
  workgroupBarrier();
  if (lane == 0u) {
    var run = 0.0;
    var last_kept = 0u;
    for (var t = 0u; t < WG; t++) {
      let m = red_f[t];
      red_f[t] = run;
      run += m;
      if (red_u[t] != KMAX) {
        last_kept = red_u[t];
      }
    }
    uni_f = uniform_draw(p.seed, i_b, p.step) * run;
    uni_u = last_kept; // where rounding leaves the goal at the end: the last kept token, as the reference
  }
  workgroupBarrier();
  let goal = uni_f;
  let before = red_f[lane];
  workgroupBarrier();
  if (before <= goal && goal < before + mass) {
    var cum = before;
    var found = KMAX;
    for (var i_v = start; i_v < end; i_v++) {
      if (scratch[srow + p.v + i_v] >= tau) {
        cum += bitcast<f32>(scratch[srow + i_v]);
        if (found == KMAX && goal < cum) {
          found = i_v;
        }
      }
    }
    if (found != KMAX) {
      uni_u = found;
    }
  }
  workgroupBarrier();
  if (lane == 0u) {
    let id = uni_u;
    out[p.out_row * p.b + i_b] = i32(id);
    if (p.has_seen == 1u) {
      seen[row + id] = 1.0;
    }
  }
}
