/**
 * The agent's API and metrics as an operator meets them, over the unix socket with an
 * in-memory data plane: names that agree across commands, and requests that must change nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { Registry } from 'prom-client';
import { Agent } from '../../src/agent/agent.js';
import { serveApi } from '../../src/agent/api.js';
import { metricsRegistry, serveMetrics } from '../../src/agent/metrics.js';
import { StateStore } from '../../src/agent/store.js';
import { DEFAULT_DATAPLANE } from '../../src/model/index.js';
import { MemoryDataplane } from '../support/memory-dataplane.js';
import { sluice } from '../support/cli.js';
import { call } from '../../src/cli/client.js';

let dir: string, socket: string, agent: Agent, server: Server, dp: MemoryDataplane;
const S = () => ['--socket', socket];
const VIP = '10.99.100.1:80/tcp';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-api-'));
  socket = join(dir, 'agent.sock');
  dp = new MemoryDataplane();
  agent = await Agent.start({
    store: new StateStore(join(dir, 'state')), dataplane: dp, logger: pino({ level: 'silent' }),
    initial: {
      dataplane: { ...DEFAULT_DATAPLANE },
      vips: [{
        address: '10.99.100.1', port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh',
        health: { type: 'none', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 2 },
        reals: [{ address: '10.99.0.11', weight: 1, drain: false }, { address: '10.99.0.12', weight: 2, drain: false }],
      }],
    },
    info: { kind: 'xdp', reason: 'test' },
    resyncMs: 0,
  });
  server = await serveApi(agent, socket, pino({ level: 'silent' }));
});
after(async () => {
  server.close();
  await agent.close(false);
  rmSync(dir, { recursive: true, force: true });
});

const stateFile = () => readFileSync(join(dir, 'state', 'state.json'), 'utf8');

async function json(args: string[]): Promise<any> {
  const r = await sluice([...args, '--json', ...S()]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('stats names each real as real list does, not by the data plane\'s address:port', async () => {
  // The data plane names a real with its effective port (10.99.0.11:80), as XDP does.
  assert.deepEqual((await dp.stats()).vips[0].reals.map((r) => r.key), ['10.99.0.11:80', '10.99.0.12:80']);
  const listed = (await json(['real', 'list', VIP])).map((r: any) => r.key);
  const stats = await json(['stats']);
  assert.deepEqual(stats.vips[0].reals.map((r: any) => r.key), listed);
  assert.deepEqual(listed, ['10.99.0.11', '10.99.0.12']);
});

test('the metrics name a real by one label value in its counters and its gauges', async () => {
  const registry = metricsRegistry(agent) as Registry & { refresh: () => Promise<void> };
  await registry.refresh();
  const text = await registry.metrics();
  const realsOf = (metric: string) => [...text.matchAll(new RegExp(`^${metric}\\{vip="[^"]*",real="([^"]*)"\\}`, 'gm'))].map((m) => m[1]).sort();
  assert.deepEqual(realsOf('sluice_real_up'), ['10.99.0.11', '10.99.0.12']);
  for (const m of ['sluice_real_packets_total', 'sluice_real_bytes_total', 'sluice_real_new_flows_total', 'sluice_real_weight']) {
    assert.deepEqual(realsOf(m), realsOf('sluice_real_up'), m);
  }
});

function raw(method: string, path: string, body?: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(t) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a PUT /v1/config without a body is refused and removes nothing', async () => {
  const before = stateFile();
  const r = await raw('PUT', '/v1/config');
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /body: is empty/);
  assert.equal(stateFile(), before);
  assert.equal(dp.table.services.length, 1);
});

test('apply -f of a file without a vips list is refused while VIPs run, naming vips: []', async () => {
  const before = stateFile();
  const f = join(dir, 'no-vips.yaml');
  // A file cut off after its dataplane section.
  writeFileSync(f, 'dataplane:\n  kind: auto\n');
  const r = await sluice(['apply', '-f', f, ...S()]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^sluice: vips: is missing, which would remove every VIP \(1 configured\): to do that, write `vips: \[\]`$/m);
  assert.equal(stateFile(), before);
  assert.equal(dp.table.services.length, 1);
});

test('apply -f of a file with an empty vips key is refused while VIPs run', async () => {
  const before = stateFile();
  const f = join(dir, 'vips-null.yaml');
  writeFileSync(f, 'vips:\n');
  const r = await sluice(['apply', '-f', f, ...S()]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /vips: is missing/);
  assert.equal(stateFile(), before);
});

test('a refusal whose reason has several lines is said on one line', async () => {
  dp.failNext = Object.assign(new Error('bpf_link_create(BPF_XDP): Device or resource busy (EBUSY)\nifindex 2'), { code: 'EBUSY' });
  const r = await sluice(['vip', 'add', '10.99.100.9:80/tcp', ...S()]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, 'sluice: the data plane refused the change: bpf_link_create(BPF_XDP): Device or resource busy (EBUSY); ifindex 2\n');
});

test('real add, set and del written with the VIP\'s port name the real as real list does', async () => {
  let r = await sluice(['real', 'add', VIP, '10.99.0.13:80', ...S()]);
  assert.equal(r.stdout, `ok: added real 10.99.0.13 to ${VIP}\n`, r.stderr);
  assert.ok((await json(['real', 'list', VIP])).some((x: any) => x.key === '10.99.0.13'));
  r = await sluice(['real', 'set', VIP, '10.99.0.13:80', '--weight', '3', ...S()]);
  assert.equal(r.stdout, `ok: 10.99.0.13 of ${VIP}: weight=3\n`, r.stderr);
  r = await sluice(['real', 'del', VIP, '10.99.0.13:80', ...S()]);
  assert.equal(r.stdout, `ok: removed real 10.99.0.13 from ${VIP}\n`, r.stderr);
});

test('apply -f of a file whose dataplane is no mapping is refused naming it, not read as the defaults', async () => {
  const before = stateFile();
  const f = join(dir, 'dataplane-string.yaml');
  for (const dp of ['eth0', '[ eth0 ]']) {
    writeFileSync(f, `dataplane: ${dp}\nvips: []\n`);
    const r = await sluice(['apply', '-f', f, ...S()]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, 'sluice: dataplane: must be an object\n', dp);
  }
  assert.equal(stateFile(), before);
});

test('a --metrics address that cannot be listened on is refused naming the flag', async () => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  const listen = `127.0.0.1:${(taken.address() as AddressInfo).port}`;
  try {
    await assert.rejects(serveMetrics(agent, listen, pino({ level: 'silent' })), new RegExp(`^SluiceError: --metrics ${listen}: cannot listen there \\(listen EADDRINUSE`));
  } finally {
    taken.close();
  }
});

test('a change the agent does not answer in time is not reported as refused: it may still be made', async () => {
  const slow = join(dir, 'slow.sock');
  // Takes the request and never answers, as an agent busy programming many reals.
  const srv = createServer(() => undefined);
  await new Promise<void>((r) => srv.listen(slow, () => r()));
  try {
    await assert.rejects(call(slow, 'PUT', '/v1/config', { vips: [] }, 200), (e: Error) => {
      assert.match(e.message, /^the agent at .*slow\.sock did not answer within 0\.2 s; the change may still be made .*see `sluice status`/);
      return true;
    });
    await assert.rejects(call(slow, 'GET', '/v1/status', undefined, 200), /did not answer within 0\.2 s$/);
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});
