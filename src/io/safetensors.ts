/**
 * The safetensors format: 8 bytes of little-endian header length, a JSON header mapping names to
 * `{dtype, shape, data_offsets}`, then the raw little-endian data.
 *
 * @example
 * ```ts
 * import { readSafetensors, toFloat32 } from "./safetensors.ts";
 * const tensors = readSafetensors(await Deno.readFile("model.safetensors"), "model.safetensors");
 * const emb = toFloat32(tensors.get("backbone.embeddings.weight")!); // (v, d)
 * ```
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";

/** Element types that can appear in a checkpoint. */
export type DType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** Bytes per element of each dtype. */
export const ELEMENT_BYTES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** A tensor as stored: its element type, shape, and little-endian bytes (a view, not a copy). */
export interface RawTensor {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}

/** Parses a whole safetensors file. `file` names it in errors. */
export function readSafetensors(buf: Uint8Array, file: string): Map<string, RawTensor> {
  if (buf.byteLength < 8) {
    throw new ModelLoadError(`Cannot read ${file}: file is ${buf.byteLength} bytes, expected at least 8`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > buf.byteLength) {
    throw new ModelLoadError(
      `Cannot read ${file}: header length ${headerLen} runs past the end of the file (${buf.byteLength} bytes)`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new ModelLoadError(`Cannot read ${file}: header is not JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) {
    throw new ModelLoadError(`Cannot read ${file}: header is not a JSON object`);
  }
  const data = buf.subarray(8 + headerLen);
  const out = new Map<string, RawTensor>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${file}: tensor "${name}"`;
    if (typeof e?.dtype !== "string" || !(e.dtype in ELEMENT_BYTES)) {
      throw new ModelLoadError(
        `Cannot read ${where}: dtype is ${JSON.stringify(e?.dtype)}, expected one of ${
          Object.keys(ELEMENT_BYTES).join(", ")
        }`,
      );
    }
    if (!Array.isArray(e.shape) || !e.shape.every((s) => Number.isInteger(s) && s >= 0)) {
      throw new ModelLoadError(
        `Cannot read ${where}: shape is ${JSON.stringify(e.shape)}, expected a list of sizes`,
      );
    }
    const offsets = e.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) =>
        Number.isInteger(o) && o >= 0
      ) ||
      offsets[0] > offsets[1]
    ) {
      throw new ModelLoadError(
        `Cannot read ${where}: data_offsets is ${JSON.stringify(offsets)}, expected [begin, end]`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > data.byteLength) {
      throw new ModelLoadError(
        `Cannot read ${where}: data_offsets [${begin}, ${end}] fall outside the ${data.byteLength} bytes of data (file truncated?)`,
      );
    }
    const dtype = e.dtype as DType;
    const shape = e.shape as number[];
    const count = shape.reduce((a, s) => a * s, 1);
    if (count * ELEMENT_BYTES[dtype] !== end - begin) {
      throw new ModelLoadError(
        `Cannot read ${where}: ${dtype} x (${shape.join(", ")}) needs ${
          count * ELEMENT_BYTES[dtype]
        } bytes, found ${end - begin}`,
      );
    }
    out.set(name, { name, dtype, shape, bytes: data.subarray(begin, end) });
  }
  return out;
}

/** Writes tensors as a safetensors file (f32 and i32 only: what tests and tools need). */
export function writeSafetensors(
  tensors: Record<string, Float32Array | Int32Array | { dtype: DType; shape: number[]; bytes: Uint8Array }>,
  shapes: Record<string, number[]> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    let dtype: DType, shape: number[], bytes: Uint8Array;
    if (t instanceof Float32Array || t instanceof Int32Array) {
      dtype = t instanceof Float32Array ? "F32" : "I32";
      shape = shapes[name] ?? [t.length];
      bytes = new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
    } else {
      ({ dtype, shape, bytes } = t);
    }
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let p = 8 + head.byteLength;
  for (const part of parts) {
    out.set(part, p);
    p += part.byteLength;
  }
  return out;
}

/** Converts a float tensor (F32, F16, BF16, F64) to f32. */
export function toFloat32(t: RawTensor): Float32Array {
  const n = t.bytes.byteLength / ELEMENT_BYTES[t.dtype];
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case "F32":
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case "F16":
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
      return out;
    case "BF16": {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case "F64":
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    default:
      throw new ModelLoadError(
        `Cannot read tensor "${t.name}" as floats: dtype is ${t.dtype}, expected F32, F16, BF16 or F64`,
      );
  }
}

/** Converts an integer tensor (I32, I64) to i32. */
export function toInt32(t: RawTensor): Int32Array {
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  if (t.dtype === "I32") {
    const out = new Int32Array(t.bytes.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt32(4 * i, true);
    return out;
  }
  if (t.dtype === "I64") {
    const out = new Int32Array(t.bytes.byteLength / 8);
    for (let i = 0; i < out.length; i++) out[i] = Number(view.getBigInt64(8 * i, true));
    return out;
  }
  throw new ModelLoadError(
    `Cannot read tensor "${t.name}" as integers: dtype is ${t.dtype}, expected I32 or I64`,
  );
}

/** IEEE half -> single, exactly. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
