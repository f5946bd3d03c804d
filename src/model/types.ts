/**
 * The one vocabulary every layer speaks: the CLI and config file produce these, the agent
 * stores them, the reconciler turns them into a ServiceTable for a Dataplane.
 */
export type Protocol = 'tcp' | 'udp';
export type Mode = 'dsr' | 'ipip' | 'nat';
export type HashKind = '5tuple' | 'src-ip';
/** IPVS schedulers sluice lets a VIP choose; the XDP data plane always uses Maglev. */
export type Scheduler = 'mh' | 'rr' | 'wrr' | 'lc' | 'wlc' | 'sh';
export type DataplaneKind = 'auto' | 'xdp' | 'ipvs';
export type XdpMode = 'native' | 'generic';

export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
export const MODES: readonly Mode[] = ['dsr', 'ipip', 'nat'];
export const HASHES: readonly HashKind[] = ['5tuple', 'src-ip'];
export const SCHEDULERS: readonly Scheduler[] = ['mh', 'rr', 'wrr', 'lc', 'wlc', 'sh'];

export interface HealthSpec {
  type: 'tcp' | 'http' | 'none';
  /** http only: the path requested; 2xx and 3xx are healthy. */
  path?: string;
  /** Port probed; default: the real's port. */
  port?: number;
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

export interface RealSpec {
  address: string;
  /** NAT only: the real's port; default the VIP's. */
  port?: number;
  /** 0..65535; 0 keeps the real configured but out of the ring. */
  weight: number;
  /** Next-hop MAC for DSR; resolved from the neighbour table when absent. */
  mac?: string;
  /** Drained: existing flows stay, no new ones. */
  drain: boolean;
}

export interface VipSpec {
  address: string;
  /** 0 = every port. */
  port: number;
  protocol: Protocol;
  mode: Mode;
  hash: HashKind;
  scheduler: Scheduler;
  health: HealthSpec;
  reals: RealSpec[];
}

export interface DataplaneSpec {
  kind: DataplaneKind;
  interface?: string;
  xdpMode: XdpMode;
  ringSize: number;
  maxVips: number;
  maxReals: number;
  flowTableSize: number;
  /** ipip mode: MAC of the next hop for reals off the link; default: the gateway of the route to each real, resolved per real. */
  gatewayMac?: string;
  /**
   * ipip mode: outer source, an address or a prefix (`10.0.0.0/24`) whose host bits (at most 32)
   * carry the flow hash; default 198.18.0.0/24 and fd00:5151::/120.
   */
  encapSource4?: string;
  encapSource6?: string;
}

/** The whole desired state: what a config file holds and what the agent persists. */
export interface Config {
  dataplane: DataplaneSpec;
  vips: VipSpec[];
  /** Validated by src/l7; the L4 layers never look inside. */
  l7?: unknown;
}

/** A real as the data plane must program it, after health and drain are applied. */
export interface ServiceReal {
  address: string;
  port: number;
  /** Configured weight; ignored unless state is 'up'. */
  weight: number;
  mac?: string;
  /** up: in the ring; drain: keeps its flows, out of the ring; down: out of the ring, its flows move. */
  state: 'up' | 'drain' | 'down';
}

export interface Service {
  address: string;
  port: number;
  protocol: Protocol;
  mode: Mode;
  hash: HashKind;
  scheduler: Scheduler;
  reals: ServiceReal[];
}

export interface ServiceTable {
  services: Service[];
}

export interface SyncReport {
  added: number;
  updated: number;
  removed: number;
  /** Free text for logs: what changed. */
  changes: string[];
}

export interface Counters {
  packets: number;
  bytes: number;
}

export interface StatsSnapshot {
  vips: Array<{ key: string } & Counters & { newFlows: number; reals: Array<{ key: string } & Counters & { newFlows: number }> }>;
  /** Data-plane wide counters: drops and passes by reason, LRU misses. */
  global: Record<string, number>;
}

export interface Dataplane {
  readonly kind: 'xdp' | 'ipvs';
  sync(desired: ServiceTable): Promise<SyncReport>;
  /** Re-read what the last sync learned from the host (routes, MACs, MTUs); true when the data plane changed. */
  refreshNeighbours?(): Promise<boolean>;
  stats(): Promise<StatsSnapshot>;
  close(opts: { keepForwarding: boolean }): Promise<void>;
}

export const DEFAULT_HEALTH: HealthSpec = { type: 'none', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 2 };
export const DEFAULT_DATAPLANE: DataplaneSpec = {
  kind: 'auto',
  xdpMode: 'native',
  ringSize: 65537,
  maxVips: 64,
  maxReals: 4096,
  flowTableSize: 1_000_000,
};
