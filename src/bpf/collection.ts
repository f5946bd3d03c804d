import { native, type OpenOptions } from './native.js';
import { BpfError } from './errors.js';
import { BpfMap } from './map.js';
import { Program } from './program.js';

export interface LoadOptions {
  /** max_entries per map name, set before load. */
  maxEntries?: Record<string, number>;
  /** `const volatile` globals by name, as raw bytes (little endian), set before load. */
  globals?: Record<string, Buffer>;
  /** Maps by name to reuse instead of creating (e.g. opened from pins): a new program version keeps the old one's state. The map's type, key/value sizes and max_entries must match. */
  reuseMaps?: Record<string, BpfMap>;
  /** The object's name (default: the file's base name); prefixes its .rodata/.data/.bss maps' kernel names. */
  objectName?: string;
  /** Where maps declared with `__uint(pinning, LIBBPF_PIN_BY_NAME)` are pinned (and reused from) on load; default /sys/fs/bpf. */
  pinRootPath?: string;
  /** Extra `CONFIG_xxx=...` lines for `extern` Kconfig variables, overriding the running kernel's. */
  kconfig?: string;
  /** A BTF file to use instead of /sys/kernel/btf/vmlinux for CO-RE relocations. */
  btfCustomPath?: string;
  /**
   * Verifier log level for every load (1 basic, 2 verbose, 4 statistics; they combine). Without
   * it a failed load is retried at level 1 and its log is still in the error; with it the log
   * of a successful load is kept too (Collection.kernelLog).
   */
  logLevel?: number;
  /** Bytes for the verifier log with `logLevel` (default 16 MiB): a full buffer fails the load with ENOSPC. */
  logSize?: number;
}

/**
 * One loaded BPF object file: its programs and maps by name. The maps and programs share the
 * object's fds: they are valid until close().
 */
export class Collection {
  readonly path: string;
  /** The object's name (LoadOptions.objectName or the file's base name). */
  readonly name: string;
  /** With LoadOptions.logLevel: the kernel log of the last load step (libbpf reuses one buffer, so the last program's). */
  readonly kernelLog: string;
  #handle: number;
  #maps = new Map<string, BpfMap>();
  #programs = new Map<string, Program>();

  private constructor(path: string, handle: number) {
    this.path = path;
    this.#handle = handle;
    this.name = native().objName(handle);
    this.kernelLog = native().objLog(handle);
  }

  /** Open, size, load. On failure nothing stays open; verifier output is in the error message. */
  static load(path: string, opts: LoadOptions = {}): Collection {
    const n = native();
    const open: OpenOptions = {
      objectName: opts.objectName, pinRootPath: opts.pinRootPath, kconfig: opts.kconfig, btfCustomPath: opts.btfCustomPath,
      kernelLogLevel: opts.logLevel, kernelLogSize: opts.logSize,
    };
    const h = n.objOpen(path, open);
    try {
      for (const [name, size] of Object.entries(opts.maxEntries ?? {})) n.objSetMaxEntries(h, name, size);
      for (const [name, value] of Object.entries(opts.globals ?? {})) n.objSetGlobal(h, name, value);
      for (const [name, m] of Object.entries(opts.reuseMaps ?? {})) n.objReuseMap(h, name, m.fd);
      n.objLoad(h);
    } catch (e) {
      n.objClose(h);
      throw e;
    }
    const c = new Collection(path, h);
    try {
      for (const m of n.objMaps(h)) if (!m.internal) c.#maps.set(m.name, new BpfMap(m.fd, false));
      for (const p of n.objPrograms(h)) c.#programs.set(p.name, new Program(p.fd, false, p.name));
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  get mapNames(): string[] {
    return [...this.#maps.keys()];
  }

  get programNames(): string[] {
    return [...this.#programs.keys()];
  }

  map(name: string): BpfMap {
    const m = this.#maps.get(name);
    if (!m) throw new BpfError('Collection.map', 'ENOENT', `${this.path}: no map named "${name}" (maps: ${this.mapNames.join(', ')})`);
    return m;
  }

  program(name: string): Program {
    const p = this.#programs.get(name);
    if (!p) throw new BpfError('Collection.program', 'ENOENT', `${this.path}: no program named "${name}" (programs: ${this.programNames.join(', ')})`);
    return p;
  }

  close(): void {
    if (this.#handle) native().objClose(this.#handle);
    this.#handle = 0;
    for (const m of this.#maps.values()) m.close();
    for (const p of this.#programs.values()) p.close();
  }
}
