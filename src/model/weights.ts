/**
 * Named checkpoint tensors -> f32 arrays of the shapes config.json implies. Both layouts are accepted:
 * HF (`backbone.embeddings.weight`) and the original state-spaces one (`backbone.embedding.weight`).
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";
import { type RawTensor, toFloat32 } from "../io/safetensors.ts";

/** Reads tensors by name, checking shapes. `origin` names the checkpoint in errors. */
export class WeightReader {
  constructor(private tensors: Map<string, RawTensor>, private origin: string) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The first of `names` present, as f32 of `shape` (size-1 axes may be dropped or added). */
  get(names: string | string[], shape: number[]): Float32Array {
    const list = typeof names === "string" ? [names] : names;
    const raw = list.map((n) => this.tensors.get(n)).find((t) => t !== undefined);
    if (!raw) {
      throw new ModelLoadError(
        `Cannot load weights from ${this.origin}: tensor "${list[0]}" is missing, expected shape (${
          shape.join(", ")
        })`,
      );
    }
    const squeeze = (s: number[]) => s.filter((x) => x !== 1).join(",");
    if (squeeze(raw.shape) !== squeeze(shape)) {
      throw new ModelLoadError(
        `Cannot load weights from ${this.origin}: tensor "${raw.name}" has shape (${
          raw.shape.join(", ")
        }), expected (${shape.join(", ")})`,
      );
    }
    return toFloat32(raw);
  }

  /** Like get, but undefined when none of `names` is present. */
  maybe(names: string | string[], shape: number[]): Float32Array | undefined {
    const list = typeof names === "string" ? [names] : names;
    return list.some((n) => this.tensors.has(n)) ? this.get(list, shape) : undefined;
  }
}

/** Rows [from, to) of a row-major (rows, cols) matrix. */
export function rows(data: Float32Array, cols: number, from: number, to: number): Float32Array {
  return data.subarray(from * cols, to * cols);
}

/** -exp(A_log), elementwise. */
export function negExp(aLog: Float32Array): Float32Array {
  return aLog.map((v) => -Math.exp(v));
}
