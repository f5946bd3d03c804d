/** What every request of a worker shares: the current config's runtime and the long-lived parts that survive reloads. */
import type { Logger } from 'pino';
import type { RetryBudget } from './budget.js';
import type { L7Metrics } from './metrics.js';
import type { Runtime } from './runtime.js';

export interface ProxyContext {
  runtime: Runtime;
  readonly metrics: L7Metrics;
  readonly accessLog: Logger;
  readonly budget: RetryBudget;
  /** Set on SIGTERM: responses say Connection: close so keep-alive clients move elsewhere. */
  draining: boolean;
  /** Upgraded connections: the HTTP/1.1 server side hands them off, so drain has to find them here. */
  readonly tunnels: Set<import('node:stream').Duplex>;
  requestStarted(): void;
  requestDone(): void;
}

/**
 * Responses whose connection the parser gave up on mid-request (timeouts.request → 408):
 * the request's own access line reports that status rather than 499.
 */
export const refusedByParser = new WeakMap<object, number>();
