import { native } from './native.js';

export const XdpAction = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const XDP_ACTION_NAMES = ['ABORTED', 'DROP', 'PASS', 'TX', 'REDIRECT'] as const;
export type XdpAttachMode = 'native' | 'generic';
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
    if (this.#fd < 0) throw Object.assign(new Error(`program ${this.name} is closed`), { code: 'EBADF' });
    return this.#fd;
  }

  /** Run the program once (or `repeat` times) on `data` through BPF_PROG_TEST_RUN. */
  testRun(data: Buffer, opts: { repeat?: number; maxOut?: number } = {}): TestRunResult {
    const r = native().testRun(this.fd, data, opts.maxOut ?? data.length + 256, opts.repeat ?? 1);
    return { action: r.retval, data: r.data, durationNs: r.duration };
  }

  /** Attach to an interface (in this process's network namespace) through a bpf_link. */
  attachXdp(ifname: string, mode: XdpAttachMode = 'native'): Link {
    const n = native();
    const ifindex = n.ifIndex(ifname);
    return new Link(n.xdpAttach(this.fd, ifindex, mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE), true);
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
    if (this.#fd < 0) throw Object.assign(new Error('link is closed'), { code: 'EBADF' });
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
