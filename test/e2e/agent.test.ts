/**
 * The agent and the CLI on the real data plane: the DESIGN §8 topology, `sluice agent` with XDP
 * in the lb namespace, reals serving TCP and UDP, and real connections from the client.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { REPO_ROOT } from '../../src/bpf/build.js';
import { Topo, ADDR } from '../support/topo.js';
import { AgentProcess } from '../support/agent.js';

let topo: Topo;
let agent: AgentProcess;
let servers: ReturnType<Topo['startServers']>;
const VIP = '10.99.100.1:80/tcp';

before(async () => {
  topo = Topo.up();
  servers = topo.startServers(80, 9000);
  agent = new AgentProcess(topo);
  await agent.start();
});
after(async () => {
  await agent?.destroy();
  topo?.down();
});

function share(counts: Record<string, number>, who: string): number {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return (counts[who] ?? 0) / total;
}

test('VIP and reals added through the CLI spread real connections by weight', async () => {
  await agent.ok(['vip', 'add', VIP, '--health', 'tcp']);
  await agent.ok(['real', 'add', VIP, ADDR.real1.v4]);
  await agent.ok(['real', 'add', VIP, ADDR.real2.v4]);
  await agent.ok(['real', 'add', VIP, ADDR.real3.v4, '--weight', '2']);
  const counts = topo.tally('10.99.100.1', 80, 400);
  assert.equal(counts.failed ?? 0, 0, JSON.stringify(counts));
  assert.ok(Math.abs(share(counts, 'real3') - 0.5) < 0.1, JSON.stringify(counts));
  assert.ok(Math.abs(share(counts, 'real1') - 0.25) < 0.05 + 0.05, JSON.stringify(counts));
  const stats = await agent.json(['stats']);
  const vip = stats.vips.find((v: any) => v.key === VIP);
  assert.ok(vip.newFlows >= 400, `new flows ${vip.newFlows}`);
  assert.equal(vip.reals.length, 3);
});

test('status names the XDP data plane, the interface and the program', async () => {
  const s = await agent.json(['status']);
  assert.equal(s.dataplane.kind, 'xdp');
  assert.equal(s.dataplane.interface, 'eth0');
  assert.ok(s.dataplane.programId > 0);
  assert.equal(s.vips, 1);
});

test('a real whose server dies leaves the ring within fall × interval + 1 s, and no connection fails after', async () => {
  servers.get('real2')!.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 2 * 1000 + 1000));
  const counts = topo.tally('10.99.100.1', 80, 300);
  assert.equal(counts.real2 ?? 0, 0, JSON.stringify(counts));
  assert.equal(counts.failed ?? 0, 0, JSON.stringify(counts));
  const reals = await agent.json(['real', 'list', VIP]);
  assert.equal(reals.find((r: any) => r.address === ADDR.real2.v4).health, 'down');
  // It comes back after `rise` successes.
  servers.set('real2', topo.startServers(80, 9000, ['real2']).get('real2')!);
  await new Promise((r) => setTimeout(r, 2 * 1000 + 1000));
  assert.ok((topo.tally('10.99.100.1', 80, 200).real2 ?? 0) > 0);
});

test('SIGKILL of the agent does not stall a TCP stream through the VIP, and the restarted agent reports the same state', async () => {
  await agent.ok(['vip', 'add', '10.99.100.1:9000/tcp']);
  for (const r of [ADDR.real1.v4, ADDR.real2.v4, ADDR.real3.v4]) await agent.ok(['real', 'add', '10.99.100.1:9000/tcp', r]);
  const before = await agent.json(['vip', 'list']);
  const stream = spawn('nsenter', [`--net=/run/netns/${topo.ns('client')}`, process.execPath, join(REPO_ROOT, 'scripts', 'lib', 'stream.mjs'), '10.99.100.1', '9000', '4000']);
  let out = '';
  stream.stdout.on('data', (d) => (out += d));
  // Listened to from the start: on a loaded host the restart below outlasts the 4 s stream.
  const closed = new Promise((r) => stream.on('close', r));
  await new Promise((r) => setTimeout(r, 1000));
  await agent.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 500));
  await agent.start();
  await closed;
  const res = JSON.parse(out);
  assert.equal(res.error, null);
  assert.ok(res.received >= res.sent - 1, JSON.stringify(res));
  assert.ok(res.maxGapMs < 100, `stream stalled ${res.maxGapMs} ms`);
  assert.deepEqual((await agent.json(['vip', 'list'])).map((v: any) => [v.key, v.reals.map((r: any) => r.key)]), before.map((v: any) => [v.key, v.reals.map((r: any) => r.key)]));
});

test('state survives a reboot-like restart: new agent, same state dir, nothing pinned', async () => {
  const before = await agent.json(['vip', 'list']);
  await agent.kill('SIGKILL');
  // A reboot loses bpffs and the attachment: --cleanup takes both away.
  await agent.cli(['agent', '--cleanup', '--pin-dir', agent.pinDir, '--state-dir', agent.stateDir]);
  assert.equal((topo.tally('10.99.100.1', 80, 5).failed ?? 0), 5, 'nothing forwards while no agent runs');
  await agent.start();
  assert.deepEqual(await agent.json(['vip', 'list']), before);
  const counts = topo.tally('10.99.100.1', 80, 100);
  assert.equal(counts.failed ?? 0, 0, JSON.stringify(counts));
});

test('a change in flight when SIGTERM comes is made and answered, not cut off as "cannot reach the agent"', async () => {
  const f = join(agent.dir, 'slow.yaml');
  // Reals on the link that nobody answers for: the sync waits for their next hops, which keeps
  // the request in flight long enough to stop the agent under it.
  const silent = ['10.99.0.150', '10.99.0.151', '10.99.0.152'];
  writeFileSync(f, `vips:\n  - { address: 10.99.100.7, port: 80, reals: [ ${silent.map((a) => `{ address: ${a} }`).join(', ')} ] }\n`);
  const applying = agent.cli(['apply', '-f', f]);
  // The change is saved before the data plane is programmed: once it is on disk, it is in flight.
  const state = join(agent.stateDir, 'state.json');
  const deadline = Date.now() + 20_000;
  while (!readFileSync(state, 'utf8').includes('10.99.100.7') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const stopped = agent.kill('SIGTERM');
  const r = await applying;
  await stopped;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ok: applied .*slow\.yaml \(1 VIPs: 1 added/);
  await agent.start();
  assert.deepEqual((await agent.json(['real', 'list', '10.99.100.7:80/tcp'])).map((x: any) => x.key), silent);
});

test('apply -f converges from any prior state, for every mode', async () => {
  const f = join(agent.dir, 'apply.yaml');
  writeFileSync(f, [
    'vips:',
    `  - { address: 10.99.100.2, port: 80, mode: dsr, reals: [ { address: ${ADDR.real1.v4} }, { address: ${ADDR.real3.v4} } ] }`,
    `  - { address: "fd99:100::1", port: 80, mode: dsr, reals: [ { address: "${ADDR.real2.v6}" } ] }`,
    `  - { address: 10.99.100.1, port: 53, protocol: udp, reals: [ { address: ${ADDR.real1.v4} } ] }`,
  ].join('\n'));
  await agent.ok(['apply', '-f', f]);
  const keys = (await agent.json(['vip', 'list'])).map((v: any) => v.key).sort();
  assert.deepEqual(keys, ['10.99.100.1:53/udp', '10.99.100.2:80/tcp', '[fd99:100::1]:80/tcp']);
  // The VIPs the file dropped no longer forward; the ones it holds do.
  assert.equal(topo.tally('10.99.100.1', 80, 5).failed, 5);
  const counts = topo.tally('10.99.100.2', 80, 100);
  assert.deepEqual(Object.keys(counts).sort(), ['real1', 'real3']);
  assert.deepEqual(topo.tally('fd99:100::1', 80, 20), { real2: 20 });
});

test('nat and ipip VIPs added through the CLI carry real connections, IPv4 and IPv6', async () => {
  // NAT: reals send replies for the client back through the lb. IPIP: reals decapsulate with
  // sluice's decap program (this kernel has no ipip module; test/ipvs covers the kernel's own).
  const decap = execFileSync(process.execPath, [join(REPO_ROOT, 'dist', 'src', 'bpf', 'build-cli.js'), 'decap'], { encoding: 'utf8' }).replace(/^bpf: decap -> /, '').trim();
  for (const h of ['real1', 'real2', 'real3'] as const) {
    topo.exec(h, 'ip', ['route', 'replace', `${ADDR.client.v4}/32`, 'via', ADDR.lb.v4]);
    topo.exec(h, 'ip', ['-6', 'route', 'replace', `${ADDR.client.v6}/128`, 'via', ADDR.lb.v6]);
    topo.exec(h, 'ip', ['link', 'set', 'dev', 'eth0', 'xdpdrv', 'obj', decap, 'sec', 'xdp', 'program', 'decap']);
  }
  try {
    const empty = join(agent.dir, 'empty.yaml');
    writeFileSync(empty, 'vips: []\n');
    await agent.ok(['apply', '-f', empty]);
    await agent.ok(['vip', 'add', '10.99.100.1:80/tcp', '--mode', 'nat']);
    await agent.ok(['vip', 'add', '[fd99:100::1]:80/tcp', '--mode', 'nat']);
    await agent.ok(['vip', 'add', '10.99.100.2:80/tcp', '--mode', 'ipip']);
    await agent.ok(['vip', 'add', '[fd99:100::2]:80/tcp', '--mode', 'ipip']);
    for (const h of ['real1', 'real2', 'real3'] as const) {
      await agent.ok(['real', 'add', '10.99.100.1:80/tcp', ADDR[h].v4]);
      await agent.ok(['real', 'add', '[fd99:100::1]:80/tcp', ADDR[h].v6]);
      await agent.ok(['real', 'add', '10.99.100.2:80/tcp', ADDR[h].v4]);
      await agent.ok(['real', 'add', '[fd99:100::2]:80/tcp', ADDR[h].v6]);
    }
    for (const vip of ['10.99.100.1', 'fd99:100::1', '10.99.100.2', 'fd99:100::2']) {
      const counts = topo.tally(vip, 80, 150);
      assert.equal(counts.failed ?? 0, 0, `${vip}: ${JSON.stringify(counts)}`);
      assert.deepEqual(Object.keys(counts).sort(), ['real1', 'real2', 'real3'], `${vip}: ${JSON.stringify(counts)}`);
    }
  } finally {
    for (const h of ['real1', 'real2', 'real3'] as const) {
      topo.exec(h, 'ip', ['route', 'del', `${ADDR.client.v4}/32`]);
      topo.exec(h, 'ip', ['-6', 'route', 'del', `${ADDR.client.v6}/128`]);
      topo.exec(h, 'ip', ['link', 'set', 'dev', 'eth0', 'xdpdrv', 'off']);
    }
  }
});
