/**
 * Certificates of a TLS listener, chosen by SNI: exact name first, then `*.parent`, then the
 * first certificate. Contexts can be swapped on reload without closing the listener.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import { SluiceError } from '../model/errors.js';
import type { CertSpec } from './config.js';

export class CertStore {
  private byName = new Map<string, SecureContext>();
  private fallback!: SecureContext;
  private pems: { cert: Buffer; key: Buffer } = { cert: Buffer.alloc(0), key: Buffer.alloc(0) };

  constructor(certs: CertSpec[]) { this.load(certs); }

  /** Read and parse every certificate first, so a bad file leaves the current ones in place. */
  load(certs: CertSpec[]): void {
    const byName = new Map<string, SecureContext>();
    let first: SecureContext | undefined;
    let firstPem = this.pems;
    certs.forEach((c, i) => {
      let cert: Buffer, key: Buffer, ctx: SecureContext;
      try {
        cert = readFileSync(c.cert);
        key = readFileSync(c.key);
        ctx = createSecureContext({ cert, key });
      } catch (e) {
        throw new SluiceError('ETLS', `tls.certs[${i}]: cannot load ${c.cert} / ${c.key}: ${(e as Error).message}`);
      }
      if (!first) { first = ctx; firstPem = { cert, key }; }
      for (const n of c.serverNames) if (!byName.has(n)) byName.set(n, ctx);
    });
    this.byName = byName;
    this.fallback = first!;
    this.pems = firstPem;
  }

  /** PEMs of the default certificate, for the server's own options. */
  get defaultPem(): { cert: Buffer; key: Buffer } { return this.pems; }

  select(servername: string | undefined): SecureContext {
    if (servername) {
      const n = servername.toLowerCase();
      const exact = this.byName.get(n);
      if (exact) return exact;
      const dot = n.indexOf('.');
      if (dot > 0) { const wild = this.byName.get(`*${n.slice(dot)}`); if (wild) return wild; }
    }
    return this.fallback;
  }

  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    cb(null, this.select(servername));
  };
}
