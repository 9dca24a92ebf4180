import assert from "node:assert/strict";
import { argmax, GREEDY, sampleRow } from "../../src/generate/sampler.ts";
import { uniform } from "../../src/generate/rng.ts";

const logits = Float32Array.from([1, 3, 2, 3, -1, 0.5]);
const p = (over: object) => ({ ...GREEDY, temperature: 1, ...over });

Deno.test("argmax() takes the lowest index among ties and never NaN", () => {
  assert.equal(argmax(logits), 1);
  assert.equal(argmax(Float32Array.from([NaN, 1, NaN, 2])), 3);
});

Deno.test("sampleRow() draws each token with its softmax probability", () => {
  const probs = Array.from(logits, (x) => Math.exp(x));
  const total = probs.reduce((a, b) => a + b);
  const counts = new Array(logits.length).fill(0);
  const n = 20000;
  for (let i = 0; i < n; i++) counts[sampleRow(logits, p({}), (i + 0.5) / n)]++;
  // A uniform grid of draws gives each token its probability mass up to one grid step.
  counts.forEach((c, i) => assert.ok(Math.abs(c / n - probs[i] / total) <= 1 / n + 1e-12, `token ${i}`));
});

Deno.test("sampleRow() keeps the top k, the top-p nucleus and tokens above min-p", () => {
  const drawn = (over: object) => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(sampleRow(logits, p(over), i / 1000));
    return [...seen].sort();
  };
  assert.deepEqual(drawn({ topK: 1 }), [1, 3]); // ties at the k-th probability are kept, as in HF
  assert.deepEqual(drawn({ topK: 2 }), [1, 3]);
  assert.deepEqual(drawn({ topK: 3 }), [1, 2, 3]);
  // p(1) = p(3) = 0.3842, p(2) = 0.1413, p(0) = 0.0520: 0.3 needs one 3, 0.76 both, 0.8 the 2 as well.
  assert.deepEqual(drawn({ topP: 0.3 }), [1, 3]); // the 3 that reaches 0.3 ties with the other
  assert.deepEqual(drawn({ topP: 0.76 }), [1, 3]);
  assert.deepEqual(drawn({ topP: 0.8 }), [1, 2, 3]);
  assert.deepEqual(drawn({ minP: 0.3 }), [1, 2, 3]); // floor 0.115: the 2 (0.141) stays, the 0 (0.052) goes
  assert.deepEqual(drawn({ minP: 0.5 }), [1, 3]);
});

Deno.test("sampleRow() penalizes seen tokens as HF does, and low temperature approaches greedy", () => {
  const seen = Float32Array.from([0, 1, 0, 0, 1, 0]);
  // 3 / 2 = 1.5 < 3: token 3 wins greedy; a negative logit is multiplied
  assert.equal(sampleRow(logits, { ...GREEDY, repetitionPenalty: 2 }, 0, seen), 3);
  assert.equal(
    sampleRow(Float32Array.from([-1, -2]), { ...GREEDY, repetitionPenalty: 3 }, 0, Float32Array.from([1, 0])),
    1,
  );
  for (let i = 0; i < 100; i++) {
    assert.ok([1, 3].includes(sampleRow(logits, p({ temperature: 1e-3 }), i / 100)));
  }
});

Deno.test("uniform() is in [0, 1), deterministic and spread", () => {
  const xs = Array.from({ length: 10000 }, (_, i) => uniform(42, i % 7, i));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.equal(uniform(1, 2, 3), uniform(1, 2, 3));
  assert.notEqual(uniform(1, 2, 3), uniform(2, 2, 3));
  const mean = xs.reduce((a, b) => a + b) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
});

/** The sampler's definition written the slow way: full sorts, no shortcuts. */
function bruteForce(logits: Float32Array, params: typeof GREEDY, u: number): number {
  const max = Math.max(...logits);
  const e = Array.from(logits, (x) => Math.exp((x - max) / params.temperature));
  const sum = e.reduce((a, b) => a + b);
  const p = e.map((x) => x / sum);
  const desc = [...p].sort((a, b) => b - a);
  let t = params.minP * desc[0];
  if (params.topK > 0) t = Math.max(t, desc[Math.min(params.topK, p.length) - 1]);
  if (params.topP < 1) {
    let cum = 0;
    for (const x of desc) {
      cum += x;
      if (cum >= params.topP) {
        t = Math.max(t, x);
        break;
      }
    }
  }
  const kept = p.map((x, i) => [x, i]).filter(([x]) => x >= t);
  const total = kept.reduce((a, [x]) => a + x, 0);
  let cum = 0;
  for (const [x, i] of kept) {
    cum += x;
    if (u * total < cum) return i;
  }
  return kept[kept.length - 1][1];
}

Deno.test("sampleRow() agrees with a brute-force reading of its definition on random logits", () => {
  let seed = 1;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let trial = 0; trial < 60; trial++) {
    const v = 1 + Math.floor(rand() * 3000);
    const logits = Float32Array.from({ length: v }, () => (rand() - 0.5) * 12);
    const params = {
      ...GREEDY,
      temperature: 0.3 + rand() * 1.5,
      topK: [0, 1, 5, 40, 2000][trial % 5],
      topP: [1, 0.9, 0.5, 0.99][trial % 4],
      minP: [0, 0.05][trial % 2],
    };
    for (let j = 0; j < 20; j++) {
      const u = rand();
      assert.equal(
        sampleRow(logits, params, u),
        bruteForce(logits, params, u),
        JSON.stringify({ trial, j, v }),
      );
    }
  }
});
