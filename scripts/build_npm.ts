/**
 * Builds the npm package "mamba-edge" into npm/ (what @deno/dnt would do; dnt lives on JSR, which the
 * project's machines cannot reach).
 *
 * - compiles mod.ts and everything it reaches to ES2022 modules (.js) with declarations (.d.ts), through
 *   TypeScript's compiler API; relative `.ts` specifiers become `.js` (`rewriteRelativeImportExtensions`)
 * - follows `new URL("./x", import.meta.url)` and `import.meta.resolve("./x")`: a `.ts` target (a worker
 *   script, say) joins the compiled graph and its reference is rewritten to `.js`; any other target (the
 *   embedded model directory, a data file) is copied to the same relative place, so the reference holds
 * - maps `npm:pkg@range/sub` specifiers to bare `pkg/sub` and lists `pkg: range` under dependencies
 * - checks every relative reference in the output against the files written, then writes package.json,
 *   README.md and LICENSE
 *
 * The output keeps the repository's layout (mod.js, src/..., models/...).
 *
 * @example
 * ```sh
 * deno task build:npm            # writes npm/
 * cd npm && npm pack             # mamba-edge-<version>.tgz
 * ```
 *
 * @module
 */

import ts from "typescript";
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is scripts/build_npm.ts). */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** Options of buildNpm. */
export interface BuildOptions {
  /** the project: deno.json (its version) and mod.ts (default: this repository) */
  root?: string;
  /** where the package goes (default: npm/ in the repository); emptied first */
  outDir?: string;
  /** progress notes (default console.error) */
  log?: (message: string) => void;
}

/** What buildNpm wrote. */
export interface BuildResult {
  outDir: string;
  /** the package.json written */
  packageJson: PackageJson;
  /** modules compiled, relative to the repository root */
  modules: string[];
  /** non-TypeScript files and directories copied, relative to the repository root */
  assets: string[];
}

/** The fields of package.json that the build writes. */
export interface PackageJson {
  name: string;
  version: string;
  description: string;
  license: string;
  type: "module";
  main: string;
  types: string;
  exports: Record<string, unknown>;
  files: string[];
  sideEffects: false;
  engines: { node: string };
  keywords: string[];
  dependencies: Record<string, string>;
}

const ENTRY = "mod.ts";
const NAME = "mamba-edge";
const DESCRIPTION =
  "Mamba state-space language models (Mamba-1 and Mamba-2) on WebGPU, SIMD WebAssembly or plain JavaScript";

/** The compiler options of the package: ES2022 modules for Node >= 20, browsers and bundlers. */
function compilerOptions(root: string, outDir: string): ts.CompilerOptions {
  return {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    // What Node 20 and browsers provide: a library that needs more fails here, not on a user's machine.
    lib: ["lib.es2023.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts", "lib.dom.asynciterable.d.ts"],
    types: [],
    strict: true,
    skipLibCheck: true,
    declaration: true,
    allowImportingTsExtensions: true,
    rewriteRelativeImportExtensions: true,
    resolveJsonModule: true,
    noEmitOnError: false, // diagnostics are checked (and some allowed) before emit
    newLine: ts.NewLineKind.LineFeed,
    rootDir: root,
    outDir,
  };
}

/** Builds the package; throws with every problem found when the build cannot be trusted. */
export async function buildNpm(opts: BuildOptions = {}): Promise<BuildResult> {
  const root = resolve(opts.root ?? ROOT);
  const outDir = resolve(opts.outDir ?? join(root, "npm"));
  const isOurs = (file: string) => inside(root, file);
  const rel = (file: string) => relative(root, file).split(sep).join("/");
  const log = opts.log ?? ((m: string) => console.error(m));
  const denoJson = JSON.parse(await readFile(join(root, "deno.json"), "utf8"));
  if (typeof denoJson.version !== "string") {
    throw new Error(`Cannot build npm package: deno.json version is ${denoJson.version}, expected a string`);
  }
  if (!relative(outDir, root).startsWith("..")) {
    throw new Error(
      `Cannot build npm package: output directory is ${outDir}, expected a directory that does not contain ${root}`,
    );
  }
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });

  const options = compilerOptions(root, outDir);
  const deps = new Map<string, string>(); // npm package -> version range
  const importMap: ImportMap = { imports: denoJson.imports ?? {}, base: root };
  const host = ts.createCompilerHost(options);
  const readSource = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    if (!isOurs(fileName) || !/\.[cm]?tsx?$/.test(fileName) || fileName.endsWith(".d.ts")) {
      return readSource(fileName, languageVersion, onError, shouldCreate);
    }
    const text = rewriteSource(ts.sys.readFile(fileName) ?? "", fileName, deps, importMap);
    return ts.createSourceFile(fileName, text, languageVersion, true);
  };
  const written: string[] = [];
  host.writeFile = (fileName, text) => {
    ts.sys.writeFile(fileName, fileName.endsWith(".d.ts") ? rewriteDeclaration(text, fileName) : text);
    written.push(resolve(fileName));
  };

  // The module graph: TypeScript follows imports; URL references to .ts files add roots until none is new.
  const roots = new Set([join(root, ENTRY)]);
  const assets = new Set<string>();
  let program: ts.Program;
  for (;;) {
    program = ts.createProgram([...roots], options, host);
    const before = roots.size;
    for (const sf of program.getSourceFiles()) {
      if (!isOurs(sf.fileName) || !TS_EXT.test(sf.fileName) || sf.fileName.endsWith(".d.ts")) continue;
      const scan = scanModule(ts.sys.readFile(sf.fileName) ?? "", sf.fileName);
      if (scan.computed.length > 0) {
        const lines = scan.computed.join(", ");
        throw new Error(
          `Cannot build npm package: ${
            rel(sf.fileName)
          } line ${lines} imports or refers to a computed path, ` +
            `expected a string literal (the build follows literal references only)`,
        );
      }
      for (const { text: ref } of scan.urlRefs) {
        const target = resolve(dirname(sf.fileName), ref);
        if (!isOurs(target)) {
          throw new Error(
            `Cannot build npm package: ${rel(sf.fileName)} refers to ${ref}, outside the repository`,
          );
        }
        if (/\.[cm]?tsx?$/.test(target)) roots.add(target);
        else assets.add(target);
      }
    }
    if (roots.size === before) break;
  }

  const problems = ts.getPreEmitDiagnostics(program).filter((d) => !externalModuleNotFound(d, deps));
  if (problems.length > 0) {
    throw new Error(`Cannot build npm package: the compiler says\n${format(problems)}`);
  }
  const emitted = program.emit();
  if (emitted.emitSkipped || emitted.diagnostics.some((d) => !externalModuleNotFound(d, deps))) {
    throw new Error(`Cannot build npm package: emit failed\n${format(emitted.diagnostics)}`);
  }

  for (const asset of assets) {
    const info = await stat(asset).catch(() => undefined);
    if (!info) throw new Error(`Cannot build npm package: asset ${rel(asset)} is missing`);
    await cp(asset, join(outDir, relative(root, asset)), { recursive: true });
  }
  const modules = program.getSourceFiles().filter((sf) =>
    isOurs(sf.fileName) && !sf.fileName.endsWith(".d.ts")
  )
    .map((sf) => rel(sf.fileName)).sort();
  await checkReferences(outDir, written);

  await cp(join(ROOT, "LICENSE"), join(outDir, "LICENSE"));
  await cp(join(ROOT, "scripts", "npm_README.md"), join(outDir, "README.md"));
  const top = (await readdir(outDir)).filter((f) => !["LICENSE", "README.md", "package.json"].includes(f));
  const packageJson: PackageJson = {
    name: NAME,
    version: denoJson.version,
    description: DESCRIPTION,
    license: "MIT",
    type: "module",
    main: "./mod.js",
    types: "./mod.d.ts",
    exports: {
      ".": { types: "./mod.d.ts", import: "./mod.js" },
      "./package.json": "./package.json",
    },
    files: top.sort(),
    sideEffects: false,
    // import attributes (`with { type: "json" }`) came in Node 20.10
    engines: { node: modules.some((m) => m.endsWith(".json")) ? ">=20.10" : ">=20" },
    keywords: ["mamba", "mamba2", "ssm", "state-space", "llm", "webgpu", "wasm", "inference"],
    dependencies: Object.fromEntries([...deps].sort()),
  };
  await writeFile(join(outDir, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
  log(
    `npm: ${NAME}@${packageJson.version} in ${outDir}: ${modules.length} modules, ` +
      `${assets.size} assets, ${deps.size} dependencies`,
  );
  return { outDir, packageJson, modules, assets: [...assets].map(rel).sort() };
}

/** Whether the file is in the project (and not in a node_modules folder of it). */
function inside(root: string, file: string): boolean {
  const r = relative(root, resolve(file));
  return r !== "" && !r.startsWith("..") && !r.split(sep).includes("node_modules");
}

/** A string in the source and where it is (positions of the literal, quotes included). */
interface Literal {
  text: string;
  start: number;
  end: number;
}

/** What a module refers to. */
export interface Scan {
  /** module specifiers: static and dynamic imports, exports, import types */
  specifiers: Literal[];
  /** relative `new URL("./x", import.meta.url)` and `import.meta.resolve("./x")` */
  urlRefs: Literal[];
  /** lines (1-based) of dynamic imports and import.meta.url references whose target is computed */
  computed: number[];
}

/** Scans a module's syntax tree (comments and plain strings are not references). */
export function scanModule(source: string, file: string): Scan {
  const kind = /\.[cm]?js$/.test(file) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true, kind);
  const specifiers: Literal[] = [], urlRefs: Literal[] = [], computed: number[] = [];
  const line = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const lit = (n: ts.Node): Literal | undefined =>
    ts.isStringLiteralLike(n) ? { text: n.text, start: n.getStart(sf), end: n.end } : undefined;
  const isMetaUrl = (n: ts.Node | undefined) =>
    n !== undefined && ts.isPropertyAccessExpression(n) && ts.isMetaProperty(n.expression) &&
    n.expression.keywordToken === ts.SyntaxKind.ImportKeyword && n.name.text === "url";
  const visit = (n: ts.Node): void => {
    let s: Literal | undefined;
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) {
      s = lit(n.moduleSpecifier);
    } else if (
      ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0]
    ) {
      s = lit(n.arguments[0]);
      if (!s) computed.push(line(n));
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) s = lit(n.argument.literal);
    else if (ts.isExternalModuleReference(n)) s = lit(n.expression);
    if (s) specifiers.push(s);
    let u: Literal | undefined;
    if (
      ts.isNewExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "URL" &&
      n.arguments?.length === 2 && isMetaUrl(n.arguments[1])
    ) {
      u = lit(n.arguments[0]);
      if (!u) computed.push(line(n));
    } else if (
      ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) &&
      n.expression.name.text === "resolve" &&
      ts.isMetaProperty(n.expression.expression) &&
      n.expression.expression.keywordToken === ts.SyntaxKind.ImportKeyword && n.arguments[0]
    ) {
      u = lit(n.arguments[0]);
      if (!u) computed.push(line(n));
    }
    if (u && /^\.\.?\//.test(u.text)) urlRefs.push(u);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return { specifiers, urlRefs, computed };
}

const TS_EXT = /\.([cm]?)tsx?$/;
const NPM_SPECIFIER = /^npm:((?:@[^/@]+\/)?[^/@]+)(?:@([^/]+))?(\/.*)?$/;

/** Replaces literals (quotes included) by the strings given, keeping the quote character. */
function edit(source: string, edits: { at: Literal; text: string }[]): string {
  let out = source;
  for (const { at, text } of edits.sort((a, b) => b.at.start - a.at.start)) {
    const q = out[at.start];
    out = out.slice(0, at.start) + q + text + q + out.slice(at.end);
  }
  return out;
}

/** deno.json "imports": bare specifiers (or prefixes ending in "/") to targets, relative to `base` (a dir). */
export interface ImportMap {
  imports: Record<string, string>;
  base: string;
}

/** The import map's target for a specifier, or undefined when it maps none. */
function mapped(spec: string, map: ImportMap): string | undefined {
  if (Object.hasOwn(map.imports, spec)) return map.imports[spec];
  const prefix = Object.keys(map.imports).filter((k) => k.endsWith("/") && spec.startsWith(k))
    .sort((a, b) => b.length - a.length)[0];
  return prefix === undefined ? undefined : map.imports[prefix] + spec.slice(prefix.length);
}

/**
 * The source as the package needs it: `npm:pkg@range/sub` (written so or through deno.json's import map)
 * -> `pkg/sub`, recording pkg: range in `deps`; import-map entries to local files -> relative paths; and
 * `.ts` targets of import.meta.url references -> `.js`.
 */
export function rewriteSource(
  source: string,
  file: string,
  deps: Map<string, string>,
  map: ImportMap = { imports: {}, base: "/" },
): string {
  const { specifiers, urlRefs } = scanModule(source, file);
  const edits: { at: Literal; text: string }[] = [];
  for (const s of specifiers) {
    if (/^(\.\.?\/|\/|node:|data:)/.test(s.text)) continue;
    let target = s.text.startsWith("npm:") ? s.text : mapped(s.text, map);
    if (target === undefined) continue;
    if (/^\.\.?\//.test(target)) {
      target = relative(dirname(file), resolve(map.base, target)).split(sep).join("/");
      edits.push({ at: s, text: target.startsWith(".") ? target : `./${target}` });
      continue;
    }
    const m = NPM_SPECIFIER.exec(target);
    if (!m) {
      throw new Error(
        `Cannot build npm package: ${file} imports "${s.text}" (${target}), expected an npm: or relative target`,
      );
    }
    const [, pkg, range = "*", sub = ""] = m;
    const had = deps.get(pkg);
    if (had !== undefined && had !== range) {
      throw new Error(
        `Cannot build npm package: ${file} imports npm:${pkg}@${range}, expected the range used elsewhere (${had})`,
      );
    }
    deps.set(pkg, range);
    edits.push({ at: s, text: pkg + sub });
  }
  for (const u of urlRefs) {
    if (TS_EXT.test(u.text)) edits.push({ at: u, text: u.text.replace(TS_EXT, ".$1js") });
  }
  return edit(source, edits);
}

/** Declarations refer to .js modules like the code does (the compiler keeps `.ts` in some positions). */
function rewriteDeclaration(text: string, file: string): string {
  const edits = scanModule(text, file).specifiers
    .filter((s) => /^\.\.?\//.test(s.text) && TS_EXT.test(s.text) && !s.text.endsWith(".d.ts"))
    .map((s) => ({ at: s, text: s.text.replace(TS_EXT, ".$1js") }));
  return edit(text, edits);
}

/** A "cannot find module" for a node: built-in or a declared npm dependency: resolved by the user's Node. */
function externalModuleNotFound(d: ts.Diagnostic, deps: Map<string, string>): boolean {
  if (![2307, 2591, 7016].includes(d.code)) return false;
  const name = /'([^']+)'/.exec(ts.flattenDiagnosticMessageText(d.messageText, "\n"))?.[1] ?? "";
  if (name.startsWith("node:")) return true;
  return [...deps.keys()].some((pkg) => name === pkg || name.startsWith(`${pkg}/`));
}

function format(diagnostics: readonly ts.Diagnostic[]): string {
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => ROOT,
    getNewLine: () => "\n",
  });
}

/** Every relative specifier or URL reference in the written modules names a file or directory in outDir. */
async function checkReferences(outDir: string, written: string[]): Promise<void> {
  const missing: string[] = [];
  for (const file of written) {
    if (!/\.(js|d\.ts)$/.test(file)) continue;
    const { specifiers, urlRefs } = scanModule(await readFile(file, "utf8"), file);
    for (const { text: ref } of [...specifiers, ...urlRefs]) {
      if (!/^\.\.?\//.test(ref)) continue;
      const where = `${relative(outDir, file)}: ${ref}`;
      if (TS_EXT.test(ref) && !ref.endsWith(".d.ts")) missing.push(`${where} (a .ts specifier)`);
      const target = resolve(dirname(file), ref);
      const candidates = file.endsWith(".d.ts") ? [target, target.replace(/\.js$/, ".d.ts")] : [target];
      const found = await Promise.all(candidates.map((c) => stat(c).then(() => true, () => false)));
      if (!found.some(Boolean)) missing.push(where);
    }
  }
  if (missing.length > 0) {
    throw new Error(`Cannot build npm package: references to missing files\n  ${missing.join("\n  ")}`);
  }
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--out");
  await buildNpm({ outDir: at >= 0 ? Deno.args[at + 1] : undefined });
}
