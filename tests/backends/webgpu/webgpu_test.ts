import assert from "node:assert/strict";
import type { Backend, SamplingParams, Tensor } from "../../../src/backends/backend.ts";
import { JsBackend } from "../../../src/backends/js/js.ts";
import {
  createWebGpuBackend,
  fromHalf,
  GEMM_TUNING,
  gemmFull,
  gemmPlan,
  gemmSplits,
  type GemmTile,
  gemmTile,
  isFallback,
  LINEAR_TUNING,
  probeWebGpu,
  requestAdapter,
  SCAN_TUNING,
  splitkFull,
  type SplitkTile,
  splitkTile,
  toHalf,
  type WebGpuBackend,
  XPROJ_TUNING,
} from "../../../src/backends/webgpu/webgpu.ts";
import { BackendError } from "../../../src/errors.ts";
import { maxAbsDiff } from "../../_fixtures.ts";
import { GREEDY } from "../../../src/generate/sampler.ts";
import type { ModelConfig } from "../../../src/config.ts";
import { mamba1Block, mamba1Scratch, mamba1State, type Mamba1Weights } from "../../../src/model/mamba1.ts";

const adapter = await requestAdapter();
const ignore = !adapter;
if (ignore) console.error("webgpu tests skipped: no WebGPU adapter here (Deno needs --unstable-webgpu)");

/** Deterministic values in [lo, hi). */
function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + (hi - lo) * (s / 4294967296);
  }
  return out;
}

function halfRound(x: Float32Array): Float32Array {
  return x.map((v) => fromHalf(toHalf(v)));
}

/** Runs `op` on both backends over the same inputs; returns the named outputs of each. */
async function both(
  gpu: Backend,
  setup: (be: Backend) => Record<string, Tensor>,
  op: (be: Backend, t: Record<string, Tensor>) => void,
  outs: string[],
): Promise<[Float32Array[], Float32Array[]]> {
  const js = new JsBackend();
  const res: Float32Array[][] = [];
  for (const be of [js, gpu]) {
    const t = setup(be);
    op(be, t);
    const r: Float32Array[] = [];
    for (const o of outs) r.push(await be.read(t[o]));
    res.push(r);
  }
  return [res[0], res[1]];
}

function close(a: Float32Array, b: Float32Array, tol: number, what: string) {
  const err = maxAbsDiff(a, b);
  assert.ok(err <= tol, `${what}: max abs error ${err} > ${tol}`);
}

Deno.test({
  name: "webgpu kernels match js on odd sizes",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const gpu = await createWebGpuBackend();
    try {
      await t.step("embed() gathers rows, from an offset", async () => {
        const [v, d, m] = [11, 13, 5];
        const table = rand(v * d, 1);
        const [a, b] = await both(
          gpu,
          (be) => {
            const ids = be.zeros([m + 2], "i32");
            be.write(ids, Int32Array.from([9, 9, 3, 0, 10, 7, 3]));
            return { out: be.zeros([m, d]), table: be.uploadMatrix(table, [v, d]), ids };
          },
          (be, x) => be.embed(x.out, x.table, x.ids, 2),
          ["out"],
        );
        close(a[0], b[0], 0, "embed");
      });

      await t.step("rmsNorm() normalizes rows in place", async () => {
        const [m, d] = [3, 301];
        const [a, b] = await both(
          gpu,
          (be) => ({
            x: be.upload(rand(m * d, 2, -3, 3), [m, d]),
            w: be.upload(rand(d, 3), [d]),
          }),
          (be, x) => be.rmsNorm(x.x, x.x, x.w, 1e-5),
          ["x"],
        );
        close(a[0], b[0], 1e-5, "rmsNorm");
      });

      await t.step("add() adds in place", async () => {
        const n = 1037;
        const [a, b] = await both(
          gpu,
          (be) => ({
            a: be.upload(rand(n, 4), [n]),
            b: be.upload(rand(n, 5), [n]),
          }),
          (be, x) => be.add(x.b, x.a, x.b),
          ["b"],
        );
        close(a[0], b[0], 0, "add");
      });

      const shapes: [number, number, number, boolean][] = [
        [1, 37, 45, true],
        [3, 70, 129, false],
        [
          7,
          67,
          33,
          true,
        ],
        [19, 41, 77, true],
        // m > 32: the tiled kernel (wgsl/gemm.wgsl); 2..32: split-k (wgsl/splitk.wgsl), 4096 rows too
        [70, 130, 75, true],
        [33, 301, 45, true],
        [64, 259, 70, false],
        [65, 257, 37, true],
        [512, 263, 24, false],
        [2, 4101, 257, true],
        [31, 4099, 29, false],
        [32, 4096, 40, true],
      ];
      for (const [m, o, i, bias] of shapes) {
        await t.step(
          `linear() matches js for m ${m}, o ${o}, i ${i}${bias ? ", with bias" : ""}`,
          async () => {
            const w = rand(o * i, 6);
            const [a, b] = await both(
              gpu,
              (be) => ({
                out: be.zeros([m, o]),
                w: be.uploadMatrix(w, [o, i]),
                x: be.upload(rand(m * i, 7), [m, i]),
                bias: be.upload(rand(o, 8), [o]),
              }),
              (be, x) => be.linear(x.out, x.w, x.x, bias ? x.bias : undefined),
              ["out"],
            );
            close(a[0], b[0], 2e-5, "linear");
          },
        );
      }

      for (const [m, d, o1, o2] of [[1, 45, 37, 70], [5, 130, 33, 129], [7, 64, 64, 7], [45, 70, 37, 9]]) {
        await t.step(`rmsNorm() -> linear() x3 -> add() (fused) matches js for m ${m}, d ${d}`, async () => {
          const [a, b] = await both(gpu, (be) => ({
            hidden: be.upload(rand(m * d, 50, -2, 2), [m, d]),
            nw: be.upload(rand(d, 51), [d]),
            xn: be.zeros([m, d]),
            w1: be.uploadMatrix(rand(o1 * d, 52), [o1, d]),
            w2: be.uploadMatrix(rand(o2 * d, 53), [o2, d]),
            w3: be.uploadMatrix(rand(d * d, 54), [d, d]),
            b2: be.upload(rand(o2, 55), [o2]),
            y1: be.zeros([m, o1]),
            y2: be.zeros([m, o2]),
            y3: be.zeros([m, d]),
            wo: be.uploadMatrix(rand(d * o1, 56), [d, o1]),
            o: be.zeros([m, d]),
          }), (be, x) => {
            be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
            be.linear(x.y1, x.w1, x.xn);
            be.linear(x.y2, x.w2, x.xn, x.b2);
            be.linear(x.y3, x.w3, x.xn);
            be.linear(x.o, x.wo, x.y1);
            be.add(x.hidden, x.hidden, x.o);
          }, ["xn", "y1", "y2", "y3", "o", "hidden"]);
          for (let j = 0; j < a.length; j++) close(a[j], b[j], 5e-5, `fused output ${j}`);
        });
      }

      for (const [d, di, k, bias] of [[45, 37, 4, true], [130, 261, 3, false], [61, 45, 6, true]] as const) {
        await t.step(
          `rmsNorm() -> linear() x, z -> conv1dSilu() (one step, fused) matches js for d ${d}, di ${di}, k ${k}`,
          async () => {
            const [a, g] = await both(gpu, (be) => ({
              hidden: be.upload(rand(d, 80, -2, 2), [1, 1, d]),
              nw: be.upload(rand(d, 81), [d]),
              xn: be.zeros([1, d]),
              wx: be.uploadMatrix(rand(di * d, 82), [di, d]),
              wz: be.uploadMatrix(rand(di * d, 83), [di, d]),
              bz: be.upload(rand(di, 84), [di]),
              bx: be.upload(rand(di, 88), [di]),
              x: be.zeros([1, 1, di]),
              z: be.zeros([1, 1, di]),
              xc: be.zeros([1, 1, di]),
              cw: be.upload(rand(di * k, 85), [di, k]),
              cb: be.upload(rand(di, 86), [di]),
              state: be.upload(rand(di * (k - 1), 87), [1, di, k - 1]),
            }), (be, x) => {
              for (let step = 0; step < 2; step++) {
                be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
                // z first: the fused conv must find x's product wherever it is in the group
                be.linear(x.z, x.wz, x.xn, x.bz);
                be.linear(x.x, x.wx, x.xn, bias ? x.bx : undefined);
                be.conv1dSilu(x.xc, x.x, x.cw, bias ? x.cb : undefined, x.state);
                be.add(x.hidden, x.hidden, x.hidden); // another input for the next step
              }
            }, ["xn", "x", "z", "xc", "state", "hidden"]);
            for (let j = 0; j < a.length; j++) close(a[j], g[j], 5e-5, `fused in_proj + conv output ${j}`);
          },
        );
      }

      for (const m of [3, 32]) {
        await t.step(
          `rmsNorm() -> linear() x2 -> linear() -> add() on matrices of 4096 rows (fused) matches js for m ${m}`,
          async () => {
            const [d, o1, o2, o3] = [45, 4100, 37, 4099];
            const [a, b] = await both(gpu, (be) => ({
              hidden: be.upload(rand(m * d, 80, -2, 2), [m, d]),
              nw: be.upload(rand(d, 81), [d]),
              xn: be.zeros([m, d]),
              w1: be.uploadMatrix(rand(o1 * d, 82), [o1, d]),
              w2: be.uploadMatrix(rand(o2 * d, 83), [o2, d]),
              b2: be.upload(rand(o2, 84), [o2]),
              y1: be.zeros([m, o1]),
              y2: be.zeros([m, o2]),
              w3: be.uploadMatrix(rand(o3 * o2, 85), [o3, o2]),
              y3: be.zeros([m, o3]),
              r: be.upload(rand(m * o3, 86), [m, o3]),
            }), (be, x) => {
              be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
              be.linear(x.y1, x.w1, x.xn);
              be.linear(x.y2, x.w2, x.xn, x.b2);
              be.linear(x.y3, x.w3, x.y2);
              be.add(x.r, x.r, x.y3);
            }, ["xn", "y1", "y2", "y3", "r"]);
            for (let j = 0; j < a.length; j++) close(a[j], b[j], 5e-5, `fused output ${j}`);
          },
        );
      }

      await t.step(
        "rmsNorm() -> linear() -> sample() greedy (fused) matches js, ties to the lowest id",
        async () => {
          const [d, v] = [37, 1001];
          const w = rand(v * d, 90);
          // rows 700 and 3 equal: a tie across workgroups goes to 3; row 500 all zero
          w.set(w.subarray(3 * d, 4 * d), 700 * d);
          w.fill(0, 500 * d, 501 * d);
          const nan = new Float32Array(v * d).fill(NaN);
          const hiddens = [rand(d, 91, -2, 2), rand(d, 91, -2, 2).map((x) => -x), rand(d, 94, -2, 2)];
          for (const [i, hidden] of hiddens.entries()) {
            const head = i === 2 ? nan : w; // every logit NaN: id 0, as js
            const got: number[][] = [];
            for (const be of [new JsBackend(), gpu] as Backend[]) {
              const xn = be.zeros([1, d]), logits = be.zeros([1, v]), ids = be.zeros([2, 1], "i32");
              be.rmsNorm(xn, be.upload(hidden, [1, 1, d]), be.upload(rand(d, 92), [d]), 1e-5);
              be.linear(logits, be.uploadMatrix(head, [v, d]), xn);
              be.sample({ out: ids, outRow: 1, logits, params: GREEDY, step: 0 });
              got.push([...await be.readIds(ids)]);
            }
            assert.deepEqual(got[1], got[0], `greedy ids for input ${i}`);
          }
        },
      );

      await t.step(
        "sample() greedy (fused) and the next embed() of its ids are one dispatch and match js over steps, f32 and f16",
        async () => {
          const [d, v, steps] = [37, 1001, 4];
          const table = rand(v * d, 95), nwv = rand(d, 96), headW = rand(v * d, 97);
          const f16 = await createWebGpuBackend({ dtype: "f16" });
          try {
            for (const g of [gpu, f16]) {
              const round = (x: Float32Array) => g === f16 ? halfRound(x) : x;
              // every step embeds the ids sampled last (fused), or row 0 again (`again`: not fused)
              for (const again of [false, true]) {
                const got: { ids: number[]; hidden: Float32Array }[] = [];
                for (const be of [new JsBackend(), g] as Backend[]) {
                  const tab = be.uploadMatrix(be === g ? table : round(table), [v, d]);
                  const head = be.uploadMatrix(be === g ? headW : round(headW), [v, d]);
                  const nw = be.upload(nwv, [d]);
                  const hidden = be.zeros([1, 1, d]), xn = be.zeros([1, d]), logits = be.zeros([1, v]);
                  const ids = be.zeros([steps + 1, 1], "i32");
                  be.write(ids, Int32Array.from([5, 0, 0, 0, 0]));
                  const step = (s: number) => {
                    be.embed(hidden, tab, ids, again ? 0 : s);
                    be.rmsNorm(xn, hidden, nw, 1e-5);
                    be.linear(logits, head, xn);
                    be.sample({ out: ids, outRow: s + 1, logits, params: GREEDY, step: s });
                  };
                  if (be === g) {
                    // 3 steps: the first embed alone, then 2 dispatches a step (3 when not fused)
                    const dispatches = g.recordOnly(() => [0, 1, 2].forEach(step)).dispatches;
                    assert.equal(dispatches, again ? 9 : 7, `dispatches of 3 steps, again ${again}`);
                  }
                  for (let s = 0; s < steps; s++) step(s);
                  got.push({ ids: [...await be.readIds(ids)], hidden: await be.read(hidden) });
                }
                const what = `${g === f16 ? "f16" : "f32"}, again ${again}`;
                assert.deepEqual(got[1].ids, got[0].ids, `greedy ids, ${what}`);
                if (!again) assert.equal(new Set(got[0].ids).size > 2, true, `ids that change, ${what}`);
                close(got[1].hidden, got[0].hidden, 0, `embedded row, ${what}`);
              }
            }
          } finally {
            await f16.dispose();
          }
        },
      );

      await t.step(
        "linear() on one weight with other inputs, bias, norm, residual and argmax in turn matches js",
        async () => {
          // The webgpu backend records the dispatch of a weight's products once and replays it while
          // the tensors in every role stay the same: each change here must be seen. A backend of its
          // own, so that the buffer of matvec1's argmax partials starts at the size this test gives it.
          const [o, i, v] = [37, 45, 3001];
          const fresh = await createWebGpuBackend();
          const got: { values: Float32Array[]; ids: number[] }[] = [];
          for (const be of [new JsBackend(), fresh] as Backend[]) {
            const w = be.uploadMatrix(rand(o * i, 100), [o, i]);
            const w3 = be.uploadMatrix(rand(o * i, 109), [o, i]);
            const xq = be.upload(rand(i, 134, -2, 2), [1, i]);
            const w5 = be.uploadMatrix(rand(5 * i, 107), [5, i]);
            const head = be.uploadMatrix(rand(v * i, 101), [v, i]);
            const b = be.upload(rand(o, 102), [o]), nw = be.upload(rand(i, 103), [i]);
            const x1 = be.upload(rand(i, 104, -2, 2), [1, i]), x2 = be.upload(rand(i, 105, -2, 2), [1, i]);
            const xn = be.zeros([1, i]), y1 = be.zeros([1, o]), y2 = be.zeros([1, o]), y3 = be.zeros([1, o]);
            const r = be.upload(rand(o, 106), [1, o]), r3 = be.upload(rand(o, 108), [1, o]);
            const ids = be.zeros([9, 1], "i32");
            const logits = be.zeros([1, 5]), logitsV = be.zeros([1, v]);
            // Each product changes one thing from the one before; every output is copied into a row
            // of snap as it is made (later products overwrite them).
            const snap = be.zeros([24, o]);
            let at = 0;
            const keep = (y: Tensor) => be.copy(snap, y, o * at++, 0, o);
            be.linear(y1, w, x1);
            keep(y1);
            be.add(x1, x1, x2);
            be.linear(y1, w, x1); // nothing: new contents
            keep(y1);
            be.linear(y2, w, x1); // the output
            keep(y2);
            be.linear(y2, w, x2); // the input
            keep(y2);
            be.linear(y2, w, x2, b); // the bias
            keep(y2);
            be.rmsNorm(xn, x2, nw, 1e-5);
            be.linear(y2, w, xn, b); // the norm
            keep(y2);
            be.rmsNorm(xn, x1, nw, 1e-5);
            be.linear(y2, w, xn, b); // the norm's input
            keep(y2);
            be.rmsNorm(xn, x1, nw, 1e-1);
            be.linear(y2, w, xn, b); // the norm's eps
            keep(y2);
            be.linear(y3, w, x2);
            keep(y3);
            be.linear(y3, w, x2);
            be.add(r, r, y3); // the residual, fused
            keep(r);
            be.linear(y3, w, x2);
            be.add(r3, r3, y3); // another residual
            keep(r3);
            be.linear(y3, w, x2); // none
            keep(y3);
            be.linear(y1, w, x1);
            be.linear(y3, w, x1); // a second product
            keep(y1);
            keep(y3);
            be.linear(y3, w, x1);
            be.linear(y1, w, x1); // the two in the other order
            keep(y1);
            keep(y3);
            be.linear(y3, w, x1);
            be.linear(y1, w3, x1); // the second weight
            keep(y1);
            keep(y3);
            for (let row = 0; row < 3; row++) {
              be.linear(logits, w5, x1);
              be.sample({ out: ids, outRow: row, logits, params: GREEDY, step: 0 });
              be.add(x1, x1, x2);
            }
            // A larger argmax: the partials (at most 5 pairs so far) move to a larger buffer and theirs
            // goes back to the pool, to the zeros below; then the small argmax again must not write there.
            be.linear(logitsV, head, x2);
            be.sample({ out: ids, outRow: 3, logits: logitsV, params: GREEDY, step: 0 });
            const spares = [4, 8, 12].map((n) => be.zeros([n], "i32"));
            be.linear(logits, w5, x1);
            be.sample({ out: ids, outRow: 4, logits, params: GREEDY, step: 0 });
            spares.forEach((spare, k) => be.copy(ids, spare, 5 + k, 0, 1));
            be.linear(logits, w5, xq); // no argmax (and another input)
            be.copy(snap, logits, o * at++, 0, 5);
            be.linear(logits, w5, xq); // the argmax
            be.sample({ out: ids, outRow: 8, logits, params: GREEDY, step: 0 });
            const values = [];
            for (const t of [snap, r, r3, x1]) values.push(await be.read(t));
            got.push({ values, ids: [...await be.readIds(ids)] });
          }
          await fresh.dispose();
          const [a, g] = got;
          for (let j = 0; j < a.values.length; j++) close(a.values[j], g.values[j], 5e-5, `output ${j}`);
          assert.deepEqual(g.ids, a.ids);
          assert.ok(new Set(a.ids.slice(0, 3)).size > 1 && a.ids[8] !== a.ids[4], "the argmax of w5 changes");
        },
      );

      for (const m of [33, 45]) {
        await t.step(
          `linear() x3 -> linear() -> add() split over k on the tiled kernel (fused) matches js for m ${m}`,
          async () => {
            const [i, o1, o2, o3, o4] = [301, 21, 9, 70, 50];
            // on llvmpipe: 38 k-tiles of 8 columns in 8 splits of 5, the last one of 3
            const tile = gemmTile(m, [o1, o2, o3], i, 49152, 64);
            assert.ok(gemmSplits(tile, Math.ceil(m / tile.BM) * 5, i).splits > 2, "split over k");
            const [a, b] = await both(gpu, (be) => ({
              x: be.upload(rand(m * i, 90, -2, 2), [m, i]),
              x2: be.upload(rand(m * i, 91, -2, 2), [m, i]),
              w1: be.uploadMatrix(rand(o1 * i, 92), [o1, i]),
              w2: be.uploadMatrix(rand(o2 * i, 93), [o2, i]),
              w3: be.uploadMatrix(rand(o3 * i, 94), [o3, i]),
              w4: be.uploadMatrix(rand(o4 * i, 95), [o4, i]),
              b2: be.upload(rand(o2, 96), [o2]),
              b4: be.upload(rand(o4, 97), [o4]),
              y1: be.zeros([m, o1]),
              y2: be.zeros([m, o2]),
              y3: be.zeros([m, o3]),
              y4: be.zeros([m, o4]),
              r: be.upload(rand(m * o4, 98), [m, o4]),
            }), (be, x) => {
              be.linear(x.y1, x.w1, x.x);
              be.linear(x.y2, x.w2, x.x, x.b2);
              be.linear(x.y3, x.w3, x.x);
              be.linear(x.y4, x.w4, x.x2, x.b4);
              be.add(x.r, x.r, x.y4);
            }, ["y1", "y2", "y3", "y4", "r"]);
            for (let j = 0; j < a.length; j++) close(a[j], b[j], 5e-5, `split output ${j}`);
          },
        );
      }

      await t.step(
        "rmsNorm() -> linear() x2 split over k on the tiled kernel (fused) matches js for m 40",
        async () => {
          const [m, d, o1, o2] = [40, 301, 21, 9];
          const tile = gemmTile(m, [o1, o2], d, 49152, 64);
          assert.ok(gemmSplits(tile, 2, d).splits > 2, "split over k");
          const [a, b] = await both(gpu, (be) => ({
            hidden: be.upload(rand(m * d, 99, -2, 2), [m, d]),
            nw: be.upload(rand(d, 100), [d]),
            xn: be.zeros([m, d]),
            w1: be.uploadMatrix(rand(o1 * d, 101), [o1, d]),
            w2: be.uploadMatrix(rand(o2 * d, 102), [o2, d]),
            b2: be.upload(rand(o2, 103), [o2]),
            y1: be.zeros([m, o1]),
            y2: be.zeros([m, o2]),
          }), (be, x) => {
            be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
            be.linear(x.y1, x.w1, x.xn);
            be.linear(x.y2, x.w2, x.xn, x.b2);
          }, ["xn", "y1", "y2"]);
          for (let j = 0; j < a.length; j++) close(a[j], b[j], 5e-5, `split output ${j}`);
        },
      );

      // The plans of the tiled kernel on a large GPU (256 threads), forced at small sizes: tiles inside
      // and across the edges of x and w, rows of whole k-tiles and not, f32 and f16, with the norm, two
      // matrices, a bias and the residual add fused, split over k or not.
      const plans = new Map<string, { tile: GemmTile; splits: number }>();
      for (const [rows, cols] of [[[1536, 1536], 768], [[768], 1536], [[48, 16, 16], 1536]] as const) {
        const { tile, splits } = gemmPlan(512, [...rows], cols, 49152, 256, true);
        plans.set(JSON.stringify({ tile, splits }), { tile, splits });
        plans.set(JSON.stringify({ tile, splits: 1 }), { tile, splits: 1 });
      }
      // one f16 backend for all plans (each backend compiles its pipelines anew: seconds on llvmpipe)
      const f16 = await createWebGpuBackend({ dtype: "f16" });
      for (const plan of plans.values()) {
        // the last shape in whole tiles: the pipeline without bounds logic (FULL)
        for (const [m, d, o1, o2] of [[150, 96, 160, 64], [70, 75, 37, 9], [128, 128, 128, 64]]) {
          await t.step(
            `rmsNorm() -> linear() x2 -> linear() -> add() matches js on the tiled kernel's plan ${
              JSON.stringify(plan)
            }, m ${m}, d ${d}, f32 and f16, the norm a pass of its own${m === 70 ? " or fused" : ""}`,
            async () => {
              GEMM_TUNING.plan = plan;
              try {
                const runs = [[gpu, false, true], [f16, true, true]] as const;
                const fused = [[gpu, false, false], [f16, true, false]] as const;
                for (const [be, round, prenorm] of m === 70 ? [...runs, ...fused] : runs) {
                  GEMM_TUNING.prenorm = prenorm;
                  const w = (n: number, seed: number) => round ? halfRound(rand(n, seed)) : rand(n, seed);
                  const [a, b] = await both(be, (be) => ({
                    hidden: be.upload(rand(m * d, 110, -2, 2), [m, d]),
                    nw: be.upload(rand(d, 111), [d]),
                    xn: be.zeros([m, d]),
                    w1: be.uploadMatrix(w(o1 * d, 112), [o1, d]),
                    w2: be.uploadMatrix(w(o2 * d, 113), [o2, d]),
                    b2: be.upload(rand(o2, 114), [o2]),
                    y1: be.zeros([m, o1]),
                    y2: be.zeros([m, o2]),
                    wo: be.uploadMatrix(w(d * o1, 115), [d, o1]),
                    o: be.zeros([m, d]),
                  }), (be, x) => {
                    be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
                    be.linear(x.y1, x.w1, x.xn);
                    be.linear(x.y2, x.w2, x.xn, x.b2);
                    be.linear(x.o, x.wo, x.y1);
                    be.add(x.hidden, x.hidden, x.o);
                  }, ["xn", "y1", "y2", "o", "hidden"]);
                  for (let j = 0; j < a.length; j++) {
                    close(a[j], b[j], 1e-4, `output ${j}${round ? " (f16)" : ""}`);
                  }
                }
              } finally {
                GEMM_TUNING.plan = undefined;
                GEMM_TUNING.prenorm = undefined;
              }
            },
          );
        }
      }
      await f16.dispose();

      await t.step("gemmSplits() splits k while workgroups are few and k-slices keep 4 k-tiles", () => {
        const tile = (BK: number, KS: number) => ({ BM: 64, BN: 32, TM: 4, TN: 4, BK, KS });
        // prefill x_proj on an H100: 32 workgroups, 96 k-tiles in 2 slices -> 8 splits of 12 k-tiles
        assert.deepEqual(gemmSplits(tile(16, 2), 32, 1536), { splits: 8, tps: 12 });
        // prefill out_proj: 192 workgroups -> 2 splits
        assert.deepEqual(gemmSplits(tile(16, 2), 192, 1536), { splits: 2, tps: 48 });
        // many workgroups, or short rows: no split
        assert.deepEqual(gemmSplits(tile(16, 1), 384, 768).splits, 1);
        assert.deepEqual(gemmSplits(tile(16, 1), 8, 48).splits, 1);
        // 38 k-tiles: 8 splits of 5 (the last one of 3)
        assert.deepEqual(gemmSplits(tile(8, 1), 5, 301), { splits: 8, tps: 5 });
      });

      await t.step(
        "gemmPlan() splits out_proj in 4 and x_proj in 8 at m 512; gemmFull() needs whole tiles",
        () => {
          const plan = (rows: number[], cols: number) => gemmPlan(512, rows, cols, 49152, 256, true);
          assert.equal(plan([1536, 1536], 768).splits, 1);
          assert.equal(plan([768], 1536).splits, 4);
          assert.equal(plan([48, 16, 16], 1536).splits, 8);
          const tile = { BM: 64, BN: 64, TM: 4, TN: 4, BK: 16, KS: 1 };
          assert.equal(gemmFull(tile, 512, [1536, 1536], 768), true);
          assert.equal(gemmFull(tile, 512, [48, 16, 16], 1536), false);
          assert.equal(gemmFull(tile, 500, [768], 1536), false);
          assert.equal(gemmFull(tile, 512, [768], 1540), false);
        },
      );

      await t.step("gemmTile() covers m with 8, 16, 32, 64 rows and splits k when workgroups are few", () => {
        const at = (m: number, rows: number[], cols: number, threads?: number) => {
          const { BM, BN, KS } = gemmTile(m, rows, cols, 49152, threads);
          return [BM, BN, KS];
        };
        assert.deepEqual(at(2, [50280], 768), [8, 64, 1]);
        assert.deepEqual(at(9, [50280], 768), [16, 64, 1]);
        assert.deepEqual(at(32, [50280], 768), [32, 64, 1]);
        assert.deepEqual(at(512, [1536, 1536], 768), [64, 64, 1]);
        assert.deepEqual(at(512, [768], 1536), [64, 32, 2]);
        assert.deepEqual(at(2, [4101], 257, 64), [8, 32, 4]);
      });

      await t.step("conv1dSilu() matches js and carries its state over calls (l 7, 11, 1)", async () => {
        const [b, l, l2, c, k] = [2, 7, 11, 19, 4];
        const [a, g] = await both(gpu, (be) => ({
          out: be.zeros([b, l, c]),
          outLong: be.zeros([b, l2, c]),
          out2: be.zeros([b, 1, c]),
          x: be.upload(rand(b * l * c, 9), [b, l, c]),
          xLong: be.upload(rand(b * l2 * c, 70), [b, l2, c]),
          x2: be.upload(rand(b * c, 10), [b, 1, c]),
          w: be.upload(rand(c * k, 11), [c, k]),
          bias: be.upload(rand(c, 12), [c]),
          state: be.upload(rand(b * c * (k - 1), 13), [b, c, k - 1]),
        }), (be, x) => {
          be.conv1dSilu(x.out, x.x, x.w, x.bias, x.state);
          be.conv1dSilu(x.outLong, x.xLong, x.w, x.bias, x.state);
          be.conv1dSilu(x.out2, x.x2, x.w, undefined, x.state);
        }, ["out", "outLong", "out2", "state"]);
        for (let j = 0; j < 4; j++) close(a[j], g[j], 1e-5, `conv1dSilu output ${j}`);
      });

      for (const l of [1, 9, 45]) {
        await t.step(`selectiveScan() matches js for l ${l}`, async () => {
          const [b, di, n] = [2, 37, 5];
          const [a, g] = await both(
            gpu,
            (be) => ({
              y: be.zeros([b, l, di]),
              x: be.upload(rand(b * l * di, 14), [b, l, di]),
              dt: be.upload(rand(b * l * di, 15, -4, 2), [b, l, di]),
              A: be.upload(rand(di * n, 16, -2, -0.1), [di, n]),
              B: be.upload(rand(b * l * n, 17), [b, l, n]),
              C: be.upload(rand(b * l * n, 18), [b, l, n]),
              D: be.upload(rand(di, 19), [di]),
              z: be.upload(rand(b * l * di, 20), [b, l, di]),
              h: be.upload(rand(b * di * n, 21), [b, di, n]),
            }),
            (be, x) => be.selectiveScan({ ...x } as never),
            ["y", "h"],
          );
          close(a[0], g[0], 2e-5, "selectiveScan y");
          close(a[1], g[1], 2e-5, "selectiveScan h");
        });
      }

      for (const [l, b] of [[1, 3], [2, 1]]) {
        await t.step(
          `linear(dt) -> selectiveScan() (dt_proj fused) matches js for l ${l}, b ${b}`,
          async () => {
            const [di, n, r] = [37, 5, 7];
            const [a, g] = await both(gpu, (be) => ({
              y: be.zeros([b, l, di]),
              x: be.upload(rand(b * l * di, 60), [b, l, di]),
              dtLow: be.upload(rand(b * l * r, 61), [b * l, r]),
              dtW: be.uploadMatrix(rand(di * r, 62), [di, r]),
              dtB: be.upload(rand(di, 63, -3, 0), [di]),
              dt: be.zeros([b, l, di]),
              A: be.upload(rand(di * n, 64, -2, -0.1), [di, n]),
              B: be.upload(rand(b * l * n, 65), [b, l, n]),
              C: be.upload(rand(b * l * n, 66), [b, l, n]),
              D: be.upload(rand(di, 67), [di]),
              z: be.upload(rand(b * l * di, 68), [b, l, di]),
              h: be.upload(rand(b * di * n, 69), [b, di, n]),
            }), (be, x) => {
              be.linear(x.dt, x.dtW, x.dtLow, x.dtB);
              be.selectiveScan({ y: x.y, x: x.x, dt: x.dt, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z, h: x.h });
            }, ["y", "h", "dt"]);
            for (let j = 0; j < 3; j++) close(a[j], g[j], 2e-5, `fused scan output ${j}`);
          },
        );
      }

      // n 16: the halving sums over 16 states of scan_chunks (n 5 above takes its step-at-a-time sums)
      // and the written-out path of scan_step (4 states per thread); the carry pass in one round and in
      // several; dt_proj's products past 16 per thread.
      const scanShapes: [number, number, number, Partial<typeof SCAN_TUNING>][] = [
        [1, 3, 7, {}],
        [1, 2, 70, {}],
        [1, 3, 7, { stepStates: 1 }],
        [77, 2, 0, {}],
        [77, 2, 0, { carryChunks: 2 }],
      ];
      for (const [l, b, r, tuning] of scanShapes) {
        await t.step(
          `selectiveScan() with n 16 matches js for l ${l}, b ${b}, dt_proj ${r ? "fused" : "apart"}, ${
            JSON.stringify(tuning)
          }`,
          async () => {
            const [di, n] = [37, 16];
            const saved = { ...SCAN_TUNING };
            Object.assign(SCAN_TUNING, tuning);
            try {
              const [a, g] = await both(gpu, (be) => ({
                y: be.zeros([b, l, di]),
                x: be.upload(rand(b * l * di, 80), [b, l, di]),
                dtLow: be.upload(rand(b * l * Math.max(r, 1), 81, -0.3, 0.3), [b * l, Math.max(r, 1)]),
                dtW: be.uploadMatrix(rand(di * Math.max(r, 1), 82, -0.3, 0.3), [di, Math.max(r, 1)]),
                dtB: be.upload(rand(di, 83, -3, 0), [di]),
                dt: be.upload(rand(b * l * di, 84, -4, 2), [b, l, di]),
                A: be.upload(rand(di * n, 85, -2, -0.1), [di, n]),
                B: be.upload(rand(b * l * n, 86), [b, l, n]),
                C: be.upload(rand(b * l * n, 87), [b, l, n]),
                D: be.upload(rand(di, 88), [di]),
                z: be.upload(rand(b * l * di, 89), [b, l, di]),
                h: be.upload(rand(b * di * n, 90), [b, di, n]),
              }), (be, x) => {
                if (r) be.linear(x.dt, x.dtW, x.dtLow, x.dtB);
                be.selectiveScan({
                  y: x.y,
                  x: x.x,
                  dt: x.dt,
                  A: x.A,
                  B: x.B,
                  C: x.C,
                  D: x.D,
                  z: x.z,
                  h: x.h,
                });
              }, ["y", "h", "dt"]);
              for (let j = 0; j < 3; j++) close(a[j], g[j], 2e-5, `selectiveScan n 16 output ${j}`);
            } finally {
              Object.assign(SCAN_TUNING, saved);
            }
          },
        );
      }

      for (const [l, h, g] of [[1, 6, 3], [6, 6, 3], [45, 3, 1], [70, 3, 1], [70, 6, 3]]) {
        await t.step(`ssdScan() then one step matches js for l ${l}, h ${h}, g ${g}`, async () => {
          const [b, p, n] = [2, 5, 7];
          const [a, r] = await both(
            gpu,
            (be) => ({
              y: be.zeros([b, l, h, p]),
              x: be.upload(rand(b * l * h * p, 22), [b, l, h, p]),
              dt: be.upload(rand(b * l * h, 23, -3, 3), [b, l, h]),
              dtBias: be.upload(rand(h, 24), [h]),
              A: be.upload(rand(h, 25, -2, -0.1), [h]),
              B: be.upload(rand(b * l * g * n, 26), [b, l, g, n]),
              C: be.upload(rand(b * l * g * n, 27), [b, l, g, n]),
              D: be.upload(rand(h, 28), [h]),
              state: be.upload(rand(b * h * p * n, 29), [b, h, p, n]),
              y1: be.zeros([b, 1, h, p]),
              x1: be.upload(rand(b * h * p, 40), [b, 1, h, p]),
              dt1: be.upload(rand(b * h, 41, -3, 3), [b, 1, h]),
              B1: be.upload(rand(b * g * n, 42), [b, 1, g, n]),
              C1: be.upload(rand(b * g * n, 43), [b, 1, g, n]),
            }),
            (be, x) => {
              const common = { dtBias: x.dtBias, A: x.A, D: x.D, state: x.state, dtMin: 0.01, dtMax: 2 };
              be.ssdScan({ ...common, y: x.y, x: x.x, dt: x.dt, B: x.B, C: x.C, chunkSize: 16 });
              be.ssdScan({ ...common, y: x.y1, x: x.x1, dt: x.dt1, B: x.B1, C: x.C1, chunkSize: 16 });
            },
            ["y", "y1", "state"],
          );
          close(a[0], r[0], 2e-5, "ssdScan y");
          close(a[1], r[1], 2e-5, "ssdScan y of the next step");
          close(a[2], r[2], 2e-5, "ssdScan state");
        });
      }

      await t.step("gatedRmsNorm() matches js in place", async () => {
        const [m, di, gs] = [3, 42, 14];
        const [a, b] = await both(
          gpu,
          (be) => ({
            y: be.upload(rand(m * di, 30, -2, 2), [m, di]),
            z: be.upload(rand(m * di, 31, -2, 2), [m, di]),
            w: be.upload(rand(di, 32), [di]),
          }),
          (be, x) => be.gatedRmsNorm(x.y, x.y, x.z, x.w, 1e-5, gs),
          ["y"],
        );
        close(a[0], b[0], 1e-5, "gatedRmsNorm");
      });

      await t.step(
        "conv1dSilu() and gatedRmsNorm() on one weight with other tensors in turn match js",
        async () => {
          // One-dispatch convs and gated norms are recorded once per weight and replayed while the
          // tensors and scalars stay the same: each change here must be seen.
          const [c, k, gs] = [42, 4, 14];
          const [a, b] = await both(gpu, (be) => ({
            x1: be.upload(rand(c, 110, -2, 2), [1, 1, c]),
            x3: be.upload(rand(c, 118, -2, 2), [1, 1, c]),
            x2: be.upload(rand(2 * c, 111, -2, 2), [2, 1, c]),
            cw: be.upload(rand(c * k, 112), [c, k]),
            cb: be.upload(rand(c, 113), [c]),
            s1: be.upload(rand(c * (k - 1), 114), [1, c, k - 1]),
            s3: be.upload(rand(c * (k - 1), 119), [1, c, k - 1]),
            s2: be.upload(rand(2 * c * (k - 1), 115), [2, c, k - 1]),
            o1: be.zeros([1, 1, c]),
            o3: be.zeros([1, 1, c]),
            o2: be.zeros([2, 1, c]),
            z1: be.upload(rand(c, 116, -2, 2), [1, c]),
            z3: be.upload(rand(c, 120, -2, 2), [1, c]),
            z2: be.upload(rand(2 * c, 121, -2, 2), [2, c]),
            nw: be.upload(rand(c, 117), [c]),
            g1: be.zeros([1, c]),
            g3: be.zeros([1, c]),
            g2: be.zeros([2, c]),
            acc: be.zeros([1, c]),
          }), (be, x) => {
            // Each call changes one thing from the one before; every output is summed into acc as
            // it is made (later calls overwrite them).
            const conv = (o: Tensor, xx: Tensor, bias: Tensor | undefined, st: Tensor) => {
              be.conv1dSilu(o, xx, x.cw, bias, st);
              be.add(x.acc, x.acc, o);
            };
            conv(x.o1, x.x1, x.cb, x.s1);
            conv(x.o1, x.x1, x.cb, x.s1); // nothing: the state moved on
            conv(x.o3, x.x1, x.cb, x.s1); // the output
            conv(x.o3, x.x1, undefined, x.s1); // the bias
            conv(x.o3, x.x3, undefined, x.s1); // the input
            conv(x.o3, x.x3, undefined, x.s3); // the state
            be.conv1dSilu(x.o2, x.x2, x.cw, x.cb, x.s2); // two sequences
            const norm = (o: Tensor, y: Tensor, z: Tensor, eps: number, groupSize: number) => {
              be.gatedRmsNorm(o, y, z, x.nw, eps, groupSize);
              be.add(x.acc, x.acc, o);
            };
            norm(x.g1, x.o1, x.z1, 1e-5, gs);
            norm(x.g3, x.o1, x.z1, 1e-5, gs); // the output
            norm(x.g3, x.o3, x.z1, 1e-5, gs); // y
            norm(x.g3, x.o3, x.z3, 1e-5, gs); // z
            norm(x.g3, x.o3, x.z3, 1e-1, gs); // eps
            norm(x.g3, x.o3, x.z3, 1e-1, 3 * gs); // the group size
            be.gatedRmsNorm(x.o2, x.o2, x.z2, x.nw, 1e-5, gs); // two rows, in place
          }, ["acc", "o2", "s1", "s2", "s3"]);
          for (let j = 0; j < a.length; j++) close(a[j], b[j], 2e-5, `output ${j}`);
        },
      );

      await t.step("copy() copies ranges, within one tensor too", async () => {
        const [a, b] = await both(gpu, (be) => ({
          s: be.upload(rand(50, 33), [50]),
          d: be.zeros([30]),
        }), (be, x) => {
          be.copy(x.d, x.s, 3, 7, 20);
          be.copy(x.s, x.s, 0, 30, 11);
        }, ["d", "s"]);
        close(a[0], b[0], 0, "copy");
        close(a[1], b[1], 0, "copy within");
        const one = gpu.zeros([8]);
        assert.throws(() => gpu.copy(one, one, 0, 2, 4), BackendError);
      });

      await t.step(
        "free() recycles buffers as zeros, cleared in order with recorded ops and writes",
        async () => {
          const x = gpu.upload(rand(64, 34), [64]);
          const y = gpu.zeros([64]);
          gpu.copy(y, x); // recorded, not yet submitted
          gpu.free(y);
          const z = gpu.zeros([64]); // y's buffer: cleared after the copy
          const w = gpu.zeros([64]);
          gpu.copy(w, x);
          gpu.copy(w, z, 0, 0, 32); // reads the cleared z
          assert.deepEqual([...await gpu.read(z)], new Array(64).fill(0));
          const want = await gpu.read(x);
          want.fill(0, 0, 32);
          assert.deepEqual([...await gpu.read(w)], [...want]);
          gpu.copy(z, x);
          gpu.free(z);
          const v = gpu.zeros([64]); // dirty again: cleared, then written
          gpu.write(v, Float32Array.from([1, 2, 3]), 5);
          const got = await gpu.read(v);
          assert.deepEqual([...got.subarray(4, 9)], [0, 1, 2, 3, 0]);
          assert.equal(got.reduce((a, b) => a + Math.abs(b), 0), 6);
        },
      );

      await t.step("mamba1State() is zero when the pool hands back dirty buffers", async () => {
        const c = { dInner: 24, dConv: 4, dState: 16 } as ModelConfig;
        const dirty = mamba1State(gpu, c, 2);
        gpu.write(dirty.conv, rand(2 * 24 * 3, 35));
        gpu.write(dirty.ssm, rand(2 * 24 * 16, 36));
        gpu.free(dirty.conv);
        gpu.free(dirty.ssm);
        const st = mamba1State(gpu, c, 2);
        for (const t of [st.conv, st.ssm]) {
          const got = await gpu.read(t);
          assert.equal(got.reduce((a, b) => a + Math.abs(b), 0), 0);
        }
      });

      await t.step("f16 matrices: linear() and embed() match js on f16-rounded weights", async () => {
        const f16 = await createWebGpuBackend({ dtype: "f16" });
        try {
          for (
            const [m, o, i] of [[1, 29, 43], [2, 64, 768], [9, 33, 21], [3, 4100, 72], [70, 300, 33], [
              40,
              37,
              333,
            ]]
          ) {
            const w = rand(o * i, 35);
            const x = rand(m * i, 36);
            const js = new JsBackend();
            const want = js.zeros([m, o]);
            js.linear(want, js.upload(halfRound(w), [o, i]), js.upload(x, [m, i]));
            const got = f16.zeros([m, o]);
            f16.linear(got, f16.uploadMatrix(w, [o, i]), f16.upload(x, [m, i]));
            close(await js.read(want), await f16.read(got), 1e-4, `f16 linear ${m}x${o}x${i}`);
          }
          const table = rand(7 * 9, 37);
          const ids = f16.zeros([2], "i32");
          f16.write(ids, Int32Array.from([6, 1]));
          const out = f16.zeros([2, 9]);
          const tab = f16.uploadMatrix(table, [7, 9]);
          f16.embed(out, tab, ids);
          const r = halfRound(table);
          close(
            await f16.read(out),
            Float32Array.from([...r.subarray(54, 63), ...r.subarray(9, 18)]),
            0,
            "f16 embed",
          );
          close(await f16.read(tab), r, 0, "f16 matrix read back");
        } finally {
          await f16.dispose();
        }
      });
    } finally {
      await gpu.dispose();
    }
  },
});

/**
 * The split-k reduce's epilogues beyond the products (wgsl/splitk_reduce.wgsl): the conv1d + SiLU of
 * one step and the partial argmaxes of greedy sampling, on `gpu` (shared with the split-k test: its
 * pipelines compile once on llvmpipe).
 */
async function splitkEpilogueSteps(t: Deno.TestContext, gpu: WebGpuBackend, dtype: "f32" | "f16") {
  const weights = (n: number, seed: number) => dtype === "f16" ? halfRound(rand(n, seed)) : rand(n, seed);
  // m sequences, d (odd), di (odd), k, conv bias, split-k mode ("never": the fallback, matvec then
  // conv1d_silu); "always" sends these small products to split-k as the mamba-130m shape goes there
  const convCases: [number, number, number, number, boolean, "always" | "never" | "auto"][] = [
    [2, 45, 37, 4, true, "always"],
    [3, 77, 67, 3, false, "always"],
    [17, 45, 37, 4, true, "always"],
    [32, 130, 67, 4, true, "always"],
    [3, 45, 37, 4, true, "never"],
    [17, 45, 37, 4, false, "auto"],
  ];
  for (const [m, d, di, k, bias, mode] of convCases) {
    await t.step(
      `rmsNorm() -> linear() z, x -> conv1dSilu() for ${dtype}, m ${m}, d ${d}, di ${di}, k ${k}, split-k ${mode}`,
      async () => {
        const wx = weights(di * d, 82), wz = weights(di * d, 83);
        const got: Float32Array[][] = [];
        LINEAR_TUNING.splitk = mode;
        try {
          for (const be of [new JsBackend(), gpu] as Backend[]) {
            const x = {
              hidden: be.upload(rand(m * d, 80, -2, 2), [m, d]),
              nw: be.upload(rand(d, 81), [d]),
              xn: be.zeros([m, d]),
              wx: be.uploadMatrix(wx, [di, d]),
              wz: be.uploadMatrix(wz, [di, d]),
              bz: be.upload(rand(di, 84), [di]),
              x: be.zeros([m, 1, di]),
              z: be.zeros([m, 1, di]),
              xc: be.zeros([m, 1, di]),
              cw: be.upload(rand(di * k, 85), [di, k]),
              cb: be.upload(rand(di, 86), [di]),
              state: be.upload(rand(m * di * (k - 1), 87), [m, di, k - 1]),
            };
            const step = () => {
              be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
              // z first: the fused conv must find x's product wherever it is in the group
              be.linear(x.z, x.wz, x.xn, x.bz);
              be.linear(x.x, x.wx, x.xn);
              be.conv1dSilu(x.xc, x.x, x.cw, bias ? x.cb : undefined, x.state);
            };
            if (be === gpu && mode === "always") {
              // fused: split-k and its reduce, no conv1d_silu dispatch (recorded, then dropped)
              assert.equal(gpu.recordOnly(step).dispatches, 2);
            }
            const r: Float32Array[] = [];
            // Later steps replay the kept dispatches on new contents.
            for (let s = 0; s < 3; s++) {
              if (s) be.write(x.hidden, rand(m * d, 88 + s, -2, 2));
              if (s === 2) be.write(x.nw, rand(d, 89));
              step();
              for (const key of ["xn", "x", "z", "xc", "state"] as const) r.push(await be.read(x[key]));
            }
            got.push(r);
          }
        } finally {
          LINEAR_TUNING.splitk = "auto";
        }
        const [a, g] = got;
        for (let j = 0; j < a.length; j++) {
          const scale = a[j].reduce((s, v) => Math.max(s, Math.abs(v)), 1);
          close(a[j], g[j], 2e-6 * scale * Math.sqrt(d), `output ${j % 5} of step ${j / 5 | 0}`);
        }
      },
    );
  }
  for (const m of [2, 3, 17, 32]) {
    await t.step(
      `rmsNorm() -> linear() -> sample() greedy (fused into split-k) matches js for ${dtype}, m ${m}, ties to the lowest id`,
      async () => {
        const [d, v] = [37, 4099]; // 4099 rows: split-k, 17 partial argmaxes per row
        const w = weights(v * d, 90);
        // rows 3, 5, 700 and 4098 equal (a tie inside a workgroup and across), row 500 zero
        for (const r of [5, 700, 4098]) w.set(w.subarray(3 * d, 4 * d), r * d);
        w.fill(0, 500 * d, 501 * d);
        const bias = rand(v, 93, -0.5, 0.5);
        bias[10] = NaN; // never wins
        bias[11] = -Infinity;
        const tied = bias.slice();
        for (const r of [3, 5, 700, 4098]) tied[r] = 50; // the tied rows lead every sequence
        const got: number[][] = [];
        for (const be of [new JsBackend(), gpu] as Backend[]) {
          const hidden = be.upload(rand(m * d, 91, -2, 2), [m, d]);
          const nw = be.upload(rand(d, 92), [d]);
          const head = be.uploadMatrix(w, [v, d]), b = be.upload(bias, [v]);
          const xn = be.zeros([m, d]), logits = be.zeros([m, v]), ids = be.zeros([4, m], "i32");
          for (let s = 0; s < 4; s++) {
            if (s === 1) be.write(hidden, rand(m * d, 95, -2, 2));
            if (s === 2) be.write(b, tied);
            if (s === 3) {
              // sequence 1 all NaN: id 0, as js
              be.write(b, bias);
              be.write(hidden, new Float32Array(d).fill(NaN), d);
            }
            be.rmsNorm(xn, hidden, nw, 1e-5);
            be.linear(logits, head, xn, b);
            be.sample({ out: ids, outRow: s, logits, params: GREEDY, step: s });
          }
          got.push([...await be.readIds(ids)]);
        }
        assert.deepEqual(got[1], got[0]);
        assert.ok(got[0].slice(2 * m, 3 * m).every((id) => id === 3), "the tie goes to row 3");
        assert.equal(got[0][3 * m + 1], 0, "an all-NaN row gives id 0");
      },
    );
  }
  await t.step(
    `sample() greedy after split-k keeps the argmax kernel with a seen mask, ${dtype}`,
    async () => {
      const [m, d, v] = [3, 37, 4099];
      const w = weights(v * d, 96);
      const seen = new Float32Array(m * v).map((_, i) => (i % 5 === 0 ? 1 : 0));
      const params = { ...GREEDY, repetitionPenalty: 1.4 };
      const got: number[][] = [];
      for (const be of [new JsBackend(), gpu] as Backend[]) {
        const x = be.upload(rand(m * d, 97, -2, 2), [m, d]);
        const logits = be.zeros([m, v]), ids = be.zeros([1, m], "i32");
        be.linear(logits, be.uploadMatrix(w, [v, d]), x);
        be.sample({ out: ids, outRow: 0, logits, params, step: 0, seen: be.upload(seen, [m, v]) });
        got.push([...await be.readIds(ids)]);
      }
      assert.deepEqual(got[1], got[0]);
    },
  );
}

Deno.test({
  name: "webgpu linear() on 2..32 rows of x (split-k) matches js with its fusions, f32 and f16",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await t.step(
      "splitkTile() covers m with 4..32 rows and cuts k into slices while workgroups are few",
      () => {
        const at = (m: number, rows: number[], x4: number, f16: boolean) => {
          const { MB, WG, RW, KC4, S } = splitkTile(m, rows, x4, f16);
          return [MB, WG, RW, KC4, S];
        };
        // f16: a thread per output row, slices of one chunk of 16 vec4 (at most 24)
        assert.deepEqual(at(2, [1536, 1536], 192, true), [4, 128, 1, 16, 12]);
        assert.deepEqual(at(32, [1536, 1536], 192, true), [32, 128, 1, 16, 12]);
        assert.deepEqual(at(16, [768], 384, true), [16, 128, 1, 16, 24]);
        assert.deepEqual(at(17, [768], 384, true), [32, 128, 1, 16, 24]);
        assert.deepEqual(at(32, [1536], 12, true), [32, 128, 1, 16, 1]);
        // f32: a thread per output row, chunks of 4 vec4, slices until 384 workgroups (at most 48)
        assert.deepEqual(at(2, [1536, 1536], 192, false), [4, 128, 1, 4, 16]);
        assert.deepEqual(at(32, [1536, 1536], 192, false), [32, 128, 1, 4, 16]);
        assert.deepEqual(at(16, [768], 384, false), [16, 128, 1, 4, 48]);
        assert.deepEqual(at(17, [768], 384, false), [32, 128, 1, 4, 48]);
        assert.deepEqual(at(32, [1536], 12, false), [32, 128, 1, 4, 3]);
        // two rows per thread for the lm_head, a few slices, chunks of 8 vec4 in f16 and 4 in f32
        assert.deepEqual(at(32, [50280], 192, true), [32, 128, 2, 8, 2]);
        assert.deepEqual(at(32, [50280], 192, false), [32, 128, 2, 4, 2]);
      },
    );
    // m, d (columns of x), rows of the three matrices on the normed x, a tile instead of
    // splitkTile's; [31, 1100, 4099, ...] walks two chunks of k per slice, [5, 203, 300, ...] four
    // (the last slice: three, the last partial) with two rows per thread (the second tile partly live)
    const cases: [number, number, number, number, number, Partial<SplitkTile>?][] = [
      [2, 301, 37, 70, 5],
      [3, 45, 129, 9, 66],
      [17, 130, 65, 33, 7],
      [31, 1100, 4099, 13, 3],
      [32, 77, 41, 40, 31],
      [5, 203, 300, 7, 9, { RW: 2, KC4: 8, S: 2 }],
      // full tiles and chunks, m = MB = 16: the pipelines without bounds logic (FULL), one chunk a slice
      // (the products' loop over four columns four times in f32, twice in f16) and two chunks with two
      // rows per thread
      [16, 256, 256, 128, 128, { RW: 1, KC4: 16, S: 4 }],
      [16, 256, 256, 256, 512, { RW: 2, KC4: 8, S: 4 }],
    ];
    await t.step("splitkFull() takes full chunks and tiles with m = MB only", () => {
      const tile = { MB: 32, WG: 128, RW: 1, KC4: 16, S: 12 };
      assert.equal(splitkFull(tile, 32, [1536, 1536], 768, 192), true);
      assert.equal(splitkFull(tile, 31, [1536, 1536], 768, 192), false);
      assert.equal(splitkFull(tile, 32, [1536, 1500], 768, 192), false);
      assert.equal(splitkFull(tile, 32, [1536], 766, 192), false);
      assert.equal(splitkFull(tile, 32, [1536], 720, 180), false);
      assert.equal(splitkFull({ ...tile, MB: 16, RW: 2, KC4: 8 }, 16, [256, 512], 256, 64), true);
      // the cases above with full tiles
      for (const [m, d, o1, o2, o3, t] of cases) {
        const full = splitkFull({ ...splitkTile(m, [o1, o2, o3], d / 4), ...t }, m, [o1, o2, o3], d, d / 4);
        assert.equal(full, m === 16, `m ${m}, d ${d}`);
      }
    });
    await t.step(
      "linear() takes split-k (two dispatches) for 32 x 768 x 768, matvec for 16 x 768 x 1536 and 32 x 80 x 1536",
      async () => {
        const gpu = await createWebGpuBackend();
        try {
          const count = (m: number, rows: number, cols: number) => {
            const w = gpu.uploadMatrix(rand(rows * cols, 60), [rows, cols]);
            const x = gpu.upload(rand(m * cols, 61), [m, cols]), y = gpu.zeros([m, rows]);
            return gpu.recordOnly(() => gpu.linear(y, w, x)).dispatches;
          };
          assert.equal(count(32, 768, 768), 2);
          assert.equal(count(16, 768, 1536), 1);
          assert.equal(count(32, 80, 1536), 1);
        } finally {
          await gpu.dispose();
        }
      },
    );
    for (const dtype of ["f32", "f16"] as const) {
      const gpu = await createWebGpuBackend({ dtype });
      try {
        for (const [m, d, o1, o2, o3, tile] of cases) {
          await t.step(
            `rmsNorm() -> linear() x3 (bias) -> linear() -> add(), twice, matches js for ${dtype}, m ${m}, d ${d}`,
            async () => {
              const weights = (n: number, seed: number) =>
                dtype === "f16" ? halfRound(rand(n, seed)) : rand(n, seed);
              const w1 = weights(o1 * d, 52), w2 = weights(o2 * d, 53), w3 = weights(o3 * d, 54);
              const wo = weights(d * o1, 56);
              const got: Float32Array[][] = [];
              // split-k at these small sizes too (the backend sends them to matvec)
              Object.assign(LINEAR_TUNING, { tile, splitk: "always" });
              try {
                for (const be of [new JsBackend(), gpu] as Backend[]) {
                  const x = {
                    hidden: be.upload(rand(m * d, 50, -2, 2), [m, d]),
                    nw: be.upload(rand(d, 51), [d]),
                    xn: be.zeros([m, d]),
                    w1: be.uploadMatrix(w1, [o1, d]),
                    w2: be.uploadMatrix(w2, [o2, d]),
                    w3: be.uploadMatrix(w3, [o3, d]),
                    b2: be.upload(rand(o2, 55), [o2]),
                    y1: be.zeros([m, o1]),
                    y2: be.zeros([m, o2]),
                    y3: be.zeros([m, o3]),
                    wo: be.uploadMatrix(wo, [d, o1]),
                    o: be.zeros([m, d]),
                  };
                  const r: Float32Array[] = [];
                  // The second step replays the first one's kept dispatches on new contents (hidden
                  // has the residual added, nw another scale).
                  for (let step = 0; step < 2; step++) {
                    if (step) be.write(x.nw, rand(d, 57));
                    be.rmsNorm(x.xn, x.hidden, x.nw, 1e-5);
                    be.linear(x.y1, x.w1, x.xn);
                    be.linear(x.y2, x.w2, x.xn, x.b2);
                    be.linear(x.y3, x.w3, x.xn);
                    be.linear(x.o, x.wo, x.y1);
                    be.add(x.hidden, x.hidden, x.o);
                    for (const k of ["xn", "y1", "y2", "y3", "o", "hidden"] as const) {
                      r.push(await be.read(x[k]));
                    }
                  }
                  got.push(r);
                }
              } finally {
                Object.assign(LINEAR_TUNING, { tile: undefined, splitk: "auto" });
              }
              const [a, g] = got;
              for (let j = 0; j < a.length; j++) {
                const scale = a[j].reduce((s, v) => Math.max(s, Math.abs(v)), 1);
                close(
                  a[j],
                  g[j],
                  2e-6 * scale * Math.sqrt(Math.max(d, o1)),
                  `output ${j % 6} of step ${j / 6 | 0}`,
                );
              }
            },
          );
        }
        await splitkEpilogueSteps(t, gpu, dtype);
      } finally {
        await gpu.dispose();
      }
    }
  },
});

Deno.test({
  name: "webgpu sample() matches the js sampler on random logits",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const gpu = await createWebGpuBackend();
    const js = new JsBackend();
    const [b, v] = [3, 1003];
    // Logits with ties (rounded to 1/8) and a few repeated maxima, so tie-breaking by id matters.
    const logits = rand(b * v, 40, -6, 6).map((x) => Math.round(x * 8) / 8);
    const seenData = new Float32Array(b * v).map((_, i) => (i % 7 === 0 ? 1 : 0));
    const base: SamplingParams = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 7 };
    const cases: [string, Partial<SamplingParams>][] = [
      ["greedy", { temperature: 0 }],
      ["greedy with repetition penalty", { temperature: 0, repetitionPenalty: 1.3 }],
      ["temperature", { temperature: 0.8 }],
      ["top-k", { temperature: 1.1, topK: 5 }],
      ["top-p", { temperature: 0.9, topP: 0.6 }],
      ["min-p", { temperature: 1, minP: 0.2 }],
      ["top-k, top-p, min-p and penalty", {
        temperature: 0.7,
        topK: 40,
        topP: 0.9,
        minP: 0.05,
        repetitionPenalty: 1.2,
      }],
      ["top-k of 1", { temperature: 2, topK: 1 }],
    ];
    try {
      for (const [what, over] of cases) {
        await t.step(`sample() matches js: ${what}`, async () => {
          const params = { ...base, ...over };
          const usePenalty = params.repetitionPenalty !== 1;
          const res: Int32Array[] = [];
          const seens: Float32Array[] = [];
          for (const be of [js, gpu] as Backend[]) {
            const lg = be.upload(logits, [b, v]);
            const out = be.zeros([4, b], "i32");
            const seen = usePenalty ? be.upload(seenData, [b, v]) : undefined;
            for (let step = 0; step < 4; step++) {
              be.sample({ out, outRow: step, logits: lg, params, step, seen });
            }
            res.push(await be.readIds(out));
            if (seen) seens.push(await be.read(seen));
          }
          assert.deepEqual([...res[1]], [...res[0]]);
          if (usePenalty) assert.deepEqual([...seens[1]], [...seens[0]]);
        });
      }
    } finally {
      await gpu.dispose();
    }
  },
});

Deno.test({
  name: "probeWebGpu() refuses a fallback adapter for auto, with the reason",
  ignore,
  async fn() {
    const why = await probeWebGpu();
    assert.equal(why === undefined, !isFallback(adapter!));
    if (why !== undefined) assert.match(why, /fallback/);
  },
});

Deno.test({
  name: "createWebGpuBackend() refuses a dtype it cannot keep",
  ignore,
  async fn() {
    await assert.rejects(() => createWebGpuBackend({ dtype: "q8" }), BackendError);
  },
});

export type { WebGpuBackend };

Deno.test({
  name:
    "webgpu mamba1Block() with x_proj fused (1 and 2..32 sequences) matches js, and falls back where it must",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    // m, d, di, r, n (16: 4 states a thread; 6: 1), k, XPROJ_TUNING. m 1 (matvec1 + scan): di 37 and 50
    // not a multiple of rowsPerGroup; di 300 with 38 groups of 8 channels and scan workgroups of 32
    // threads: more values (39) than threads, and more groups than the 32 a thread's reads are written
    // out for. m 2..32 (split-k's reduce + scan), with splitkSeqs sequences per workgroup of the
    // reduce's conv (4 is 2 at m 2): di 300, the reduce's last group of channels is part full and the
    // scan's last workgroup of each sequence has 44 live channels; m 3 and 17, the last block of
    // sequences part full; r 100, r + 2 n = 132 rows of x_proj, one thread per row.
    const shapes: [number, number, number, number, number, number, Partial<typeof XPROJ_TUNING>][] = [
      [1, 29, 37, 5, 16, 4, {}],
      [1, 21, 50, 3, 6, 3, {}],
      [1, 21, 300, 7, 16, 4, { rowsPerGroup: 8, scanGroup: 32 }],
      [2, 29, 37, 5, 16, 4, { splitkSeqs: 4 }],
      [3, 21, 300, 7, 6, 3, { splitkSeqs: 4 }],
      [17, 21, 45, 100, 16, 4, { splitkSeqs: 8 }],
      [32, 29, 300, 5, 16, 4, { splitkSeqs: 1 }],
      [32, 29, 300, 5, 16, 4, { splitkSeqs: 4 }],
    ];
    const names = ["xn", "x", "z", "xc", "dtLow", "B", "C", "dt", "y", "o"] as const;
    const c = { normEps: 1e-5 } as ModelConfig;
    for (const dtype of ["f32", "f16"] as const) {
      const gpu = await createWebGpuBackend({ dtype });
      const saved = { ...XPROJ_TUNING };
      try {
        for (const [si, [m, d, di, r, n, k, tuning]] of shapes.entries()) {
          const round = (v: Float32Array) => dtype === "f16" ? halfRound(v) : v;
          const setup = (be: Backend) => {
            const mat = (rows: number, cols: number, seed: number, s = 1) =>
              be.uploadMatrix(round(rand(rows * cols, seed, -s, s)), [rows, cols]);
            const w: Mamba1Weights = {
              norm: be.upload(rand(d, 300, 0.5, 1.5), [d]),
              inX: mat(di, d, 301),
              inZ: mat(di, d, 302),
              convW: be.upload(rand(di * k, 303), [di, k]),
              convB: be.upload(rand(di, 304), [di]),
              xDt: mat(r, di, 305, 0.5),
              xB: mat(n, di, 306, 0.5),
              xC: mat(n, di, 307, 0.5),
              dtW: mat(di, r, 308, 0.3),
              dtB: be.upload(rand(di, 309, -3, -1), [di]),
              A: be.upload(rand(di * n, 310, -2, -0.1), [di, n]),
              D: be.upload(rand(di, 311), [di]),
              out: mat(d, di, 312, 0.3),
            };
            const cfg = { dModel: d, dInner: di, dState: n, dtRank: r } as ModelConfig;
            return {
              w,
              s: mamba1Scratch(be, cfg, m, 1),
              st: {
                conv: be.upload(rand(m * di * (k - 1), 313), [m, di, k - 1]),
                ssm: be.upload(rand(m * di * n, 314, -0.5, 0.5), [m, di, n]),
              },
              hidden: be.upload(rand(m * d, 315, -2, 2), [m, 1, d]),
              other: be.upload(rand(m * n, 316), [m, n]),
              spare: be.zeros([m, n]),
              xBias: be.upload(rand(r, 317), [r]),
            };
          };
          type Setup = ReturnType<typeof setup>;
          // The block's ops up to x_proj and dt_proj (x_proj's dt_low with `bias`) ...
          const front = (be: Backend, x: Setup, bias?: Tensor) => {
            const { w, s, st } = x;
            be.rmsNorm(s.xn, x.hidden, w.norm, c.normEps);
            be.linear(s.x, w.inX, s.xn);
            be.linear(s.z, w.inZ, s.xn);
            be.conv1dSilu(s.xc, s.x, w.convW, w.convB, st.conv);
            be.linear(s.dtLow, w.xDt, s.xc, bias);
            be.linear(s.B, w.xB, s.xc);
            be.linear(s.C, w.xC, s.xc);
            be.linear(s.dt, w.dtW, s.dtLow, w.dtB);
          };
          // ... and the rest: the scan (on B), then out_proj and the residual unless upToScan
          const back = (be: Backend, x: Setup, B = x.s.B, upToScan = false) => {
            const { w, s, st } = x;
            be.selectiveScan({ y: s.y, x: s.xc, dt: s.dt, A: w.A, B, C: s.C, D: w.D, z: s.z, h: st.ssm });
            if (upToScan) return;
            be.linear(s.o, w.out, s.y);
            be.add(x.hidden, x.hidden, s.o);
          };
          const cases: [string, (be: Backend, x: Setup) => Promise<void> | void][] = [
            ["fused", (be, x) => mamba1Block(be, c, x.w, x.s, x.st, x.hidden)],
            ["B read before the scan", async (be, x) => {
              front(be, x);
              back(be, x);
              // the ops again, stopped before the scan by a read of x_proj's output
              front(be, x);
              be.write(x.other, await be.read(x.s.B));
              back(be, x, x.s.B, true);
            }],
            ["C used by another op", (be, x) => {
              front(be, x);
              be.add(x.spare, x.s.C, x.other);
              back(be, x);
            }],
            ["a scan on another B", (be, x) => {
              front(be, x);
              back(be, x, x.other);
            }],
            ["a bias on x_proj", (be, x) => {
              front(be, x, x.xBias);
              back(be, x);
            }],
          ];
          // all cases on the first two shapes of each path, the fused block on the others
          const all = si === 0 || si === 1 || si === 3 || si === 4;
          for (const [what, run] of all ? cases : cases.slice(0, 1)) {
            await t.step(
              `${dtype}, m ${m}, d ${d}, di ${di}, r ${r}, n ${n}, k ${k}, ${
                JSON.stringify(tuning)
              }: ${what}, 3 steps`,
              async () => {
                const got: Float32Array[][] = [];
                Object.assign(XPROJ_TUNING, saved, tuning);
                LINEAR_TUNING.splitk = m > 1 ? "always" : "auto";
                try {
                  for (const be of [new JsBackend(), gpu] as Backend[]) {
                    const x = setup(be);
                    const res: Float32Array[] = [];
                    // the kept dispatches replayed on new contents (the residual, a new input, new states)
                    for (let step = 0; step < 3; step++) {
                      if (step === 1) be.write(x.hidden, rand(m * d, 318, -2, 2));
                      if (step === 2) be.write(x.st.conv, rand(m * di * (k - 1), 319));
                      await run(be, x);
                      for (const name of names) res.push(await be.read(x.s[name]));
                      for (const u of [x.hidden, x.st.conv, x.st.ssm, x.spare, x.other]) {
                        res.push(await be.read(u));
                      }
                    }
                    got.push(res);
                  }
                } finally {
                  Object.assign(XPROJ_TUNING, saved);
                  LINEAR_TUNING.splitk = "auto";
                }
                const [a, g] = got;
                const per = names.length + 5;
                for (let j = 0; j < a.length; j++) {
                  const scale = a[j].reduce((s, v) => Math.max(s, Math.abs(v)), 1);
                  const name = j % per < names.length ? names[j % per] : `state ${j % per - names.length}`;
                  close(a[j], g[j], 3e-5 * scale, `${name} of step ${j / per | 0}`);
                }
              },
            );
          }
          if (si !== 0 && si !== 4) continue;
          // dispatches: m 1, matvec1 (in_proj + conv + x_proj's partials), scan, matvec1 (out_proj +
          // residual); m 3, split-k + reduce (norm, conv, x_proj's partials), scan, split-k + reduce
          await t.step(
            `${dtype}, m ${m}: the fused block is ${m > 1 ? 5 : 3} dispatches; up to the scan ${
              m > 1 ? 3 : 2
            }, ${m > 1 ? 5 : 3} when it takes another B (x_proj apart, dt_proj still fused)`,
            () => {
              const be = gpu as WebGpuBackend;
              LINEAR_TUNING.splitk = m > 1 ? "always" : "auto";
              try {
                const x = setup(be);
                const count = (record: () => void) => be.recordOnly(record).dispatches;
                assert.equal(count(() => mamba1Block(be, c, x.w, x.s, x.st, x.hidden)), m > 1 ? 5 : 3);
                const upToScan = (B: Tensor) => count(() => (front(be, x), back(be, x, B, true)));
                assert.equal(upToScan(x.s.B), m > 1 ? 3 : 2);
                assert.equal(upToScan(x.other), m > 1 ? 5 : 3);
              } finally {
                LINEAR_TUNING.splitk = "auto";
              }
            },
          );
        }
      } finally {
        Object.assign(XPROJ_TUNING, saved);
        await gpu.dispose();
      }
    }
  },
});
