/** A small typed API over BPF objects, in the spirit of cilium/ebpf: Collection, Map, Program, Link. */
export { Collection, type LoadOptions } from './collection.js';
export { BpfMap, TypedMap, MapType, UpdateFlags, splitPerCpu } from './map.js';
export { Program, Link, XdpAction, XDP_ACTION_NAMES, ifIndex, xdpAttached, type TestRunResult, type XdpAttachMode, type XdpAttached } from './program.js';
export { ensureBpffs, pinDir, unpin, unpinAll, BPFFS } from './pin.js';
export { compileBpf, bpfSources, REPO_ROOT } from './build.js';
export { BpfError, isBpfError, type BpfErrorShape } from './errors.js';
export type { OpenOptions } from './native.js';
export * as codec from './codec.js';
