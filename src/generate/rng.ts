/**
 * A counter-based random stream: each draw is a hash of (seed, sequence, step), so draws need no
 * carried state and any backend (a WGSL shader included) can reproduce them with 32-bit integer ops.
 *
 * @module
 */

/** A 32-bit integer mixer (a murmur3-style finalizer). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** A uniform number in [0, 1) with 24 random bits, for draw `step` of sequence `seq` under `seed`. */
export function uniform(seed: number, seq: number, step: number): number {
  const h = mix32((mix32((mix32((seed ^ 0x9e3779b9) >>> 0) + seq) >>> 0) + step) >>> 0);
  return (h >>> 8) / 16777216;
}
