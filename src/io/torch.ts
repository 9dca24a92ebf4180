/**
 * PyTorch checkpoints (pytorch_model.bin as torch.save writes it since PyTorch 1.6): a zip archive
 * holding `<prefix>/data.pkl` (a pickle of the state dict), one `<prefix>/data/<key>` file of raw
 * little-endian bytes per storage, `<prefix>/version` and maybe `<prefix>/byteorder`.
 *
 * The pickle is read by a restricted unpickler: it interprets the opcodes of plain data (dicts, tuples,
 * strings, numbers) and knows a handful of globals, the ones a state dict of tensors needs. Any other
 * global is refused by name, and nothing in the file is ever executed.
 *
 * @example
 * ```ts
 * import { readTorchCheckpoint } from "./torch.ts";
 * const tensors = await readTorchCheckpoint(await Deno.readFile("pytorch_model.bin"), "pytorch_model.bin");
 * tensors.get("backbone.embedding.weight"); // { dtype: "F32", shape: [v, d], bytes }
 * ```
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";
import { type DType, ELEMENT_BYTES, type RawTensor } from "./safetensors.ts";
import { ZipArchive } from "./zip.ts";

/** Storage classes (torch.<Name>) and the element type each holds. */
const STORAGES: Record<string, DType> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

/** A storage named by a persistent id: its bytes live in data/<key>. */
interface StorageRef {
  kind: "storage";
  dtype: DType;
  key: string;
  numel: number;
}

/** A tensor as _rebuild_tensor_v2 describes it: a view (offset, size, stride) of a storage. */
interface TensorRef {
  kind: "tensor";
  storage: StorageRef;
  offset: number;
  size: number[];
  stride: number[];
}

/** A global the pickle named (module.name), allowed or not. */
interface GlobalRef {
  kind: "global";
  name: string;
}

/** A dict as the pickle builds it (dict and OrderedDict alike). */
type PyDict = Map<unknown, unknown>;

/** The functions a state dict may call; each gets the reduce arguments (a tuple) and checks them. */
const CALLABLES: Record<string, (args: unknown[], where: string) => unknown> = {
  "collections.OrderedDict": (args, where) => {
    if (args.length !== 0) throw new ModelLoadError(`Cannot read ${where}: OrderedDict with arguments`);
    return new Map();
  },
  "torch._utils._rebuild_tensor_v2": (args, where) => {
    const [storage, offset, size, stride] = args as [StorageRef, number, number[], number[]];
    if (
      (storage as { kind?: string })?.kind !== "storage" || !Number.isInteger(offset) ||
      !isIntList(size) || !isIntList(stride) || size.length !== stride.length
    ) {
      throw new ModelLoadError(
        `Cannot read ${where}: _rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)`,
      );
    }
    return { kind: "tensor", storage, offset, size, stride } satisfies TensorRef;
  },
  "torch._utils._rebuild_parameter": (args, where) => {
    if ((args[0] as { kind?: string })?.kind !== "tensor") {
      throw new ModelLoadError(`Cannot read ${where}: _rebuild_parameter expects a tensor first`);
    }
    return args[0];
  },
};

/** Which globals a pickle may name: the callables above and the storage classes. */
function isAllowed(name: string): boolean {
  return name in CALLABLES || (name.startsWith("torch.") && name.slice(6) in STORAGES);
}

/** Reads a torch.save zip archive into named tensors (views of the file's bytes where contiguous). */
export async function readTorchCheckpoint(bytes: Uint8Array, file: string): Promise<Map<string, RawTensor>> {
  if (bytes.byteLength >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    throw new ModelLoadError(
      `Cannot read ${file}: file is a legacy (before PyTorch 1.6) pickle checkpoint, expected a zip archive (re-save it with torch.save)`,
    );
  }
  if (
    bytes.byteLength < 4 || new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true) !== 0x04034b50
  ) {
    throw new ModelLoadError(
      `Cannot read ${file}: file starts with ${
        [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ")
      }, expected a zip archive (50 4b 03 04)`,
    );
  }
  const zip = new ZipArchive(bytes, file);
  const pkls = [...zip.entries.keys()].filter((n) => n === "data.pkl" || n.endsWith("/data.pkl"));
  if (pkls.length !== 1) {
    throw new ModelLoadError(
      `Cannot read ${file}: archive holds ${pkls.length} data.pkl entries, expected 1`,
    );
  }
  const prefix = pkls[0].slice(0, -"data.pkl".length);
  const order = await zip.read(`${prefix}byteorder`);
  const orderText = order ? new TextDecoder().decode(order).trim() : "little";
  if (orderText !== "little" && orderText !== "big") {
    throw new ModelLoadError(`Cannot read ${file}: byteorder is "${orderText}", expected "little" or "big"`);
  }
  const root = unpickle((await zip.read(pkls[0]))!, `${file}: ${pkls[0]}`);
  if (!(root instanceof Map)) {
    throw new ModelLoadError(
      `Cannot read ${file}: the pickle holds ${describe(root)}, expected a state dict`,
    );
  }

  const storages = new Map<string, Uint8Array>();
  const out = new Map<string, RawTensor>();
  for (const [name, value] of root) {
    if (typeof name !== "string") {
      throw new ModelLoadError(`Cannot read ${file}: state dict key is ${describe(name)}, expected a string`);
    }
    if ((value as { kind?: string })?.kind !== "tensor") {
      throw new ModelLoadError(
        `Cannot read ${file}: entry "${name}" is ${describe(value)}, expected a tensor`,
      );
    }
    const t = value as TensorRef;
    const es = ELEMENT_BYTES[t.storage.dtype];
    let data = storages.get(t.storage.key);
    if (!data) {
      const path = `${prefix}data/${t.storage.key}`;
      const read = await zip.read(path);
      if (!read) {
        throw new ModelLoadError(`Cannot read ${file}: storage file ${path} of tensor "${name}" is missing`);
      }
      if (read.byteLength < t.storage.numel * es) {
        throw new ModelLoadError(
          `Cannot read ${file}: storage ${path} is ${read.byteLength} bytes, expected ${
            t.storage.numel * es
          } (${t.storage.numel} x ${t.storage.dtype})`,
        );
      }
      data = orderText === "big" ? swapBytes(read, es) : read;
      storages.set(t.storage.key, data);
    }
    out.set(name, {
      name,
      dtype: t.storage.dtype,
      shape: t.size,
      bytes: view(t, data, es, `${file}: tensor "${name}"`),
    });
  }
  return out;
}

/** The tensor's elements in row-major order: a view of the storage when contiguous, else a copy. */
function view(t: TensorRef, data: Uint8Array, es: number, where: string): Uint8Array {
  const numel = t.size.reduce((a, s) => a * s, 1);
  if (numel === 0) return new Uint8Array(0);
  let last = t.offset; // the largest element index the view touches
  for (let i = 0; i < t.size.length; i++) last += (t.size[i] - 1) * t.stride[i];
  if (t.offset < 0 || t.stride.some((s) => s < 0) || (last + 1) * es > data.byteLength) {
    throw new ModelLoadError(
      `Cannot read ${where}: offset ${t.offset}, size (${t.size.join(", ")}), stride (${
        t.stride.join(", ")
      }) reach element ${last}, storage holds ${data.byteLength / es}`,
    );
  }
  let contiguous = true;
  for (let i = t.size.length - 1, want = 1; i >= 0; i--) {
    if (t.size[i] !== 1 && t.stride[i] !== want) contiguous = false;
    want *= t.size[i];
  }
  if (contiguous) return data.subarray(t.offset * es, (t.offset + numel) * es);
  const out = new Uint8Array(numel * es);
  const index = new Array(t.size.length).fill(0);
  for (let j = 0; j < numel; j++) {
    let src = t.offset;
    for (let i = 0; i < index.length; i++) src += index[i] * t.stride[i];
    out.set(data.subarray(src * es, (src + 1) * es), j * es);
    for (let i = index.length - 1; i >= 0; i--) {
      if (++index[i] < t.size[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

function swapBytes(data: Uint8Array, es: number): Uint8Array {
  const out = new Uint8Array(data.byteLength);
  for (let i = 0; i < data.byteLength; i += es) {
    for (let k = 0; k < es; k++) out[i + k] = data[i + es - 1 - k];
  }
  return out;
}

const MARK = Symbol("mark");

/**
 * Interprets a pickle (protocols 0-5, data opcodes only). Globals outside the allowed list are refused;
 * a persistent id must be a storage tuple ('storage', storage_type, key, location, numel).
 */
export function unpickle(p: Uint8Array, where: string): unknown {
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let i = 0;
  const fail = (what: string): never => {
    throw new ModelLoadError(`Cannot read ${where}: ${what}`);
  };
  const need = (n: number) => {
    if (i + n > p.byteLength) fail(`pickle ends at byte ${p.byteLength}, expected ${n} more bytes at ${i}`);
  };
  const u8 = () => (need(1), p[i++]);
  const u16 = () => (need(2), i += 2, view.getUint16(i - 2, true));
  const u32 = () => (need(4), i += 4, view.getUint32(i - 4, true));
  const i32 = () => (need(4), i += 4, view.getInt32(i - 4, true));
  const u64 = () => {
    need(8);
    const n = view.getBigUint64(i, true);
    i += 8;
    if (n > BigInt(p.byteLength)) fail(`length ${n} at ${i - 8} runs past the end of the pickle`);
    return Number(n);
  };
  const take = (n: number) => (need(n), i += n, p.subarray(i - n, i));
  const line = () => {
    const end = p.indexOf(0x0a, i);
    if (end < 0) fail(`pickle ends inside a text line at ${i}`);
    const s = new TextDecoder().decode(p.subarray(i, end));
    i = end + 1;
    return s;
  };
  const utf8 = (b: Uint8Array) => new TextDecoder().decode(b);
  const pop = () => (stack.length === 0 ? fail(`stack underflow at byte ${i - 1}`) : stack.pop());
  const top = () => (stack.length === 0 ? fail(`stack underflow at byte ${i - 1}`) : stack[stack.length - 1]);
  const popMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail(`no MARK before byte ${i - 1}`);
    const items = stack.splice(at);
    items.shift();
    return items;
  };
  const global = (module: string, name: string): GlobalRef => {
    const full = `${module}.${name}`;
    if (!isAllowed(full)) {
      fail(
        `global ${full} is not allowed (a state dict of tensors needs only ${allowedList()}), refusing to load`,
      );
    }
    return { kind: "global", name: full };
  };
  const setItems = (dict: unknown, items: unknown[]) => {
    if (!(dict instanceof Map)) fail(`SETITEM(S) on ${describe(dict)}, expected a dict`);
    for (let k = 0; k + 1 < items.length; k += 2) (dict as PyDict).set(items[k], items[k + 1]);
  };
  const long = (b: Uint8Array) => {
    let n = 0n;
    for (let k = b.length - 1; k >= 0; k--) n = (n << 8n) | BigInt(b[k]);
    if (b.length && b[b.length - 1] & 0x80) n -= 1n << BigInt(8 * b.length);
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < -BigInt(Number.MAX_SAFE_INTEGER)) {
      fail(`integer ${n} at byte ${i} is out of range`);
    }
    return Number(n);
  };

  while (true) {
    const at = i;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(`pickle protocol ${p[i - 1]}, expected at most 5`);
        break;
      case 0x95: // FRAME
        i += 8;
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack, expected 1`);
        return stack[0];
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x8a: // LONG1
        stack.push(long(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(long(take(u32())));
        break;
      case 0x49: { // INT (text)
        const s = line();
        stack.push(s === "01" ? true : s === "00" ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(Number.parseInt(line().replace(/L$/, ""), 10));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(i, false));
        i += 8;
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number.parseFloat(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8(take(u64())));
        break;
      case 0x54: // BINSTRING
        stack.push(utf8(take(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(utf8(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()));
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()));
        break;
      case 0x29: // EMPTY_TUPLE
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x74: // TUPLE
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x61: { // APPEND
        const v = pop(), list = top();
        if (!Array.isArray(list)) fail(`APPEND to ${describe(list)}, expected a list`);
        (list as unknown[]).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark(), list = top();
        if (!Array.isArray(list)) fail(`APPENDS to ${describe(list)}, expected a list`);
        (list as unknown[]).push(...items);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number.parseInt(line(), 10), top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: { // GET (text)
        const k = op === 0x68 ? u8() : op === 0x6a ? u32() : Number.parseInt(line(), 10);
        if (!memo.has(k)) fail(`memo key ${k} read at byte ${at} was never stored`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line(), name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail(`STACK_GLOBAL of non-strings at ${at}`);
        }
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop() as GlobalRef;
        if (fn?.kind !== "global" || !(fn.name in CALLABLES)) {
          fail(
            `REDUCE at byte ${at} calls ${
              fn?.kind === "global" ? fn.name : describe(fn)
            }, expected a function`,
          );
        }
        if (!Array.isArray(args)) {
          fail(`REDUCE at byte ${at} with ${describe(args)}, expected an argument tuple`);
        }
        stack.push(CALLABLES[fn.name](args as unknown[], where));
        break;
      }
      case 0x62: { // BUILD: sets an object's state; only a dict's attributes (_metadata) appear here
        pop();
        if (!(top() instanceof Map) && (top() as { kind?: string })?.kind !== "tensor") {
          fail(`BUILD at byte ${at} on ${describe(top())}, expected a dict or tensor`);
        }
        break;
      }
      case 0x51: { // BINPERSID
        stack.push(persistent(pop(), where));
        break;
      }
      case 0x50: // PERSID (text ids are not what torch writes)
        fail(`text persistent id at byte ${at}, expected a storage tuple (BINPERSID)`);
        break;
      default:
        fail(
          `pickle opcode 0x${op.toString(16)} ("${String.fromCharCode(op)}") at byte ${at} is not allowed`,
        );
    }
  }
}

/** ('storage', storage_type, key, location, numel) -> a storage reference. */
function persistent(pid: unknown, where: string): StorageRef {
  const t = pid as unknown[];
  const type = t?.[1] as GlobalRef;
  if (
    !Array.isArray(t) || t.length !== 5 || t[0] !== "storage" || type?.kind !== "global" ||
    !(type.name.slice(6) in STORAGES) || typeof t[2] !== "string" || !Number.isInteger(t[4]) ||
    (t[4] as number) < 0
  ) {
    throw new ModelLoadError(
      `Cannot read ${where}: persistent id is ${
        describe(pid)
      }, expected ('storage', torch.<Type>Storage, key, location, numel)`,
    );
  }
  return { kind: "storage", dtype: STORAGES[type.name.slice(6)], key: t[2] as string, numel: t[4] as number };
}

function allowedList(): string {
  return [...Object.keys(CALLABLES), "torch.<Type>Storage"].join(", ");
}

function isIntList(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((v) => Number.isInteger(v));
}

function describe(x: unknown): string {
  if (x === null || x === undefined) return "None";
  if (x instanceof Map) return "a dict";
  if (Array.isArray(x)) return `a tuple of ${x.length}`;
  if (x instanceof Uint8Array) return `${x.byteLength} bytes`;
  if (typeof x === "object" && "kind" in x) {
    const o = x as { kind: string; name?: string };
    return o.kind === "global" ? `global ${o.name}` : `a ${o.kind}`;
  }
  return JSON.stringify(x);
}
