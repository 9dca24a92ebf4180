/**
 * The recurrent state of a batch of sequences: per layer, the conv window and the SSM state. O(1) in
 * the length of what was read. Serialized as:
 *
 * ```
 * "MAMBAST\0" (8 bytes) · version u32 · header length u32 · header (JSON: model fingerprint, b, tensors)
 * · f32 data of every tensor in header order · CRC-32 u32 of everything before it
 * ```
 * All integers little-endian.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import type { Backend, Tensor } from "../backends/backend.ts";
import { StateError } from "../errors.ts";

const MAGIC = new TextEncoder().encode("MAMBAST\0");
/** Format version of serialized states. */
export const STATE_VERSION = 1;

/** What a state must agree with to be restored into a model. */
export function fingerprint(c: ModelConfig): string {
  return [c.arch, c.dModel, c.nLayer, c.dInner, c.dState, c.dConv, c.nHeads, c.headDim, c.nGroups].join("/");
}

/** Recurrent state for `batch` sequences. Each layer holds named tensors whose first axis is b. */
export class State {
  #disposed = false;
  /** Random draws made with this state so far: sampling resumed from a restored state continues the stream. */
  draws = 0;
  constructor(
    readonly backend: Backend,
    readonly config: ModelConfig,
    readonly batch: number,
    /** per layer, tensors by name: conv windows and the ssm state */
    readonly layers: Record<string, Tensor>[],
  ) {}

  /** Tensors in a fixed order, with their names. */
  *entries(): Generator<[string, Tensor]> {
    for (let i = 0; i < this.layers.length; i++) {
      for (const key of Object.keys(this.layers[i]).sort()) yield [`${i}.${key}`, this.layers[i][key]];
    }
  }

  /** Copies sequence `from` of `src` into sequence `to` of this state. */
  copySequence(src: State, from: number, to: number): void {
    const mine = [...this.entries()];
    for (const [k, [, t]] of [...src.entries()].entries()) {
      const per = t.shape.slice(1).reduce((a, s) => a * s, 1);
      this.backend.copy(mine[k][1], t, to * per, from * per, per);
    }
  }

  /** Versioned, checksummed bytes; restore them with `model.restoreState(bytes)`. */
  async serialize(): Promise<Uint8Array> {
    this.#check();
    const tensors: { name: string; shape: number[] }[] = [];
    const datas: Float32Array[] = [];
    for (const [name, t] of this.entries()) {
      tensors.push({ name, shape: [...t.shape] });
      datas.push(await this.backend.read(t));
    }
    const header = new TextEncoder().encode(
      JSON.stringify({ model: fingerprint(this.config), batch: this.batch, draws: this.draws, tensors }),
    );
    const dataBytes = datas.reduce((a, d) => a + d.byteLength, 0);
    const out = new Uint8Array(16 + header.byteLength + dataBytes + 4);
    const view = new DataView(out.buffer);
    out.set(MAGIC, 0);
    view.setUint32(8, STATE_VERSION, true);
    view.setUint32(12, header.byteLength, true);
    out.set(header, 16);
    let p = 16 + header.byteLength;
    for (const d of datas) {
      for (let i = 0; i < d.length; i++, p += 4) view.setFloat32(p, d[i], true);
    }
    view.setUint32(p, crc32(out.subarray(0, p)), true);
    return out;
  }

  /** Overwrites this state with serialized bytes, after checking them. */
  load(bytes: Uint8Array): void {
    this.#check();
    const fail = (what: string): never => {
      throw new StateError(`Cannot restore state: ${what}`);
    };
    if (bytes.byteLength < 20) fail(`${bytes.byteLength} bytes, expected at least 20`);
    if (!MAGIC.every((b, i) => bytes[i] === b)) {
      fail(`magic is not "MAMBAST", this is not a serialized state`);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = view.getUint32(8, true);
    if (version !== STATE_VERSION) fail(`format version is ${version}, expected ${STATE_VERSION}`);
    const end = bytes.byteLength - 4;
    const stored = view.getUint32(end, true);
    const actual = crc32(bytes.subarray(0, end));
    if (stored !== actual) {
      fail(`checksum is ${hex(actual)}, expected ${hex(stored)} (bytes corrupt or truncated)`);
    }
    const headerLen = view.getUint32(12, true);
    if (16 + headerLen > end) fail(`header length ${headerLen} runs past the data`);
    let header: { model: string; batch: number; draws: number; tensors: { name: string; shape: number[] }[] };
    try {
      header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLen)));
    } catch {
      return fail("header is not JSON");
    }
    const want = fingerprint(this.config);
    if (header.model !== want) fail(`state is of model ${header.model}, expected ${want}`);
    if (header.batch !== this.batch) fail(`state holds ${header.batch} sequences, expected ${this.batch}`);
    const mine = [...this.entries()];
    if (header.tensors.length !== mine.length) {
      fail(`${header.tensors.length} tensors, expected ${mine.length}`);
    }
    let p = 16 + headerLen;
    for (let i = 0; i < mine.length; i++) {
      const [name, t] = mine[i];
      const h = header.tensors[i];
      if (h.name !== name || h.shape.join(",") !== t.shape.join(",")) {
        fail(`tensor ${i} is "${h.name}" (${h.shape}), expected "${name}" (${t.shape})`);
      }
      const n = t.shape.reduce((a, s) => a * s, 1);
      if (p + 4 * n > end) fail(`data of "${name}" runs past the end`);
      const data = new Float32Array(n);
      for (let j = 0; j < n; j++, p += 4) data[j] = view.getFloat32(p, true);
      this.backend.write(t, data);
    }
    if (p !== end) fail(`${end - p} bytes of data left over`);
    this.draws = Number.isInteger(header.draws) ? header.draws : 0;
  }

  /** A copy of this state (same backend). */
  clone(): State {
    const layers = this.layers.map((layer) => {
      const out: Record<string, Tensor> = {};
      for (const [k, t] of Object.entries(layer)) {
        out[k] = this.backend.zeros(t.shape);
        this.backend.copy(out[k], t);
      }
      return out;
    });
    const copy = new State(this.backend, this.config, this.batch, layers);
    copy.draws = this.draws;
    return copy;
  }

  /** Releases the state's tensors. */
  dispose(): void {
    if (this.#disposed) return;
    for (const [, t] of this.entries()) this.backend.free(t);
    this.#disposed = true;
  }

  #check(): void {
    if (this.#disposed) throw new StateError("Cannot use state: it was disposed");
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE), as zip and PNG use it. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hex(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}
