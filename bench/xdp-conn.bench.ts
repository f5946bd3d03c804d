/**
 * Connections per second and bulk throughput from the client to a VIP on the DESIGN §8 topology
 * (one real behind the VIP, nginx on it, wrk on the client), in one run:
 *   direct     the client talks to the real's own address;
 *   trivial    a trivial XDP forwarder on the lb (bpf/ref.bpf.c xdp_fwd: every VIP frame to the
 *              real by MAC rewrite), the floor of any XDP forwarder on veth;
 *   sluice     the XDP balancer, dsr mode;
 *   haproxy    HAProxy `mode tcp` in the lb namespace (the VIP on the lb's lo).
 * Connection rate: wrk -t1 -c32, `Connection: close`, small body. Throughput: 64 KiB uploads
 * (client -> VIP, the direction that crosses the balancer), keep-alive, 8 connections (wrk stalls
 * on 1 MiB bodies with keep-alive).
 * Targets: sluice ≥ 0.9× trivial and ≥ 1.25× HAProxy on both.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unpinAll } from '../src/bpf/pin.js';
import { DEFAULT_DATAPLANE } from '../src/model/types.js';
import { ADDR4, MAC, Topo, VIP4 } from '../test/e2e/topo.js';
import { printTables } from './report.js';

const SECONDS = Number(process.env.XDP_CONN_SECONDS ?? 3);
const ROUNDS = Number(process.env.XDP_CONN_ROUNDS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'sluice-conn-'));
const children: ChildProcess[] = [];
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });

function nsSpawn(ns: string, cmd: string, args: string[]): ChildProcess {
  const c = spawn('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const done = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await done;
}

let errors = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

writeFileSync(join(dir, 'nginx.conf'), `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_max_body_size 4m;
  client_body_buffer_size 2m;
  server {
    listen 80 backlog=4096 reuseport;
    location / { return 200 "hello sluice\\n"; }
    location /upload { return 200 "ok\\n"; }
  }
}`);
writeFileSync(join(dir, 'haproxy.cfg'), `
global
  maxconn 8000
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend vip
  bind ${VIP4[0]}:80
  default_backend reals
backend reals
  server real1 ${ADDR4.real1}:80
`);
writeFileSync(join(dir, 'upload.lua'), `
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
`);

function wrk(topo: Topo, host: string, mode: 'conn' | 'bulk'): { rps: number; mbps: number } {
  const args = mode === 'conn'
    ? ['-t1', '-c32', `-d${SECONDS}s`, '-H', 'Connection: close', `http://${host}/`]
    : ['-t1', '-c8', `-d${SECONDS}s`, '-s', join(dir, 'upload.lua'), `http://${host}/upload`];
  const r = spawnSync('nsenter', [`--net=/run/netns/${topo.ns.client}`, 'wrk', ...args], { encoding: 'utf8', timeout: (SECONDS + 20) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  if (!Number.isFinite(rps)) throw new Error(`wrk failed: ${r.stdout}\n${r.stderr}`);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  errors += non2xx + (errs ? Number(errs[1]) + Number(errs[3]) + Number(errs[4]) : 0);
  // Uploads: 64 KiB per request, in MB/s.
  return { rps, mbps: mode === 'bulk' ? (rps * 65536) / 1e6 : 0 };
}

const topo = await Topo.up();
const pinDir = `/sys/fs/bpf/sluice-conn-${topo.id}`;
try {
  const nginx = nsSpawn(topo.ns.real1, 'nginx', ['-c', join(dir, 'nginx.conf')]);
  await sleep(500);
  // Rounds of every path in turn, the median of each: this machine's load drifts.
  const samples: Record<string, Array<{ conn: number; bulk: number }>> = {};
  const run = (name: string, host: string) => {
    const conn = wrk(topo, host, 'conn').rps;
    const bulk = wrk(topo, host, 'bulk').mbps;
    (samples[name] ??= []).push({ conn, bulk });
  };
  const table = { services: [{ address: VIP4[0], port: 80, protocol: 'tcp', mode: 'dsr', hash: '5tuple', scheduler: 'mh', reals: [{ address: ADDR4.real1, port: 80, weight: 1, state: 'up' }] }] };
  for (let round = 0; round < ROUNDS; round++) {
    run('direct', ADDR4.real1);

    await topo.call('lb', 'attachFwd', { ifname: 'eth0', mac: MAC.real1, dst: VIP4[0] });
    run('trivial XDP forwarder', VIP4[0]);
    await topo.call('lb', 'detachAll');

    await topo.call('lb', 'dpOpen', { spec: { ...DEFAULT_DATAPLANE, kind: 'xdp', maxVips: 8, maxReals: 64 }, interface: 'eth0', pinDir });
    await topo.call('lb', 'dpSync', { table });
    run('sluice XDP (dsr)', VIP4[0]);
    await topo.call('lb', 'dpClose', { keepForwarding: false });

    topo.exec('lb', 'ip', ['addr', 'add', `${VIP4[0]}/32`, 'dev', 'lo']);
    const haproxy = nsSpawn(topo.ns.lb, 'haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db', '-q']);
    await sleep(500);
    run('HAProxy mode tcp', VIP4[0]);
    await stop(haproxy);
    topo.exec('lb', 'ip', ['addr', 'del', `${VIP4[0]}/32`, 'dev', 'lo']);
  }
  await stop(nginx);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const results = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { conn: median(v.map((x) => x.conn)), bulk: median(v.map((x) => x.bulk)), samples: v }]));

  const s = results['sluice XDP (dsr)'], t = results['trivial XDP forwarder'], h = results['HAProxy mode tcp'];
  printTables([{
    title: `connections/s and upload throughput to a VIP (wrk, median of ${ROUNDS} rounds of ${SECONDS}s; one real running nginx)`,
    columns: ['path', 'conn/s', 'upload MB/s', 'conn vs sluice', 'MB/s vs sluice'],
    rows: Object.entries(results).map(([k, v]) => [k, Math.round(v.conn), Math.round(v.bulk), v.conn / s.conn, v.bulk / s.bulk]),
    notes: [
      `sluice / trivial: ${(s.conn / t.conn).toFixed(2)}× conn/s, ${(s.bulk / t.bulk).toFixed(2)}× MB/s (target ≥ 0.9×)`,
      `sluice / HAProxy: ${(s.conn / h.conn).toFixed(2)}× conn/s, ${(s.bulk / h.bulk).toFixed(2)}× MB/s (target ≥ 1.25×)`,
      'conn/s: -t1 -c32, Connection: close; upload: 64 KiB POST bodies, keep-alive, -c8',
      `wrk connect/write/timeout errors and non-2xx responses over every run: ${errors}`,
    ],
    data: results,
  }]);
} finally {
  for (const c of children) await stop(c).catch(() => undefined);
  await topo.down();
  unpinAll(pinDir);
}
