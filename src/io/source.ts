/**
 * Where a model's files come from: a local directory, a URL to a directory, or bytes in memory.
 * Repo ids are resolved by hub.ts, downloads done by download.ts. Local files are read through `node:fs/promises` (Deno, Node, Bun);
 * everything else uses fetch, so browsers and edge workers read models from URLs.
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";
import { download, type DownloadOptions } from "./download.ts";

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

/**
 * A directory served over HTTP(S): each file is fetched whole from `${url}/${file}` (404: absent), with
 * progress reports and the length checked against Content-Length.
 */
export function urlSource(url: string | URL, opts: DownloadOptions = {}): ModelSource {
  const base = ensureSlash(new URL(url));
  return { name: base.href, read: (file) => download(new URL(file, base), file, opts) };
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
