/**
 * The CLI and the agent API, end to end through the unix socket, with an in-memory data plane
 * (the same commands drive real XDP in test/e2e). Bad input must give one clear line, the
 * right exit code, and change nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { Server } from 'node:http';
import pino from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { serveApi } from '../../src/agent/api.js';
import { StateStore } from '../../src/agent/store.js';
import { addVip, delVip } from '../../src/agent/desired.js';
import { DEFAULT_DATAPLANE } from '../../src/model/index.js';
import { MemoryDataplane } from '../support/memory-dataplane.js';
import { SLUICE, sluice } from '../support/cli.js';

let dir: string, socket: string, agent: Agent, server: Server, dp: MemoryDataplane;
const S = () => ['--socket', socket];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
  socket = join(dir, 'agent.sock');
  dp = new MemoryDataplane();
  const store = new StateStore(join(dir, 'state'));
  agent = await Agent.start({
    store, dataplane: dp, logger: pino({ level: 'silent' }),
    initial: { dataplane: { ...DEFAULT_DATAPLANE, maxVips: 4, maxReals: 3 }, vips: [] },
    info: { kind: 'xdp', reason: 'test' },
    // No periodic re-sync: one landing between `dp.failNext = ...` and the request would take the failure meant for it.
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

/** Run a command that must be refused; assert the code, the message, and that nothing changed. */
async function refused(args: string[], code: 1 | 2, message: RegExp): Promise<void> {
  const before = stateFile();
  const table = JSON.stringify(dp.table);
  const r = await sluice([...args, ...S()]);
  assert.equal(r.code, code, `exit code for ${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.equal(r.stderr.trim().split('\n')[0].startsWith('sluice: '), true, r.stderr);
  assert.equal(stateFile(), before, 'state file unchanged');
  assert.equal(JSON.stringify(dp.table), table, 'data plane unchanged');
}

test('the API socket is created mode 0600', () => {
  assert.equal(statSync(socket).mode & 0o777, 0o600);
});

test('vip add, real add and the lists show what was added, persisted before "ok"', async () => {
  let r = await sluice(['vip', 'add', '10.99.100.1:80/tcp', '--health', 'tcp', ...S()]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ok: added VIP 10.99.100.1:80\/tcp/);
  assert.match(stateFile(), /"10.99.100.1"/);
  r = await sluice(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.11', '--weight', '2', ...S()]);
  assert.equal(r.code, 0, r.stderr);
  r = await sluice(['real', 'list', '10.99.100.1:80/tcp', '--json', ...S()]);
  const reals = JSON.parse(r.stdout);
  assert.deepEqual(reals.map((x: any) => [x.key, x.weight]), [['10.99.0.11', 2]]);
  assert.equal(dp.table.services[0].reals[0].weight, 2);
  r = await sluice(['vip', 'list', ...S()]);
  assert.match(r.stdout, /^VIP\s+MODE/);
  assert.match(r.stdout, /10\.99\.100\.1:80\/tcp\s+dsr\s+5tuple\s+tcp\s+1/);
});

test('IPv6 VIPs are written in brackets and listed canonically', async () => {
  const r = await sluice(['vip', 'add', '[2001:DB8::1]:443/udp', '--mode', 'nat', ...S()]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[2001:db8::1\]:443\/udp/);
  assert.equal((await sluice(['real', 'add', '[2001:db8::1]:443/udp', '[2001:db8::11]:8443', ...S()])).code, 0);
  assert.equal(dp.table.services.find((s) => s.address === '2001:db8::1')!.reals[0].port, 8443);
  assert.equal((await sluice(['vip', 'del', '[2001:db8::1]:443/udp', ...S()])).code, 0);
});

test('a malformed address is a usage error naming it', () => refused(['vip', 'add', '10.0.0.300:80/tcp'], 2, /"10.0.0.300" is not an IPv4 address/));
test('a port out of range is a usage error', () => refused(['vip', 'add', '10.0.0.1:70000/tcp'], 2, /port "70000" must be an integer 0..65535/));
test('an unknown mode is a usage error listing the modes', () => refused(['vip', 'add', '10.0.0.1:80/tcp', '--mode', 'turbo'], 2, /argument 'turbo' is invalid.*dsr, ipip, nat/s));
test('an unknown protocol is a usage error', () => refused(['vip', 'add', '10.0.0.1:80/sctp'], 2, /protocol "sctp" must be tcp or udp/));
test('a bad health check is a usage error', () => refused(['vip', 'add', '10.0.0.1:80/tcp', '--health', 'ping'], 2, /--health "ping" must be tcp, http:PATH/));
test('--health-port without --health is a usage error naming the flags', () => refused(['vip', 'add', '10.0.0.1:80/tcp', '--health-port', '8080'], 2, /--health-port needs a health check: give --health tcp or --health http:PATH too/));
test('a health-checked VIP on every port without --health-port is a usage error naming the flag', () => refused(['vip', 'add', '10.0.0.1:0/tcp', '--health', 'tcp'], 2, /a VIP on every port \(port 0\) needs --health-port N/));
test('a duplicate VIP is refused by the agent', () => refused(['vip', 'add', '10.99.100.1:80/tcp'], 1, /VIP 10.99.100.1:80\/tcp already exists/));
test('a real for a VIP that does not exist is refused', () => refused(['real', 'add', '10.1.1.1:80/tcp', '10.99.0.11'], 1, /no VIP 10.1.1.1:80\/tcp/));
test('a duplicate real is refused', () => refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.11'], 1, /already has real 10.99.0.11/));
test('a real named with its VIP\'s port is the real stored without it', async () => {
  assert.equal((await sluice(['real', 'set', '10.99.100.1:80/tcp', '10.99.0.11:80', '--weight', '3', ...S()])).code, 0);
  const reals = JSON.parse((await sluice(['real', 'list', '10.99.100.1:80/tcp', '--json', ...S()])).stdout);
  assert.equal(reals.find((r: any) => r.key === '10.99.0.11').weight, 3);
  assert.equal((await sluice(['real', 'set', '10.99.100.1:80/tcp', '10.99.0.11', '--weight', '1', ...S()])).code, 0);
});
test('a real with its own port outside nat mode is refused', () => refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.12:8080'], 1, /own port only in nat mode/));
test('a weight out of range is a usage error', () => refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.12', '--weight', '70000'], 2, /must be an integer 0..65535/));
test('a malformed MAC is a usage error', () => refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.12', '--mac', 'zz'], 2, /--mac "zz" is not a MAC/));
test('a broadcast or multicast MAC is a usage error, not a next hop that floods the segment', async () => {
  await refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.12', '--mac', 'ff:ff:ff:ff:ff:ff'], 2, /--mac ff:ff:ff:ff:ff:ff is the broadcast address/);
  await refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.12', '--mac', '01-00-5E-00-00-01'], 2, /--mac 01-00-5E-00-00-01 is a multicast \(group\) address/);
});
test('a real at the VIP\'s own address is refused', () => refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.100.1'], 1, /real\.address: is the VIP's own address/));
test('a VIP with a leading zero in an octet is a usage error naming the octal reading', () => refused(['vip', 'add', '010.99.100.1:80/tcp'], 2, /"010.99.100.1" has a leading zero, which some tools read as octal: write 10\.99\.100\.1/));
test('a loopback VIP is refused: no packet for it reaches the balancer', () => refused(['vip', 'add', '127.0.0.1:80/tcp'], 1, /vip\.address: is loopback/));
test('real set without a change is a usage error', () => refused(['real', 'set', '10.99.100.1:80/tcp', '10.99.0.11'], 2, /needs --weight N, --drain or --undrain/));
test('an unknown command is a usage error', () => refused(['frobnicate'], 2, /unknown command 'frobnicate'/));
test('a missing command is a usage error, not success: the help goes to stderr with exit 2', async () => {
  for (const args of [[], ['vip'], ['real']]) {
    const r = await sluice([...args]);
    assert.equal(r.code, 2, `exit code for sluice ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^Usage: sluice/);
  }
  assert.equal((await sluice(['vip', '--help'])).code, 0);
  assert.equal((await sluice(['--version'])).code, 0);
});

test('more reals than the compiled limit are refused naming the limit', async () => {
  assert.equal((await sluice(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.12', ...S()])).code, 0);
  assert.equal((await sluice(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.13', ...S()])).code, 0);
  await refused(['real', 'add', '10.99.100.1:80/tcp', '10.99.0.14'], 1, /at most 3 reals \(dataplane.maxReals\)/);
  assert.equal((await sluice(['real', 'del', '10.99.100.1:80/tcp', '10.99.0.13', ...S()])).code, 0);
});

test('real set --drain keeps the real configured but out of new flows; --undrain restores it', async () => {
  assert.equal((await sluice(['real', 'set', '10.99.100.1:80/tcp', '10.99.0.12', '--drain', ...S()])).code, 0);
  assert.equal(dp.table.services[0].reals.find((r) => r.address === '10.99.0.12')!.state, 'drain');
  assert.equal((await sluice(['real', 'set', '10.99.100.1:80/tcp', '10.99.0.12', '--undrain', '--weight', '3', ...S()])).code, 0);
  const r = dp.table.services[0].reals.find((x) => x.address === '10.99.0.12')!;
  assert.deepEqual([r.state, r.weight], ['up', 3]);
});

test('an invalid config file is refused naming the path, and changes nothing', async () => {
  const f = join(dir, 'bad.yaml');
  writeFileSync(f, 'vips:\n  - address: 10.99.100.9\n    port: 80\n    reals:\n      - { address: 10.99.0.11, weight: -1 }\n');
  await refused(['apply', '-f', f], 1, /vips\[0\].reals\[0\].weight: must be an integer 0..65535/);
});

test('a config file with a YAML syntax error is refused with its line', async () => {
  const f = join(dir, 'syntax.yaml');
  writeFileSync(f, 'vips:\n  - address: [10.99.100.9\n');
  await refused(['apply', '-f', f], 2, /syntax.yaml:\d+:\d+/);
});

test('a config that changes compiled limits is refused', async () => {
  const f = join(dir, 'limits.yaml');
  writeFileSync(f, 'dataplane: { maxReals: 9 }\nvips: []\n');
  await refused(['apply', '-f', f], 1, /dataplane.maxReals: is 3 in the running agent; changing it needs an agent restart/);
});

test('a config naming an interface the running agent was started without says it is not set, not "undefined"', async () => {
  const f = join(dir, 'iface.yaml');
  writeFileSync(f, 'dataplane: { interface: eth0 }\nvips: []\n');
  await refused(['apply', '-f', f], 1, /dataplane\.interface: is not set in the running agent; changing it needs an agent restart/);
});

test('apply -f makes the running state equal the file, whatever was there', async () => {
  const f = join(dir, 'good.yaml');
  writeFileSync(f, [
    'vips:',
    '  - { address: 10.99.100.2, port: 53, protocol: udp, mode: nat, reals: [ { address: 10.99.0.21, port: 5353 } ] }',
    '  - { address: "2001:db8::2", port: 80, reals: [ { address: "2001:db8::21", weight: 5 } ] }',
  ].join('\n'));
  const r = await sluice(['apply', '-f', f, ...S()]);
  assert.equal(r.code, 0, r.stderr);
  const vips = JSON.parse((await sluice(['vip', 'list', '--json', ...S()])).stdout);
  assert.deepEqual(vips.map((v: any) => v.key).sort(), ['10.99.100.2:53/udp', '[2001:db8::2]:80/tcp']);
  assert.deepEqual(dp.table.services.map((s) => s.address).sort(), ['10.99.100.2', '2001:db8::2']);
  // Applying the same file again changes nothing.
  const syncs = dp.syncs;
  const state = stateFile();
  assert.equal((await sluice(['apply', '-f', f, ...S()])).code, 0);
  assert.equal(stateFile(), state);
  assert.equal(JSON.stringify(dp.table.services.map((s) => s.address).sort()), JSON.stringify(['10.99.100.2', '2001:db8::2']));
  assert.ok(dp.syncs >= syncs);
});

test('apply -f of the running file again says nothing changed; a changed file says what changed', async () => {
  try {
    const f = join(dir, 'again.yaml');
    writeFileSync(f, 'vips:\n  - { address: 10.99.100.3, port: 80, reals: [ { address: 10.99.0.31 } ] }\n  - { address: 10.99.100.4, port: 80 }\n');
    const first = await sluice(['apply', '-f', f, ...S()]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^ok: applied .*again\.yaml \(2 VIPs: /);
    const state = stateFile();
    const again = await sluice(['apply', '-f', f, ...S()]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, `ok: ${f} is the running state already (2 VIPs): nothing changed\n`);
    assert.equal(stateFile(), state);
    // The same state written another way (IPv4 unchanged, a weight spelled as its default) is no change either.
    writeFileSync(f, 'vips:\n  - { address: 10.99.100.3, port: 80, protocol: tcp, reals: [ { address: 10.99.0.31, weight: 1 } ] }\n  - { address: 10.99.100.4, port: 80 }\n');
    assert.match((await sluice(['apply', '-f', f, ...S()])).stdout, /nothing changed/);
    writeFileSync(f, 'vips:\n  - { address: 10.99.100.3, port: 80, reals: [ { address: 10.99.0.31, weight: 3 } ] }\n  - { address: 10.99.100.5, port: 80 }\n');
    assert.equal((await sluice(['apply', '-f', f, ...S()])).stdout, `ok: applied ${f} (2 VIPs: 1 added, 1 changed, 1 removed)\n`);
  } finally {
    // The tests after this one expect the previous test's state.
    await sluice(['apply', '-f', join(dir, 'good.yaml'), ...S()]);
  }
});

test('status reports the data plane and counts', async () => {
  const r = await sluice(['status', '--json', ...S()]);
  const s = JSON.parse(r.stdout);
  assert.equal(s.dataplane.kind, 'xdp');
  assert.equal(s.vips, 2);
  assert.equal(s.reals, 2);
});

test('stats prints a row per VIP and per real', async () => {
  const r = await sluice(['stats', ...S()]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^VIP\s+REAL\s+PACKETS/);
  assert.match(r.stdout, /10\.99\.0\.21:5353/);
});

test('stats --interval without --watch is a usage error (exit 2), not silently one snapshot', async () => {
  const r = await sluice(['stats', '--interval', '5', ...S()]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--interval is the refresh interval of --watch: give --watch too/);
  assert.equal(r.stdout, '');
});

test('stats --watch prints a fresh table every --interval until stopped', async () => {
  const r = await sluice(['stats', '--watch', '--interval', '1', '--json', ...S()], { timeoutMs: 2500 });
  const snapshots = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  assert.ok(snapshots.length >= 2, `${snapshots.length} snapshots in 2.5 s:\n${r.stdout}`);
  for (const s of snapshots) assert.ok(Array.isArray(s.vips));
});

test('stats --watch into a pipe whose reader went away ends quietly, not with a stack trace', async () => {
  const p = spawn(process.execPath, [SLUICE, 'stats', '--watch', '--json', '--interval', '1', ...S()], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += d));
  // As `| head -1`: read the first snapshot, then close the pipe.
  await new Promise((r) => p.stdout!.once('data', r));
  p.stdout!.destroy();
  const code = await new Promise<number | null>((r) => { const t = setTimeout(() => { p.kill('SIGKILL'); r(null); }, 10_000); p.once('exit', (c) => { clearTimeout(t); r(c); }); });
  assert.equal(code, 0, stderr);
  assert.equal(stderr, '');
});

test('stats --watch outlives an agent restart: one line on stderr, then snapshots again', async () => {
  const sock = join(dir, 'restart.sock');
  let srv = await serveApi(agent, sock, pino({ level: 'silent' }));
  const watch = sluice(['stats', '--watch', '--interval', '1', '--json', '--socket', sock], { timeoutMs: 7000 });
  await new Promise((r) => setTimeout(r, 2500));
  await new Promise<void>((r) => { srv.close(() => r()); srv.closeAllConnections(); });
  // While the agent is away the state changes: snapshots after the restart show it.
  await agent.change((c) => addVip(c, { address: '10.99.100.8', port: 80, protocol: 'tcp' }));
  await new Promise((r) => setTimeout(r, 2000));
  srv = await serveApi(agent, sock, pino({ level: 'silent' }));
  const r = await watch;
  srv.close();
  await agent.change((c) => delVip(c, '10.99.100.8:80/tcp'));
  assert.equal(r.code, -1, `still watching when killed; exit ${r.code}: ${r.stderr}`);
  const snapshots = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(snapshots.some((s) => s.vips.some((v: any) => v.key === '10.99.100.8:80/tcp')), `a snapshot after the restart:\n${r.stdout}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^sluice: cannot reach the agent at .*restart.sock .*; still watching$/);
});

test('a data plane that refuses a change rolls the state back and reports it', async () => {
  const before = stateFile();
  dp.failNext = new Error('map full');
  const r = await sluice(['vip', 'add', '10.99.100.7:80/tcp', ...S()]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the data plane refused the change: map full/);
  assert.equal(stateFile(), before);
});

function raw(method: string, path: string, body: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(t) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the API re-validates what it receives: bad JSON and bad fields are 400 with issues', async () => {
  const before = stateFile();
  let r = await raw('POST', '/v1/vips', '{"address":');
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /not valid JSON/);
  r = await raw('POST', '/v1/vips', JSON.stringify({ address: '10.0.0.1', port: 99999, protocol: 'tcp' }));
  assert.equal(r.status, 400);
  assert.deepEqual(r.json.error.issues, [{ path: 'vip.port', message: 'must be an integer 0..65535' }]);
  r = await raw('PATCH', `/v1/vips/${encodeURIComponent('10.99.100.2:53/udp')}/reals/${encodeURIComponent('10.99.0.21:5353')}`, JSON.stringify({ weight: 'heavy' }));
  assert.equal(r.status, 400);
  r = await raw('DELETE', '/v1/vips/not-a-vip', '');
  assert.equal(r.status, 400);
  r = await raw('PUT', '/v1/vips', '{}');
  assert.equal(r.status, 405);
  assert.equal(stateFile(), before);
});

test('a URL segment with broken percent-encoding is 400, not an internal error', async () => {
  const before = stateFile();
  let r = await raw('DELETE', '/v1/vips/%E0%A4%A', '');
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /"%E0%A4%A" is not valid percent-encoding/);
  r = await raw('DELETE', `/v1/vips/${encodeURIComponent('10.99.100.2:53/udp')}/reals/%ZZ`, '');
  assert.equal(r.status, 400);
  assert.equal(stateFile(), before);
});

test('an unreachable agent is exit 1 with a hint', async () => {
  const r = await sluice(['vip', 'list', '--socket', join(dir, 'nope.sock')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach the agent at .*nope.sock .*is `sluice agent` running\?/);
});
test('a --socket that is a file or a directory says so, not "is sluice agent running?"', async () => {
  for (const path of [join(dir, 'state', 'state.json'), join(dir, 'state')]) {
    const r = await sluice(['vip', 'list', '--socket', path]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${path.replace(/[.]/g, '\\.')} is not a socket \\(give the agent's --socket\\)`));
    assert.doesNotMatch(r.stderr, /running\?/);
  }
});


test('an API request body over the limit is answered 413, not reset, and changes nothing', async () => {
  const before = stateFile();
  const r = await raw('PUT', '/v1/config', JSON.stringify({ vips: [], pad: 'x'.repeat(5 * 1024 * 1024) }));
  assert.equal(r.status, 413);
  assert.match(r.json.error.message, /request body over 4194304 bytes/);
  assert.equal(stateFile(), before);
});

test('the API refuses to take over a path that is not a socket, and leaves it alone', async () => {
  const f = join(dir, 'not-a-socket');
  writeFileSync(f, 'precious\n');
  await assert.rejects(serveApi(agent, f, pino({ level: 'silent' })), /not-a-socket exists and is not a socket/);
  assert.equal(readFileSync(f, 'utf8'), 'precious\n');
});

test('the API refuses a socket path too long for a unix socket instead of binding a truncated one', async () => {
  const parent = join(dir, 'long');
  mkdirSync(parent);
  const path = join(parent, 'x'.repeat(120 - parent.length), 'agent.sock');
  await assert.rejects(serveApi(agent, path, pino({ level: 'silent' })), /--socket .* is \d+ bytes, over the 107 a unix socket path may have/);
  assert.deepEqual(readdirSync(parent), [], 'no socket bound at a truncated path');
});

test('the API refuses a socket another agent serves', async () => {
  await assert.rejects(serveApi(agent, socket, pino({ level: 'silent' })), /an agent is already serving/);
});
