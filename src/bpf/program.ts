import { native } from './native.js';
import { BpfError } from './errors.js';

export const XdpAction = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const XDP_ACTION_NAMES = ['ABORTED', 'DROP', 'PASS', 'TX', 'REDIRECT'] as const;
export type XdpAttachMode = 'native' | 'generic';
/** How XDP is attached to an interface, as the kernel reports it (XDP_ATTACHED_*). */
export type XdpAttached = 'none' | 'native' | 'generic' | 'offload' | 'multi';
const XDP_ATTACHED: readonly XdpAttached[] = ['none', 'native', 'generic', 'offload', 'multi'];
const XDP_FLAGS_SKB_MODE = 1 << 1;
const XDP_FLAGS_DRV_MODE = 1 << 2;

export interface TestRunResult {
  /** The program's return value (the XDP action for XDP programs). */
  action: number;
  /** The packet after the program ran. */
  data: Buffer;
  /** Mean ns per repetition, as the kernel measured it. */
  durationNs: number;
}

/** A loaded BPF program by fd. */
export class Program {
  readonly name: string;
  readonly id: number;
  readonly tag: string;
  #fd: number;
  #owned: boolean;

  constructor(fd: number, owned: boolean, name?: string) {
    const info = native().progInfo(fd);
    this.#fd = fd;
    this.#owned = owned;
    this.name = name ?? info.name;
    this.id = info.id;
    this.tag = info.tag;
  }

  static openPinned(path: string): Program {
    return new Program(native().objGet(path), true);
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError('Program.fd', 'EBADF', `program ${this.name} is closed`);
    return this.#fd;
  }

  /**
   * Run the program once (or `repeat` times) on `data` through BPF_PROG_TEST_RUN. `maxOut`
   * (default: the input's length + 256) bounds the output; a longer output fails with ENOSPC.
   * The packet is not restored between repetitions: repetition n runs on repetition n-1's output.
   */
  testRun(data: Buffer, opts: { repeat?: number; maxOut?: number } = {}): TestRunResult {
    const r = native().testRun(this.fd, data, opts.maxOut ?? data.length + 256, opts.repeat ?? 1);
    return { action: r.retval, data: r.data, durationNs: r.duration };
  }

  /** Attach to an interface (in this process's network namespace) through a bpf_link: `native` in the driver, `generic` in the stack (SKB mode, any device). */
  attachXdp(ifname: string, mode: XdpAttachMode = 'native'): Link {
    if (mode !== 'native' && mode !== 'generic') throw new BpfError('Program.attachXdp', 'EINVAL', `program ${this.name}: XDP mode must be native or generic, got ${String(mode)}`);
    const n = native();
    const ifindex = n.ifIndex(ifname);
    try {
      return new Link(n.xdpAttach(this.fd, ifindex, mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE), true);
    } catch (e) {
      if (mode === 'native') explainNativeRefusal(e, ifname);
      throw e;
    }
  }

  pin(path: string): void {
    native().objPin(this.fd, path);
  }

  close(): void {
    if (this.#owned && this.#fd >= 0) native().closeFd(this.#fd);
    this.#fd = -1;
  }
}

/**
 * bpf_link_create gives no reason with its errno (the driver's message goes to a netlink extack
 * that a link never sees): name the usual ones, in the error's message (code and op unchanged).
 */
function explainNativeRefusal(e: unknown, ifname: string): void {
  if (!(e instanceof Error)) return;
  const code = (e as Error & { code?: string }).code;
  let why: string;
  if (code === 'ERANGE') {
    why = `the driver of ${ifname} refused native XDP for its MTU (a veth: its peer's MTU): the program takes single-buffer`
      + ' frames, one page each (on veth an MTU of at most 3506); lower the MTU, or use xdpMode generic';
  } else if (code === 'EOPNOTSUPP') {
    why = `the driver of ${ifname} has no native XDP; use xdpMode generic`;
  } else {
    return;
  }
  // On the first line: that is the line `sluice status` shows as the reason.
  const [first, ...rest] = e.message.split('\n');
  e.message = [`${first}: ${why}`, ...rest].join('\n');
}

/**
 * A bpf_link. Closing the fd of an unpinned link detaches it; a pinned link stays attached
 * after the process exits, which is how the agent restarts without a forwarding gap.
 */
export class Link {
  #fd: number;
  #owned: boolean;
  constructor(fd: number, owned: boolean) {
    this.#fd = fd;
    this.#owned = owned;
  }

  static openPinned(path: string): Link {
    return new Link(native().objGet(path), true);
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError('Link.fd', 'EBADF', 'link is closed');
    return this.#fd;
  }

  info(): { id: number; progId: number; ifindex?: number } {
    return native().linkInfo(this.fd);
  }

  /** Atomically replace the attached program; with `expected`, only if that one is attached. */
  update(prog: Program, expected?: Program): void {
    native().linkUpdate(this.fd, prog.fd, expected ? expected.fd : 0);
  }

  pin(path: string): void {
    native().objPin(this.fd, path);
  }

  /** Detach from the interface now, even if pinned (the link object stays until closed/unpinned). */
  detach(): void {
    native().linkDetach(this.fd);
  }

  close(): void {
    if (this.#owned && this.#fd >= 0) native().closeFd(this.#fd);
    this.#fd = -1;
  }
}

export function ifIndex(name: string): number {
  return native().ifIndex(name);
}

/** What XDP program is attached to an interface (in this process's network namespace) and how, whoever attached it. */
export function xdpAttached(ifname: string): { mode: XdpAttached; progId: number; nativeProgId: number; genericProgId: number } {
  const q = native().xdpQuery(native().ifIndex(ifname));
  return { mode: XDP_ATTACHED[q.attachMode] ?? 'multi', progId: q.progId, nativeProgId: q.drvProgId, genericProgId: q.skbProgId };
}
