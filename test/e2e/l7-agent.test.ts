/**
 * The L7 pool run by the agent (DESIGN §2: `sluice l7` is "also started by the agent when
 * configured"): the real agent with XDP in the lb namespace, its config file with an l7
 * section, real HTTP from the client namespace through the pool to app servers on the reals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topo, ADDR } from '../support/topo.js';
import { AgentProcess } from '../support/agent.js';

const APP_PORT = 8081;
const L7_PORT = 8080;
const APP = `require('node:http').createServer((req, res) => res.end(process.argv[1] + '\\n')).listen(${APP_PORT}, '0.0.0.0');`;

let topo: Topo;
let agent: AgentProcess;
let configFile: string;

function l7Section(real: 'real1' | 'real2'): object {
  return {
    listeners: [{ address: ADDR.lb.v4, port: L7_PORT }],
    workers: 1,
    routes: [{ match: { pathPrefix: '/' }, pool: 'app' }],
    pools: { app: { endpoints: [`${ADDR[real].v4}:${APP_PORT}`] } },
    timeouts: { drain: '2s' },
  };
}

function writeConfig(l7?: object): void {
  writeFileSync(configFile, JSON.stringify({ dataplane: { interface: 'eth0' }, vips: [], ...(l7 ? { l7 } : {}) }));
}

/** One HTTP GET from the client namespace: the body, or `error: …`. */
function get(): string {
  const src = `fetch('http://${ADDR.lb.v4}:${L7_PORT}/', { signal: AbortSignal.timeout(3000) }).then((r) => r.text()).then((t) => process.stdout.write(t.trim()), (e) => process.stdout.write('error: ' + (e.cause?.code ?? e.message)));`;
  return topo.exec('client', process.execPath, ['-e', src]);
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`${what} within ${ms} ms`);
}

before(async () => {
  topo = Topo.up();
  for (const real of ['real1', 'real2'] as const) topo.spawn(real, process.execPath, ['-e', APP, real]);
  agent = new AgentProcess(topo);
  configFile = join(agent.dir, 'sluice.json');
  writeConfig(l7Section('real1'));
  await agent.start(['--config', configFile]);
});
after(async () => {
  await agent?.destroy();
  topo?.down();
});

test('an agent whose config has an l7 section runs the pool, and status shows it', async () => {
  await until('the pool answers', () => get() === 'real1');
  const s = await agent.json(['status']);
  assert.equal(s.l7.running, true);
  assert.ok(s.l7.pid > 0);
  assert.match(await agent.ok(['status']), /l7 pool:\s+running, pid \d+/);
});

test('SIGHUP with a changed l7 section reloads the same pool: new routing, same process', async () => {
  const pid = (await agent.json(['status'])).l7.pid;
  writeConfig(l7Section('real2'));
  agent.proc!.kill('SIGHUP');
  await until('requests go to the new endpoint', () => get() === 'real2');
  assert.equal((await agent.json(['status'])).l7.pid, pid, 'the pool was reloaded, not restarted');
});

test('a pool that dies is started again', async () => {
  const pid = (await agent.json(['status'])).l7.pid;
  process.kill(pid, 'SIGKILL');
  await until('a new pool answers', async () => {
    const s = await agent.json(['status']);
    return s.l7.running && s.l7.pid !== pid && get() === 'real2';
  });
});

test('apply -f of a file without an l7 section stops the pool', async () => {
  writeConfig();
  await agent.ok(['apply', '-f', configFile]);
  await until('the pool stops answering', () => get().startsWith('error:'));
  assert.equal((await agent.json(['status'])).l7, undefined);
});

test('apply -f with an l7 section starts it again', async () => {
  writeConfig(l7Section('real1'));
  await agent.ok(['apply', '-f', configFile]);
  await until('the pool answers', () => get() === 'real1');
});

test('a killed agent leaves no pool behind: it drains itself, and the next agent runs its own', async () => {
  const pid = (await agent.json(['status'])).l7.pid;
  await agent.kill('SIGKILL');
  await until('the orphaned pool exits', () => { try { process.kill(pid, 0); return false; } catch { return true; } });
  await agent.start(['--config', configFile]);
  await until('the next agent\'s pool answers', () => get() === 'real1');
  assert.notEqual((await agent.json(['status'])).l7.pid, pid);
});

test('SIGTERM drains the pool with the agent', async () => {
  const pid = (await agent.json(['status'])).l7.pid;
  await agent.kill('SIGTERM');
  assert.throws(() => process.kill(pid, 0), 'the pool exited before the agent did');
  assert.match(get(), /^error:/);
});
