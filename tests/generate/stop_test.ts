import assert from "node:assert/strict";
import { StopText } from "../../src/generate/stop.ts";

/** Feeds pieces; returns what was emitted and whether a stop was hit. */
function run(stops: string[], pieces: string[]): { text: string; stopped: boolean } {
  const f = new StopText(stops);
  let text = "";
  for (const p of pieces) {
    const r = f.push(p);
    text += r.text;
    if (r.stopped) return { text, stopped: true };
  }
  return { text: text + f.end(), stopped: false };
}

Deno.test("StopText cuts before a stop sequence split across pieces", () => {
  assert.deepEqual(run(["END"], ["ab", "cE", "N", "Dxyz"]), { text: "abc", stopped: true });
});

Deno.test("StopText takes the earliest of several stop sequences", () => {
  assert.deepEqual(run(["zz", "b"], ["a", "b", "zz"]), { text: "a", stopped: true });
  assert.deepEqual(run(["\n\n", "c"], ["ab\n", "\nc"]), { text: "ab", stopped: true });
});

Deno.test("StopText emits everything when no stop sequence occurs", () => {
  assert.deepEqual(run(["xyz"], ["x", "y", "a", "x", "y"]), { text: "xyaxy", stopped: false });
  assert.deepEqual(run([], ["a", "b"]), { text: "ab", stopped: false });
  assert.deepEqual(run([""], ["a", "b"]), { text: "ab", stopped: false });
});

Deno.test("StopText holds back only what could start a stop sequence", () => {
  const f = new StopText(["abc"]);
  assert.deepEqual(f.push("xxab"), { text: "xx", stopped: false });
  assert.deepEqual(f.push("d"), { text: "abd", stopped: false });
  assert.deepEqual(f.push("xa"), { text: "x", stopped: false });
  assert.equal(f.end(), "a");
});

Deno.test("StopText never splits a surrogate pair", () => {
  const f = new StopText(["\u{DE00}b"]);
  const r = f.push("x\u{1F600}");
  assert.equal(r.text, "x");
  assert.equal(f.end(), "\u{1F600}");
});
