/**
 * Where a model's files come from: a local directory, a URL to a directory, or bytes in memory.
 * Repo ids are resolved by hub.ts. Local files are read through `node:fs/promises` (Deno, Node, Bun);
 * everything else uses fetch, so browsers and edge workers read models from URLs.
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";

/** A set of files, read by name ("config.json", "model.safetensors", ...). */
export interface ModelSource {
  /** names the source in errors and logs */
  readonly name: string;
  /** The file's bytes, or undefined when it does not exist. */
  read(file: string): Promise<Uint8Array | undefined>;
}

/** Files in memory. */
export function memorySource(files: Record<string, Uint8Array>, name = "memory"): ModelSource {
  return { name, read: (file) => Promise.resolve(files[file]) };
}

/** A local directory, by path or file: URL. */
export function dirSource(dir: string | URL): ModelSource {
  const base = typeof dir === "string" ? dir.replace(/\/+$/, "") : dir;
  const name = typeof base === "string" ? base : decodeURIComponent(base.pathname).replace(/\/+$/, "");
  return {
    name,
    async read(file) {
      const fs = await import("node:fs/promises");
      const path = typeof base === "string" ? `${base}/${file}` : new URL(file, ensureSlash(base));
      try {
        return new Uint8Array(await fs.readFile(path));
      } catch (e) {
        if ((e as { code?: string }).code === "ENOENT") return undefined;
        throw new ModelLoadError(`Cannot read ${name}/${file}: ${(e as Error).message}`);
      }
    },
  };
}

/** A directory served over HTTP(S): each file is fetched from `${url}/${file}`. */
export function urlSource(url: string | URL, init?: RequestInit): ModelSource {
  const base = ensureSlash(new URL(url));
  return {
    name: base.href,
    async read(file) {
      const res = await fetch(new URL(file, base), init);
      if (res.status === 404) {
        await res.body?.cancel();
        return undefined;
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new ModelLoadError(
          `Cannot fetch ${new URL(file, base).href}: HTTP ${res.status}, expected 200`,
        );
      }
      const bytes = new Uint8Array(await res.arrayBuffer());
      const declared = res.headers.get("content-length");
      if (
        declared !== null && !res.headers.get("content-encoding") && Number(declared) !== bytes.byteLength
      ) {
        throw new ModelLoadError(
          `Cannot fetch ${new URL(file, base).href}: body is ${bytes.byteLength} bytes, expected ${declared}`,
        );
      }
      return bytes;
    },
  };
}

function ensureSlash(u: URL): URL {
  return u.href.endsWith("/") ? u : new URL(u.href + "/");
}

/** Reads a file that must exist. */
export async function readRequired(src: ModelSource, file: string): Promise<Uint8Array> {
  const bytes = await src.read(file);
  if (!bytes) throw new ModelLoadError(`Cannot load model from ${src.name}: ${file} is missing`);
  return bytes;
}
