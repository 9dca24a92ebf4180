/**
 * Fetching one file whole: progress as bytes arrive, the length checked against Content-Length, a
 * stalled connection given up after a while. Web-standard (fetch, streams) only.
 *
 * @module
 */

import { DownloadError } from "../errors.ts";

/** Where a download stands: `file` has `done` of `total` bytes (total undefined when not declared). */
export interface Progress {
  file: string;
  done: number;
  total?: number;
}

/** Options of download. */
export interface DownloadOptions {
  /** called as bytes arrive, and once more when the file is complete */
  onProgress?: (p: Progress) => void;
  /** give up when no byte arrives for this long (default 60 s) */
  stallTimeoutMs?: number;
  /** extra fetch options (headers, ...) */
  init?: RequestInit;
}

/**
 * The bytes at `url`, or undefined on HTTP 404. Throws DownloadError on any other failure: another
 * HTTP status, a body shorter or longer than its Content-Length, a connection that breaks or stalls.
 * `file` names the file in progress reports.
 */
export async function download(
  url: URL,
  file: string,
  opts: DownloadOptions = {},
): Promise<Uint8Array | undefined> {
  const stallMs = opts.stallTimeoutMs ?? 60_000;
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stalled = false;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      abort.abort();
    }, stallMs);
  };
  let done = 0, total: number | undefined;
  const fail = (what: string, cause?: unknown): never => {
    throw new DownloadError(`Cannot fetch ${url.href}: ${what}`, cause ? { cause } : undefined);
  };
  try {
    arm();
    let res: Response;
    try {
      res = await fetch(url, { ...opts.init, signal: abort.signal });
    } catch (e) {
      return fail(stalled ? `no response in ${stallMs} ms` : `request failed (${(e as Error).message})`, e);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) {
      await res.body?.cancel();
      const hint = res.status === 401 || res.status === 403
        ? " (repository not found, private or gated)"
        : "";
      return fail(`HTTP ${res.status}${hint}, expected 200`);
    }
    const declared = res.headers.get("content-length");
    // A declared length is the length of the body as sent; with content-encoding, fetch decodes it.
    if (declared !== null && !res.headers.get("content-encoding")) total = Number(declared);
    const out = total !== undefined ? new Uint8Array(total) : undefined;
    const chunks: Uint8Array[] = [];
    opts.onProgress?.({ file, done, total });
    const reader = res.body!.getReader();
    while (true) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        const of = total !== undefined ? ` of ${total}` : "";
        return fail(
          stalled
            ? `no data for ${stallMs} ms after ${done}${of} bytes`
            : `connection broke after ${done}${of} bytes (${(e as Error).message})`,
          e,
        );
      }
      if (r.done) break;
      arm();
      if (out) {
        if (done + r.value.byteLength > total!) {
          await reader.cancel();
          return fail(`body is longer than its Content-Length ${total}`);
        }
        out.set(r.value, done);
      } else chunks.push(r.value);
      done += r.value.byteLength;
      opts.onProgress?.({ file, done, total });
    }
    if (total !== undefined && done !== total) {
      fail(`body is ${done} bytes, expected ${total} (Content-Length)`);
    }
    if (out) return out;
    const all = new Uint8Array(done);
    let at = 0;
    for (const c of chunks) all.set(c, (at += c.byteLength) - c.byteLength);
    opts.onProgress?.({ file, done, total: done });
    return all;
  } finally {
    clearTimeout(timer);
  }
}
