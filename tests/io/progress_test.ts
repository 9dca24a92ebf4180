import assert from "node:assert/strict";
import { formatProgress, progressBar } from "../../src/io/progress.ts";

Deno.test("formatProgress() draws a bar, a percentage and megabytes", () => {
  assert.equal(
    formatProgress({ file: "pytorch_model.bin", done: 180_200_000, total: 517_700_000 }, 10),
    "pytorch_model.bin [###.......]  34%  180.2/517.7 MB",
  );
  assert.equal(formatProgress({ file: "config.json", done: 2_500_000 }), "config.json 2.5 MB");
});

Deno.test("progressBar() redraws in place, throttled, and ends each file with a newline", () => {
  const out: string[] = [];
  const bar = progressBar((s) => out.push(s), 1_000_000);
  bar({ file: "a", done: 0, total: 10 });
  bar({ file: "a", done: 5, total: 10 }); // throttled
  bar({ file: "a", done: 10, total: 10 });
  bar({ file: "a", done: 10, total: 10 }); // already ended
  bar({ file: "b", done: 1, total: 2 });
  assert.equal(out.length, 3);
  assert.ok(out.every((s) => s.startsWith("\r")));
  assert.ok(out[1].endsWith("\n") && !out[0].endsWith("\n"));
  assert.match(out[2], /^\rb \[#{10}\.{10}\] {2}50%/);
});
