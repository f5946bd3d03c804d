export { XdpDataplane, compileBalancer, DEFAULT_PIN_DIR, staticMacs, type XdpDataplaneOptions, type Logger } from './dataplane.js';
export * as structs from './structs.js';
export { flowHash, ringSlot } from './hash.js';
