/**
 * Operating the agent: drain, --config with SIGHUP reloads, and Prometheus metrics, on the real
 * XDP data plane in the DESIGN §8 topology.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../../src/bpf/build.js';
import { Topo, ADDR } from '../support/topo.js';
import { AgentProcess } from '../support/agent.js';

let topo: Topo;
let agent: AgentProcess;
let configFile: string;
const METRICS = '127.0.0.1:9465';

function writeConfig(vips: string[]): void {
  writeFileSync(configFile, ['dataplane: { interface: eth0 }', 'vips:', ...vips.map((v) => `  - ${v}`), ''].join('\n'));
}

before(async () => {
  topo = Topo.up();
  topo.startServers(80, 9000);
  agent = new AgentProcess(topo);
  configFile = join(agent.dir, 'sluice.yaml');
  writeConfig([`{ address: 10.99.100.1, port: 9000, reals: [ { address: ${ADDR.real1.v4} } ] }`]);
  await agent.start(['--config', configFile, '--metrics', METRICS]);
});
after(async () => {
  await agent?.destroy();
  topo?.down();
});

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the config file given with --config is the state at start', async () => {
  const vips = await agent.json(['vip', 'list']);
  assert.deepEqual(vips.map((v: any) => v.key), ['10.99.100.1:9000/tcp']);
});

test('a drained real keeps its established flows and takes no new ones', async () => {
  const stream = spawn('nsenter', [`--net=/run/netns/${topo.ns('client')}`, process.execPath, join(REPO_ROOT, 'scripts', 'lib', 'stream.mjs'), '10.99.100.1', '9000', '3000']);
  let out = '';
  stream.stdout.on('data', (d) => (out += d));
  // Listened to from the start: on a loaded host the steps below outlast the 3 s stream.
  const closed = new Promise((r) => stream.on('close', r));
  await new Promise((r) => setTimeout(r, 700));
  await agent.ok(['real', 'add', '10.99.100.1:9000/tcp', ADDR.real2.v4]);
  await agent.ok(['real', 'set', '10.99.100.1:9000/tcp', ADDR.real1.v4, '--drain']);
  // New flows: every one goes to real2 (the whoami port of the same reals tells who answered).
  await agent.ok(['vip', 'add', '10.99.100.1:80/tcp']);
  await agent.ok(['real', 'add', '10.99.100.1:80/tcp', ADDR.real1.v4]);
  await agent.ok(['real', 'add', '10.99.100.1:80/tcp', ADDR.real2.v4]);
  await agent.ok(['real', 'set', '10.99.100.1:80/tcp', ADDR.real1.v4, '--drain']);
  assert.deepEqual(topo.tally('10.99.100.1', 80, 60), { real2: 60 });
  await closed;
  const res = JSON.parse(out);
  assert.equal(res.error, null, 'the drained real\'s stream was not reset');
  assert.ok(res.received >= res.sent - 1, JSON.stringify(res));
  assert.ok(res.maxGapMs < 100, `stream stalled ${res.maxGapMs} ms`);
});

test('metrics expose per-VIP and per-real counters from the data plane and health states', async () => {
  topo.tally('10.99.100.1', 80, 20);
  const text = topo.exec('lb', 'curl', ['-sf', `http://${METRICS}/metrics`]);
  const m = /sluice_vip_new_flows_total\{vip="10.99.100.1:80\/tcp"\} (\d+)/.exec(text);
  assert.ok(m && Number(m[1]) >= 80, text.slice(0, 2000));
  assert.match(text, /sluice_real_packets_total\{vip="10.99.100.1:80\/tcp",real="10.99.0.12(:80)?"\} [1-9]\d*/);
  assert.match(text, /sluice_real_weight\{vip="10.99.100.1:80\/tcp",real="10.99.0.11"\} 0/);
  assert.match(text, /sluice_real_up\{vip="10.99.100.1:80\/tcp",real="10.99.0.12"\} 1/);
  assert.match(text, /sluice_dataplane_info\{kind="xdp",interface="eth0"\} 1/);
});

test('SIGHUP reloads the config file and the data plane follows', async () => {
  writeConfig([`{ address: 10.99.100.2, port: 80, reals: [ { address: ${ADDR.real3.v4} } ] }`]);
  agent.proc!.kill('SIGHUP');
  const vips = await waitFor(() => agent.json(['vip', 'list']), (v: any[]) => v.length === 1 && v[0].key === '10.99.100.2:80/tcp');
  assert.deepEqual(vips.map((v: any) => v.key), ['10.99.100.2:80/tcp']);
  assert.deepEqual(topo.tally('10.99.100.2', 80, 20), { real3: 20 });
});

test('SIGHUP with an invalid file changes nothing and says why in the log', async () => {
  const before = await agent.json(['vip', 'list']);
  writeFileSync(configFile, 'vips:\n  - { address: 10.99.100.2, port: 99999 }\n');
  agent.proc!.kill('SIGHUP');
  const logged = await waitFor(async () => agent.log, (l) => /config reload refused/.test(l));
  assert.match(logged, /vips\[0\]\.port: must be an integer 0..65535/);
  assert.deepEqual(await agent.json(['vip', 'list']), before);
  assert.deepEqual(topo.tally('10.99.100.2', 80, 10), { real3: 10 });
});

test('a SIGHUP while the agent starts neither kills it nor is lost: the file as it was then is the state', async () => {
  await agent.kill('SIGTERM');
  writeConfig([`{ address: 10.99.100.3, port: 80, reals: [ { address: ${ADDR.real1.v4} } ] }`]);
  // systemctl start, then at once reload: the signal comes while the data plane is being opened.
  await agent.start(['--config', configFile, '--metrics', METRICS], (p) => setTimeout(() => {
    writeConfig([`{ address: 10.99.100.4, port: 80, reals: [ { address: ${ADDR.real2.v4} } ] }`]);
    p.kill('SIGHUP');
  }, 400));
  const vips = await waitFor(() => agent.json(['vip', 'list']), (v: any[]) => v.length === 1 && v[0].key === '10.99.100.4:80/tcp');
  assert.deepEqual(vips.map((v: any) => v.key), ['10.99.100.4:80/tcp'], agent.log);
  assert.equal(agent.proc!.exitCode, null, 'still running');
  assert.equal(agent.proc!.signalCode, null, 'not killed by the SIGHUP');
});
