/** Test helpers: a minimal zip writer (stored or deflate entries) and a hand-written pickle builder. */

import { crc32 } from "../../src/io/zip.ts";

/** A zip archive of `files`, each stored, or deflated when `deflate` is set. */
export async function writeZip(files: Record<string, Uint8Array>, deflate = false): Promise<Uint8Array> {
  const enc = new TextEncoder();
  const local: Uint8Array[] = [], central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(files)) {
    const nameBytes = enc.encode(name);
    const body = deflate ? await deflateRaw(data) : data;
    const h = new Uint8Array(30 + nameBytes.length);
    const v = new DataView(h.buffer);
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(4, 20, true);
    v.setUint16(8, deflate ? 8 : 0, true);
    v.setUint32(14, crc32(data), true);
    v.setUint32(18, body.length, true);
    v.setUint32(22, data.length, true);
    v.setUint16(26, nameBytes.length, true);
    h.set(nameBytes, 30);
    const c = new Uint8Array(46 + nameBytes.length);
    const w = new DataView(c.buffer);
    w.setUint32(0, 0x02014b50, true);
    w.setUint16(4, 20, true);
    w.setUint16(6, 20, true);
    w.setUint16(10, deflate ? 8 : 0, true);
    w.setUint32(16, crc32(data), true);
    w.setUint32(20, body.length, true);
    w.setUint32(24, data.length, true);
    w.setUint16(28, nameBytes.length, true);
    w.setUint32(42, offset, true);
    c.set(nameBytes, 46);
    local.push(h, body);
    central.push(c);
    offset += h.length + body.length;
  }
  const dirSize = central.reduce((a, c) => a + c.length, 0);
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, central.length, true);
  e.setUint16(10, central.length, true);
  e.setUint32(12, dirSize, true);
  e.setUint32(16, offset, true);
  return concat([...local, ...central, end]);
}

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Builds protocol-2 pickle bytes by hand, opcode by opcode. */
export class PickleBuilder {
  #bytes: number[] = [0x80, 2];

  op(code: string): this {
    this.#bytes.push(code.charCodeAt(0));
    return this;
  }
  global(module: string, name: string): this {
    return this.op("c").#text(`${module}\n${name}\n`);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.op("X").#u32(b.length);
    this.#bytes.push(...b);
    return this;
  }
  int(n: number): this {
    this.op("J").#u32(n);
    return this;
  }
  /** (a, b, ...) of ints */
  ints(...ns: number[]): this {
    this.op("(");
    for (const n of ns) this.int(n);
    return this.op("t");
  }
  /** ('storage', torch.<type>, key, 'cpu', numel) as a persistent id */
  storage(type: string, key: string, numel: number): this {
    return this.op("(").str("storage").global("torch", type).str(key).str("cpu").int(numel).op("t").op("Q");
  }
  /** _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) */
  tensor(type: string, key: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global("torch._utils", "_rebuild_tensor_v2").op("(").storage(type, key, numel).int(offset)
      .ints(...size).ints(...stride).op("\x89").global("collections", "OrderedDict").op(")").op("R")
      .op("t");
    return this.op("R");
  }
  bytes(): Uint8Array {
    return Uint8Array.from([...this.#bytes, ".".charCodeAt(0)]);
  }
  #u32(n: number): this {
    this.#bytes.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
    return this;
  }
  #text(s: string): this {
    this.#bytes.push(...new TextEncoder().encode(s));
    return this;
  }
}
