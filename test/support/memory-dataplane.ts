/**
 * A Dataplane that keeps the table in memory. Only for unit tests of the agent API and CLI;
 * the same paths run against the real XDP data plane in test/e2e and IPVS in test/ipvs.
 */
import type { Dataplane, ServiceTable, StatsSnapshot, SyncReport } from '../../src/model/index.js';
import { vipKey, realKey } from '../../src/model/index.js';

export class MemoryDataplane implements Dataplane {
  readonly kind = 'xdp' as const;
  table: ServiceTable = { services: [] };
  syncs = 0;
  closed: { keepForwarding: boolean } | null = null;
  /** When set, the next sync throws this (to test rollback). */
  failNext: Error | null = null;

  async sync(desired: ServiceTable): Promise<SyncReport> {
    if (this.failNext) { const e = this.failNext; this.failNext = null; throw e; }
    this.syncs++;
    const before = new Map(this.table.services.map((s) => [vipKey(s), JSON.stringify(s)]));
    const after = new Map(desired.services.map((s) => [vipKey(s), JSON.stringify(s)]));
    let added = 0, updated = 0, removed = 0;
    for (const [k, v] of after) if (!before.has(k)) added++; else if (before.get(k) !== v) updated++;
    for (const k of before.keys()) if (!after.has(k)) removed++;
    this.table = structuredClone(desired);
    return { added, updated, removed, changes: [] };
  }

  async stats(): Promise<StatsSnapshot> {
    return {
      vips: this.table.services.map((s) => ({ key: vipKey(s), packets: 0, bytes: 0, newFlows: 0, reals: s.reals.map((r) => ({ key: realKey(r), packets: 0, bytes: 0, newFlows: 0 })) })),
      global: {},
    };
  }

  async close(opts: { keepForwarding: boolean }): Promise<void> {
    this.closed = opts;
  }
}
