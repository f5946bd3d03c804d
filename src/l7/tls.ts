/**
 * Certificates of a TLS listener, chosen by SNI: exact name first, then `*.parent`, then the
 * first certificate. Contexts can be swapped on reload without closing the listener.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import { SluiceError } from '../model/errors.js';
import type { CertSpec } from './config.js';

/** Certificates read and parsed, not yet in use: what a reload prepares before it commits. */
export interface LoadedCerts {
  byName: Map<string, SecureContext>;
  fallback: SecureContext;
  pems: { cert: Buffer; key: Buffer };
}

export class CertStore {
  private byName = new Map<string, SecureContext>();
  private fallback!: SecureContext;
  private pems: { cert: Buffer; key: Buffer } = { cert: Buffer.alloc(0), key: Buffer.alloc(0) };

  constructor(certs: CertSpec[]) { this.use(CertStore.read(certs)); }

  /** Read and parse every certificate; throws (ETLS) naming the first that does not load. */
  static read(certs: CertSpec[]): LoadedCerts {
    const byName = new Map<string, SecureContext>();
    let first: { ctx: SecureContext; cert: Buffer; key: Buffer } | undefined;
    certs.forEach((c, i) => {
      let cert: Buffer, key: Buffer, ctx: SecureContext;
      try {
        cert = readFileSync(c.cert);
        key = readFileSync(c.key);
        ctx = createSecureContext({ cert, key });
      } catch (e) {
        throw new SluiceError('ETLS', `tls.certs[${i}]: cannot load ${c.cert} / ${c.key}: ${(e as Error).message}`);
      }
      first ??= { ctx, cert, key };
      for (const n of c.serverNames) if (!byName.has(n)) byName.set(n, ctx);
    });
    if (!first) throw new SluiceError('ETLS', 'tls.certs: no certificate');
    return { byName, fallback: first.ctx, pems: { cert: first.cert, key: first.key } };
  }

  /** Switch to certificates read before: cannot fail. */
  use(loaded: LoadedCerts): void {
    this.byName = loaded.byName;
    this.fallback = loaded.fallback;
    this.pems = loaded.pems;
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

/**
 * What a client would refuse in certificates that load (HAProxy and nginx serve them all the
 * same, and so does sluice): expired or not yet valid, or a serverName the certificate does not
 * cover. For the operator's log, at start and on each reload.
 */
export function certWarnings(certs: CertSpec[], now = new Date()): string[] {
  const out: string[] = [];
  certs.forEach((c, i) => {
    let x: X509Certificate;
    try { x = new X509Certificate(readFileSync(c.cert)); } catch { return; } // CertStore.read says why
    const where = `tls.certs[${i}] ${c.cert}`;
    if (new Date(x.validTo) < now) out.push(`${where}: expired on ${x.validTo}`);
    else if (new Date(x.validFrom) > now) out.push(`${where}: not valid before ${x.validFrom}`);
    for (const n of c.serverNames) {
      const probe = n.startsWith('*.') ? `sluice-probe${n.slice(1)}` : n;
      if (!x.checkHost(probe)) out.push(`${where}: does not cover serverName ${n}`);
    }
  });
  return out;
}
