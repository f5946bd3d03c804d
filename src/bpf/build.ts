import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { arch } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BpfError } from './errors.js';
import { native } from './native.js';

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
    throw new BpfError('compileBpf', 'ENOCLANG', `clang is needed to build the BPF programs (run scripts/bootstrap): ${e.message}`);
  });
  return clangVersion;
}

function sourcePath(source: string): string {
  return source.endsWith('.c') ? resolve(source) : join(BPF_SRC_DIR, `${source}.bpf.c`);
}

const LIBBPF_VERSION_H = '/usr/include/bpf/libbpf_version.h';

/**
 * The libbpf whose headers (bpf_helpers.h, bpf_helper_defs.h...) the programs include: the
 * headers' version, or where they are absent (scripts/vm, given the host's prebuilt objects) the
 * runtime library's, which libbpf-dev pins to the same version. Only major.minor exists in both.
 */
function libbpfId(): string {
  try {
    const h = readFileSync(LIBBPF_VERSION_H, 'utf8');
    const v = (name: string) => new RegExp(`#define\\s+${name}\\s+(\\d+)`).exec(h)?.[1];
    if (v('LIBBPF_MAJOR_VERSION') && v('LIBBPF_MINOR_VERSION')) return `libbpf ${v('LIBBPF_MAJOR_VERSION')}.${v('LIBBPF_MINOR_VERSION')}`;
  } catch { /* no libbpf-dev: ask the library */ }
  try {
    return `libbpf ${native().libbpfVersion()}`;
  } catch {
    return 'libbpf unknown';
  }
}

/** Hash of every C file beside the source (headers included), the flags, the compiler and libbpf's version. */
function cacheKey(src: string, flags: string[], compiler: string): string {
  const h = createHash('sha256');
  const dir = dirname(src);
  for (const f of readdirSync(dir).filter((f) => /\.(c|h)$/.test(f)).sort()) {
    h.update(f).update('\0').update(readFileSync(join(dir, f))).update('\0');
  }
  h.update(basename(src)).update(flags.join(' ')).update(compiler).update('\0').update(libbpfId());
  return h.digest('hex').slice(0, 16);
}

/**
 * Compile a BPF C program to an object file, cached by a hash of the sources, flags and
 * compiler: recompiling with the same limits costs a hash, new limits cost one clang run.
 */
export async function compileBpf(opts: CompileOptions): Promise<string> {
  const src = sourcePath(opts.source);
  if (!existsSync(src)) throw new BpfError('compileBpf', 'ENOENT', `no BPF source ${src}`);
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
    throw new BpfError('compileBpf', 'ECOMPILE', `clang failed on ${src}:\n${err.stderr ?? err.message}`);
  }
  renameSync(tmp, out);
  return out;
}

/** Every `bpf/*.bpf.c` with default limits. */
export function bpfSources(): string[] {
  return readdirSync(BPF_SRC_DIR).filter((f) => f.endsWith('.bpf.c')).map((f) => basename(f, '.bpf.c')).sort();
}
