/**
 * Choose and open the data plane: XDP when asked or when it attaches, IPVS when asked or when
 * `auto` finds that XDP cannot attach. The reason is kept for `sluice status`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Link, unpinAll } from '../bpf/index.js';
import { SluiceError, type Dataplane, type DataplaneSpec } from '../model/index.js';
import { XdpDataplane } from './xdp/index.js';
import { openNetView } from './xdp/neigh.js';
import { IpvsDataplane, OWNERSHIP_FILE, ipvsAvailable } from './ipvs/index.js';

export interface OpenedDataplane {
  dataplane: Dataplane;
  kind: 'xdp' | 'ipvs';
  reason: string;
  interface?: string;
  programId?: number;
  attachMode?: string;
}

export interface OpenOptions {
  spec: DataplaneSpec;
  pinDir: string;
  stateDir: string;
  logger: Logger;
}

export async function openDataplane(o: OpenOptions): Promise<OpenedDataplane> {
  const { spec, logger } = o;
  if (spec.kind === 'ipvs') return openIpvs(o, '--dataplane ipvs was asked for');
  if (!spec.interface) {
    if (spec.kind === 'xdp') throw new SluiceError('EINVAL', 'the XDP data plane needs --interface (or dataplane.interface in the config)');
    return openIpvs(o, 'auto: no interface given for XDP');
  }
  // A mistyped interface is the operator's mistake, not a reason for auto to fall back to IPVS.
  const view = await openNetView();
  try {
    if (!(await view.link(spec.interface))) throw new SluiceError('EINVAL', `interface ${spec.interface} does not exist in this network namespace (--interface or dataplane.interface)`);
  } finally {
    view.close();
  }
  try {
    const dp = await XdpDataplane.open({ spec, interface: spec.interface, pinDir: o.pinDir, logger });
    return {
      dataplane: dp, kind: 'xdp', interface: spec.interface, programId: dp.program.id, attachMode: spec.xdpMode,
      reason: spec.kind === 'xdp' ? '--dataplane xdp was asked for' : `auto: XDP attached to ${spec.interface}`,
    };
  } catch (e) {
    if (spec.kind === 'xdp' || !mayFallBack(e as Error & { code?: string }, o.pinDir)) throw e;
    logger.warn({ err: e }, 'XDP could not be used; falling back to IPVS');
    return openIpvs(o, `auto: XDP failed on ${spec.interface} (${(e as Error).message.split('\n')[0]})`);
  }
}

/**
 * Errors about sluice's own pinned program (limits or layout changed, attached elsewhere) are
 * not "XDP is unavailable": that program still forwards, and IPVS behind it would receive
 * nothing while every change went there. Those stop the agent with their reason instead.
 */
const OWN_STATE_ERRORS = new Set(['ELIMITS', 'ELAYOUT', 'EBUSY']);
function mayFallBack(e: Error & { code?: string }, pinDir: string): boolean {
  return !OWN_STATE_ERRORS.has(e.code ?? '') && !existsSync(join(pinDir, 'link'));
}

async function openIpvs(o: OpenOptions, reason: string): Promise<OpenedDataplane> {
  const probe = await ipvsAvailable();
  if (!probe.ok) throw new SluiceError('ENODATAPLANE', `${reason}, but IPVS is not available either: ${probe.reason}`);
  const dp = await IpvsDataplane.open({ stateDir: o.stateDir, logger: o.logger });
  return { dataplane: dp, kind: 'ipvs', reason, ...(o.spec.interface ? { interface: o.spec.interface } : {}) };
}

/** `sluice agent --cleanup`: detach and unpin XDP, remove the IPVS services sluice made. */
export async function cleanupDataplane(o: { pinDir: string; stateDir: string; logger: Logger }): Promise<string[]> {
  const done: string[] = [];
  if (existsSync(o.pinDir)) {
    // The pinned link keeps the program attached after the agent is gone: detach it, then unpin.
    const linkPin = join(o.pinDir, 'link');
    if (existsSync(linkPin)) {
      const link = Link.openPinned(linkPin);
      try { link.detach(); } catch { /* its interface is gone */ }
      link.close();
    }
    unpinAll(o.pinDir);
    done.push(`XDP detached and ${o.pinDir} unpinned`);
  }
  // Only a host where sluice drove IPVS has anything to remove there (and loading ip_vs on an
  // XDP-only host would be a side effect of a cleanup).
  if (existsSync(join(o.stateDir, OWNERSHIP_FILE)) && (await ipvsAvailable()).ok) {
    const n = await IpvsDataplane.cleanup({ stateDir: o.stateDir, logger: o.logger });
    if (n) done.push(`${n} IPVS services removed`);
  }
  return done;
}
