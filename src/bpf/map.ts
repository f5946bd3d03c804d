import { native } from './native.js';
import { BpfError } from './errors.js';
import type { Codec } from './codec.js';

export const MapType = {
  HASH: 1, ARRAY: 2, PERCPU_HASH: 5, PERCPU_ARRAY: 6, LRU_HASH: 9, LRU_PERCPU_HASH: 10, DEVMAP: 14, DEVMAP_HASH: 25,
} as const;
const PERCPU = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH]);

export const UpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

/** A BPF map by file descriptor: raw byte keys and values, sized and checked here. */
export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  /** Size of one value as the program sees it (one CPU's slot for per-CPU maps). */
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly id: number;
  readonly perCpu: boolean;
  /** Per-CPU maps: how many slots each value has (possible CPUs). */
  readonly cpus: number;
  #fd: number;
  #owned: boolean;

  /** Wrap an fd; `owned` fds are closed by close(). */
  constructor(fd: number, owned: boolean) {
    const info = native().mapInfo(fd);
    this.#fd = fd;
    this.#owned = owned;
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.id = info.id;
    this.perCpu = PERCPU.has(info.type);
    this.cpus = this.perCpu ? native().numPossibleCpus() : 1;
  }

  static openPinned(path: string): BpfMap {
    return new BpfMap(native().objGet(path), true);
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError('BpfMap.fd', 'EBADF', `map ${this.name} is closed`);
    return this.#fd;
  }

  /** Bytes of a whole value buffer: per-CPU values hold one 8-byte-aligned slot per possible CPU. */
  get valueBufferSize(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * this.cpus : this.valueSize;
  }

  #checkKey(op: string, key: Buffer): void {
    if (!Buffer.isBuffer(key)) throw new BpfError(op, 'EINVAL', `map ${this.name}: key must be a Buffer`);
    if (key.length !== this.keySize) throw new BpfError(op, 'EINVAL', `map ${this.name}: key is ${key.length} bytes, the map's keys are ${this.keySize}`);
  }
  #checkValue(op: string, value: Buffer): void {
    if (!Buffer.isBuffer(value)) throw new BpfError(op, 'EINVAL', `map ${this.name}: value must be a Buffer`);
    if (value.length !== this.valueBufferSize) {
      const per = this.perCpu ? ` (${this.cpus} CPUs x ${this.valueBufferSize / this.cpus})` : '';
      throw new BpfError(op, 'EINVAL', `map ${this.name}: value is ${value.length} bytes, the map's values are ${this.valueBufferSize}${per}`);
    }
  }

  lookup(key: Buffer): Buffer | null {
    this.#checkKey('BpfMap.lookup', key);
    return native().mapLookup(this.fd, key, this.valueBufferSize, 0);
  }

  /** Per-CPU maps: one buffer (of valueSize bytes) per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | null {
    const v = this.lookup(key);
    return v ? splitPerCpu(v, this.cpus, this.valueSize) : null;
  }

  /** Per-CPU maps: write one value per possible CPU (each `valueSize` bytes). */
  updatePerCpu(key: Buffer, values: readonly Buffer[], flags: number = UpdateFlags.ANY): void {
    this.update(key, this.joinPerCpu(values, 'BpfMap.updatePerCpu'), flags);
  }

  /** The whole-value buffer for per-CPU `values`: each in its 8-byte-aligned slot. */
  joinPerCpu(values: readonly Buffer[], op = 'BpfMap.joinPerCpu'): Buffer {
    if (!this.perCpu) throw new BpfError(op, 'EINVAL', `map ${this.name} is not per-CPU`);
    if (values.length !== this.cpus) throw new BpfError(op, 'EINVAL', `map ${this.name}: ${values.length} values for ${this.cpus} possible CPUs`);
    const slot = this.valueBufferSize / this.cpus;
    const b = Buffer.alloc(this.valueBufferSize);
    values.forEach((v, i) => {
      if (v.length !== this.valueSize) throw new BpfError(op, 'EINVAL', `map ${this.name}: CPU ${i}'s value is ${v.length} bytes, the map's values are ${this.valueSize}`);
      v.copy(b, i * slot);
    });
    return b;
  }

  update(key: Buffer, value: Buffer, flags: number = UpdateFlags.ANY): void {
    this.#checkKey('BpfMap.update', key);
    this.#checkValue('BpfMap.update', value);
    native().mapUpdate(this.fd, key, value, flags);
  }

  /** false when the key was not there. */
  delete(key: Buffer): boolean {
    this.#checkKey('BpfMap.delete', key);
    return native().mapDelete(this.fd, key);
  }

  *keys(): Generator<Buffer> {
    let k: Buffer | null = null;
    while ((k = native().mapNextKey(this.fd, k, this.keySize)) !== null) yield k;
  }

  /** Every entry, in batches of `chunk` per syscall. */
  lookupAll(chunk = 4096): Array<[Buffer, Buffer]> {
    const n = native();
    const tokenSize = Math.max(this.keySize, 8);
    const vs = this.valueBufferSize;
    const out: Array<[Buffer, Buffer]> = [];
    let inBatch: Buffer | null = null;
    for (;;) {
      const keys = Buffer.alloc(chunk * this.keySize);
      const values = Buffer.alloc(chunk * vs);
      const outBatch = Buffer.alloc(tokenSize);
      const r = n.mapLookupBatch(this.fd, inBatch, outBatch, keys, values, chunk);
      for (let i = 0; i < r.count; i++) {
        out.push([keys.subarray(i * this.keySize, (i + 1) * this.keySize), values.subarray(i * vs, (i + 1) * vs)]);
      }
      if (r.done) return out;
      inBatch = outBatch;
    }
  }

  /** Write many entries in one syscall. */
  updateBatch(entries: ReadonlyArray<readonly [Buffer, Buffer]>, flags: number = UpdateFlags.ANY): number {
    if (entries.length === 0) return 0;
    const keys = Buffer.alloc(entries.length * this.keySize);
    const values = Buffer.alloc(entries.length * this.valueBufferSize);
    entries.forEach(([k, v], i) => {
      this.#checkKey('BpfMap.updateBatch', k);
      this.#checkValue('BpfMap.updateBatch', v);
      k.copy(keys, i * this.keySize);
      v.copy(values, i * this.valueBufferSize);
    });
    return native().mapUpdateBatch(this.fd, keys, values, entries.length, flags);
  }

  /** Delete many keys in one syscall; fails with ENOENT if one is absent. */
  deleteBatch(keysList: readonly Buffer[]): number {
    if (keysList.length === 0) return 0;
    const keys = Buffer.alloc(keysList.length * this.keySize);
    keysList.forEach((k, i) => { this.#checkKey('BpfMap.deleteBatch', k); k.copy(keys, i * this.keySize); });
    return native().mapDeleteBatch(this.fd, keys, keysList.length);
  }

  pin(path: string): void {
    native().objPin(this.fd, path);
  }

  typed<K, V>(key: Codec<K>, value: Codec<V>): TypedMap<K, V> {
    return new TypedMap(this, key, value);
  }

  close(): void {
    if (this.#owned && this.#fd >= 0) native().closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** A per-CPU value buffer as one slice per CPU: the whole 8-byte-aligned slot, or its first `valueSize` bytes. */
export function splitPerCpu(v: Buffer, cpus: number, valueSize?: number): Buffer[] {
  const slot = v.length / cpus;
  return Array.from({ length: cpus }, (_, i) => v.subarray(i * slot, i * slot + (valueSize ?? slot)));
}

/** A map with codecs for its keys and values. Per-CPU maps decode to one value per CPU. */
export class TypedMap<K, V> {
  constructor(readonly raw: BpfMap, readonly key: Codec<K>, readonly value: Codec<V>) {
    if (key.size !== raw.keySize) throw new BpfError('BpfMap.typed', 'EINVAL', `map ${raw.name}: key codec is ${key.size} bytes, the map's keys are ${raw.keySize}`);
    if (value.size !== raw.valueSize) throw new BpfError('BpfMap.typed', 'EINVAL', `map ${raw.name}: value codec is ${value.size} bytes, the map's values are ${raw.valueSize}`);
  }

  encodeKey(k: K): Buffer {
    const b = Buffer.alloc(this.key.size);
    this.key.encode(k, b, 0);
    return b;
  }

  encodeValue(v: V): Buffer {
    const b = Buffer.alloc(this.raw.valueBufferSize);
    if (this.raw.perCpu) {
      const slot = b.length / this.raw.cpus;
      for (let i = 0; i < this.raw.cpus; i++) this.value.encode(v, b, i * slot);
    } else this.value.encode(v, b, 0);
    return b;
  }

  /** Per-CPU maps: the value buffer holding one value per possible CPU. */
  encodePerCpu(vs: readonly V[]): Buffer {
    return this.raw.joinPerCpu(vs.map((v) => {
      const b = Buffer.alloc(this.value.size);
      this.value.encode(v, b, 0);
      return b;
    }), 'TypedMap.setPerCpu');
  }

  get(k: K): V | undefined {
    const v = this.raw.lookup(this.encodeKey(k));
    return v ? this.value.decode(v, 0) : undefined;
  }

  getPerCpu(k: K): V[] | undefined {
    const v = this.raw.lookupPerCpu(this.encodeKey(k));
    return v ? v.map((b) => this.value.decode(b, 0)) : undefined;
  }

  set(k: K, v: V, flags: number = UpdateFlags.ANY): void {
    this.raw.update(this.encodeKey(k), this.encodeValue(v), flags);
  }

  /** Per-CPU maps: one value per possible CPU (set() writes the same value to every CPU). */
  setPerCpu(k: K, vs: readonly V[], flags: number = UpdateFlags.ANY): void {
    this.raw.update(this.encodeKey(k), this.encodePerCpu(vs), flags);
  }

  delete(k: K): boolean {
    return this.raw.delete(this.encodeKey(k));
  }

  setMany(entries: ReadonlyArray<readonly [K, V]>, flags: number = UpdateFlags.ANY): number {
    return this.raw.updateBatch(entries.map(([k, v]) => [this.encodeKey(k), this.encodeValue(v)] as const), flags);
  }

  deleteMany(keys: readonly K[]): number {
    return this.raw.deleteBatch(keys.map((k) => this.encodeKey(k)));
  }

  /** Every entry; per-CPU values come back as arrays (one per CPU). */
  entries(): Array<[K, V]> {
    if (this.raw.perCpu) throw new BpfError('TypedMap.entries', 'EINVAL', `map ${this.raw.name} is per-CPU: use entriesPerCpu()`);
    return this.raw.lookupAll().map(([k, v]) => [this.key.decode(k, 0), this.value.decode(v, 0)]);
  }

  entriesPerCpu(): Array<[K, V[]]> {
    return this.raw.lookupAll().map(([k, v]) => [this.key.decode(k, 0), splitPerCpu(v, this.raw.cpus).map((b) => this.value.decode(b, 0))]);
  }
}
