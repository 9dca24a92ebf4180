/**
 * A small zip reader: the central directory (zip64 included), stored and deflate entries, CRC-32
 * checked. Enough for the archives torch.save writes; deflate goes through the web-standard
 * DecompressionStream("deflate-raw").
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";

/** One file of the archive. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** offset of the local file header */
  headerOffset: number;
}

const EOCD = 0x06054b50,
  EOCD64 = 0x06064b50,
  LOCATOR64 = 0x07064b50,
  CENTRAL = 0x02014b50,
  LOCAL = 0x04034b50;

/** An archive in memory: its entries by name, and their contents on demand. */
export class ZipArchive {
  readonly entries: Map<string, ZipEntry> = new Map();
  #view: DataView;

  /** Reads the central directory of `bytes`; `file` names the archive in errors. */
  constructor(readonly bytes: Uint8Array, readonly file: string) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v = this.#view;
    // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes.
    let eocd = -1;
    for (let i = bytes.byteLength - 22; i >= Math.max(0, bytes.byteLength - 22 - 65535); i--) {
      if (v.getUint32(i, true) === EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      throw new ModelLoadError(
        `Cannot read ${file}: no zip end-of-central-directory record in its ${bytes.byteLength} bytes, expected a zip archive (file truncated?)`,
      );
    }
    let count = v.getUint16(eocd + 10, true);
    let dirSize = v.getUint32(eocd + 12, true);
    let dirOffset = v.getUint32(eocd + 16, true);
    if (
      (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) && eocd >= 20 &&
      v.getUint32(eocd - 20, true) === LOCATOR64
    ) {
      const at = this.#u64(eocd - 20 + 8);
      if (at + 56 > bytes.byteLength || v.getUint32(at, true) !== EOCD64) {
        throw new ModelLoadError(`Cannot read ${file}: zip64 end record at ${at} is missing or corrupt`);
      }
      count = this.#u64(at + 32);
      dirSize = this.#u64(at + 40);
      dirOffset = this.#u64(at + 48);
    }
    if (dirOffset + dirSize > bytes.byteLength) {
      throw new ModelLoadError(
        `Cannot read ${file}: central directory [${dirOffset}, ${
          dirOffset + dirSize
        }) runs past the end of the file (${bytes.byteLength} bytes)`,
      );
    }
    let p = dirOffset;
    for (let i = 0; i < count; i++) {
      if (p + 46 > bytes.byteLength || v.getUint32(p, true) !== CENTRAL) {
        throw new ModelLoadError(`Cannot read ${file}: central directory entry ${i} at ${p} is corrupt`);
      }
      const nameLen = v.getUint16(p + 28, true), extraLen = v.getUint16(p + 30, true);
      const commentLen = v.getUint16(p + 32, true);
      const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
      const entry: ZipEntry = {
        name,
        method: v.getUint16(p + 10, true),
        crc32: v.getUint32(p + 16, true),
        compressedSize: v.getUint32(p + 20, true),
        size: v.getUint32(p + 24, true),
        headerOffset: v.getUint32(p + 42, true),
      };
      this.#zip64Extra(entry, p + 46 + nameLen, extraLen);
      this.entries.set(name, entry);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** The uncompressed contents of `name`, CRC-checked; undefined when the archive has no such entry. */
  async read(name: string): Promise<Uint8Array | undefined> {
    const e = this.entries.get(name);
    if (!e) return undefined;
    const v = this.#view, at = e.headerOffset;
    if (at + 30 > this.bytes.byteLength || v.getUint32(at, true) !== LOCAL) {
      throw new ModelLoadError(`Cannot read ${this.file}: local header of "${name}" at ${at} is corrupt`);
    }
    const start = at + 30 + v.getUint16(at + 26, true) + v.getUint16(at + 28, true);
    if (start + e.compressedSize > this.bytes.byteLength) {
      throw new ModelLoadError(
        `Cannot read ${this.file}: entry "${name}" needs bytes [${start}, ${
          start + e.compressedSize
        }), the file has ${this.bytes.byteLength} (file truncated?)`,
      );
    }
    const raw = this.bytes.subarray(start, start + e.compressedSize);
    let data: Uint8Array;
    if (e.method === 0) data = raw;
    else if (e.method === 8) data = await inflateRaw(raw, `${this.file}: entry "${name}"`);
    else {
      throw new ModelLoadError(
        `Cannot read ${this.file}: entry "${name}" uses compression method ${e.method}, expected 0 (stored) or 8 (deflate)`,
      );
    }
    if (data.byteLength !== e.size) {
      throw new ModelLoadError(
        `Cannot read ${this.file}: entry "${name}" is ${data.byteLength} bytes, expected ${e.size}`,
      );
    }
    const crc = crc32(data);
    if (crc !== e.crc32) {
      throw new ModelLoadError(
        `Cannot read ${this.file}: entry "${name}" has CRC-32 ${hex(crc)}, expected ${
          hex(e.crc32)
        } (corrupt file)`,
      );
    }
    return data;
  }

  #u64(at: number): number {
    const n = this.#view.getBigUint64(at, true);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ModelLoadError(`Cannot read ${this.file}: zip64 field ${n} is too large`);
    }
    return Number(n);
  }

  /** Sizes and offset that do not fit 32 bits live in the zip64 extra field (id 1), in this order. */
  #zip64Extra(e: ZipEntry, at: number, len: number): void {
    const v = this.#view, end = at + len;
    while (at + 4 <= end) {
      const id = v.getUint16(at, true), size = v.getUint16(at + 2, true);
      if (id === 1) {
        let q = at + 4;
        if (e.size === 0xffffffff) e.size = this.#u64((q += 8) - 8);
        if (e.compressedSize === 0xffffffff) e.compressedSize = this.#u64((q += 8) - 8);
        if (e.headerOffset === 0xffffffff) e.headerOffset = this.#u64(q);
      }
      at += 4 + size;
    }
  }
}

/** Raw deflate -> bytes, through DecompressionStream. */
async function inflateRaw(data: Uint8Array, what: string): Promise<Uint8Array> {
  try {
    const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
      new DecompressionStream("deflate-raw"),
    );
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new ModelLoadError(`Cannot read ${what}: deflate data is corrupt (${(e as Error).message})`);
  }
}

let TABLE: Uint32Array | undefined;

/** CRC-32 (IEEE, as zip uses it). */
export function crc32(data: Uint8Array): number {
  if (!TABLE) {
    TABLE = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      TABLE[i] = c >>> 0;
    }
  }
  const t = TABLE;
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hex(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}
