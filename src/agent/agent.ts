/**
 * The agent's core: one writer of the desired state and of the data plane. Every change goes
 * through change(): validate → persist atomically → sync the data plane → acknowledge.
 * Health results come in as events and only trigger a re-sync; nothing else writes the data plane.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { joinHostPort, realKey, vipKey, SluiceError, type Config, type Dataplane, type StatsSnapshot } from '../model/index.js';
import { StateStore, toDocument, writeAtomic } from './store.js';
import { buildServiceTable, healthId } from './table.js';
import { HealthChecker, type HealthTarget } from './health/index.js';

export interface DataplaneInfo {
  kind: 'xdp' | 'ipvs';
  /** Why this data plane runs (`--dataplane xdp`, or why auto fell back to IPVS). */
  reason: string;
  interface?: string;
  programId?: number;
  attachMode?: string;
}

export interface AgentOptions {
  store: StateStore;
  initial: Config;
  dataplane: Dataplane;
  info: DataplaneInfo;
  logger: Logger;
  /** Re-sync the unchanged desired state this often (default 10 s); 0: never. */
  resyncMs?: number;
  /** Told of each change once the data plane took it, before it is acknowledged (the L7 pool follows `l7`). */
  onChange?: (c: Config) => Promise<void> | void;
  /** The L7 pool's state for status(), when the agent runs one. */
  l7Status?: () => unknown;
}

const HEALTH_FILE = 'health.json';
/**
 * As kube-proxy's periodic sync: a no-op sync is cheap (diff only), and it repairs what changed
 * behind the agent's back (an IPVS service deleted by hand) and retries what could not be done
 * (a real's MAC that did not resolve yet).
 */
const DEFAULT_RESYNC_MS = 10_000;

export class Agent {
  readonly store: StateStore;
  readonly info: DataplaneInfo;
  readonly startedAt = new Date();
  #config: Config;
  #dp: Dataplane;
  #log: Logger;
  #health: HealthChecker;
  #down = new Set<string>();
  #queue: Promise<unknown> = Promise.resolve();
  #lastSync: { at: Date; changes: number; error?: string } | null = null;
  #resync?: NodeJS.Timeout;
  #onChange?: AgentOptions['onChange'];
  #l7Status?: AgentOptions['l7Status'];

  private constructor(o: AgentOptions) {
    this.store = o.store;
    this.info = o.info;
    this.#config = o.initial;
    this.#dp = o.dataplane;
    this.#log = o.logger;
    this.#onChange = o.onChange;
    this.#l7Status = o.l7Status;
    this.#down = loadDown(join(o.store.dir, HEALTH_FILE));
    this.#health = new HealthChecker();
    this.#health.on('change', (ev: { id: string; up: boolean; reason?: string }) => {
      if (ev.up) this.#down.delete(ev.id); else this.#down.add(ev.id);
      this.#log.info({ real: ev.id, up: ev.up, reason: ev.reason }, ev.up ? 'real is up' : 'real is down');
      this.#saveDown();
      void this.#serial(() => this.#sync('health')).catch((e) => this.#log.error({ err: e }, 'sync after health change failed'));
    });
  }

  /** Persist the initial state, program the data plane, start health checks. */
  static async start(o: AgentOptions): Promise<Agent> {
    const a = new Agent(o);
    a.store.save(a.#config);
    a.#updateHealthTargets();
    await a.#serial(() => a.#sync('start'));
    const every = o.resyncMs ?? DEFAULT_RESYNC_MS;
    if (every > 0) {
      let ticks = 0;
      a.#resync = setInterval(() => {
        // Every third tick also re-reads routes and MACs that the data plane trusts for a while.
        const full = ++ticks % 3 === 0 && a.#dp.refreshNeighbours !== undefined;
        void a.#serial(async () => {
          if (!full) return a.#sync('periodic');
          if (await a.#dp.refreshNeighbours!()) a.#log.info('data plane synced: next hops changed');
        }).catch((e) => a.#log.warn({ err: e }, 'periodic sync failed'));
      }, every);
      a.#resync.unref();
    }
    return a;
  }

  get config(): Config {
    return this.#config;
  }

  /**
   * Apply one change to the desired state. `fn` validates and returns the next state (or throws:
   * nothing changes). The new state is on disk before the data plane is touched; if the data
   * plane refuses it, the previous state is restored on disk and in the kernel.
   */
  change(fn: (c: Config) => Config): Promise<Config> {
    return this.#serial(async () => {
      const prev = this.#config;
      const next = fn(prev);
      // A change that changes nothing (apply -f of the running file) needs no write: on a full
      // or read-only state dir it must still be "ok", as nothing acknowledged is at stake.
      if (JSON.stringify(toDocument(next)) !== JSON.stringify(toDocument(prev))) this.store.save(next);
      this.#config = next;
      try {
        this.#updateHealthTargets();
        await this.#sync('change');
        await this.#onChange?.(next);
      } catch (e) {
        this.#log.error({ err: e }, 'data plane refused the change; restoring the previous state');
        this.store.save(prev);
        this.#config = prev;
        this.#updateHealthTargets();
        await this.#sync('rollback').catch((e2) => this.#log.error({ err: e2 }, 'rollback sync failed'));
        // The L7 pool's file could not be written (a full disk): the pool still runs the old section.
        if (e instanceof SluiceError && e.code === 'EL7') throw e;
        throw new SluiceError('EDATAPLANE', `the data plane refused the change: ${(e as Error).message}`);
      }
      return next;
    });
  }

  health(vip: string, real: string): 'up' | 'down' {
    return this.#down.has(healthId(vip, real)) ? 'down' : 'up';
  }

  /**
   * The data plane's counters, each real named by its key in the config (`10.0.0.11`, as `real
   * list` and the metrics gauges name it), not by the data plane's own (the XDP data plane says
   * `10.0.0.11:80`, IPVS `10.0.0.11`): one real, one name, whichever data plane runs.
   */
  async stats(): Promise<StatsSnapshot> {
    const s = await this.#dp.stats();
    const byVip = new Map(this.#config.vips.map((v) => [vipKey(v), v]));
    return {
      ...s,
      vips: s.vips.map((sv) => {
        const v = byVip.get(sv.key);
        if (!v) return sv;
        return {
          ...sv,
          reals: sv.reals.map((sr) => {
            const r = v.reals.find((x) => sr.key === realKey(x) || sr.key === joinHostPort(x.address, x.port ?? v.port));
            return r ? { ...sr, key: realKey(r) } : sr;
          }),
        };
      }),
    };
  }

  status(): Record<string, unknown> {
    const l7 = this.#l7Status?.();
    const reals = this.#config.vips.flatMap((v) => v.reals.map((r) => ({ v, r })));
    const down = reals.filter(({ v, r }) => this.health(vipKey(v), realKey(r)) === 'down').length;
    const drained = reals.filter(({ r }) => r.drain).length;
    return {
      dataplane: this.info,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      stateDir: this.store.dir,
      vips: this.#config.vips.length,
      reals: reals.length,
      health: { up: reals.length - down, down, drained },
      limits: { maxVips: this.#config.dataplane.maxVips, maxReals: this.#config.dataplane.maxReals, ringSize: this.#config.dataplane.ringSize, flowTableSize: this.#config.dataplane.flowTableSize },
      lastSync: this.#lastSync,
      ...(l7 ? { l7 } : {}),
    };
  }

  async close(keepForwarding: boolean): Promise<void> {
    clearInterval(this.#resync);
    this.#health.close();
    await this.#queue.catch(() => undefined);
    await this.#dp.close({ keepForwarding });
  }

  #serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #sync(why: string): Promise<void> {
    const table = buildServiceTable(this.#config, (v, r) => this.health(v, r));
    try {
      const report = await this.#dp.sync(table);
      const n = report.added + report.updated + report.removed;
      this.#lastSync = { at: new Date(), changes: n };
      if (n) this.#log.info({ why, added: report.added, updated: report.updated, removed: report.removed, changes: report.changes.slice(0, 20) }, 'data plane synced');
    } catch (e) {
      this.#lastSync = { at: new Date(), changes: 0, error: (e as Error).message };
      throw e;
    }
  }

  #updateHealthTargets(): void {
    const targets: HealthTarget[] = [];
    const live = new Set<string>();
    for (const v of this.#config.vips) {
      if (v.health.type === 'none') continue;
      for (const r of v.reals) {
        const id = healthId(vipKey(v), realKey(r));
        live.add(id);
        targets.push({ id, address: r.address, port: v.health.port ?? r.port ?? v.port, spec: v.health, initial: this.#down.has(id) ? 'down' : 'up' });
      }
    }
    // A real whose checks were removed is no longer down.
    for (const id of [...this.#down]) if (!live.has(id)) this.#down.delete(id);
    this.#health.set(targets);
  }

  #saveDown(): void {
    try { writeAtomic(join(this.store.dir, HEALTH_FILE), JSON.stringify([...this.#down]) + '\n'); }
    catch (e) { this.#log.warn({ err: e }, 'could not save health states'); }
  }
}

function loadDown(path: string): Set<string> {
  try {
    if (existsSync(path)) return new Set(JSON.parse(readFileSync(path, 'utf8')) as string[]);
  } catch { /* health states are a hint; a bad file means "all up" */ }
  return new Set();
}
