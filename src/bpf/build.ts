import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { arch } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository root (this file is dist/src/bpf/build.js once compiled). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BPF_SRC_DIR = join(REPO_ROOT, 'bpf');
export const DEFAULT_CACHE_DIR = process.env.SLUICE_BPF_CACHE ?? join(REPO_ROOT, 'build', 'bpf');

export interface CompileOptions {
  /** e.g. `balancer` for bpf/balancer.bpf.c, or a path to a .bpf.c file. */
  source: string;
  /** -D NAME=VALUE, for compile-time sizes. */
  defines?: Record<string, string | number>;
  cacheDir?: string;
}

const MULTIARCH: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

let clangVersion: Promise<string> | undefined;
function clangId(): Promise<string> {
  clangVersion ??= run('clang', ['--version']).then((r) => r.stdout.split('\n')[0], (e) => {
    throw Object.assign(new Error(`clang is needed to build the BPF programs (run scripts/bootstrap): ${e.message}`), { code: 'ENOCLANG' });
  });
  return clangVersion;
}

function sourcePath(source: string): string {
  return source.endsWith('.c') ? resolve(source) : join(BPF_SRC_DIR, `${source}.bpf.c`);
}

/** Hash of every C file beside the source (headers included), the flags and the compiler. */
function cacheKey(src: string, flags: string[], compiler: string): string {
  const h = createHash('sha256');
  const dir = dirname(src);
  for (const f of readdirSync(dir).filter((f) => /\.(c|h)$/.test(f)).sort()) {
    h.update(f).update('\0').update(readFileSync(join(dir, f))).update('\0');
  }
  h.update(basename(src)).update(flags.join(' ')).update(compiler);
  return h.digest('hex').slice(0, 16);
}

/**
 * Compile a BPF C program to an object file, cached by a hash of the sources, flags and
 * compiler: recompiling with the same limits costs a hash, new limits cost one clang run.
 */
export async function compileBpf(opts: CompileOptions): Promise<string> {
  const src = sourcePath(opts.source);
  if (!existsSync(src)) throw Object.assign(new Error(`no BPF source ${src}`), { code: 'ENOENT' });
  const defines = Object.entries(opts.defines ?? {}).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `-D${k}=${v}`);
  const multiarch = MULTIARCH[arch()] ?? `${arch()}-linux-gnu`;
  const flags = ['-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', `-I/usr/include/${multiarch}`, `-I${dirname(src)}`, ...defines];
  const compiler = await clangId();
  const cacheDir = opts.cacheDir ?? DEFAULT_CACHE_DIR;
  const out = join(cacheDir, `${basename(src, '.bpf.c')}-${cacheKey(src, flags, compiler)}.bpf.o`);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await run('clang', [...flags, '-c', src, '-o', tmp]);
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw Object.assign(new Error(`clang failed on ${src}:\n${err.stderr ?? err.message}`), { code: 'ECOMPILE' });
  }
  renameSync(tmp, out);
  return out;
}

/** Every `bpf/*.bpf.c` with default limits. */
export function bpfSources(): string[] {
  return readdirSync(BPF_SRC_DIR).filter((f) => f.endsWith('.bpf.c')).map((f) => basename(f, '.bpf.c')).sort();
}
