/** The CLI's client of the agent API: HTTP/JSON over the agent's unix socket. */
import { lstatSync } from 'node:fs';
import { request } from 'node:http';
import { SluiceError } from '../model/index.js';

export const DEFAULT_SOCKET = '/run/sluice/agent.sock';

/** The agent refused the request: its code and one-line reason. */
export class ApiError extends SluiceError {
  constructor(code: string, message: string, readonly status: number) {
    super(code, message);
    this.name = 'ApiError';
  }
}

export function call<T = unknown>(socket: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath: socket, method, path,
      headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      timeout: timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let json: any;
        try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {
          return reject(new ApiError('EPROTO', `the agent answered ${res.statusCode} with a body that is not JSON`, res.statusCode ?? 0));
        }
        if ((res.statusCode ?? 500) >= 400) {
          const e = json?.error ?? {};
          return reject(new ApiError(e.code ?? 'EAGENT', e.message ?? `the agent answered ${res.statusCode}`, res.statusCode ?? 0));
        }
        resolve(json as T);
      });
    });
    // A change the agent took is saved before it programs the data plane, which can take long
    // (many reals to resolve): a timeout is no refusal, and must not read as one.
    const after = method === 'GET' ? '' : '; the change may still be made (the agent saves it before it programs the data plane): see `sluice status` and `sluice vip list`';
    req.on('timeout', () => req.destroy(new ApiError('ETIMEDOUT', `the agent at ${socket} did not answer within ${timeoutMs / 1000} s${after}`, 0)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof ApiError) return reject(e);
      const hint = notASocket(socket) ? `: ${socket} is not a socket (give the agent's --socket)`
        : e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? ': is `sluice agent` running?' : e.code === 'EACCES' ? ': the API socket is root only' : '';
      reject(new ApiError(e.code ?? 'ECONN', `cannot reach the agent at ${socket} (${e.code ?? e.message})${hint}`, 0));
    });
    if (payload) req.write(payload);
    req.end();
  });
}

/** A path that exists and is something else (the state file, a directory): "is the agent running?" would mislead. */
function notASocket(path: string): boolean {
  try { return !lstatSync(path).isSocket(); } catch { return false; }
}

export const vipPath = (vip: string) => `/v1/vips/${encodeURIComponent(vip)}`;
export const realPath = (vip: string, real: string) => `${vipPath(vip)}/reals/${encodeURIComponent(real)}`;
