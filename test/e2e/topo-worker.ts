/**
 * A helper process that runs inside one namespace of a test topology (started by topo.ts with
 * `nsenter --net=...`): it serves TCP/UDP as a real, drives traffic as the client, runs the XDP
 * data plane as the balancer, or attaches a reference/decap XDP program. Commands arrive as JSON
 * lines on stdin ({id, op, ...}); each gets one JSON line back ({id, ok, result|error}).
 */
import { createServer, connect, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { compileBpf } from '../../src/bpf/build.js';
import { Collection } from '../../src/bpf/collection.js';
import type { Link } from '../../src/bpf/program.js';
import { XdpDataplane } from '../../src/dataplane/xdp/index.js';
import { bytesToMac, ipToBytes } from '../../src/model/address.js';

type Msg = { id: number; op: string; [k: string]: any };
const held: Array<{ sock: Socket; name: string; buf: string; error?: string }> = [];
const keep: unknown[] = [];
const links: Link[] = [];
let dp: XdpDataplane | undefined;
let counter: { col: Collection; link: Link } | undefined;

async function serve(m: Msg): Promise<string> {
  for (const port of m.tcpPorts as number[]) {
    const srv = createServer((s) => {
      s.on('error', () => undefined);
      s.write(`${m.name} ${s.remoteAddress?.replace(/^::ffff:/, '')}\n`);
      s.on('data', (d) => s.write(`${m.name}:${d.toString()}`));
    });
    await new Promise<void>((res, rej) => srv.listen({ port, host: '::', backlog: 1024 }, res).once('error', rej));
    keep.push(srv);
  }
  // Sinks: count what the client sends until it ends its side, then say how much arrived.
  for (const port of (m.sinkPorts ?? []) as number[]) {
    const srv = createServer((s) => {
      let n = 0;
      s.on('error', () => undefined);
      s.on('data', (d) => { n += d.length; });
      s.on('end', () => s.end(`${m.name} ${n}\n`));
    });
    await new Promise<void>((res, rej) => srv.listen({ port, host: '::', backlog: 64 }, res).once('error', rej));
    keep.push(srv);
  }
  for (const port of m.udpPorts as number[]) {
    for (const addr of m.udpAddrs as string[]) {
      const u = createSocket({ type: addr.includes(':') ? 'udp6' : 'udp4' });
      u.on('message', (msg, rinfo) => u.send(`${m.name} ${rinfo.address}`, rinfo.port, rinfo.address));
      await new Promise<void>((res, rej) => { u.once('error', rej); u.bind(port, addr, () => res()); });
      keep.push(u);
    }
  }
  return 'serving';
}

interface Tally { byReal: Record<string, number>; peers: Record<string, number>; failures: number }
function tally(t: Tally, line: string): void {
  const [name, peer] = line.trim().split(' ');
  t.byReal[name] = (t.byReal[name] ?? 0) + 1;
  t.peers[peer] = (t.peers[peer] ?? 0) + 1;
}

function tcpOnce(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((res, rej) => {
    const s = connect({ host, port });
    let buf = '';
    const t = setTimeout(() => { s.destroy(); rej(new Error('timeout')); }, timeoutMs);
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\n')) { clearTimeout(t); s.end(); res(buf.split('\n')[0]); }
    });
    s.on('error', (e) => { clearTimeout(t); rej(e); });
  });
}

function udpOnce(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((res, rej) => {
    const u = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    const t = setTimeout(() => { u.close(); rej(new Error('timeout')); }, timeoutMs);
    u.on('message', (msg) => { clearTimeout(t); u.close(); res(msg.toString()); });
    u.on('error', (e) => { clearTimeout(t); u.close(); rej(e); });
    u.send('hello', port, host);
  });
}

/** One datagram from a connected UDP socket: the answer, or the error the kernel reports (an
 * ICMP port unreachable for it is ECONNREFUSED), or 'timeout'. */
function udpConnected(m: Msg): Promise<string> {
  return new Promise((res) => {
    const u = createSocket({ type: m.host.includes(':') ? 'udp6' : 'udp4' });
    const done = (what: string) => { clearTimeout(t); u.close(); res(what); };
    const t = setTimeout(() => done('timeout'), m.timeoutMs ?? 3000);
    u.on('message', (msg) => done(`answer ${msg.toString()}`));
    u.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    u.connect(m.port, m.host, () => u.send('hello'));
  });
}

async function burst(m: Msg, once: (h: string, p: number, t: number) => Promise<string>): Promise<Tally> {
  const t: Tally = { byReal: {}, peers: {}, failures: 0 };
  let next = 0;
  const deadline = Date.now() + (m.budgetMs ?? 30000);
  const workers = Array.from({ length: m.concurrency ?? 16 }, async () => {
    while (next < m.count && Date.now() < deadline) {
      next++;
      try { tally(t, await once(m.host, m.port, m.timeoutMs ?? 2000)); } catch { t.failures++; }
    }
  });
  await Promise.all(workers);
  return t;
}

/** Send `bytes` to a sink and end: which real took them, how many it counted, how long it took. */
function upload(m: Msg): Promise<{ name: string; received: number; ms: number }> {
  return new Promise((res, rej) => {
    const t0 = Date.now();
    const s = connect({ host: m.host, port: m.port });
    let buf = '';
    const t = setTimeout(() => { s.destroy(); rej(new Error(`upload of ${m.bytes} bytes to ${m.host}:${m.port}: no answer in ${m.timeoutMs ?? 20000} ms`)); }, m.timeoutMs ?? 20000);
    s.on('connect', () => {
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = m.bytes as number;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!s.write(chunk.subarray(0, n))) { s.once('drain', pump); return; }
        }
        s.end();
      };
      pump();
    });
    s.on('data', (d) => { buf += d.toString(); });
    s.on('end', () => {
      clearTimeout(t);
      const [name, n] = buf.trim().split(' ');
      res({ name, received: Number(n), ms: Date.now() - t0 });
    });
    s.on('error', (e) => { clearTimeout(t); rej(e); });
  });
}

async function hold(m: Msg): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < m.count; i++) {
    const s = connect({ host: m.host, port: m.port });
    const h: (typeof held)[number] = { sock: s, name: '', buf: '' };
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error('timeout')), 2000);
      s.on('data', (d) => {
        h.buf += d.toString();
        if (!h.name && h.buf.includes('\n')) { h.name = h.buf.split(' ')[0]; h.buf = ''; clearTimeout(t); res(); }
      });
      s.on('error', (e) => { clearTimeout(t); rej(e); });
    });
    s.on('error', (e: NodeJS.ErrnoException) => { h.error = e.code ?? e.message; });
    held.push(h);
    names.push(h.name);
  }
  return names;
}

/**
 * Send "ping" on every held connection: which still answer, from which real; `error` is the
 * socket's error by the end of the wait (ECONNRESET: the connection was reset).
 */
type Ping = { name: string; answer: string | null; error: string | null };
async function pingHeld(m: Msg): Promise<Ping[]> {
  return Promise.all(held.map((h) => new Promise<Ping>((res) => {
    h.buf = '';
    const done = (answer: string | null) => res({ name: h.name, answer, error: h.error ?? null });
    const t = setTimeout(() => done(null), m.timeoutMs ?? 1500);
    const on = (d: Buffer) => {
      h.buf += d.toString();
      if (h.buf.includes('ping')) { clearTimeout(t); h.sock.off('data', on); done(h.buf.split(':')[0]); }
    };
    h.sock.on('data', on);
    if (h.sock.destroyed) { clearTimeout(t); done(null); return; }
    h.sock.once('close', () => { clearTimeout(t); setImmediate(() => done(null)); });
    h.sock.write('ping');
  })));
}

async function handle(m: Msg): Promise<unknown> {
  switch (m.op) {
    case 'serve': return serve(m);
    case 'tcpBurst': return burst(m, tcpOnce);
    case 'udpBurst': return burst(m, udpOnce);
    case 'udpConnected': return udpConnected(m);
    case 'hold': return hold(m);
    case 'upload': return upload(m);
    case 'pingHeld': return pingHeld(m);
    case 'closeHeld': for (const h of held.splice(0)) h.sock.destroy(); return 'closed';
    case 'attach': {
      const col = Collection.load(await compileBpf({ source: m.source }));
      links.push(col.program(m.program).attachXdp(m.ifname, m.mode ?? 'native'));
      keep.push(col);
      return 'attached';
    }
    case 'attachFwd': {
      // The trivial forwarder: every IPv4 frame for `dst` to `mac` (bpf/ref.bpf.c xdp_fwd).
      const col = Collection.load(await compileBpf({ source: 'ref' }));
      const k = Buffer.alloc(4);
      const mac = Buffer.alloc(8);
      Buffer.from(m.mac.split(':').map((h: string) => parseInt(h, 16))).copy(mac);
      col.map('fwd_mac').update(k, mac);
      col.map('fwd_dst').update(k, Buffer.from(m.dst.split('.').map(Number)));
      links.push(col.program('xdp_fwd').attachXdp(m.ifname, 'native'));
      keep.push(col);
      return 'attached';
    }
    case 'detachAll': for (const l of links.splice(0)) { l.detach(); l.close(); } return 'detached';
    case 'attachCounter': {
      // bpf/ref.bpf.c xdp_count_src on `ifname`: frames from `addr`, by source MAC.
      const col = Collection.load(await compileBpf({ source: 'ref' }));
      const v = Buffer.alloc(20);
      const v6 = m.addr.includes(':');
      ipToBytes(m.addr).copy(v);
      v.writeUInt32LE(v6 ? 1 : 0, 16);
      col.map('count_addr').update(Buffer.alloc(4), v);
      counter = { col, link: col.program('xdp_count_src').attachXdp(m.ifname, 'native') };
      return 'attached';
    }
    case 'readCounter': {
      const out: Record<string, number> = {};
      for (const [k, v] of counter?.col.map('src_counts').lookupAll() ?? []) out[bytesToMac(k.subarray(0, 6))] = Number(v.readBigUInt64LE(0));
      return out;
    }
    case 'detachCounter': counter?.link.detach(); counter?.link.close(); counter?.col.close(); counter = undefined; return 'detached';
    case 'dpEgress': return dp!.egressPorts();
    case 'dpRefresh': return dp!.refreshNeighbours();
    case 'dpOpen':
      dp = await XdpDataplane.open({ spec: m.spec, interface: m.interface, pinDir: m.pinDir, defines: m.defines });
      return { adopted: dp.adopted, upgraded: dp.upgraded, programId: dp.program.id };
    case 'dpSync': return dp!.sync(m.table);
    case 'dpStats': return dp!.stats();
    case 'dpClose': await dp?.close({ keepForwarding: !!m.keepForwarding }); dp = undefined; return 'closed';
    case 'exit': setImmediate(() => process.exit(0)); return 'bye';
    default: throw new Error(`unknown op ${m.op}`);
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line) as Msg;
  handle(m).then(
    (result) => process.stdout.write(JSON.stringify({ id: m.id, ok: true, result }) + '\n'),
    (e: Error) => process.stdout.write(JSON.stringify({ id: m.id, ok: false, error: e.message, code: (e as any).code }) + '\n'),
  );
});
process.stdin.on('end', async () => { await dp?.close({ keepForwarding: false }).catch(() => undefined); process.exit(0); });
