/**
 * A one-line text progress bar for downloads, for CLIs: pass `progressBar()` as loadModel's
 * `onProgress`. It redraws at most every `intervalMs` and ends each file with a newline.
 *
 * @example
 * ```ts
 * import { loadModel } from "../model/model.ts";
 * import { progressBar } from "./progress.ts";
 * const model = await loadModel("state-spaces/mamba-130m", { onProgress: progressBar() });
 * ```
 *
 * @module
 */

import type { Progress } from "./download.ts";

/** One line for `p`, e.g. "pytorch_model.bin [#######.............]  35%  180.2/517.7 MB". */
export function formatProgress(p: Progress, width = 20): string {
  const mb = (n: number) => (n / 1e6).toFixed(1);
  if (p.total === undefined || p.total === 0) return `${p.file} ${mb(p.done)} MB`;
  const frac = Math.min(1, p.done / p.total);
  const filled = Math.round(frac * width);
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  return `${p.file} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${pct}  ${mb(p.done)}/${
    mb(p.total)
  } MB`;
}

/** Writes text to stderr where the runtime has one (Deno, Node), else nowhere. */
function stderr(text: string): void {
  const g = globalThis as {
    Deno?: { stderr: { writeSync(b: Uint8Array): number } };
    process?: { stderr?: { write(s: string): boolean } };
  };
  if (g.Deno) g.Deno.stderr.writeSync(new TextEncoder().encode(text));
  else g.process?.stderr?.write(text);
}

/** An onProgress callback drawing a bar with `write` (default: stderr), redrawn in place with "\r". */
export function progressBar(write: (text: string) => void = stderr, intervalMs = 100): (p: Progress) => void {
  let last = 0, lastFile = "";
  return (p) => {
    const now = Date.now();
    const complete = p.total !== undefined && p.done >= p.total;
    if (p.file === lastFile && !complete && now - last < intervalMs) return;
    if (p.file === lastFile && complete && last < 0) return; // already ended this file
    last = complete ? -1 : now;
    lastFile = p.file;
    write(`\r${formatProgress(p)}\x1b[K${complete ? "\n" : ""}`);
  };
}
