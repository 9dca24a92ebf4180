/**
 * Perplexity and LAMBADA accuracy of a checkpoint, printed as one JSON object per measurement.
 *
 *   deno task eval                                   # the default model on tinyshakespeare's last 10%
 *   deno task eval --model state-spaces/mamba-130m --text wiki.txt --window 1023
 *   deno task eval --model state-spaces/mamba-130m --lambada /path/lambada_test.jsonl --limit 500
 *
 * Options: --model (dir, URL or repo id; default the embedded shakespeare-bytes), --backend
 * (auto|wasm|webgpu|js), --text (a UTF-8 file; default tests/fixtures/tinyshakespeare-val.txt),
 * --bytes N (only the first N bytes of the text), --window N (predictions per window, default 256),
 * --batch N (windows per forward pass), --every K (every K-th window only), --per-window (print each
 * window's nats per token), --lambada FILE (jsonl of {"text": ...}), --limit N (passages),
 * --offline (repo ids from the download cache only).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_MODEL, loadModel } from "../src/model/model.ts";
import { lambada, perplexity } from "../src/eval/eval.ts";
import { progressBar } from "../src/io/progress.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    backend: { type: "string", default: "auto" },
    text: { type: "string" },
    bytes: { type: "string" },
    window: { type: "string", default: "256" },
    batch: { type: "string" },
    lambada: { type: "string" },
    limit: { type: "string" },
    offline: { type: "boolean", default: false },
    every: { type: "string", default: "1" },
    "per-window": { type: "boolean", default: false },
  },
});

const status = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s));
const model = await loadModel(a.model ?? DEFAULT_MODEL, {
  backend: a.backend as "auto",
  offline: a.offline,
  onProgress: progressBar(),
});
const source = a.model ?? "models/shakespeare-bytes";
const t0 = performance.now();
if (a.lambada) {
  let lines = (await Deno.readTextFile(a.lambada)).split("\n").filter((l) => l.trim());
  if (a.limit) lines = lines.slice(0, Number(a.limit));
  const passages = lines.map((l) => JSON.parse(l).text as string);
  const r = await lambada(model, passages, (d, t) => status(`\rlambada ${d}/${t}`));
  status("\n");
  const s = (performance.now() - t0) / 1000;
  console.log(
    JSON.stringify({ model: source, backend: model.backendName, task: "lambada", ...r, seconds: s }),
  );
} else {
  const path = a.text ?? new URL("../tests/fixtures/tinyshakespeare-val.txt", import.meta.url);
  let bytes = await Deno.readFile(path);
  if (a.bytes) bytes = bytes.subarray(0, Number(a.bytes));
  const text = new TextDecoder().decode(bytes);
  const r = await perplexity(model, text, {
    window: Number(a.window),
    batch: a.batch ? Number(a.batch) : undefined,
    every: Number(a.every),
    onProgress: (d, t) => status(`\rperplexity ${d}/${t} tokens`),
  });
  status("\n");
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({
    model: source,
    backend: model.backendName,
    task: "perplexity",
    text: String(path),
    window: Number(a.window),
    ...r,
    perWindow: a["per-window"] ? r.perWindow : undefined,
    seconds: s,
  }));
}
await model.dispose();
