/**
 * Repo ids ("state-spaces/mamba-130m", "owner/name@revision") as model sources: files come from
 * `{endpoint}/{repo}/resolve/{revision}/{file}` (the Hugging Face layout) and are kept in a download
 * cache on disk where a file system exists (Deno, Node, Bun). A file enters the cache only whole: it is
 * written to a temporary name and renamed into place once its length matched Content-Length, so an
 * interrupted download never looks complete. Files the repo lacks are remembered too (`<file>.404`), so
 * that an offline load knows model.safetensors is absent rather than not yet downloaded.
 *
 * @example
 * ```ts
 * import { hubSource } from "./hub.ts";
 * const src = hubSource("state-spaces/mamba-130m", { onProgress: (p) => console.log(p.file, p.done, p.total) });
 * const config = await src.read("config.json");
 * ```
 *
 * @module
 */

import { DownloadError, ModelLoadError } from "../errors.ts";
import { download, type DownloadOptions, type Progress } from "./download.ts";
import type { ModelSource } from "./source.ts";

export type { Progress } from "./download.ts";

/** Options of hubSource (also accepted by loadModel). */
export interface HubOptions {
  /** the server (default: $MAMBA_EDGE_ENDPOINT, else https://huggingface.co) */
  endpoint?: string;
  /** branch, tag or commit (default: the id's @revision, else "main") */
  revision?: string;
  /** the download cache (default: $MAMBA_EDGE_CACHE, else ~/.cache/mamba-edge); false: no cache */
  cacheDir?: string | false;
  /** use only the cache; a file missing from it is an error */
  offline?: boolean;
  /** called as files download */
  onProgress?: (p: Progress) => void;
  /** give up on a connection that sends nothing for this long (default 60 s) */
  stallTimeoutMs?: number;
  /** sent as "Authorization: Bearer <token>" (private or gated repos) */
  token?: string;
}

const REPO_ID =
  /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@([A-Za-z0-9][A-Za-z0-9._/-]*))?$/;

/** { repo: "owner/name", revision } when `s` looks like a repo id, else undefined. */
export function parseRepoId(s: string): { repo: string; revision?: string } | undefined {
  const m = REPO_ID.exec(s);
  if (!m || m[1].endsWith(".") || m[2] === "." || m[2] === ".." || m[3]?.includes("..")) return undefined;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] };
}

/** An environment variable, where the runtime has them and allows reading them; else undefined. */
export function env(name: string): string | undefined {
  try {
    const g = globalThis as {
      Deno?: { env: { get(k: string): string | undefined } };
      process?: { env: Record<string, string | undefined> };
    };
    return g.Deno ? g.Deno.env.get(name) : g.process?.env?.[name];
  } catch {
    return undefined; // no permission to read the environment
  }
}

/** The files of a repo id, downloaded on first read and cached. */
export function hubSource(id: string, opts: HubOptions = {}): ModelSource {
  const parsed = parseRepoId(id);
  if (!parsed) {
    throw new ModelLoadError(`Cannot resolve repo id: "${id}" is not of the form owner/name[@revision]`);
  }
  const { repo } = parsed;
  const revision = opts.revision ?? parsed.revision ?? "main";
  const endpoint = (opts.endpoint ?? env("MAMBA_EDGE_ENDPOINT") ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
  const name = revision === "main" ? repo : `${repo}@${revision}`;
  let cache: Promise<Cache | undefined> | undefined;
  const dl: DownloadOptions = {
    onProgress: opts.onProgress,
    stallTimeoutMs: opts.stallTimeoutMs,
    init: opts.token ? { headers: { authorization: `Bearer ${opts.token}` } } : undefined,
  };
  return {
    name,
    async read(file) {
      if (file.split("/").some((part) => part === "" || part === "." || part === "..")) {
        throw new ModelLoadError(`Cannot read ${name}: file name "${file}" is not a plain relative path`);
      }
      cache ??= openCache(opts.cacheDir, repo, revision);
      const c = await cache;
      if (c) {
        const hit = await c.get(file);
        if (hit) return hit;
        if (opts.offline && await c.knownMissing(file)) return undefined;
      }
      if (opts.offline) {
        throw new DownloadError(
          c
            ? `Cannot load ${name} offline: ${file} is not in the cache ${c.dir}, expected it downloaded before (load once without offline)`
            : `Cannot load ${name} offline: there is no download cache here (no file system), expected one`,
        );
      }
      const url = new URL(`${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`);
      const bytes = await download(url, file, dl);
      if (c) await (bytes ? c.put(file, bytes) : c.markMissing(file));
      return bytes;
    },
  };
}

/** The cache of one repo revision: `<root>/<owner>/<name>/<revision>/<file>`. */
interface Cache {
  dir: string;
  get(file: string): Promise<Uint8Array | undefined>;
  put(file: string, bytes: Uint8Array): Promise<void>;
  knownMissing(file: string): Promise<boolean>;
  markMissing(file: string): Promise<void>;
}

type Fs = typeof import("node:fs/promises");

/** The default cache directory, or undefined where there is none to be had. */
export function defaultCacheDir(): string | undefined {
  const explicit = env("MAMBA_EDGE_CACHE");
  if (explicit) return explicit;
  const home = env("HOME") ?? env("USERPROFILE");
  return home ? `${home}/.cache/mamba-edge` : undefined;
}

async function openCache(root: string | false | undefined, repo: string, revision: string) {
  if (root === false) return undefined;
  const base = root ?? defaultCacheDir();
  if (!base) return undefined;
  let fs: Fs;
  try {
    fs = await import("node:fs/promises");
  } catch {
    return undefined; // a browser or worker: no file system, no cache
  }
  const dir = `${base.replace(/\/+$/, "")}/${repo}/${encodeURIComponent(revision)}`;
  const exists = async (path: string) => {
    try {
      await fs.stat(path);
      return true;
    } catch {
      return false;
    }
  };
  const write = async (path: string, bytes: Uint8Array) => {
    await fs.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const tmp = `${path}.partial-${crypto.randomUUID()}`;
    try {
      await fs.writeFile(tmp, bytes);
      await fs.rename(tmp, path);
    } catch (e) {
      await fs.rm(tmp, { force: true }).catch(() => {});
      throw new DownloadError(`Cannot write ${path} into the download cache: ${(e as Error).message}`, {
        cause: e,
      });
    }
  };
  return {
    dir,
    async get(file) {
      try {
        return new Uint8Array(await fs.readFile(`${dir}/${file}`));
      } catch (e) {
        if ((e as { code?: string }).code === "ENOENT") return undefined;
        throw new ModelLoadError(
          `Cannot read ${dir}/${file} from the download cache: ${(e as Error).message}`,
        );
      }
    },
    put: (file, bytes) => write(`${dir}/${file}`, bytes),
    knownMissing: (file) => exists(`${dir}/${file}.404`),
    markMissing: (file) => write(`${dir}/${file}.404`, new Uint8Array(0)),
  } satisfies Cache;
}
