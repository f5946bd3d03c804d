/**
 * The real agent (`sluice agent --dataplane ipvs`) and the real CLI inside the VM: what the CLI
 * asks for shows up in `ipvsadm -Ln` and carries connections; health and drain set weight 0;
 * a restart keeps forwarding and keeps ownership; sluice never touches a service it did not make.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { admDest, admService, assertIpvsHost, ipvsadm, sh, topology, type Topology } from './support.js';

const N = 3; // subnets 10.98.3.0/24 and 10.99.3.0/24; VIPs 10.103.0.x
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SLUICE = join(ROOT, 'bin', 'sluice');

let topo: Topology;
let dir: string;
/** The agent's --pin-dir: it must be on a bpffs (the CLI refuses another), even with IPVS. */
let pins: string;
let socket: string;
let agent: ChildProcess | undefined;
let agentLog = '';

function startAgent(args = ['--dataplane', 'ipvs', '--state-dir', join(dir, 'state')]): Promise<void> {
  agentLog = '';
  const p = spawn(process.execPath, [SLUICE, 'agent', ...args, '--socket', socket,
    '--pin-dir', pins, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout!.on('data', (d) => (agentLog += d));
  p.stderr!.on('data', (d) => (agentLog += d));
  agent = p;
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 30_000;
    const poll = () => {
      if (p.exitCode !== null) return reject(new Error(`agent exited ${p.exitCode}:\n${agentLog}`));
      if (existsSync(socket) && /agent ready/.test(agentLog)) return resolve();
      if (Date.now() > deadline) return reject(new Error(`agent not ready after 30 s:\n${agentLog}`));
      setTimeout(poll, 100);
    };
    poll();
  });
}

function stopAgent(): Promise<void> {
  const p = agent;
  agent = undefined;
  if (!p || p.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.once('exit', () => { clearTimeout(t); resolve(); });
    p.kill('SIGTERM');
  });
}

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = sh(process.execPath, SLUICE, ...args, '--socket', socket);
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, stdout: x.stdout, stderr: x.stderr };
  }
}

function ok(...args: string[]): string {
  const r = cli(...args);
  assert.equal(r.code, 0, `sluice ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}\n${sh('ipvsadm', '-Ln')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  assertIpvsHost();
  dir = mkdtempSync(join(tmpdir(), 'ipvs-agent-'));
  pins = mkdtempSync('/sys/fs/bpf/ipvs-agent-');
  socket = join(dir, 'agent.sock');
  topo = topology(N);
  for (const v of ['10.103.0.1', '10.103.0.2', '10.103.0.3']) topo.addVip(v);
  topo.serve(80);
  topo.serve(8080);
  // A service some other tool made: sluice must never touch it.
  sh('ipvsadm', '-A', '-t', '10.103.9.9:25', '-s', 'wlc');
  sh('ipvsadm', '-a', '-t', '10.103.9.9:25', '-r', '10.99.3.11:25', '-m', '-w', '7');
  await startAgent();
});

after(async () => {
  await stopAgent();
  try { sh(process.execPath, SLUICE, 'agent', '--cleanup', '--state-dir', join(dir, 'state'), '--pin-dir', pins); } catch { /* best effort */ }
  try { sh('ipvsadm', '-D', '-t', '10.103.9.9:25'); } catch { /* gone */ }
  topo?.destroy();
  rmSync(dir, { recursive: true, force: true });
  rmSync(pins, { recursive: true, force: true });
});

test('status says the IPVS data plane runs, and why', () => {
  const s = JSON.parse(ok('status', '--json')) as { dataplane: { kind: string; reason: string } };
  assert.equal(s.dataplane.kind, 'ipvs');
  assert.match(s.dataplane.reason, /ipvs/);
});

test('vip add and real add show up in ipvsadm as an mh DR service with those weights', async () => {
  ok('vip', 'add', '10.103.0.1:80/tcp', '--mode', 'dsr');
  ok('real', 'add', '10.103.0.1:80/tcp', '10.99.3.11', '--weight', '2');
  ok('real', 'add', '10.103.0.1:80/tcp', '10.99.3.12', '--weight', '1');
  await until('both reals', () => (admService('tcp', '10.103.0.1', 80)?.dests.length ?? 0) === 2);
  const s = admService('tcp', '10.103.0.1', 80)!;
  assert.equal(s.scheduler, 'mh');
  assert.deepEqual(s.dests.map((d) => [d.address, d.fwd, d.weight]).sort(), [['10.99.3.11', 'Route', 2], ['10.99.3.12', 'Route', 1]]);
});

test('connections to the VIP the CLI made reach both reals', () => {
  const t = topo.getMany('10.103.0.1', 80, 24);
  assert.deepEqual([...t.keys()].sort(), ['real1', 'real2'], JSON.stringify([...t]));
});

test('a drained real goes to weight 0 and gets no new connections', async () => {
  ok('real', 'set', '10.103.0.1:80/tcp', '10.99.3.11', '--drain');
  await until('weight 0', () => admDest(admService('tcp', '10.103.0.1', 80), '10.99.3.11', 80)?.weight === 0);
  assert.deepEqual([...topo.getMany('10.103.0.1', 80, 12)], [['real2', 12]]);
  ok('real', 'set', '10.103.0.1:80/tcp', '10.99.3.11', '--undrain');
  await until('weight back to 2', () => admDest(admService('tcp', '10.103.0.1', 80), '10.99.3.11', 80)?.weight === 2);
});

test('a NAT VIP with another scheduler and the reals\' own port carries connections', async () => {
  ok('vip', 'add', '10.103.0.2:80/tcp', '--mode', 'nat', '--scheduler', 'wrr');
  ok('real', 'add', '10.103.0.2:80/tcp', '10.99.3.11:8080');
  ok('real', 'add', '10.103.0.2:80/tcp', '10.99.3.12:8080');
  await until('NAT service', () => (admService('tcp', '10.103.0.2', 80)?.dests.length ?? 0) === 2);
  assert.equal(admService('tcp', '10.103.0.2', 80)?.scheduler, 'wrr');
  assert.equal(admDest(admService('tcp', '10.103.0.2', 80), '10.99.3.12', 8080)?.fwd, 'Masq');
  const t = topo.getMany('10.103.0.2', 80, 8);
  assert.deepEqual([...t.keys()].sort(), ['real1', 'real2'], JSON.stringify([...t]));
});

test('a real that fails its health check gets weight 0; the healthy one keeps its weight', async () => {
  ok('vip', 'add', '10.103.0.3:80/tcp', '--mode', 'nat', '--health', 'tcp');
  ok('real', 'add', '10.103.0.3:80/tcp', '10.99.3.11:8080');
  ok('real', 'add', '10.103.0.3:80/tcp', '10.99.3.12:9090'); // nothing listens there
  await until('the failing real at weight 0', () => {
    const s = admService('tcp', '10.103.0.3', 80);
    return admDest(s, '10.99.3.12', 9090)?.weight === 0 && admDest(s, '10.99.3.11', 8080)?.weight === 1;
  });
  assert.deepEqual([...topo.getMany('10.103.0.3', 80, 6)], [['real1', 6]]);
});

test('stats show the connections per VIP and per real', async () => {
  let flows = 0;
  await until('IPVS counters folded in (every 2 s)', () => {
    const s = JSON.parse(ok('stats', '--json')) as { vips: Array<{ key: string; newFlows: number }> };
    flows = s.vips.find((v) => v.key === '10.103.0.1:80/tcp')?.newFlows ?? 0;
    return flows >= 36;
  });
  assert.ok(flows >= 36, `newFlows ${flows}`);
});

test('after an agent restart the services are still there and still sluice\'s to remove', async () => {
  const mine = () => ipvsadm().filter((s) => s.address.startsWith('10.103.'));
  const before = mine();
  await stopAgent();
  assert.deepEqual(mine(), before, 'stopping the agent keeps forwarding');
  await startAgent();
  assert.deepEqual(mine(), before, 'a restarted agent changes nothing');
  assert.equal(topo.getMany('10.103.0.1', 80, 4).size > 0, true);
  ok('vip', 'del', '10.103.0.1:80/tcp');
  await until('VIP gone', () => admService('tcp', '10.103.0.1', 80) === undefined);
  assert.ok(admService('tcp', '10.103.0.2', 80), 'the other VIPs stay');
});

test('the service sluice did not make is untouched, then and after cleanup', async () => {
  const theirs = () => admService('tcp', '10.103.9.9', 25);
  assert.deepEqual(theirs()?.dests.map((d) => [d.address, d.fwd, d.weight]), [['10.99.3.11', 'Masq', 7]]);
  await stopAgent();
  const out = sh(process.execPath, SLUICE, 'agent', '--cleanup', '--state-dir', join(dir, 'state'), '--pin-dir', pins);
  assert.match(out, /IPVS services removed/);
  assert.equal(admService('tcp', '10.103.0.2', 80), undefined);
  assert.equal(admService('tcp', '10.103.0.3', 80), undefined);
  assert.equal(theirs()?.scheduler, 'wlc');
});

test('--dataplane auto falls back to IPVS when XDP cannot attach, and status says why', async () => {
  await stopAgent();
  // A bridge takes no native XDP. (An interface that does not exist is a typo, refused instead.)
  sh('ip', 'link', 'add', 'sl-noxdp0', 'type', 'bridge');
  sh('ip', 'link', 'set', 'sl-noxdp0', 'up');
  try {
    await startAgent(['--dataplane', 'auto', '--interface', 'sl-noxdp0', '--state-dir', join(dir, 'state-auto')]);
    const s = JSON.parse(ok('status', '--json')) as { dataplane: { kind: string; reason: string } };
    assert.equal(s.dataplane.kind, 'ipvs');
    assert.match(s.dataplane.reason, /^auto: XDP failed on sl-noxdp0/);
  } finally {
    await stopAgent();
    sh('ip', 'link', 'del', 'sl-noxdp0');
  }
});
