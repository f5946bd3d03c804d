/**
 * "L4 in front of L7" with real parts: the client talks to the VIP; `sluice agent` (XDP, dsr) in
 * the lb namespace sends each new connection to one of two L7 hosts (real1, real2: VIP on lo,
 * `sluice l7` listening on it); they route by host and path to three app servers in namespaces
 * of their own, and answer the client directly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Topo, ADDR } from '../support/topo.js';
import { AgentProcess } from '../support/agent.js';
import { TwoTier, VIP, countBy, l7Of, type L7Host, type Req, type Result } from '../support/two-tier.js';

const SERVICE = `${VIP}:80/tcp`;
const FALL_MS = 2 * 1000; // health defaults: interval 1s, fall 2
const WINDOW_MS = FALL_MS + 1000;
const API: Req = { host: 'api.example.com', path: '/v1/users' };
const WEB: Req = { host: 'www.example.com', path: '/' };

let topo: Topo;
let agent: AgentProcess;
let tier: TwoTier;
let killedAt = 0;

before(async () => {
  topo = Topo.up();
  tier = new TwoTier(topo);
  await tier.start();
  agent = new AgentProcess(topo);
  await agent.start();
  await agent.ok(['vip', 'add', SERVICE, '--mode', 'dsr', '--health', 'tcp']);
  for (const h of ['real1', 'real2'] as const) await agent.ok(['real', 'add', SERVICE, ADDR[h].v4]);
}, { timeout: 120_000 });
after(async () => {
  await tier?.down();
  await agent?.destroy();
  topo?.down();
});

const ok = (r: Result) => r.status === 200 && !!r.app;
const brief = (rs: Result[]) => JSON.stringify(rs.filter((r) => !ok(r)).slice(0, 5));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGKILL real1's `sluice l7` (once) and remember when. */
function killL7(): void {
  if (killedAt) return;
  killedAt = Date.now();
  tier.l7.get('real1')!.kill('SIGKILL');
}

test('host and path prefix route each request through both tiers to its app pool', { timeout: 60_000 }, async () => {
  const kinds: Array<[Req, string[]]> = [
    [API, ['app1', 'app2']],
    [{ host: 'api.example.com', path: '/v2/users' }, ['app3']],
    [{ host: 'www.example.com', path: '/v1/users' }, ['app3']],
    [WEB, ['app3']],
  ];
  const rs = await tier.requests(kinds.map(([r]) => r), 4 * 30);
  assert.equal(rs.length, 120);
  assert.ok(rs.every(ok), brief(rs));
  kinds.forEach(([req, apps], k) => {
    const got = countBy(rs.filter((_, i) => i % kinds.length === k), (r) => r.app);
    assert.deepEqual(Object.keys(got).sort(), apps, `${req.host}${req.path} → ${JSON.stringify(got)}`);
  });
  // Each app saw the host and path the client sent.
  assert.ok(rs.every((r, i) => r.host === kinds[i % kinds.length][0].host && r.url === kinds[i % kinds.length][0].path), 'host and path arrive unchanged');
});

test('new connections to the VIP are spread over both L7 hosts', { timeout: 60_000 }, async () => {
  const rs = await tier.requests([WEB, API], 200);
  assert.ok(rs.every(ok), brief(rs));
  const perL7 = countBy(rs, l7Of);
  assert.deepEqual(Object.keys(perL7).sort(), ['real1', 'real2'], JSON.stringify(perL7));
  for (const h of ['real1', 'real2']) assert.ok(perL7[h] >= 40, `${h} proxied ${perL7[h]} of 200: ${JSON.stringify(perL7)}`);
  // The Via header names the L7 host whose own address the app saw as its peer.
  const mismatched = rs.filter((r) => r.peer !== ADDR[l7Of(r) as L7Host]?.v4);
  assert.equal(mismatched.length, 0, JSON.stringify(mismatched.slice(0, 3)));
});

test('apps see the client\'s own address in X-Forwarded-For: DSR keeps the source through L4', { timeout: 60_000 }, async () => {
  const rs = await tier.requests([WEB, API], 20);
  assert.ok(rs.every(ok), brief(rs));
  assert.deepEqual(countBy(rs, (r) => r.xff ?? undefined), { [ADDR.client.v4]: 20 });
  assert.ok(rs.every((r) => /^1\.1 l7-real[12]$/.test(r.reqVia ?? '')), 'the app saw one Via hop, the L7 host');
});

test('when an L7 host is killed, requests fail only within fall × interval + 1 s of the kill', { timeout: 90_000 }, async (t) => {
  // Bounded: 400 requests at most, 25 s at most; the kill comes 1.5 s in.
  const running = tier.requests([WEB, API], 400, { gapMs: 20, timeoutMs: 1000, maxMs: 25_000 });
  await sleep(1500);
  killL7();
  const rs = await running;
  const before = rs.filter((r) => r.t1 < killedAt);
  const afterWindow = rs.filter((r) => r.t0 > killedAt + WINDOW_MS);
  assert.ok(before.length >= 20, `only ${before.length} requests before the kill`);
  assert.ok(before.every(ok), `failed before the kill: ${brief(before)}`);
  assert.ok((countBy(before, l7Of).real1 ?? 0) > 0, 'real1 proxied requests before the kill');
  assert.ok(afterWindow.length >= 50, `only ${afterWindow.length} requests after the window`);
  assert.ok(afterWindow.every(ok), `failed after the window: ${brief(afterWindow)}`);
  assert.deepEqual(countBy(afterWindow, l7Of), { real2: afterWindow.length });
  const failed = rs.filter((r) => !ok(r));
  t.diagnostic(`${rs.length} requests, ${failed.length} failed, the last ${failed.length ? failed.at(-1)!.t0 - killedAt : '-'} ms after the kill`);
});

test('once the agent marks the killed L7 host down, 200 new requests all succeed via the survivor', { timeout: 90_000 }, async () => {
  killL7();
  await sleep(Math.max(0, killedAt + WINDOW_MS - Date.now()));
  const reals = await agent.json(['real', 'list', SERVICE]);
  const health = Object.fromEntries(reals.map((r: any) => [r.address, r.health]));
  assert.deepEqual(health, { [ADDR.real1.v4]: 'down', [ADDR.real2.v4]: 'up' });
  const rs = await tier.requests([API, WEB], 200, { timeoutMs: 2000, maxMs: 40_000 });
  assert.equal(rs.length, 200);
  assert.ok(rs.every(ok), brief(rs));
  assert.deepEqual(countBy(rs, l7Of), { real2: 200 });
  // Both pools are still served behind the survivor.
  assert.deepEqual(Object.keys(countBy(rs, (r) => r.app)).sort(), ['app1', 'app2', 'app3']);
});
