/**
 * Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016).
 *
 * Each real walks its own permutation of the slots, `offset + j·skip (mod M)`, taking the next
 * free slot on its turn. offset and skip come from two independent hashes of the real's id (its
 * address), never its position, and turns go in the order of the ids: two hosts with the same
 * reals build the same table whatever order the reals were added in, so a flow lands on the same
 * real whichever balancer ECMP picks. Weights: each round a real earns `weight` credits and
 * takes one slot per `maxWeight` credits, so equal weights take turns exactly (⌊M/N⌋ or ⌈M/N⌉
 * slots each) and unequal ones share in proportion.
 */
import { murmur3 } from './hash.js';

export const NO_REAL = 0xffffffff;
export const DEFAULT_TABLE_SIZE = 65537;
const SEED_OFFSET = 0x5eed0001;
const SEED_SKIP = 0x5eed0002;

export interface MaglevReal {
  /** Identity: the real's address text (with `:port` when it has its own). */
  id: string;
  /** 0 keeps the real out of the table. */
  weight: number;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** Per slot, the index in `reals` of the real that owns it, or NO_REAL when no real has weight. */
export function buildTable(reals: ReadonlyArray<MaglevReal>, size = DEFAULT_TABLE_SIZE): Uint32Array {
  if (!isPrime(size)) throw new RangeError(`Maglev table size ${size} must be a prime (65537 is the default)`);
  const table = new Uint32Array(size).fill(NO_REAL);
  const ids = new Set<string>();
  for (const r of reals) {
    if (ids.has(r.id)) throw new RangeError(`real ${r.id} appears twice`);
    ids.add(r.id);
    if (!Number.isInteger(r.weight) || r.weight < 0) throw new RangeError(`real ${r.id}: weight ${r.weight} must be a non-negative integer`);
  }
  const live = reals
    .map((r, index) => ({ index, id: r.id, weight: r.weight }))
    .filter((r) => r.weight > 0)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (live.length === 0) return table;

  const n = live.length;
  const offset = new Uint32Array(n), skip = new Uint32Array(n), next = new Uint32Array(n);
  const credit = new Float64Array(n);
  live.forEach((r, i) => {
    offset[i] = murmur3(r.id, SEED_OFFSET) % size;
    skip[i] = (murmur3(r.id, SEED_SKIP) % (size - 1)) + 1;
  });
  const maxWeight = Math.max(...live.map((r) => r.weight));
  let filled = 0;
  while (filled < size) {
    for (let i = 0; i < n && filled < size; i++) {
      credit[i] += live[i].weight;
      while (credit[i] >= maxWeight && filled < size) {
        credit[i] -= maxWeight;
        // The next free slot in this real's permutation. j·skip stays below 2^53: no overflow.
        let c = (offset[i] + next[i] * skip[i]) % size;
        while (table[c] !== NO_REAL) { next[i]++; c = (offset[i] + next[i] * skip[i]) % size; }
        table[c] = live[i].index;
        next[i]++;
        filled++;
      }
    }
  }
  return table;
}

/** The slot owners as ids, for comparing tables built from different real lists. */
export function owners(table: Uint32Array, reals: ReadonlyArray<MaglevReal>): Array<string | null> {
  return Array.from(table, (i) => (i === NO_REAL ? null : reals[i].id));
}

/**
 * Slots whose owner differs between two tables of the same size: what a writer must rewrite.
 * Compare `owners()` (ids) when the real lists differ, since indices shift when a real goes.
 */
export function changedSlots<T>(before: ArrayLike<T>, after: ArrayLike<T>): number[] {
  if (before.length !== after.length) throw new RangeError(`tables differ in size: ${before.length} vs ${after.length}`);
  const out: number[] = [];
  for (let i = 0; i < after.length; i++) if (before[i] !== after[i]) out.push(i);
  return out;
}

/** Slots held per real index. */
export function slotCounts(table: Uint32Array, n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const i of table) if (i !== NO_REAL) counts[i]++;
  return counts;
}
