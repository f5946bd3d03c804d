/**
 * Balancers choose among the endpoints that are available right now. They are rebuilt when
 * the available set changes, so each keeps only state that is cheap to lose.
 */
import type { Endpoint } from '../endpoint.js';

export interface Balancer {
  pick(hashKey: string | undefined): Endpoint | undefined;
}

/** Smooth weighted round-robin (nginx's): interleaves heavy endpoints instead of bursting them. */
export class RoundRobin implements Balancer {
  private readonly current: number[];
  private readonly total: number;
  private readonly equal: boolean;
  private next = 0;
  constructor(private readonly eps: Endpoint[]) {
    this.current = eps.map(() => 0);
    this.total = eps.reduce((n, e) => n + e.weight, 0);
    this.equal = eps.every((e) => e.weight === eps[0]?.weight);
    this.next = Math.floor(Math.random() * Math.max(1, eps.length)); // workers should not march in step
  }
  pick(): Endpoint | undefined {
    const n = this.eps.length;
    if (n === 0) return undefined;
    if (this.equal) { const e = this.eps[this.next]; this.next = (this.next + 1) % n; return e; }
    let best = 0;
    for (let i = 0; i < n; i++) {
      this.current[i] += this.eps[i].weight;
      if (this.current[i] > this.current[best]) best = i;
    }
    this.current[best] -= this.total;
    return this.eps[best];
  }
}

/** Power of two choices: two weighted-random candidates, the one with fewer requests per weight wins. */
export class LeastRequest implements Balancer {
  private readonly cum: number[] = [];
  private readonly total: number;
  constructor(private readonly eps: Endpoint[]) {
    let t = 0;
    for (const e of eps) { t += e.weight; this.cum.push(t); }
    this.total = t;
  }
  private at(r: number): number {
    let lo = 0, hi = this.cum.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.cum[mid] > r) hi = mid; else lo = mid + 1; }
    return lo;
  }
  pick(): Endpoint | undefined {
    if (this.eps.length <= 1) return this.eps[0];
    const i = this.at(Math.random() * this.total);
    const a = this.eps[i];
    // The second candidate is drawn from the others, so two endpoints are always compared.
    const before = i === 0 ? 0 : this.cum[i - 1];
    let r = Math.random() * (this.total - a.weight);
    if (r >= before) r += a.weight;
    const b = this.eps[this.at(r)];
    return a.active / a.weight <= b.active / b.weight ? a : b;
  }
}
