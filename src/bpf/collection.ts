import { native } from './native.js';
import { BpfMap } from './map.js';
import { Program } from './program.js';

export interface LoadOptions {
  /** max_entries per map name, set before load. */
  maxEntries?: Record<string, number>;
  /** `const volatile` globals by name, as raw bytes (little endian), set before load. */
  globals?: Record<string, Buffer>;
  /** Maps by name to reuse instead of creating (e.g. opened from pins): a new program version keeps the old one's state. The map's type, key/value sizes and max_entries must match. */
  reuseMaps?: Record<string, BpfMap>;
}

/**
 * One loaded BPF object file: its programs and maps by name. The maps and programs share the
 * object's fds: they are valid until close().
 */
export class Collection {
  readonly path: string;
  #handle: number;
  #maps = new Map<string, BpfMap>();
  #programs = new Map<string, Program>();

  private constructor(path: string, handle: number) {
    this.path = path;
    this.#handle = handle;
  }

  /** Open, size, load. On failure nothing stays open; verifier output is in the error message. */
  static load(path: string, opts: LoadOptions = {}): Collection {
    const n = native();
    const h = n.objOpen(path);
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
    for (const m of n.objMaps(h)) if (!m.internal) c.#maps.set(m.name, new BpfMap(m.fd, false));
    for (const p of n.objPrograms(h)) c.#programs.set(p.name, new Program(p.fd, false, p.name));
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
    if (!m) throw Object.assign(new Error(`${this.path}: no map named "${name}" (maps: ${this.mapNames.join(', ')})`), { code: 'ENOENT' });
    return m;
  }

  program(name: string): Program {
    const p = this.#programs.get(name);
    if (!p) throw Object.assign(new Error(`${this.path}: no program named "${name}" (programs: ${this.programNames.join(', ')})`), { code: 'ENOENT' });
    return p;
  }

  close(): void {
    if (this.#handle) native().objClose(this.#handle);
    this.#handle = 0;
    for (const m of this.#maps.values()) m.close();
    for (const p of this.#programs.values()) p.close();
  }
}
