import { constants } from 'node:os';
import { SluiceError } from '../model/errors.js';

/**
 * An error of the BPF layer raised in TypeScript, shaped like the addon's: `code` (an errno
 * name), `errno` and `op` (the call that refused), with a message that starts with the op.
 */
export class BpfError extends SluiceError {
  readonly op: string;
  readonly errno: number;
  constructor(op: string, code: string, detail: string) {
    super(code, `${op}: ${detail} (${code})`);
    this.name = 'BpfError';
    this.op = op;
    this.errno = (constants.errno as Record<string, number>)[code] ?? 0;
  }
}

/** Errors from the addon and from src/bpf carry the errno name in `code` and the call in `op`. */
export interface BpfErrorShape extends Error {
  code: string;
  errno: number;
  op: string;
}

export function isBpfError(e: unknown, code?: string): e is BpfErrorShape {
  return e instanceof Error && typeof (e as BpfErrorShape).op === 'string' && (code === undefined || (e as BpfErrorShape).code === code);
}
