/**
 * A client of the kernel's generic netlink family "IPVS": resolves the family through nlctrl,
 * then sends service and destination commands. The `netlink` package provides the socket
 * (its native prebuild), sequence numbers and multipart reassembly; the genl header and the
 * IPVS attributes are encoded here.
 */
import { spawnSync } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { GenericNetlinkSocket, NetlinkMessage } from 'netlink';
import { loadNetlink } from '../netlink.js';
import {
  Cmd, IPVS_GENL_NAME, IPVS_GENL_VERSION, type IpvsDest, type IpvsService, type ServiceId,
  afOfAddress, decodeDestMessage, decodeInfo, decodeServiceMessage, destMessage, serviceMessage,
} from './protocol.js';

const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const CTRL_CMD_GETFAMILY = 3;
const REQUEST_TIMEOUT_MS = 5000;

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** A request the kernel refused: `errno` is positive (EEXIST = 17), `code` its name. */
export class IpvsError extends Error {
  constructor(readonly op: string, readonly errno: number, readonly code: string, readonly detail?: string) {
    super(`IPVS ${op}: ${code} (errno ${errno})${detail ? `; ${detail}` : ''}`);
    this.name = 'IpvsError';
  }
}

function genlHeader(cmd: number): Buffer {
  return Buffer.from([cmd, IPVS_GENL_VERSION, 0, 0]);
}


export class IpvsClient {
  #familyId: number;
  private constructor(private readonly sock: GenericNetlinkSocket, familyId: number) {
    this.#familyId = familyId;
  }

  /** The generic netlink id of "IPVS" (the kernel assigns a new one each time ip_vs is loaded). */
  get familyId(): number {
    return this.#familyId;
  }

  /**
   * Open a generic netlink socket and resolve the "IPVS" family. The family exists once the
   * ip_vs module is loaded; the kernel loads it on a lookup only where it can run its own
   * modprobe (the family alias, kernel.modprobe; not in most containers): with `modprobe`
   * (the default) a missing family costs one `modprobe ip_vs` and a second lookup. Rejects
   * with IpvsError ENOENT when the kernel still has no IPVS.
   */
  static async open(opts: { modprobe?: boolean } = {}): Promise<IpvsClient> {
    try {
      return await IpvsClient.#open();
    } catch (e) {
      if (opts.modprobe === false || !(e instanceof IpvsError && e.code === 'ENOENT')) throw e;
      const why = modprobeIpvs();
      try {
        return await IpvsClient.#open();
      } catch (e2) {
        if (e2 instanceof IpvsError && e2.code === 'ENOENT') {
          throw new IpvsError('resolve generic netlink family', 2, 'ENOENT', why ? `modprobe ip_vs failed: ${why}` : 'modprobe ip_vs succeeded, yet the family is missing');
        }
        throw e2;
      }
    }
  }

  static async #open(): Promise<IpvsClient> {
    const nl = await loadNetlink();
    const sock = nl.createGenericNetlink();
    try {
      const familyId = await resolveFamily(sock, IPVS_GENL_NAME);
      return new IpvsClient(sock, familyId);
    } catch (err) {
      sock.socket.close();
      throw err;
    }
  }

  close(): void {
    this.sock.socket.close();
  }

  /**
   * Send one command; returns the payloads (after the genl header) of the replies. The kernel
   * answers ENOENT for a family id it no longer has: when ip_vs was unloaded and loaded again
   * (`modprobe -r ip_vs; modprobe ip_vs conn_tab_bits=...`) IPVS is back under another id, and
   * the command is sent again there (it never reached IPVS). ENOENT from IPVS itself (no such
   * scheduler) comes under the same id and is passed on. The lookup by name lets the kernel load
   * ip_vs again if it is gone (as ipvsadm does), and sluice's next sync programs it afresh.
   */
  private async request(op: string, cmd: number, payload: Buffer, dump = false): Promise<Buffer[]> {
    try {
      return await this.#request(op, cmd, payload, dump);
    } catch (e) {
      if (!(e instanceof IpvsError && e.code === 'ENOENT')) throw e;
      let id: number;
      try {
        id = await resolveFamily(this.sock, IPVS_GENL_NAME);
      } catch (e2) {
        if (e2 instanceof IpvsError && e2.code === 'ENOENT') {
          throw new IpvsError(op, e.errno, e.code, 'the kernel has no IPVS any more (ip_vs unloaded, and not loaded again)');
        }
        throw e;
      }
      if (id === this.#familyId) throw e;
      this.#familyId = id;
      return this.#request(op, cmd, payload, dump);
    }
  }

  async #request(op: string, cmd: number, payload: Buffer, dump: boolean): Promise<Buffer[]> {
    const [msgs] = await this.sock.socket.request(this.#familyId, [genlHeader(cmd), payload], {
      flags: NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0),
      checkError: false,
      timeout: REQUEST_TIMEOUT_MS,
    });
    const out: Buffer[] = [];
    for (const m of msgs as NetlinkMessage[]) {
      if (m.type === NLMSG_ERROR) {
        const errno = -m.data.readInt32LE(0);
        if (errno !== 0) throw new IpvsError(op, errno, ERRNO_NAMES.get(errno) ?? String(errno));
        continue;
      }
      if (m.type !== this.#familyId) continue;
      out.push(m.data.subarray(4)); // genl header: cmd, version, reserved
    }
    return out;
  }

  async info(): Promise<{ version: string; connTabSize: number }> {
    const [reply] = await this.request('get info', Cmd.GET_INFO, Buffer.alloc(0));
    if (!reply) throw new Error('IPVS get info: no reply');
    return decodeInfo(reply);
  }

  /** Every TCP/UDP, firewall-mark-free service, with its stats. */
  async services(): Promise<IpvsService[]> {
    const replies = await this.request('dump services', Cmd.GET_SERVICE, Buffer.alloc(0), true);
    return replies.map(decodeServiceMessage).filter((s): s is IpvsService => s !== null);
  }

  /** The destinations of one service, with their stats and connection counts. */
  async dests(svc: ServiceId): Promise<IpvsDest[]> {
    const replies = await this.request(`dump destinations of ${svc.address}:${svc.port}/${svc.protocol}`, Cmd.GET_DEST, serviceMessage(svc, false), true);
    return replies.map((p) => decodeDestMessage(p, afOfAddress(svc.address)));
  }

  addService(svc: IpvsService): Promise<unknown> {
    return this.request('add service', Cmd.NEW_SERVICE, serviceMessage(svc, true));
  }

  updateService(svc: IpvsService): Promise<unknown> {
    return this.request('set service', Cmd.SET_SERVICE, serviceMessage(svc, true));
  }

  deleteService(svc: ServiceId): Promise<unknown> {
    return this.request('delete service', Cmd.DEL_SERVICE, serviceMessage(svc, false));
  }

  addDest(svc: ServiceId, dest: IpvsDest): Promise<unknown> {
    return this.request('add destination', Cmd.NEW_DEST, destMessage(svc, dest, true));
  }

  updateDest(svc: ServiceId, dest: IpvsDest): Promise<unknown> {
    return this.request('set destination', Cmd.SET_DEST, destMessage(svc, dest, true));
  }

  deleteDest(svc: ServiceId, dest: { address: string; port: number }): Promise<unknown> {
    return this.request('delete destination', Cmd.DEL_DEST, destMessage(svc, dest, false));
  }
}

/** `modprobe ip_vs`; returns null when it succeeded, else why not. Bounded to 10 s. */
function modprobeIpvs(): string | null {
  const r = spawnSync('modprobe', ['ip_vs'], { timeout: 10_000, encoding: 'utf8' });
  if (r.error) return r.error.message;
  if (r.status !== 0) return r.stderr.trim().split('\n')[0] || `exit ${r.status}`;
  return null;
}

async function resolveFamily(sock: GenericNetlinkSocket, name: string): Promise<number> {
  let replies;
  try {
    replies = await sock.ctrlRequest(CTRL_CMD_GETFAMILY, { familyName: name }, { timeout: REQUEST_TIMEOUT_MS });
  } catch (err) {
    const msg = (err as Error).message;
    if (/ENOENT/.test(msg)) throw new IpvsError('resolve generic netlink family', 2, 'ENOENT', `no family "${name}"`);
    throw err;
  }
  const id = replies[0]?.familyId;
  if (id === undefined) throw new Error(`nlctrl returned no id for generic netlink family ${name}`);
  return id;
}
