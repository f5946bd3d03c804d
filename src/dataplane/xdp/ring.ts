/**
 * Maglev tables for the rings. Uses src/maglev (buildTable) when it is present; until it lands,
 * a small weighted Maglev (NSDI 2016, with per-round credits for weights) stands in, so the
 * data plane works either way. Both return, per slot, the index of the real in the input array
 * or 0xFFFFFFFF when there is none.
 */
import { createHash } from 'node:crypto';

export type BuildTable = (reals: Array<{ id: string; weight: number }>, size?: number) => Uint32Array;

const NONE = 0xffffffff;

function h32(s: string, salt: string): number {
  return createHash('sha256').update(salt).update(s).digest().readUInt32LE(0);
}

/** The stand-in: deterministic (hashes of the real's id), weights by credit. */
export const interimBuildTable: BuildTable = (reals, size = 65537) => {
  const table = new Uint32Array(size).fill(NONE);
  const live = reals.map((r, i) => ({ i, w: r.weight, off: h32(r.id, 'offset') % size, skip: (h32(r.id, 'skip') % (size - 1)) + 1, next: 0, credit: 0 })).filter((r) => r.w > 0);
  if (!live.length) return table;
  const maxW = Math.max(...live.map((r) => r.w));
  let filled = 0;
  while (filled < size) {
    for (const r of live) {
      r.credit += r.w;
      while (r.credit >= maxW && filled < size) {
        r.credit -= maxW;
        let c = (r.off + r.next * r.skip) % size;
        while (table[c] !== NONE) { r.next++; c = (r.off + r.next * r.skip) % size; }
        table[c] = r.i;
        r.next++;
        filled++;
      }
    }
  }
  return table;
};

let chosen: BuildTable | undefined;

/** src/maglev's buildTable if it is built, else the stand-in. */
export async function loadBuildTable(): Promise<BuildTable> {
  if (chosen) return chosen;
  const path = '../../maglev/index.js';
  try {
    const m = (await import(path)) as { buildTable?: BuildTable };
    chosen = typeof m.buildTable === 'function' ? m.buildTable : interimBuildTable;
  } catch {
    chosen = interimBuildTable;
  }
  return chosen;
}
