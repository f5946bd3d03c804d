import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfError } from './errors.js';

/** The raw addon (native/src/addon.cc). Use the classes in this folder, not this. */
export interface NativeBpf {
  objOpen(path: string, opts?: OpenOptions): number;
  objName(obj: number): string;
  objLog(obj: number): string;
  objSetMaxEntries(obj: number, map: string, n: number): void;
  objSetGlobal(obj: number, name: string, value: Buffer): void;
  objLoad(obj: number): void;
  objReuseMap(obj: number, map: string, fd: number): void;
  objClose(obj: number): void;
  objMaps(obj: number): Array<{ name: string; fd: number; type: number; keySize: number; valueSize: number; maxEntries: number; internal: boolean }>;
  objPrograms(obj: number): Array<{ name: string; fd: number; type: number }>;
  mapLookup(fd: number, key: Buffer, valueLen: number, flags: number): Buffer | null;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapNextKey(fd: number, key: Buffer | null, keyLen: number): Buffer | null;
  mapLookupBatch(fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: number): { count: number; done: boolean };
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags: number): number;
  mapDeleteBatch(fd: number, keys: Buffer, count: number): number;
  mapInfo(fd: number): { id: number; name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number };
  progInfo(fd: number): { id: number; name: string; type: number; tag: string };
  linkInfo(fd: number): { id: number; progId: number; type: number; ifindex?: number };
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  xdpAttach(progFd: number, ifindex: number, flags: number): number;
  xdpQuery(ifindex: number): { attachMode: number; progId: number; drvProgId: number; skbProgId: number; hwProgId: number };
  linkUpdate(linkFd: number, progFd: number, oldProgFd: number): void;
  linkDetach(linkFd: number): void;
  testRun(progFd: number, data: Buffer, outLen: number, repeat: number): { retval: number; data: Buffer; duration: number };
  closeFd(fd: number): void;
  numPossibleCpus(): number;
  libbpfVersion(): string;
  ifIndex(name: string): number;
}

/** bpf_object_open_opts, by libbpf's field names in camel case. */
export interface OpenOptions {
  objectName?: string;
  pinRootPath?: string;
  kconfig?: string;
  btfCustomPath?: string;
  kernelLogLevel?: number;
  kernelLogSize?: number;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const require = createRequire(import.meta.url);

let cached: NativeBpf | undefined;
export function native(): NativeBpf {
  if (!cached) {
    try {
      cached = require(join(root, 'native', 'build', 'Release', 'sluice_bpf.node')) as NativeBpf;
    } catch (e) {
      throw new BpfError('native', 'ENOADDON', `the native BPF addon is not built (run scripts/bootstrap): ${(e as Error).message}`);
    }
  }
  return cached;
}

export { isBpfError } from './errors.js';
/** The shape of the addon's errors (src/bpf's own are BpfError instances with the same fields). */
export type { BpfErrorShape as BpfError } from './errors.js';
