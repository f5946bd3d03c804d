/**
 * Operations on the desired state. Each takes the current Config and returns a new one, or
 * throws without touching anything: the API persists the result before it answers "ok".
 */
import {
  ConflictError, ValidationError, realKey, validateConfig, validateReal, validateVip, vipKey,
  type Config, type DataplaneSpec, type RealSpec, type VipSpec,
} from '../model/index.js';
import { validateL7 } from '../l7/config.js';

/**
 * A whole document as the agent takes it (config file, `apply -f`): the L4 part, and the `l7:`
 * section too, so that a file the L7 pool would refuse is refused here and not stored.
 */
export function validateDocument(doc: unknown): Config {
  const config = validateConfig(doc);
  if (config.l7 !== undefined) validateL7(config.l7);
  return config;
}

function clone(c: Config): Config {
  return structuredClone(c);
}

function findVip(c: Config, key: string): VipSpec {
  const v = c.vips.find((x) => vipKey(x) === key);
  if (!v) throw new ConflictError('ENOENT', `no VIP ${key}`);
  return v;
}

function findReal(v: VipSpec, key: string): RealSpec {
  const r = v.reals.find((x) => realKey(x) === key);
  if (!r) throw new ConflictError('ENOENT', `VIP ${vipKey(v)} has no real ${key}`);
  return r;
}

export function addVip(c: Config, input: unknown): Config {
  const vip = validateVip(input, c.dataplane);
  const key = vipKey(vip);
  if (c.vips.some((x) => vipKey(x) === key)) throw new ConflictError('EEXIST', `VIP ${key} already exists`);
  if (c.vips.length >= c.dataplane.maxVips) throw new ConflictError('ELIMIT', `already ${c.vips.length} VIPs, the limit (dataplane.maxVips) is ${c.dataplane.maxVips}`);
  const total = c.vips.reduce((n, x) => n + x.reals.length, 0);
  if (total + vip.reals.length > c.dataplane.maxReals) {
    throw new ConflictError('ELIMIT', `the data plane holds at most ${c.dataplane.maxReals} reals (dataplane.maxReals); ${total} are configured and this VIP brings ${vip.reals.length}`);
  }
  const next = clone(c);
  next.vips.push(vip);
  return next;
}

export function delVip(c: Config, key: string): Config {
  findVip(c, key);
  const next = clone(c);
  next.vips = next.vips.filter((x) => vipKey(x) !== key);
  return next;
}

export function addReal(c: Config, vip: string, input: unknown): Config {
  const next = clone(c);
  const v = findVip(next, vip);
  const real = validateReal(input, v);
  const key = realKey(real);
  if (v.reals.some((x) => realKey(x) === key)) throw new ConflictError('EEXIST', `VIP ${vip} already has real ${key}`);
  const total = next.vips.reduce((n, x) => n + x.reals.length, 0);
  if (v.reals.length >= c.dataplane.maxReals || total >= c.dataplane.maxReals) {
    throw new ConflictError('ELIMIT', `the data plane holds at most ${c.dataplane.maxReals} reals (dataplane.maxReals); ${total} are configured`);
  }
  v.reals.push(real);
  return next;
}

export function delReal(c: Config, vip: string, real: string): Config {
  const next = clone(c);
  const v = findVip(next, vip);
  const r = findReal(v, real);
  v.reals = v.reals.filter((x) => x !== r);
  return next;
}

export interface RealChange {
  weight?: unknown;
  drain?: unknown;
}

export function setReal(c: Config, vip: string, real: string, change: RealChange): Config {
  const next = clone(c);
  const v = findVip(next, vip);
  const r = findReal(v, real);
  const keys = Object.keys(change).filter((k) => (change as Record<string, unknown>)[k] !== undefined);
  if (keys.length === 0) throw new ValidationError([{ path: 'real', message: 'nothing to change: give a weight or drain' }]);
  for (const k of keys) if (k !== 'weight' && k !== 'drain') throw new ValidationError([{ path: `real.${k}`, message: 'unknown field (expected weight or drain)' }]);
  if (change.weight !== undefined) {
    if (typeof change.weight !== 'number' || !Number.isInteger(change.weight) || change.weight < 0 || change.weight > 65535) {
      throw new ValidationError([{ path: 'real.weight', message: 'must be an integer 0..65535' }]);
    }
    r.weight = change.weight;
  }
  if (change.drain !== undefined) {
    if (typeof change.drain !== 'boolean') throw new ValidationError([{ path: 'real.drain', message: 'must be true or false' }]);
    r.drain = change.drain;
  }
  return next;
}

/**
 * A document without a `vips` list (or with `vips:` and nothing after it) that would remove every
 * running VIP is refused: it is more likely a file cut off after its dataplane section, or an
 * empty request, than meant. Removing every VIP takes an explicit `vips: []`.
 */
export function refuseImplicitRemoveAll(doc: unknown, running: Config | null): void {
  if (!running || running.vips.length === 0) return;
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return;
  const vips = (doc as Record<string, unknown>).vips;
  if (vips !== undefined && vips !== null) return;
  throw new ValidationError([{ path: 'vips', message: `is missing, which would remove every VIP (${running.vips.length} configured): to do that, write \`vips: []\`` }]);
}

/** Limits and the interface are fixed while the agent runs: the program was compiled with them. */
const FIXED: Array<keyof DataplaneSpec> = ['kind', 'interface', 'xdpMode', 'ringSize', 'maxVips', 'maxReals', 'flowTableSize'];

/**
 * `apply -f`: the document becomes the desired state. Its dataplane section may restate the
 * running settings (or leave them out), but not change them.
 */
export function applyConfig(c: Config, doc: unknown): Config {
  refuseImplicitRemoveAll(doc, c);
  const d = isMapping(doc) ? doc : null;
  const dp = d?.dataplane;
  const mapping = isMapping(dp);
  const given = mapping ? dp : {};
  // Fields the document leaves out keep their running values, so validation sees the real limits;
  // a dataplane that is no mapping (`dataplane: eth0`) is left for validation to refuse.
  const merged = d && (mapping || dp === undefined || dp === null) ? { ...d, dataplane: { ...stripUndefined(c.dataplane), ...given } } : doc;
  const next = validateDocument(merged);
  const issues = FIXED.filter((k) => given[k] !== undefined && next.dataplane[k] !== c.dataplane[k])
    .map((k) => ({ path: `dataplane.${k}`, message: `${c.dataplane[k] === undefined ? 'is not set' : `is ${String(c.dataplane[k])}`} in the running agent; changing it needs an agent restart` }));
  if (issues.length) throw new ValidationError(issues);
  return next;
}

/** What a change did, VIP by VIP, as `apply -f` reports it (an unchanged file says so). */
export interface ConfigDiff {
  added: string[];
  removed: string[];
  changed: string[];
  /** The l7 section or the dataplane's run-time settings (gatewayMac, encapSource*) differ. */
  l7: boolean;
  dataplane: boolean;
}

export function diffConfigs(before: Config, after: Config): ConfigDiff {
  const old = new Map(before.vips.map((v) => [vipKey(v), JSON.stringify(v)]));
  const now = new Map(after.vips.map((v) => [vipKey(v), JSON.stringify(v)]));
  return {
    added: [...now.keys()].filter((k) => !old.has(k)),
    removed: [...old.keys()].filter((k) => !now.has(k)),
    changed: [...now.keys()].filter((k) => old.has(k) && old.get(k) !== now.get(k)),
    l7: JSON.stringify(before.l7) !== JSON.stringify(after.l7),
    dataplane: JSON.stringify(stripUndefined(before.dataplane)) !== JSON.stringify(stripUndefined(after.dataplane)),
  };
}

export function isNoChange(d: ConfigDiff): boolean {
  return !d.added.length && !d.removed.length && !d.changed.length && !d.l7 && !d.dataplane;
}

/** A YAML mapping (a JSON object): not null, not a list. */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
