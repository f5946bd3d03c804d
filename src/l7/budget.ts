/**
 * Envoy-style retry budget: retries in flight may not exceed `ratio` of the requests in
 * flight (but `minRetries` are always allowed), so a failing upstream under load is not hit
 * with a multiple of its traffic.
 */
export class RetryBudget {
  private retrying = 0;
  constructor(private readonly ratio: number, private readonly minRetries: number, private readonly inflight: () => number) {}
  acquire(): boolean {
    if (this.retrying >= Math.max(this.minRetries, this.ratio * this.inflight())) return false;
    this.retrying++;
    return true;
  }
  release(): void { this.retrying--; }
}
