/**
 * `sluice agent`: load the desired state, open the data plane, serve the API and metrics,
 * reload on SIGHUP, and on SIGTERM leave the data plane forwarding for the next agent.
 */
import type { Server } from 'node:http';
import pino, { type Logger } from 'pino';
import { DEFAULT_DATAPLANE, readConfigDocument, type Config, type DataplaneSpec } from '../model/index.js';
import { openDataplane } from '../dataplane/open.js';
import { Agent } from './agent.js';
import { claimSocket, serveApi } from './api.js';
import { applyConfig, diffConfigs, isMapping, isNoChange, refuseImplicitRemoveAll, validateDocument, type ConfigDiff } from './desired.js';
import { L7Pool } from './l7-pool.js';
import { AgentLock } from './lock.js';
import { parseHostPort, serveMetrics } from './metrics.js';
import { StateStore } from './store.js';

export interface AgentCliOptions {
  config?: string;
  interface?: string;
  dataplane?: DataplaneSpec['kind'];
  xdpMode?: DataplaneSpec['xdpMode'];
  stateDir: string;
  socket: string;
  metrics?: string;
  pinDir: string;
  logger?: Logger;
  /** Log level of the L7 pool the agent runs (when the config has an l7 section). */
  logLevel?: string;
}

/** As long as the CLI waits for an answer: past it, nobody listens for one. */
const ANSWER_GRACE_MS = 30_000;

/**
 * Stop the API and metrics servers: no new connections, idle ones closed at once, and a request
 * in flight answered before its connection goes. A change being made when SIGTERM came is made
 * (the agent finishes it before it stops): cutting its connection would tell the CLI "cannot
 * reach the agent" about a change that was saved and programmed.
 */
function closeServers(servers: Server[], graceMs = ANSWER_GRACE_MS): Promise<void[]> {
  return Promise.all(servers.map((s) => new Promise<void>((r) => {
    const cut = setTimeout(() => s.closeAllConnections(), graceMs);
    s.close(() => { clearTimeout(cut); r(); });
    s.closeIdleConnections();
  })));
}

/** Command-line flags win over the config file and the saved state. */
function overrides(o: AgentCliOptions): Partial<DataplaneSpec> {
  return {
    ...(o.interface ? { interface: o.interface } : {}),
    ...(o.dataplane ? { kind: o.dataplane } : {}),
    ...(o.xdpMode ? { xdpMode: o.xdpMode } : {}),
  };
}

/**
 * The desired state at start: the config file when one is given (it is authoritative, as on
 * SIGHUP), else the saved state, else an empty one.
 */
export function initialState(o: AgentCliOptions, store: StateStore): Config {
  const flags = overrides(o);
  if (o.config) {
    const doc = withFlags(readConfigDocument(o.config), flags);
    // The file is authoritative, but one without a vips list does not silently empty a saved state.
    let saved: Config | null = null;
    try { saved = store.load(); } catch { /* a state the file replaces anyway */ }
    refuseImplicitRemoveAll(doc, saved);
    return validateDocument(doc);
  }
  const saved = store.load();
  if (saved) return { ...saved, dataplane: { ...saved.dataplane, ...flags } };
  return { dataplane: { ...DEFAULT_DATAPLANE, ...flags }, vips: [] };
}

/** The config file with the command-line flags laid over its dataplane section (at start and on SIGHUP alike). */
function withFlags(doc: unknown, flags: Partial<DataplaneSpec>): unknown {
  if (!isMapping(doc)) return doc;
  // A dataplane that is no mapping (`dataplane: eth0`) is left for validation to refuse, not replaced.
  if (doc.dataplane !== undefined && doc.dataplane !== null && !isMapping(doc.dataplane)) return doc;
  return { ...doc, dataplane: { ...(isMapping(doc.dataplane) ? doc.dataplane : {}), ...flags } };
}

export interface RunningAgent {
  agent: Agent;
  stop(keepForwarding?: boolean): Promise<void>;
}

export async function runAgent(o: AgentCliOptions): Promise<RunningAgent> {
  const log = o.logger ?? pino({ name: 'sluice-agent' });
  // A SIGHUP while starting (opening the data plane takes seconds) must not kill the agent, which
  // is what Node does on a SIGHUP nobody listens to, nor be lost: the file may have changed after
  // it was read. It is remembered, and the config reloaded once the agent is ready.
  let hupWhileStarting = false;
  const onEarlyHup = () => { hupWhileStarting = true; log.info('SIGHUP while starting: the config is reloaded once the agent is ready'); };
  process.on('SIGHUP', onEarlyHup);
  const takeEarlyHup = () => { process.off('SIGHUP', onEarlyHup); return hupWhileStarting; };
  try {
    // Everything that can be refused is checked before the data plane is touched.
    if (o.metrics) parseHostPort(o.metrics);
    const store = new StateStore(o.stateDir);
    const initial = initialState(o, store);
    const lock = AgentLock.acquire({ stateDir: o.stateDir, pinDir: o.pinDir, socket: o.socket });
    try {
      await claimSocket(o.socket);
      return await start(o, log, store, initial, lock, takeEarlyHup);
    } catch (e) {
      lock.release();
      throw e;
    }
  } finally {
    takeEarlyHup();
  }
}

async function start(o: AgentCliOptions, log: Logger, store: StateStore, initial: Config, lock: AgentLock, takeEarlyHup: () => boolean): Promise<RunningAgent> {
  const opened = await openDataplane({ spec: initial.dataplane, pinDir: o.pinDir, stateDir: o.stateDir, logger: log });
  log.info({ dataplane: opened.kind, reason: opened.reason, interface: opened.interface, programId: opened.programId }, 'data plane ready');
  let agent: Agent | undefined;
  const servers: Server[] = [];
  const l7 = new L7Pool({ stateDir: o.stateDir, logger: log, ...(o.logLevel ? { logLevel: o.logLevel } : {}) });
  try {
    agent = await Agent.start({
      store, initial, dataplane: opened.dataplane, logger: log,
      onChange: (c) => l7.sync(c.l7), l7Status: () => l7.status(),
      info: {
        kind: opened.kind, reason: opened.reason,
        ...(opened.interface ? { interface: opened.interface } : {}),
        ...(opened.programId !== undefined ? { programId: opened.programId } : {}),
        ...(opened.attachMode ? { attachMode: opened.attachMode } : {}),
      },
    });
    servers.push(await serveApi(agent, o.socket, log));
    if (o.metrics) servers.push(await serveMetrics(agent, o.metrics, log));
    await l7.sync(agent.config.l7);
  } catch (e) {
    // Failing to start (the metrics port taken, say) must end the process: an API left serving
    // would keep it alive, answering "ok" without the lock that keeps a second agent out.
    // The data plane keeps forwarding, as after SIGTERM.
    await closeServers(servers);
    await l7.close();
    if (agent) await agent.close(true).catch(() => undefined);
    else await opened.dataplane.close({ keepForwarding: true }).catch(() => undefined);
    throw e;
  }
  const running = agent;
  log.info({ socket: o.socket, metrics: o.metrics, vips: running.config.vips.length }, 'agent ready');

  let stopping: Promise<void> | null = null;
  const onHup = () => {
    // Still listened to while stopping: an unheard SIGHUP would kill the agent mid-stop.
    if (stopping) { log.info('SIGHUP while stopping: ignored'); return; }
    if (!o.config) { log.info('SIGHUP: no --config to reload'); return; }
    const path = o.config;
    let diff: ConfigDiff | undefined;
    running.change((c) => { const next = applyConfig(c, withFlags(readConfigDocument(path), overrides(o))); diff = diffConfigs(c, next); return next; })
      .then((c) => log.info({ config: path, vips: c.vips.length, ...diff }, isNoChange(diff!) ? 'config reloaded: nothing changed' : 'config reloaded'))
      .catch((e) => log.error({ err: e, config: path }, 'config reload refused; the running state is unchanged'));
  };
  process.on('SIGHUP', onHup);
  if (takeEarlyHup()) onHup();

  const stop = (keepForwarding = true) => {
    stopping ??= (async () => {
      await closeServers(servers);
      // The pool drains (in-flight requests finish) while XDP keeps forwarding.
      await l7.close();
      await running.close(keepForwarding);
      lock.release();
      process.off('SIGHUP', onHup);
      log.info({ keepForwarding }, 'agent stopped');
    })();
    return stopping;
  };
  return { agent: running, stop };
}
