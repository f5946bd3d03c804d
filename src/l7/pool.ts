/**
 * An upstream pool: its endpoints, the balancer over the ones available now, sticky cookies,
 * and passive ejection (consecutive failures → out for a backoff that doubles per ejection),
 * capped so that ejection alone never leaves more than `maxPercent` of the pool out.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { LeastRequest, RoundRobin, type Balancer } from './balance/index.js';
import { RingHash } from './balance/ring.js';
import { endpointKey, type PoolSpec } from './config.js';
import { getCookie } from './cookies.js';
import { availability, connSettings, Endpoint } from './endpoint.js';

export interface PickInput {
  headers: IncomingHttpHeaders;
  clientIp: string;
}

export interface Pick {
  ep: Endpoint;
  /** Sticky pools: the client has no valid cookie for this endpoint yet. */
  setCookie: boolean;
}

export interface PoolEvents {
  ejected(pool: Pool, ep: Endpoint, ms: number): void;
}

export class Pool {
  readonly name: string;
  readonly endpoints: Endpoint[];
  /** `retryOn` as a set: looked up on every failed attempt. */
  readonly retryOn: ReadonlySet<string>;
  private readonly byId = new Map<string, Endpoint>();
  private balancer!: Balancer;
  /** Ring-hash pools: for requests with no key (header or cookie absent), which must not all land on one endpoint. */
  private keyless: Balancer | undefined;
  private available: Endpoint[] = [];
  private dirty = true;
  private epoch = -1;
  private nextExpiry = Infinity;

  /**
   * `reuse` finds the endpoint of the same address in this pool's previous version. It is carried
   * over whole (connections included) when its weight and connection settings are unchanged, and
   * otherwise its health verdict and ejection are, so adding an endpoint to a pool does not send
   * traffic back to one that was down.
   */
  constructor(readonly spec: PoolSpec, private readonly events: PoolEvents, reuse?: (key: string) => Endpoint | undefined) {
    this.name = spec.name;
    this.retryOn = new Set(spec.retryOn);
    const settings = connSettings(spec);
    this.endpoints = spec.endpoints.map((s) => {
      const old = reuse?.(endpointKey(s));
      if (!old) return new Endpoint(s, spec);
      const e = old.weight === s.weight && old.connSettings === settings ? old : new Endpoint(s, spec);
      // A verdict only active checks can undo: without them it would stand for good.
      e.healthy = spec.health ? old.healthy : true;
      if (spec.ejection.consecutiveFailures === 0) { e.ejectedUntil = 0; e.ejections = 0; e.consecutiveFailures = 0; }
      else if (e !== old) { e.ejectedUntil = old.ejectedUntil; e.ejections = old.ejections; e.consecutiveFailures = old.consecutiveFailures; }
      return e;
    });
    for (const e of this.endpoints) this.byId.set(e.id, e);
    if (spec.balance === 'ring-hash') this.balancer = new RingHash(this.endpoints, (e) => e.available(Date.now()));
  }

  private refresh(now: number): void {
    this.available = this.endpoints.filter((e) => e.available(now));
    this.nextExpiry = Math.min(Infinity, ...this.endpoints.filter((e) => e.ejectedUntil > now).map((e) => e.ejectedUntil));
    if (this.spec.balance === 'round-robin') this.balancer = new RoundRobin(this.available);
    else if (this.spec.balance === 'least-request') this.balancer = new LeastRequest(this.available);
    else this.keyless = new RoundRobin(this.available);
    this.dirty = false;
    this.epoch = availability.epoch;
  }

  /** The available endpoints as of `now`: rebuilt when an ejection ran out, or any pool's availability moved. */
  private current(now: number): void {
    if (this.dirty || now >= this.nextExpiry || this.epoch !== availability.epoch) this.refresh(now);
  }

  availableCount(now = Date.now()): number {
    this.current(now);
    return this.available.length;
  }

  /** Choose an endpoint; `avoid` holds endpoints a retry should not go back to, when others exist. */
  pick(input: PickInput, avoid?: Set<Endpoint>): Pick | undefined {
    const now = Date.now();
    this.current(now);
    const sticky = this.spec.sticky;
    if (sticky && !avoid) {
      const id = getCookie(input.headers.cookie, sticky.cookie);
      const e = id !== undefined ? this.byId.get(id) : undefined;
      if (e && e.servable(now)) return { ep: e, setCookie: false };
    }
    if (this.available.length === 0) return undefined;
    const key = this.hashKey(input);
    // No key to hash (HAProxy's `balance hdr()` does the same): round-robin, rather than hash '' onto one endpoint.
    let ep = this.keyless && !key ? this.keyless.pick(undefined) : this.balancer.pick(key);
    if (ep && avoid) ep = this.other(avoid) ?? ep;
    return ep ? { ep, setCookie: sticky !== undefined } : undefined;
  }

  /**
   * A retry's endpoint among those it has not tried: weighted-random, so the retries of a failing
   * endpoint spread over the rest (the balancer's own next choice, or the first in the list,
   * would send them all to one neighbour, doubling its load).
   */
  private other(avoid: Set<Endpoint>): Endpoint | undefined {
    let total = 0;
    for (const e of this.available) if (!avoid.has(e)) total += e.weight;
    if (total === 0) return undefined;
    const draw = (): Endpoint => {
      let r = Math.random() * total, last!: Endpoint;
      for (const e of this.available) {
        if (avoid.has(e)) continue;
        last = e;
        if ((r -= e.weight) < 0) break;
      }
      return last;
    };
    const a = draw();
    if (this.spec.balance !== 'least-request') return a;
    const b = draw(); // least-request: the less busy of two, as for a first attempt
    return a.active / a.weight <= b.active / b.weight ? a : b;
  }

  private hashKey(input: PickInput): string | undefined {
    if (this.spec.balance !== 'ring-hash') return undefined;
    const h = this.spec.hashOn;
    if ('header' in h) { const v = input.headers[h.header]; return Array.isArray(v) ? v.join(',') : v; }
    if ('cookie' in h) return getCookie(input.headers.cookie, h.cookie);
    return input.clientIp;
  }

  success(ep: Endpoint): void {
    ep.consecutiveFailures = 0;
  }

  failure(ep: Endpoint): void {
    const ej = this.spec.ejection;
    ep.consecutiveFailures++;
    if (ej.consecutiveFailures === 0 || ep.consecutiveFailures < ej.consecutiveFailures) return;
    const now = Date.now();
    if (ep.ejectedUntil > now || !this.mayEject(now)) return;
    // The backoff doubles with each ejection in a row and resets once the endpoint has behaved for maxTime.
    if (ep.ejectedUntil > 0 && now - ep.ejectedUntil > ej.maxMs) ep.ejections = 0;
    const ms = Math.min(ej.baseMs * 2 ** ep.ejections, ej.maxMs);
    ep.ejections++;
    ep.ejectedUntil = now + ms;
    ep.consecutiveFailures = 0;
    this.dirty = true;
    availability.epoch++;
    this.events.ejected(this, ep, ms);
  }

  /**
   * Envoy's max_ejection_percent: ejecting one more must not leave more than maxPercent of the
   * endpoints that take traffic unavailable (ejected or failing health checks). Past that, a
   * failing endpoint keeps its share: a 502 from it beats a 503 from an empty pool.
   */
  private mayEject(now: number): boolean {
    let n = 0, out = 0;
    for (const e of this.endpoints) {
      if (e.weight === 0) continue;
      n++;
      if (!e.available(now)) out++;
    }
    return out + 1 <= Math.floor((n * this.spec.ejection.maxPercent) / 100);
  }

  setHealthy(ep: Endpoint, healthy: boolean): void {
    if (ep.healthy === healthy) return;
    ep.healthy = healthy;
    this.dirty = true;
    availability.epoch++;
  }

  /** Close connections of endpoints not carried into `next` (after a reload or at shutdown). */
  retire(keep: Set<Endpoint>): void {
    for (const e of this.endpoints) if (!keep.has(e)) e.conns.close();
  }
}
