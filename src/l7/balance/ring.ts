/**
 * Ketama ring hash. Points come from each endpoint's address, so every worker and every L7
 * host builds the same ring, and removing one endpoint moves only the keys it owned.
 */
import { createHash } from 'node:crypto';
import type { Endpoint } from '../endpoint.js';
import { fnv1a } from '../hash.js';
import type { Balancer } from './index.js';

const POINTS_PER_WEIGHT = 100;

export class RingHash implements Balancer {
  private readonly points: Uint32Array;
  private readonly owners: Endpoint[];

  /** `all` are every endpoint of the pool (the ring does not move when one fails); `isUp` filters at pick time. */
  constructor(all: Endpoint[], private readonly isUp: (e: Endpoint) => boolean) {
    const pts: Array<[number, Endpoint]> = [];
    for (const e of all) {
      const n = e.weight * POINTS_PER_WEIGHT;
      for (let i = 0; i < n; i += 4) {
        const d = createHash('md5').update(`${e.key}-${i / 4}`).digest();
        for (let j = 0; j < 4 && i + j < n; j++) pts.push([d.readUInt32LE(j * 4), e]);
      }
    }
    pts.sort((a, b) => a[0] - b[0] || (a[1].key < b[1].key ? -1 : 1));
    this.points = Uint32Array.from(pts.map((p) => p[0]));
    this.owners = pts.map((p) => p[1]);
  }

  pick(hashKey: string | undefined): Endpoint | undefined {
    const n = this.points.length;
    if (n === 0) return undefined;
    const h = fnv1a(hashKey ?? '');
    let lo = 0, hi = n;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (this.points[mid] < h) lo = mid + 1; else hi = mid; }
    const first = this.owners[lo % n];
    if (this.isUp(first)) return first;
    // Walk clockwise past endpoints that are down; each distinct one is tried once.
    const tried = new Set<Endpoint>([first]);
    for (let k = 0; k < n; k++) {
      const e = this.owners[(lo + k) % n];
      if (tried.has(e)) continue;
      if (this.isUp(e)) return e;
      tried.add(e);
    }
    return undefined;
  }
}
