/**
 * Reading a request body with a byte limit: a declared Content-Length over the limit is refused before
 * reading, and a body that grows past it while streaming is cancelled.
 *
 * @module
 */

import { HttpError } from "./errors.ts";

/** The body's bytes; throws HttpError 413 past `limit` bytes. */
export async function readBody(request: Request, limit: number): Promise<Uint8Array> {
  const tooLarge = (found: string) =>
    new HttpError(
      413,
      `Cannot read request: body is ${found}, expected at most ${limit} bytes (option maxBodyBytes)`,
      "invalid_request_error",
      null,
      "body_too_large",
    );
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > limit) {
    await request.body?.cancel().catch(() => {});
    throw tooLarge(`${declared} bytes`);
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(`over ${limit} bytes`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
