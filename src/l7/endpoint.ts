/** An upstream endpoint's live state, shared by its balancer, health checker and connection pool. */
import { endpointKey, type EndpointSpec, type PoolSpec } from './config.js';
import { fnv1a } from './hash.js';
import { ConnectionPool } from './upstream/pool.js';

/**
 * Bumped whenever an endpoint is ejected or changes health. Endpoints are shared by a pool and
 * its previous version across a reload, and an old request's failure ejects through the old
 * pool: every pool re-reads availability when this moves, not only the one that saw it.
 */
export const availability = { epoch: 0 };

export class Endpoint {
  readonly key: string;
  /** The sticky-cookie value: derived from the address, so every worker and host agrees on it. */
  readonly id: string;
  readonly weight: number;
  readonly conns: ConnectionPool;
  /** Requests in flight, for least-request. */
  active = 0;
  /** Active health verdict; optimistic until checks say otherwise, so a reload does not start at 503. */
  healthy = true;
  ejectedUntil = 0;
  consecutiveFailures = 0;
  ejections = 0;

  /** The pool settings its connections were made with: an endpoint is carried over a reload only where they hold. */
  readonly connSettings: string;

  constructor(readonly spec: EndpointSpec, pool: PoolSpec) {
    this.key = endpointKey(spec);
    this.id = fnv1a(this.key).toString(36);
    this.weight = spec.weight;
    this.conns = new ConnectionPool(spec.host, spec.port, pool);
    this.connSettings = connSettings(pool);
  }

  /** Takes new clients. */
  available(now: number): boolean {
    return this.weight > 0 && this.servable(now);
  }

  /** Can answer at all: weight 0 only drains it (as in HAProxy), so sticky clients stay until it goes. */
  servable(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now;
  }
}

/** What a ConnectionPool takes from its pool's spec. */
export function connSettings(p: PoolSpec): string {
  return `${p.timeoutMs}/${p.connectTimeoutMs}/${p.idleTimeoutMs}/${p.maxConnections}`;
}
