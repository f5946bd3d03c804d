/**
 * Bad input against the real agent on the XDP data plane: every refusal is one line naming the
 * problem, with exit code 1 (refused by the agent) or 2 (usage), and leaves both the state file
 * and the BPF maps exactly as they were. A second agent on the same state or pins is refused
 * before it touches anything.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BpfMap } from '../../src/bpf/map.js';
import { Topo, ADDR } from '../support/topo.js';
import { AgentProcess } from '../support/agent.js';
import { sluice } from '../support/cli.js';

let topo: Topo;
let agent: AgentProcess;
const VIP = '10.99.100.1:80/tcp';

before(async () => {
  topo = Topo.up();
  topo.startServers(80, 9000);
  agent = new AgentProcess(topo);
  // Small compiled limits, so "more reals than the limit" is quick to reach.
  const cfg = join(agent.dir, 'limits.yaml');
  writeFileSync(cfg, `dataplane: { interface: eth0, maxVips: 4, maxReals: 3, ringSize: 251, flowTableSize: 4096 }\nvips:\n  - { address: 10.99.100.1, port: 80, reals: [ { address: ${ADDR.real1.v4} }, { address: ${ADDR.real2.v4} } ] }\n`);
  await agent.start(['--config', cfg]);
});
after(async () => {
  await agent?.destroy();
  topo?.down();
});

/** The state file and every map the agent writes (rings included), as one digest. */
function snapshot(): { state: string; maps: string } {
  const h = createHash('sha256');
  for (const name of ['vips', 'vips6', 'reals', 'rings', 'config']) {
    const m = BpfMap.openPinned(join(agent.pinDir, 'maps', name));
    try {
      for (const [k, v] of m.lookupAll()) h.update(name).update(k).update(v);
    } finally { m.close(); }
  }
  return { state: readFileSync(join(agent.stateDir, 'state.json'), 'utf8'), maps: h.digest('hex') };
}

async function refused(args: string[], code: 1 | 2, message: RegExp): Promise<void> {
  const before = snapshot();
  const r = await agent.cli(args);
  assert.equal(r.code, code, `exit code of sluice ${args.join(' ')}: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0], message);
  assert.deepEqual(snapshot(), before, 'state file and BPF maps unchanged');
}

test('the agent starts with both reals in the ring, and the maps snapshot is stable', async () => {
  assert.deepEqual(Object.keys(topo.tally('10.99.100.1', 80, 60)).sort(), ['real1', 'real2']);
  assert.deepEqual(snapshot(), snapshot());
});

test('a malformed address is a usage error', () => refused(['vip', 'add', '10.99.100.300:80/tcp'], 2, /"10.99.100.300" is not an IPv4 address/));
test('a port out of range is a usage error', () => refused(['vip', 'add', '10.99.100.2:65536/tcp'], 2, /port "65536" must be an integer 0..65535/));
test('an unknown mode is a usage error', () => refused(['vip', 'add', '10.99.100.2:80/tcp', '--mode', 'tunnel'], 2, /argument 'tunnel' is invalid/));
test('a duplicate VIP is refused by the agent', () => refused(['vip', 'add', VIP], 1, /VIP 10.99.100.1:80\/tcp already exists/));
test('a real for a VIP that does not exist is refused', () => refused(['real', 'add', '10.99.100.9:80/tcp', ADDR.real3.v4], 1, /no VIP 10.99.100.9:80\/tcp/));
test('the same real written with the VIP\'s port is a duplicate', () => refused(['real', 'add', VIP, `${ADDR.real1.v4}:80`], 1, /already has real 10.99.0.11/));

test('more reals than the compiled limit are refused naming the limit', async () => {
  await agent.ok(['vip', 'add', '10.99.100.2:80/tcp']);
  await agent.ok(['real', 'add', '10.99.100.2:80/tcp', ADDR.real3.v4]);
  await refused(['real', 'add', '10.99.100.2:80/tcp', ADDR.real1.v4], 1, /at most 3 reals \(dataplane.maxReals\)/);
});

test('an invalid config file is refused naming the path, and changes nothing', async () => {
  const f = join(agent.dir, 'bad.yaml');
  writeFileSync(f, `vips:\n  - { address: 10.99.100.1, port: 80, reals: [ { address: ${ADDR.real1.v4}, weight: 70000 } ] }\n`);
  await refused(['apply', '-f', f], 1, /vips\[0\]\.reals\[0\]\.weight: must be an integer 0..65535/);
});

test('a config file whose l7 section is invalid is refused before anything is stored', async () => {
  const f = join(agent.dir, 'bad-l7.yaml');
  writeFileSync(f, 'vips: []\nl7: { listeners: [ { address: 10.99.100.1, port: 80 } ], routes: [ { match: { pathPrefix: / }, pool: nope } ], pools: {} }\n');
  await refused(['apply', '-f', f], 1, /l7\.routes\[0\]\.pool: no pool named nope/);
});

test('a config file that changes a compiled limit is refused', async () => {
  const f = join(agent.dir, 'limit.yaml');
  writeFileSync(f, 'dataplane: { maxReals: 64 }\nvips: []\n');
  await refused(['apply', '-f', f], 1, /dataplane.maxReals: is 3 in the running agent; changing it needs an agent restart/);
});

test('a second agent on the same state dir and pins is refused before it touches anything', async () => {
  const before = snapshot();
  const r = await sluice(['agent', '--interface', 'eth0', '--socket', join(agent.dir, 'other.sock'), '--state-dir', agent.stateDir, '--pin-dir', agent.pinDir], { netns: topo.ns('lb') });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`another agent \\(pid ${agent.proc!.pid}\\) uses the state dir`));
  assert.deepEqual(snapshot(), before);
  // The first agent still answers and forwards.
  assert.equal((await agent.json(['status'])).vips, 2);
  assert.deepEqual(Object.keys(topo.tally('10.99.100.1', 80, 30)).sort(), ['real1', 'real2']);
});

test('agent --cleanup is refused while an agent runs on the same pins, and the agent keeps forwarding', async () => {
  const before = snapshot();
  const r = await sluice(['agent', '--cleanup', '--state-dir', join(agent.dir, 'elsewhere'), '--pin-dir', agent.pinDir]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`another agent \\(pid ${agent.proc!.pid}\\) uses the pin dir`));
  assert.deepEqual(snapshot(), before);
  assert.deepEqual(Object.keys(topo.tally('10.99.100.1', 80, 30)).sort(), ['real1', 'real2']);
});

test('after SIGTERM the program keeps forwarding, and an agent with other compiled limits is refused, not moved to IPVS', async () => {
  const before = snapshot();
  await agent.kill('SIGTERM');
  assert.deepEqual(Object.keys(topo.tally('10.99.100.1', 80, 30)).sort(), ['real1', 'real2'], 'forwarding without an agent');
  const cfg = join(agent.dir, 'bigger.yaml');
  writeFileSync(cfg, 'dataplane: { interface: eth0, maxVips: 4, maxReals: 8, ringSize: 251, flowTableSize: 4096 }\nvips: []\n');
  const r = await sluice(['agent', '--config', cfg, '--socket', agent.socket, '--state-dir', agent.stateDir, '--pin-dir', agent.pinDir], { netns: topo.ns('lb') });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /pinned map reals .* has 3 entries, the spec wants 8: limits changed/);
  assert.doesNotMatch(r.stderr + r.stdout, /IPVS/);
  assert.deepEqual(snapshot(), before);
  assert.deepEqual(Object.keys(topo.tally('10.99.100.1', 80, 30)).sort(), ['real1', 'real2']);
});

test('an agent that cannot bind its metrics port exits 1, serves nothing and holds no lock; forwarding goes on', async () => {
  // Something else holds the port in the lb namespace.
  const holder = spawn('nsenter', [`--net=/run/netns/${topo.ns('lb')}`, process.execPath, '-e', 'require("net").createServer().listen(9466, "127.0.0.1", () => console.log("up"))'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise((r) => holder.stdout!.once('data', r));
    const r = await sluice(['agent', '--interface', 'eth0', '--metrics', '127.0.0.1:9466', '--socket', agent.socket, '--state-dir', agent.stateDir, '--pin-dir', agent.pinDir], { netns: topo.ns('lb'), timeoutMs: 20_000 });
    assert.equal(r.code, 1, `exit code (-1: still running after 20 s): ${r.stderr}`);
    assert.match(r.stderr, /EADDRINUSE.*127\.0\.0\.1:9466/);
    assert.equal((await agent.cli(['status'])).code, 1, 'nothing answers on the API socket');
    assert.ok(!existsSync(join(agent.stateDir, 'agent.lock')), 'the state dir lock is released');
  } finally {
    holder.kill('SIGKILL');
  }
  assert.deepEqual(Object.keys(topo.tally('10.99.100.1', 80, 30)).sort(), ['real1', 'real2']);
});
