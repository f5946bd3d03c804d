/**
 * One health probe: a TCP connect or an HTTP GET, bounded by a timeout and cut short by an
 * abort (the checker aborts in-flight probes on close, so no socket outlives it).
 */
import { connect } from 'node:net';
import { request } from 'node:http';
import type { HealthSpec } from '../../model/index.js';

export interface ProbeResult {
  ok: boolean;
  /** Why it failed (or what it saw), for logs and `sluice real list`. */
  detail: string;
}

const ABORTED: ProbeResult = { ok: false, detail: 'aborted' };

export function probeTcp(address: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<ProbeResult> {
  if (signal?.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve) => {
    const s = connect({ host: address, port });
    const onAbort = () => done(ABORTED);
    const done = (r: ProbeResult) => { clearTimeout(t); signal?.removeEventListener('abort', onAbort); s.destroy(); resolve(r); };
    const t = setTimeout(() => done({ ok: false, detail: `tcp connect timed out after ${timeoutMs} ms` }), timeoutMs);
    signal?.addEventListener('abort', onAbort);
    s.once('connect', () => done({ ok: true, detail: 'tcp connect ok' }));
    s.once('error', (e: NodeJS.ErrnoException) => done({ ok: false, detail: `tcp connect: ${e.code ?? e.message}` }));
  });
}

export function probeHttp(address: string, port: number, path: string, timeoutMs: number, signal?: AbortSignal): Promise<ProbeResult> {
  if (signal?.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve) => {
    let settled = false;
    const onAbort = () => done(ABORTED);
    const done = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      resolve(r);
    };
    const host = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    const req = request({ host: address, port, path, method: 'GET', agent: false, headers: { host, 'user-agent': 'sluice-health/1' } }, (res) => {
      const code = res.statusCode ?? 0;
      res.resume();
      done(code >= 200 && code < 400 ? { ok: true, detail: `http ${code}` } : { ok: false, detail: `http ${code}` });
    });
    const t = setTimeout(() => done({ ok: false, detail: `http timed out after ${timeoutMs} ms` }), timeoutMs);
    // `on`, not `once`: destroying a request mid-flight can emit a second error after the first.
    req.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, detail: `http: ${e.code ?? e.message}` }));
    signal?.addEventListener('abort', onAbort);
    req.end();
  });
}

export function probe(address: string, port: number, spec: HealthSpec, signal?: AbortSignal): Promise<ProbeResult> {
  if (spec.type === 'tcp') return probeTcp(address, port, spec.timeoutMs, signal);
  if (spec.type === 'http') return probeHttp(address, port, spec.path ?? '/', spec.timeoutMs, signal);
  return Promise.resolve({ ok: true, detail: 'no check' });
}
