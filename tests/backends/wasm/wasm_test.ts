import assert from "node:assert/strict";
import type { Backend, Tensor, WeightDType } from "../../../src/backends/backend.ts";
import { JsBackend } from "../../../src/backends/js/js.ts";
import { createWasmBackend, type WasmBackend } from "../../../src/backends/wasm/wasm.ts";
import { GREEDY } from "../../../src/generate/sampler.ts";
import { maxAbsDiff } from "../../_fixtures.ts";
import { parseConfig } from "../../../src/config.ts";
import { BackendError } from "../../../src/errors.ts";

/** Deterministic values in [lo, hi). */
function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}

/** Runs `op` on js and on wasm backends with the same inputs; returns the outputs named in `outs`. */
type Op = (be: Backend, up: (name: string) => Tensor) => void;

interface Case {
  inputs: Record<string, { data: Float32Array; shape: number[]; matrix?: boolean; i32?: boolean }>;
  outs: string[];
  op: Op;
}

async function run(be: Backend, c: Case): Promise<Float32Array[]> {
  const tensors = new Map<string, Tensor>();
  for (const [name, x] of Object.entries(c.inputs)) {
    let tensor: Tensor;
    if (x.i32) {
      tensor = be.zeros(x.shape, "i32");
      be.write(tensor, Int32Array.from(x.data));
    } else tensor = x.matrix ? be.uploadMatrix(x.data, x.shape) : be.upload(x.data, x.shape);
    tensors.set(name, tensor);
  }
  c.op(be, (n) => tensors.get(n)!);
  return await Promise.all(c.outs.map((n) => be.read(tensors.get(n)!)));
}

function scale(x: Float32Array): number {
  let m = 1;
  for (const v of x) m = Math.max(m, Math.abs(v));
  return m;
}

async function compare(c: Case, opts: { dtype?: WeightDType; threads?: number; tol?: number } = {}) {
  const want = await run(new JsBackend(), c);
  const be = await createWasmBackend({ threads: opts.threads ?? 1, dtype: opts.dtype });
  try {
    const got = await run(be, c);
    c.outs.forEach((name, k) => {
      const err = maxAbsDiff(got[k], want[k]);
      const tol = (opts.tol ?? 2e-6) * scale(want[k]);
      assert.ok(err <= tol, `${name}: max abs error ${err} > ${tol}`);
    });
    return got;
  } finally {
    await be.dispose();
  }
}

function linearCase(m: number, o: number, i: number, bias: boolean, seed = 1): Case {
  return {
    inputs: {
      w: { data: rand(o * i, seed), shape: [o, i], matrix: true },
      x: { data: rand(m * i, seed + 1), shape: [m, i] },
      ...(bias ? { bias: { data: rand(o, seed + 2), shape: [o] } } : {}),
      y: { data: new Float32Array(m * o), shape: [m, o] },
    },
    outs: ["y"],
    op: (be, u) => be.linear(u("y"), u("w"), u("x"), bias ? u("bias") : undefined),
  };
}

Deno.test("linear() matches js on odd sizes, as matrix-vector and matrix-matrix", async () => {
  for (
    const [m, o, i] of [
      [1, 37, 13],
      [1, 70, 37],
      [2, 9, 64],
      [3, 33, 70],
      [5, 37, 13],
      [9, 70, 37],
      [6, 21, 48],
      [37, 19, 70],
    ]
  ) {
    await compare(linearCase(m, o, i, true), { tol: 4e-6 });
    await compare(linearCase(m, o, i, false), { tol: 4e-6 });
  }
});

Deno.test("linear() with packed weights stays close to js", async () => {
  for (const [dtype, tol] of [["bf16", 1.5e-2], ["f16", 2e-3], ["q8", 3e-2]] as const) {
    for (const [m, o, i] of [[1, 37, 13], [2, 70, 37], [1, 33, 96], [6, 37, 70], [17, 20, 64]]) {
      await compare(linearCase(m, o, i, true), { dtype, tol });
    }
  }
});

Deno.test("rmsNorm(), add() and gatedRmsNorm() match js on odd sizes", async () => {
  const m = 3, d = 37, di = 70;
  await compare({
    inputs: {
      x: { data: rand(m * d, 3, -3, 3), shape: [m, d] },
      w: { data: rand(d, 4), shape: [d] },
      o: { data: new Float32Array(m * d), shape: [m, d] },
      s: { data: new Float32Array(m * d), shape: [m, d] },
    },
    outs: ["o", "s", "x"],
    op: (be, u) => {
      be.rmsNorm(u("o"), u("x"), u("w"), 1e-5);
      be.add(u("s"), u("o"), u("x"));
      be.rmsNorm(u("x"), u("x"), u("w"), 1e-5); // in place
    },
  });
  for (const gs of [di, 35, 10, 7]) {
    await compare({
      inputs: {
        y: { data: rand(m * di, 5, -3, 3), shape: [m, di] },
        z: { data: rand(m * di, 6, -6, 6), shape: [m, di] },
        w: { data: rand(di, 7), shape: [di] },
        o: { data: new Float32Array(m * di), shape: [m, di] },
      },
      outs: ["o", "y"],
      op: (be, u) => {
        be.gatedRmsNorm(u("o"), u("y"), u("z"), u("w"), 1e-5, gs);
        be.gatedRmsNorm(u("y"), u("y"), u("z"), u("w"), 1e-5, gs); // in place
      },
    });
  }
});

Deno.test("embed() matches js for every packing", async () => {
  const v = 11, d = 37;
  for (const dtype of ["f32", "bf16", "f16", "q8"] as const) {
    await compare({
      inputs: {
        table: { data: rand(v * d, 8), shape: [v, d], matrix: true },
        ids: { data: Float32Array.from([3, 10, 0, 7, 3]), shape: [5], i32: true },
        o: { data: new Float32Array(4 * d), shape: [4, d] },
      },
      outs: ["o"],
      op: (be, u) => be.embed(u("o"), u("table"), u("ids"), 1),
    }, { dtype, tol: dtype === "f32" ? 0 : dtype === "bf16" ? 4e-3 : dtype === "f16" ? 5e-4 : 1e-2 });
  }
});

function convCase(b: number, l: number, c: number, k: number, bias: boolean): Case {
  return {
    inputs: {
      x: { data: rand(b * l * c, 9, -2, 2), shape: [b, l, c] },
      w: { data: rand(c * k, 10), shape: [c, k] },
      ...(bias ? { bias: { data: rand(c, 11), shape: [c] } } : {}),
      state: { data: rand(b * c * (k - 1), 12), shape: [b, c, k - 1] },
      o: { data: new Float32Array(b * l * c), shape: [b, l, c] },
    },
    outs: ["o", "state"],
    op: (be, u) => be.conv1dSilu(u("o"), u("x"), u("w"), bias ? u("bias") : undefined, u("state")),
  };
}

Deno.test("conv1dSilu() matches js, one step and prefill, odd channels", async () => {
  for (
    const [b, l, c, k] of [[1, 1, 70, 4], [2, 1, 37, 4], [2, 2, 13, 4], [1, 9, 70, 4], [2, 5, 37, 3], [
      1,
      1,
      70,
      2,
    ]]
  ) {
    await compare(convCase(b, l, c, k, true), { tol: 4e-6 });
    await compare(convCase(b, l, c, k, false), { tol: 4e-6 });
  }
});

function scanCase(b: number, l: number, di: number, n: number): Case {
  return {
    inputs: {
      x: { data: rand(b * l * di, 13, -2, 2), shape: [b, l, di] },
      dt: { data: rand(b * l * di, 14, -6, 3), shape: [b, l, di] },
      A: { data: rand(di * n, 15, -4, -0.1), shape: [di, n] },
      B: { data: rand(b * l * n, 16), shape: [b, l, n] },
      C: { data: rand(b * l * n, 17), shape: [b, l, n] },
      D: { data: rand(di, 18), shape: [di] },
      z: { data: rand(b * l * di, 19, -4, 4), shape: [b, l, di] },
      h: { data: rand(b * di * n, 20), shape: [b, di, n] },
      y: { data: new Float32Array(b * l * di), shape: [b, l, di] },
    },
    outs: ["y", "h"],
    op: (be, u) =>
      be.selectiveScan({
        y: u("y"),
        x: u("x"),
        dt: u("dt"),
        A: u("A"),
        B: u("B"),
        C: u("C"),
        D: u("D"),
        z: u("z"),
        h: u("h"),
      }),
  };
}

Deno.test("selectiveScan() matches js, one step and prefill, odd sizes", async () => {
  for (
    const [b, l, di, n] of [
      [1, 1, 70, 13],
      [2, 1, 37, 16],
      [1, 1, 9, 4],
      [2, 1, 70, 12],
      [1, 7, 70, 13],
      [2, 5, 12, 4],
      [1, 3, 9, 1],
    ]
  ) {
    await compare(scanCase(b, l, di, n), { tol: 1e-5 });
  }
});

function ssdCase(b: number, l: number, h: number, p: number, g: number, n: number, dtMax = Infinity): Case {
  return {
    inputs: {
      x: { data: rand(b * l * h * p, 21, -2, 2), shape: [b, l, h, p] },
      dt: { data: rand(b * l * h, 22, -5, 3), shape: [b, l, h] },
      dtBias: { data: rand(h, 23), shape: [h] },
      A: { data: rand(h, 24, -4, -0.1), shape: [h] },
      B: { data: rand(b * l * g * n, 25), shape: [b, l, g, n] },
      C: { data: rand(b * l * g * n, 26), shape: [b, l, g, n] },
      D: { data: rand(h, 27), shape: [h] },
      state: { data: rand(b * h * p * n, 28), shape: [b, h, p, n] },
      y: { data: new Float32Array(b * l * h * p), shape: [b, l, h, p] },
    },
    outs: ["y", "state"],
    op: (be, u) =>
      be.ssdScan({
        y: u("y"),
        x: u("x"),
        dt: u("dt"),
        dtBias: u("dtBias"),
        dtMin: 0.001,
        dtMax,
        A: u("A"),
        B: u("B"),
        C: u("C"),
        D: u("D"),
        state: u("state"),
        chunkSize: 4,
      }),
  };
}

Deno.test("ssdScan() matches js, one step and prefill, odd sizes and groups", async () => {
  for (
    const [b, l, h, p, g, n] of [[1, 1, 4, 16, 1, 13], [2, 1, 6, 5, 2, 16], [1, 9, 4, 7, 2, 37], [
      2,
      4,
      3,
      3,
      3,
      8,
    ]]
  ) {
    await compare(ssdCase(b, l, h, p, g, n), { tol: 1e-5 });
  }
  await compare(ssdCase(1, 5, 4, 16, 1, 13, 0.5), { tol: 1e-5 });
});

Deno.test("sample() greedy is argmax with the lowest id among ties, as js", async () => {
  const b = 3, v = 37;
  const logits = rand(b * v, 29);
  logits[5] = 2;
  logits[9] = 2; // tie: 5 wins
  logits[v + 36] = 3; // the tail lane
  logits.fill(-Infinity, 2 * v, 3 * v);
  logits[2 * v + 4] = NaN;
  await compare({
    inputs: {
      logits: { data: logits, shape: [b, v] },
      out: { data: new Float32Array(2 * b), shape: [2, b], i32: true },
    },
    outs: [],
    op: (be, u) => be.sample({ out: u("out"), outRow: 1, logits: u("logits"), params: GREEDY, step: 0 }),
  });
  for (const be of [new JsBackend(), await createWasmBackend({ threads: 1 })]) {
    const lt = be.upload(logits, [b, v]);
    const out = be.zeros([2, b], "i32");
    be.sample({ out, outRow: 1, logits: lt, params: GREEDY, step: 0 });
    assert.deepEqual([...await be.readIds(out)], [0, 0, 0, 5, 36, 0], be.name);
    await be.dispose();
  }
});

Deno.test("threads 1 and 2 give identical results", async () => {
  const cases = [
    linearCase(1, 531, 200, true),
    linearCase(37, 531, 200, true),
    scanCase(2, 7, 260, 16),
    ssdCase(2, 5, 6, 16, 2, 64),
    convCase(2, 9, 300, 4, true),
  ];
  for (const dtype of ["f32", "q8"] as const) {
    for (const c of cases) {
      const one = await compare(c, { threads: 1, dtype, tol: dtype === "f32" ? 1e-5 : 5e-2 });
      const two = await compare(c, { threads: 2, dtype, tol: dtype === "f32" ? 1e-5 : 5e-2 });
      one.forEach((x, k) => assert.deepEqual(two[k], x));
    }
  }
});

/**
 * A chain of ops where each reads what the one before wrote, by other threads' shares too: a layer's
 * shape at odd sizes. On 2 threads the ops are recorded and run as one program, so a barrier missing
 * between two steps shows as a result that differs from js.
 */
function chainCase(m: number, d: number, di: number): Case {
  return {
    inputs: {
      h: { data: rand(m * d, 30, -2, 2), shape: [1, m, d] },
      nw: { data: rand(d, 31), shape: [d] },
      wx: { data: rand(di * d, 32, -0.2, 0.2), shape: [di, d], matrix: true },
      cw: { data: rand(di * 4, 33), shape: [di, 4] },
      wo: { data: rand(d * di, 34, -0.2, 0.2), shape: [d, di], matrix: true },
      st: { data: rand(di * 3, 35), shape: [1, di, 3] },
      xn: { data: new Float32Array(m * d), shape: [m, d] },
      x: { data: new Float32Array(m * di), shape: [1, m, di] },
      xc: { data: new Float32Array(m * di), shape: [1, m, di] },
      o: { data: new Float32Array(m * d), shape: [m, d] },
    },
    outs: ["h", "st", "xc"],
    op: (be, u) => {
      for (let layer = 0; layer < 3; layer++) {
        be.rmsNorm(u("xn"), u("h"), u("nw"), 1e-5); // (m, d)
        be.linear(u("x"), u("wx"), u("xn")); // (m, di): each thread its columns
        be.conv1dSilu(u("xc"), u("x"), u("cw"), undefined, u("st")); // the same channels as the linear's
        be.linear(u("o"), u("wo"), u("xc")); // (m, d): reads every thread's channels
        be.add(u("h"), u("h"), u("o"));
      }
    },
  };
}

Deno.test("ops recorded on 2 threads wait for each other's results where they depend on them", async () => {
  for (const [m, d, di] of [[1, 37, 530], [1, 64, 2000], [5, 37, 530]]) {
    const c = chainCase(m, d, di);
    const one = await compare(c, { threads: 1, tol: 1e-5 });
    const two = await compare(c, { threads: 2, tol: 1e-5 });
    one.forEach((x, k) => assert.deepEqual(two[k], x));
  }
});

Deno.test("bandwidth() reads memory with every thread", async () => {
  const be: WasmBackend = await createWasmBackend({ threads: 2 });
  try {
    // a rate, not a speed claim: on a loaded 2-core machine any floor is flaky
    const rate = be.bandwidth(1 << 20, 2);
    assert.ok(Number.isFinite(rate) && rate > 0, `bandwidth() gave ${rate}`);
  } finally {
    await be.dispose();
  }
});

Deno.test("createWasmBackend() refuses a model over 4 GiB, naming the packing that fits", async () => {
  const config = parseConfig(
    JSON.stringify({
      d_model: 2560,
      n_layer: 64,
      vocab_size: 50277,
      ssm_cfg: {},
      pad_vocab_size_multiple: 8,
    }),
    "mamba-2.8b/config.json",
  );
  await assert.rejects(
    () => createWasmBackend({ threads: 1 }, config),
    (e: Error) =>
      e instanceof BackendError && /dtype "f32" needs 1\d\.\d GB/.test(e.message) && /"q8"/.test(e.message),
  );
  const be = await createWasmBackend({ threads: 1, dtype: "q8" }, config); // fits: nothing allocated yet
  await be.dispose();
});
