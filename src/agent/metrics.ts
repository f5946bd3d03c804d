/**
 * Prometheus text on --metrics HOST:PORT. Counters come from the data plane's own counters at
 * scrape time (the BPF per-CPU maps or IPVS), so a restart of the agent doesn't reset them.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { realKey, vipKey, SluiceError } from '../model/index.js';
import type { Agent } from './agent.js';

export function metricsRegistry(agent: Agent): Registry {
  const registry = new Registry();
  const vipLabels = ['vip'];
  const realLabels = ['vip', 'real'];
  const counters = {
    vipPackets: new Counter({ name: 'sluice_vip_packets_total', help: 'Packets forwarded for a VIP', labelNames: vipLabels, registers: [registry] }),
    vipBytes: new Counter({ name: 'sluice_vip_bytes_total', help: 'Bytes forwarded for a VIP', labelNames: vipLabels, registers: [registry] }),
    vipFlows: new Counter({ name: 'sluice_vip_new_flows_total', help: 'New flows (flow-table misses) for a VIP', labelNames: vipLabels, registers: [registry] }),
    realPackets: new Counter({ name: 'sluice_real_packets_total', help: 'Packets forwarded to a real', labelNames: realLabels, registers: [registry] }),
    realBytes: new Counter({ name: 'sluice_real_bytes_total', help: 'Bytes forwarded to a real', labelNames: realLabels, registers: [registry] }),
    realFlows: new Counter({ name: 'sluice_real_new_flows_total', help: 'New flows sent to a real', labelNames: realLabels, registers: [registry] }),
    events: new Counter({ name: 'sluice_dataplane_events_total', help: 'Data plane drops, passes and misses by reason', labelNames: ['reason'], registers: [registry] }),
  };
  const up = new Gauge({ name: 'sluice_real_up', help: '1 when the real passes its health check (or has none), 0 when down', labelNames: realLabels, registers: [registry] });
  const weight = new Gauge({ name: 'sluice_real_weight', help: 'Configured weight of a real (0 when drained)', labelNames: realLabels, registers: [registry] });
  new Gauge({
    name: 'sluice_dataplane_info', help: 'Which data plane runs', labelNames: ['kind', 'interface'], registers: [registry],
    collect() { this.reset(); this.set({ kind: agent.info.kind, interface: agent.info.interface ?? '' }, 1); },
  });

  const refresh = async () => {
    const s = await agent.stats();
    for (const c of Object.values(counters)) c.reset();
    for (const v of s.vips) {
      counters.vipPackets.inc({ vip: v.key }, v.packets);
      counters.vipBytes.inc({ vip: v.key }, v.bytes);
      counters.vipFlows.inc({ vip: v.key }, v.newFlows);
      for (const r of v.reals) {
        counters.realPackets.inc({ vip: v.key, real: r.key }, r.packets);
        counters.realBytes.inc({ vip: v.key, real: r.key }, r.bytes);
        counters.realFlows.inc({ vip: v.key, real: r.key }, r.newFlows);
      }
    }
    for (const [reason, n] of Object.entries(s.global)) counters.events.inc({ reason }, n);
    up.reset();
    weight.reset();
    for (const v of agent.config.vips) for (const r of v.reals) {
      const labels = { vip: vipKey(v), real: realKey(r) };
      up.set(labels, agent.health(vipKey(v), realKey(r)) === 'up' ? 1 : 0);
      weight.set(labels, r.drain ? 0 : r.weight);
    }
  };
  (registry as Registry & { refresh?: () => Promise<void> }).refresh = refresh;
  return registry;
}

export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new SluiceError('EINVAL', `--metrics "${text}" must be HOST:PORT (e.g. 127.0.0.1:9465 or [::1]:9465)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function serveMetrics(agent: Agent, listen: string, log: Logger): Promise<Server> {
  const { host, port } = parseHostPort(listen);
  const registry = metricsRegistry(agent) as Registry & { refresh: () => Promise<void> };
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') { res.writeHead(404).end('see /metrics\n'); return; }
    try {
      await registry.refresh();
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
    } catch (e) {
      log.error({ err: e }, 'metrics scrape failed');
      res.writeHead(500).end('stats unavailable\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    // Node's text ("listen EADDRINUSE: address already in use 127.0.0.1:9465") names no flag.
    server.once('error', (e: NodeJS.ErrnoException) => reject(new SluiceError(e.code ?? 'EIO', `--metrics ${listen}: cannot listen there (${e.message})`)));
    server.listen(port, host, () => resolve());
  });
  return server;
}
