/**
 * Desired state + health → what the data plane must hold. Pure, so the reconciler's input is
 * easy to test and to diff.
 */
import { realKey, vipKey, type Config, type ServiceTable, type ServiceReal } from '../model/index.js';

export type HealthLookup = (vipKey: string, realKey: string) => 'up' | 'down';

/** The id the health checker knows a real by: one probe per VIP and real. */
export function healthId(vip: string, real: string): string {
  return `${vip} ${real}`;
}

export function buildServiceTable(c: Config, health: HealthLookup): ServiceTable {
  return {
    services: c.vips.map((v) => {
      const vk = vipKey(v);
      return {
        address: v.address,
        port: v.port,
        protocol: v.protocol,
        mode: v.mode,
        hash: v.hash,
        scheduler: v.scheduler,
        reals: v.reals.map((r): ServiceReal => {
          const state = health(vk, realKey(r)) === 'down' ? 'down' : r.drain ? 'drain' : 'up';
          return { address: r.address, port: r.port ?? v.port, weight: r.weight, ...(r.mac ? { mac: r.mac } : {}), state };
        }),
      };
    }),
  };
}
