/**
 * Helpers for the IPVS tests, which run inside the micro-VM (scripts/vm) as root: `ipvsadm -Ln`
 * parsing, and a namespace topology with the VM's root namespace as the balancer.
 *
 *   ns client (10.98.N.2, fd98:N::2) ── veth ── root ns = lb (10.98.N.1 | 10.99.N.1 on a bridge, VIPs on lo)
 *                                        bridge ──┬─ ns real1 (10.99.N.11, fd99:N::11, VIPs on lo, tunl0 up)
 *                                                 └─ ns real2 (10.99.N.12, fd99:N::12, VIPs on lo, tunl0 up)
 *
 * Reals route through the lb (needed for NAT; DR and tunnel replies merely pass through it).
 * Each test file uses its own N, so files may run concurrently. Servers are busybox httpd
 * serving the real's name; the client is curl (both copied into the VM by scripts/vm).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
}

export function inNs(ns: string, cmd: string, ...args: string[]): string {
  return sh('nsenter', `--net=/run/netns/${ns}`, cmd, ...args);
}

/** Whether this is the micro-VM (or another host with IPVS): the tests refuse to run elsewhere. */
export function assertIpvsHost(): void {
  if (process.env.SLUICE_VM !== '1') {
    throw new Error('test/ipvs runs inside the micro-VM: scripts/vm -- node --test dist/test/ipvs/');
  }
}

export interface AdmDest { address: string; port: number; fwd: string; weight: number }
export interface AdmService { protocol: string; address: string; port: number; scheduler: string; flags: string[]; dests: AdmDest[] }

function splitHostPort(text: string): { address: string; port: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(text) ?? /^(.+):(\d+)$/.exec(text);
  if (!m) throw new Error(`cannot parse ${text}`);
  return { address: m[1], port: Number(m[2]) };
}

/** `ipvsadm -Ln` as data. */
export function ipvsadm(): AdmService[] {
  const out: AdmService[] = [];
  for (const line of sh('ipvsadm', '-Ln').split('\n')) {
    const s = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+(\S+)(?:\s+(.*))?$/.exec(line);
    if (s) {
      const { address, port } = s[1] === 'FWM' ? { address: s[2], port: 0 } : splitHostPort(s[2]);
      const flags = (s[4] ?? '').match(/\(([^)]*)\)/)?.[1].split(',').filter(Boolean) ?? [];
      out.push({ protocol: s[1].toLowerCase(), address, port, scheduler: s[3], flags, dests: [] });
      continue;
    }
    const d = /^\s+->\s+(\S+)\s+(\w+)\s+(\d+)\s+\d+\s+\d+/.exec(line);
    if (d && out.length) out[out.length - 1].dests.push({ ...splitHostPort(d[1]), fwd: d[2], weight: Number(d[3]) });
  }
  return out;
}

export function admService(protocol: string, address: string, port: number): AdmService | undefined {
  return ipvsadm().find((s) => s.protocol === protocol && s.address === address && s.port === port);
}

export function admDest(svc: AdmService | undefined, address: string, port: number): AdmDest | undefined {
  return svc?.dests.find((d) => d.address === address && d.port === port);
}

export interface Held {
  /** The name of the real that accepted the connection. */
  real: string;
  /** Send a line and wait (bounded) for its echo. */
  echo(line: string): Promise<string>;
  close(): void;
}

export interface Topology {
  n: number;
  client: string;
  reals: Array<{ ns: string; address: string; address6: string; name: string }>;
  lbClientSide: string;
  /** Add a VIP (IPv4 or IPv6) on the lb's and every real's lo. */
  addVip(address: string): void;
  /** Start an HTTP server answering `name` on every real, on this port. */
  serve(port: number): void;
  /** Start a TCP server on every real, on this port, that sends the real's name and then echoes each line. */
  serveEcho(port: number): void;
  /** A TCP connection from the client that stays open: the real's name it greeted with, and an echo over it. */
  hold(vip: string, port: number): Promise<Held>;
  /** One HTTP GET from the client; the body (the real's name) or an error. */
  get(vip: string, port: number): string;
  /** `count` HTTP GETs, each on a new connection, from one node process in the client namespace. */
  getMany(vip: string, port: number, count: number): Map<string, number>;
  destroy(): void;
}

/** Build the topology for test file number `n` (1..200). */
export function topology(n: number): Topology {
  const tag = `i${n}`;
  const client = `${tag}-client`;
  const br = `${tag}-br`;
  const reals = [1, 2].map((i) => ({ ns: `${tag}-real${i}`, address: `10.99.${n}.${10 + i}`, address6: `fd99:${n}::${10 + i}`, name: `real${i}` }));
  const servers: ChildProcess[] = [];
  const www = mkdtempSync(join(tmpdir(), `ipvs-www-${n}-`));
  const vips: string[] = [];

  sh('sysctl', '-qw', 'net.ipv4.ip_forward=1');
  sh('sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
  // DR and tunnel replies come back through the lb with the VIP as source, an address the lb
  // holds itself: without accept_local it drops them as martians. (In production the reals
  // answer the client directly and never pass the balancer.)
  sh('sysctl', '-qw', 'net.ipv4.conf.all.accept_local=1');
  sh('ip', 'netns', 'add', client);
  inNs(client, 'ip', 'link', 'set', 'lo', 'up');
  sh('ip', 'link', 'add', `${tag}-c`, 'type', 'veth', 'peer', 'name', `${tag}-cp`);
  sh('ip', 'link', 'set', `${tag}-cp`, 'netns', client);
  inNs(client, 'ip', 'link', 'set', `${tag}-cp`, 'name', 'eth0');
  inNs(client, 'ip', 'addr', 'add', `10.98.${n}.2/24`, 'dev', 'eth0');
  inNs(client, 'ip', 'link', 'set', 'eth0', 'up');
  inNs(client, 'ip', 'route', 'add', 'default', 'via', `10.98.${n}.1`);
  inNs(client, 'ip', '-6', 'addr', 'add', `fd98:${n}::2/64`, 'dev', 'eth0', 'nodad');
  inNs(client, 'ip', '-6', 'route', 'add', 'default', 'via', `fd98:${n}::1`);
  sh('ip', 'addr', 'add', `10.98.${n}.1/24`, 'dev', `${tag}-c`);
  sh('ip', '-6', 'addr', 'add', `fd98:${n}::1/64`, 'dev', `${tag}-c`, 'nodad');
  sh('ip', 'link', 'set', `${tag}-c`, 'up');

  sh('ip', 'link', 'add', br, 'type', 'bridge');
  sh('ip', 'addr', 'add', `10.99.${n}.1/24`, 'dev', br);
  sh('ip', '-6', 'addr', 'add', `fd99:${n}::1/64`, 'dev', br, 'nodad');
  sh('ip', 'link', 'set', br, 'up');
  for (const [i, r] of reals.entries()) {
    sh('ip', 'netns', 'add', r.ns);
    const host = `${tag}-r${i + 1}`;
    sh('ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', `${host}p`);
    sh('ip', 'link', 'set', `${host}p`, 'netns', r.ns);
    sh('ip', 'link', 'set', host, 'master', br);
    sh('ip', 'link', 'set', host, 'up');
    inNs(r.ns, 'ip', 'link', 'set', 'lo', 'up');
    inNs(r.ns, 'ip', 'link', 'set', `${host}p`, 'name', 'eth0');
    inNs(r.ns, 'ip', 'addr', 'add', `${r.address}/24`, 'dev', 'eth0');
    inNs(r.ns, 'ip', 'link', 'set', 'eth0', 'up');
    inNs(r.ns, 'ip', 'route', 'add', 'default', 'via', `10.99.${n}.1`);
    inNs(r.ns, 'ip', '-6', 'addr', 'add', `${r.address6}/64`, 'dev', 'eth0', 'nodad');
    inNs(r.ns, 'ip', '-6', 'route', 'add', 'default', 'via', `fd99:${n}::1`);
    // DR and tunnel: the real holds the VIPs but must not answer ARP for them; the tunnel's
    // decapsulated packets come in on tunl0 from a source routed via eth0.
    for (const kv of ['net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2',
      'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']) inNs(r.ns, 'sysctl', '-qw', kv);
    inNs(r.ns, 'ip', 'link', 'set', 'tunl0', 'up');
    inNs(r.ns, 'sysctl', '-qw', 'net.ipv4.conf.tunl0.rp_filter=0');
    mkdirSync(join(www, r.name));
    writeFileSync(join(www, r.name, 'index.html'), `${r.name}\n`);
  }

  return {
    n, client, reals, lbClientSide: `10.98.${n}.1`,
    addVip(address) {
      vips.push(address);
      const prefix = address.includes(':') ? `${address}/128` : `${address}/32`;
      sh('ip', 'addr', 'add', prefix, 'dev', 'lo');
      for (const r of reals) inNs(r.ns, 'ip', 'addr', 'add', prefix, 'dev', 'lo');
    },
    serve(port) {
      for (const r of reals) {
        const p = spawn('nsenter', [`--net=/run/netns/${r.ns}`, 'httpd', '-f', '-p', String(port), '-h', join(www, r.name)], { stdio: 'ignore' });
        servers.push(p);
      }
      // httpd listens within milliseconds; wait until every real answers on its own address.
      for (const r of reals) {
        const deadline = Date.now() + 10_000;
        for (;;) {
          try { if (inNs(client, 'curl', '-sf', '-m', '2', `http://${r.address}:${port}/`).trim() === r.name) break; } catch { /* not yet */ }
          if (Date.now() > deadline) throw new Error(`httpd on ${r.ns}:${port} did not come up`);
          execFileSync('sleep', ['0.1']);
        }
      }
    },
    getMany(vip, port, count) {
      const out = inNs(client, process.execPath, '-e', FETCH_MANY, vip, String(port), String(count));
      return new Map(Object.entries(JSON.parse(out) as Record<string, number>));
    },
    serveEcho(port) {
      for (const r of reals) {
        const script = join(www, `${r.name}-echo.sh`);
        writeFileSync(script, `#!/bin/sh\necho ${r.name}\nexec cat\n`, { mode: 0o755 });
        // busybox nc: -ll keeps listening after each connection, -e runs the script on it.
        servers.push(spawn('nsenter', [`--net=/run/netns/${r.ns}`, 'nc', '-ll', '-p', String(port), '-e', script], { stdio: 'ignore' }));
      }
      for (const r of reals) {
        const deadline = Date.now() + 10_000;
        for (;;) {
          try { if (inNs(client, 'sh', '-c', `echo | timeout 2 nc ${r.address} ${port}`).split('\n')[0] === r.name) break; } catch { /* not yet */ }
          if (Date.now() > deadline) throw new Error(`echo server on ${r.ns}:${port} did not come up`);
          execFileSync('sleep', ['0.1']);
        }
      }
    },
    hold(vip, port) {
      const p = spawn('nsenter', [`--net=/run/netns/${client}`, 'nc', vip, String(port)], { stdio: ['pipe', 'pipe', 'ignore'] });
      let buf = '';
      const waiting: Array<(line: string) => void> = [];
      // Hand each complete line to the oldest waiter.
      const pump = () => {
        for (let i; (i = buf.indexOf('\n')) >= 0 && waiting.length;) { const line = buf.slice(0, i); buf = buf.slice(i + 1); waiting.shift()!(line); }
      };
      p.stdout.setEncoding('utf8');
      p.stdout.on('data', (d: string) => { buf += d; pump(); });
      const next = (what: string) => new Promise<string>((resolve, reject) => {
        const take = (line: string) => { clearTimeout(t); resolve(line); };
        const t = setTimeout(() => { waiting.splice(waiting.indexOf(take), 1); reject(new Error(`no ${what} from ${vip}:${port} within 5 s`)); }, 5000);
        waiting.push(take);
        pump();
      });
      const close = () => { p.kill('SIGKILL'); };
      return next('greeting').then((real) => ({
        real,
        echo: (line: string) => { p.stdin.write(`${line}\n`); return next('echo'); },
        close,
      }), (e) => { close(); throw e; });
    },
    get(vip, port) {
      const host = vip.includes(':') ? `[${vip}]` : vip;
      return inNs(client, 'curl', '-sf', '-m', '3', `http://${host}:${port}/`).trim();
    },
    destroy() {
      for (const p of servers) p.kill('SIGKILL');
      for (const v of vips) try { sh('ip', 'addr', 'del', v.includes(':') ? `${v}/128` : `${v}/32`, 'dev', 'lo'); } catch { /* gone */ }
      for (const ns of [client, ...reals.map((r) => r.ns)]) try { sh('ip', 'netns', 'del', ns); } catch { /* gone */ }
      for (const dev of [br, `${tag}-c`, `${tag}-r1`, `${tag}-r2`]) try { sh('ip', 'link', 'del', dev); } catch { /* gone */ }
      rmSync(www, { recursive: true, force: true });
    },
  };
}

/**
 * A client run by `node -e` in the client namespace (node starts in ~1.5 s under TCG, curl in
 * ~0.7 s, so one process for many connections): sequential GETs, each on its own connection,
 * tallied by answer; stops after 3 errors; each request times out after 3 s.
 */
const FETCH_MANY = `
const http = require('node:http');
const [host, port, count] = process.argv.slice(1);
const tally = {};
let errors = 0;
function one() {
  return new Promise((resolve) => {
    const req = http.get({ host, port: Number(port), path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim()));
      res.on('error', (e) => resolve('error: ' + e.message));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve('error: ' + e.message));
  });
}
(async () => {
  for (let i = 0; i < Number(count) && errors < 3; i++) {
    const r = await one();
    if (r.startsWith('error')) errors++;
    tally[r] = (tally[r] || 0) + 1;
  }
  process.stdout.write(JSON.stringify(tally));
})();
`;

/** Run `fn` `count` times and tally the results; stops after 3 failures (each call has its own timeout). */
export function tally(count: number, fn: () => string): Map<string, number> {
  const m = new Map<string, number>();
  let errors = 0;
  for (let i = 0; i < count && errors < 3; i++) {
    let r: string;
    try { r = fn(); } catch (e) { errors++; r = `error: ${(e as Error).message.split('\n')[0]}`; }
    m.set(r, (m.get(r) ?? 0) + 1);
  }
  return m;
}
