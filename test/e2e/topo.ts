/**
 * The DESIGN §8 topology for e2e tests, made and removed by the test, with a per-run suffix:
 *
 *   ns client (10.99.0.2, fd99::2) ─┐
 *   ns lb     (10.99.0.1, fd99::1) ─┤── bridge br0 in ns sw ──┬─ ns real1 (10.99.0.11, fd99::11)
 *                                   │                         ├─ ns real2 (10.99.0.12, fd99::12)
 *                                   │                         └─ ns real3 (10.99.0.13, fd99::13)
 *   The VIPs (10.99.100.1-2, fd99:100::1-2) are on the reals' lo (arp_ignore=1, arp_announce=2)
 *   and routed by the client via the lb. Every veth has tx checksum offload off (rewritten
 *   packets would otherwise arrive with bad checksums) and the lb's bridge-side peer runs an XDP
 *   pass program (XDP_TX into a veth only delivers when the peer runs XDP).
 *
 * Each namespace gets a worker process (topo-worker.ts) that the test drives with call().
 * `await Topo.up()` ... `await topo.down()`; an exit handler removes namespaces left behind.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addNs, delNs, inNs, runId, sh } from '../support/netns.js';

export const HOSTS = ['client', 'lb', 'real1', 'real2', 'real3'] as const;
export type Host = (typeof HOSTS)[number];
export const REALS = ['real1', 'real2', 'real3'] as const;
export const ADDR4: Record<Host, string> = { client: '10.99.0.2', lb: '10.99.0.1', real1: '10.99.0.11', real2: '10.99.0.12', real3: '10.99.0.13' };
export const ADDR6: Record<Host, string> = { client: 'fd99::2', lb: 'fd99::1', real1: 'fd99::11', real2: 'fd99::12', real3: 'fd99::13' };
export const MAC: Record<Host, string> = { client: '02:99:00:00:00:01', lb: '02:99:00:00:00:02', real1: '02:99:00:00:00:03', real2: '02:99:00:00:00:04', real3: '02:99:00:00:00:05' };
export const VIP4 = ['10.99.100.1', '10.99.100.2'];
export const VIP6 = ['fd99:100::1', 'fd99:100::2'];

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'topo-worker.js');

class Worker {
  #proc: ChildProcessWithoutNullStreams;
  #next = 1;
  #pending = new Map<number, { res: (v: any) => void; rej: (e: Error) => void }>();
  constructor(readonly ns: string) {
    this.#proc = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, WORKER], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.#proc.stdout }).on('line', (line) => {
      const r = JSON.parse(line);
      const p = this.#pending.get(r.id);
      this.#pending.delete(r.id);
      if (r.ok) p?.res(r.result);
      else p?.rej(Object.assign(new Error(`${ns}: ${r.error}`), { code: r.code }));
    });
    this.#proc.stderr.on('data', (d) => process.stderr.write(`[${ns}] ${d}`));
    this.#proc.on('exit', () => { for (const p of this.#pending.values()) p.rej(new Error(`${ns}: worker exited`)); this.#pending.clear(); });
  }
  call<T = any>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((res, rej) => {
      this.#pending.set(id, { res, rej });
      this.#proc.stdin.write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }
  async stop(): Promise<void> {
    if (this.#proc.exitCode !== null) return;
    const exited = new Promise((r) => this.#proc.once('exit', r));
    this.#proc.stdin.end();
    const t = setTimeout(() => this.#proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

/**
 * What both topologies share: one namespace per host plus the switch `sw`, named with a per-run
 * suffix; a worker in each; veth links from a host to a bridge in `sw`.
 */
abstract class WorkerTopo<H extends string> {
  readonly id: string;
  readonly ns: Record<H | 'sw', string>;
  #workers = new Map<H | 'sw', Worker>();

  protected constructor(readonly hosts: readonly H[], prefix: string) {
    this.id = runId();
    this.ns = Object.fromEntries([...hosts, 'sw'].map((h) => [h, `${prefix}-${h}-${this.id}`])) as Record<H | 'sw', string>;
  }

  protected startWorkers(): void {
    for (const h of [...this.hosts, 'sw' as const]) this.#workers.set(h, new Worker(this.ns[h]));
  }

  /**
   * A veth from host `h` (device `dev`, with its MAC and addresses) to `port` on `bridge` in sw;
   * tx checksum offload off on both ends (rewritten packets would arrive with bad checksums).
   */
  protected link(h: H, dev: string, port: string, bridge: string, mac: string, a4: string, a6: string): void {
    const sw = this.ns.sw;
    const n = this.ns[h];
    sh('ip', ['link', 'add', port, 'netns', sw, 'type', 'veth', 'peer', 'name', dev, 'netns', n]);
    inNs(n, 'ip', ['link', 'set', dev, 'address', mac]);
    inNs(n, 'sysctl', ['-qw', `net.ipv6.conf.${dev}.accept_dad=0`]);
    inNs(n, 'ip', ['addr', 'add', `${a4}/24`, 'dev', dev]);
    inNs(n, 'ip', ['addr', 'add', `${a6}/64`, 'dev', dev, 'nodad']);
    inNs(n, 'ip', ['link', 'set', dev, 'up']);
    inNs(n, 'ethtool', ['-K', dev, 'tx', 'off']);
    inNs(sw, 'ip', ['link', 'set', port, 'master', bridge]);
    inNs(sw, 'ethtool', ['-K', port, 'tx', 'off']);
    inNs(sw, 'ip', ['link', 'set', port, 'up']);
  }

  call<T = any>(h: H | 'sw', op: string, args: Record<string, unknown> = {}): Promise<T> {
    const w = this.#workers.get(h);
    if (!w) throw new Error(`no worker in ${h}`);
    return w.call<T>(op, args);
  }

  /** Run a command in a host's namespace (network only). */
  exec(h: H | 'sw', cmd: string, args: string[]): string {
    return inNs(this.ns[h], cmd, args);
  }

  /** Stop the workers (the lb's closes its data plane: detach, unpin), remove the namespaces. */
  async down(): Promise<void> {
    await Promise.all([...this.#workers.values()].map((w) => w.stop().catch(() => undefined)));
    this.#workers.clear();
    for (const h of [...this.hosts, 'sw' as const]) delNs(this.ns[h]);
  }
}

export class Topo extends WorkerTopo<Host> {
  private constructor() {
    super(HOSTS, 'sx');
  }

  /** Create the namespaces, links and addresses; start a worker in each namespace. */
  static async up(): Promise<Topo> {
    const t = new Topo();
    try {
      t.#build();
      t.startWorkers();
      // The lb's bridge-side peer must run XDP for the lb's XDP_TX frames to be delivered.
      await t.call('sw', 'attach', { source: 'ref', program: 'xdp_pass', ifname: t.peer('lb') });
      return t;
    } catch (e) {
      await t.down();
      throw e;
    }
  }

  /** The bridge-side veth of a host (in ns sw). */
  peer(h: Host): string {
    return `p-${h}-${this.id}`;
  }

  #build(): void {
    const sw = addNs(this.ns.sw);
    inNs(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    inNs(sw, 'ip', ['link', 'set', 'br0', 'up']);
    inNs(sw, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    for (const h of HOSTS) {
      inNs(addNs(this.ns[h]), 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0']);
      this.link(h, 'eth0', this.peer(h), 'br0', MAC[h], ADDR4[h], ADDR6[h]);
    }
    inNs(this.ns.client, 'ip', ['route', 'add', '10.99.100.0/24', 'via', ADDR4.lb]);
    inNs(this.ns.client, 'ip', ['-6', 'route', 'add', 'fd99:100::/64', 'via', ADDR6.lb]);
    inNs(this.ns.lb, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    for (const h of REALS) {
      const n = this.ns[h];
      for (const v of VIP4) inNs(n, 'ip', ['addr', 'add', `${v}/32`, 'dev', 'lo']);
      for (const v of VIP6) inNs(n, 'ip', ['addr', 'add', `${v}/128`, 'dev', 'lo']);
      inNs(n, 'sysctl', ['-qw', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2']);
      // Inner packets of IPIP arrive from the client on eth0 while the outer source is not routable.
      inNs(n, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
    }
  }

  /** NAT: reals send their replies to the client through the lb. */
  routeRepliesViaLb(on: boolean): void {
    for (const h of REALS) {
      this.exec(h, 'ip', ['route', on ? 'replace' : 'del', `${ADDR4.client}/32`, 'via', ADDR4.lb]);
      this.exec(h, 'ip', ['-6', 'route', on ? 'replace' : 'del', `${ADDR6.client}/128`, 'via', ADDR6.lb]);
    }
  }
}

/**
 * Two arms: the balancer between a client side and a real side, with a router on both sides,
 * made and removed by the test with a per-run suffix:
 *
 *   ns client (10.98.1.2, fd98:1::2) ──┐                        ┌── eth1 ns lb (10.98.2.1, fd98:2::1)
 *   ns lb eth0 (10.98.1.1, fd98:1::1) ─┤─ br1 ─ (ns sw) ─ br2 ──┼── ns real1 (10.98.2.11, fd98:2::11)
 *   ns router eth0 (10.98.1.254)      ─┘                        ├── ns real2 (10.98.2.12, fd98:2::12)
 *                                                               └── eth1 ns router (10.98.2.254)
 *
 * The client routes the VIPs (10.98.100.0/24, fd98:100::/64) via the lb and the real subnet via
 * the router. The reals hold the VIPs on lo; routeRealsVia() points their default route at the
 * router (dsr, ipip: replies bypass the balancer) or at the lb's eth1 (nat). The lb does not
 * forward in its kernel, so only its XDP program moves packets between its arms. Every bridge
 * port of the lb runs an XDP pass program (frames it sends with XDP_TX or XDP_REDIRECT reach its
 * peers only then); checksum offload is off on every veth.
 */
export const ARM_HOSTS = ['client', 'lb', 'router', 'real1', 'real2'] as const;
export type ArmHost = (typeof ARM_HOSTS)[number];
export const ARM_REALS = ['real1', 'real2'] as const;
export const ARM4 = {
  client: '10.98.1.2', lb0: '10.98.1.1', router0: '10.98.1.254',
  lb1: '10.98.2.1', router1: '10.98.2.254', real1: '10.98.2.11', real2: '10.98.2.12',
} as const;
export const ARM6 = {
  client: 'fd98:1::2', lb0: 'fd98:1::1', router0: 'fd98:1::fe',
  lb1: 'fd98:2::1', router1: 'fd98:2::fe', real1: 'fd98:2::11', real2: 'fd98:2::12',
} as const;
export const ARM_MAC = {
  client: '02:98:00:00:01:02', lb0: '02:98:00:00:01:01', router0: '02:98:00:00:01:fe',
  lb1: '02:98:00:00:02:01', router1: '02:98:00:00:02:fe', real1: '02:98:00:00:02:11', real2: '02:98:00:00:02:12',
} as const;
export const ARM_VIP4 = '10.98.100.1';
export const ARM_VIP6 = 'fd98:100::1';

export class TwoArmTopo extends WorkerTopo<ArmHost> {
  private constructor() {
    super(ARM_HOSTS, 'sy');
  }

  static async up(): Promise<TwoArmTopo> {
    const t = new TwoArmTopo();
    try {
      t.#build();
      t.startWorkers();
      for (const arm of [1, 2] as const) await t.call('sw', 'attach', { source: 'ref', program: 'xdp_pass', ifname: t.port(arm, 'lb') });
      return t;
    } catch (e) {
      await t.down();
      throw e;
    }
  }

  /** The bridge-side veth of a host's link to arm 1 (client side) or 2 (real side), in ns sw. */
  port(arm: 1 | 2, h: ArmHost): string {
    return `${arm === 1 ? 'a' : 'b'}-${h.slice(0, 3)}${h.slice(-1)}-${this.id}`;
  }

  #link(arm: 1 | 2, h: ArmHost, dev: string, mac: string, a4: string, a6: string): void {
    this.link(h, dev, this.port(arm, h), `br${arm}`, mac, a4, a6);
  }

  #build(): void {
    const sw = addNs(this.ns.sw);
    inNs(sw, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    for (const br of ['br1', 'br2']) {
      inNs(sw, 'ip', ['link', 'add', br, 'type', 'bridge']);
      inNs(sw, 'ip', ['link', 'set', br, 'up']);
    }
    for (const h of ARM_HOSTS) {
      const n = addNs(this.ns[h]);
      inNs(n, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    }
    this.#link(1, 'client', 'eth0', ARM_MAC.client, ARM4.client, ARM6.client);
    this.#link(1, 'lb', 'eth0', ARM_MAC.lb0, ARM4.lb0, ARM6.lb0);
    this.#link(1, 'router', 'eth0', ARM_MAC.router0, ARM4.router0, ARM6.router0);
    this.#link(2, 'lb', 'eth1', ARM_MAC.lb1, ARM4.lb1, ARM6.lb1);
    this.#link(2, 'router', 'eth1', ARM_MAC.router1, ARM4.router1, ARM6.router1);
    for (const h of ARM_REALS) this.#link(2, h, 'eth0', ARM_MAC[h], ARM4[h], ARM6[h]);
    const c = this.ns.client;
    inNs(c, 'ip', ['route', 'add', '10.98.100.0/24', 'via', ARM4.lb0]);
    inNs(c, 'ip', ['-6', 'route', 'add', 'fd98:100::/64', 'via', ARM6.lb0]);
    inNs(c, 'ip', ['route', 'add', '10.98.2.0/24', 'via', ARM4.router0]);
    inNs(c, 'ip', ['-6', 'route', 'add', 'fd98:2::/64', 'via', ARM6.router0]);
    inNs(this.ns.router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    inNs(this.ns.lb, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0']);
    for (const h of ARM_REALS) {
      const n = this.ns[h];
      inNs(n, 'ip', ['addr', 'add', `${ARM_VIP4}/32`, 'dev', 'lo']);
      inNs(n, 'ip', ['addr', 'add', `${ARM_VIP6}/128`, 'dev', 'lo']);
      inNs(n, 'sysctl', ['-qw', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.eth0.rp_filter=0']);
    }
    this.routeRealsVia('router');
  }

  /** The reals' default route: via the router (replies bypass the balancer) or the lb's eth1 (NAT). */
  routeRealsVia(via: 'router' | 'lb'): void {
    for (const h of ARM_REALS) {
      this.exec(h, 'ip', ['route', 'replace', 'default', 'via', via === 'lb' ? ARM4.lb1 : ARM4.router1]);
      this.exec(h, 'ip', ['-6', 'route', 'replace', 'default', 'via', via === 'lb' ? ARM6.lb1 : ARM6.router1]);
    }
  }

}
