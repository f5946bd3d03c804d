/**
 * An incremental HTTP/1.1 request parser for client connections (RFC 9112), strict where a
 * proxy must be: whatever it lets through is forwarded, so an ambiguity here is a request
 * smuggled past sluice. It refuses rather than guesses: bare CR or LF, obs-fold, whitespace
 * before a colon, control bytes, a Content-Length that is not one run of digits or comes twice,
 * Content-Length beside Transfer-Encoding, a request Transfer-Encoding whose last coding is not
 * chunked, malformed chunk lines. Error codes are llhttp's (the parser Node's server uses), so
 * access lines read the same as before sluice had its own.
 *
 * One request at a time: it stops at the end of a message and leaves what follows (a pipelined
 * request) to the connection, which resumes it once the response is out.
 */

import { TOKEN } from '../headers.js';

export class RequestError extends Error {
  constructor(readonly status: 400 | 431 | 505, readonly code: string, message: string) {
    super(message);
    this.name = 'RequestError';
  }
}

export interface RequestHead {
  method: string;
  /** The request target as sent (latin1: every byte kept). */
  url: string;
  minor: 0 | 1;
  /** Flat [name, value, ...] as received, values without their surrounding whitespace. */
  rawHeaders: string[];
  /** The connection may carry another request after this one (before the response has its say). */
  keepAlive: boolean;
  /** Upgrade with `Connection: upgrade` (HTTP/1.1 only): the bytes after the head are the new protocol's. */
  upgrade: boolean;
  /** The Transfer-Encoding, all its header lines joined; undefined when there is none. */
  transferEncoding: string | undefined;
  /** The Content-Length, -1 when there is none. */
  contentLength: number;
  /** The Expect header's value, if any. */
  expect: string | undefined;
  /** An upgrade or CONNECT: the parser stops after the head, and the bytes after it are not HTTP. */
  handOff: boolean;
  /** Body bytes follow the head (chunked, or a Content-Length over 0); a hand-off's are not its body. */
  hasBody: boolean;
}

export interface RequestSink {
  onHead(head: RequestHead): void;
  onBody(chunk: Buffer): void;
  onEnd(): void;
}

const enum State { Idle, Head, Length, ChunkSize, ChunkData, ChunkDataEnd, Trailers, Done, Upgraded }

const CRLFCRLF = Buffer.from('\r\n\r\n');
const MAX_CHUNK_LINE = 4096;
/** Control bytes other than HTAB: never in a header value (CR and LF included: they would end the line). */
const CTL = /[\x00-\x08\x0a-\x1f\x7f]/;
/** A request target: visible bytes only (obs-text passes through as it came). */
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;
/** An absolute-form target's start: scheme and `://` (RFC 3986 §3.1; an HTTP URI has an authority). */
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const CHUNK_SIZE = /^[0-9a-fA-F]{1,12}$/;
/** `;name` or `;name=value` chunk extensions, ignored but well-formed (RFC 9112 §7.1.1). */
const CHUNK_EXT = /^(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*[ \t]*$/;

export class RequestParser {
  private state = State.Idle;
  /** The bytes of a head that came in pieces (the first `pendingLen`), or null. */
  private pending: Buffer | null = null;
  private pendingLen = 0;
  private remaining = 0;
  private line = '';
  private trailerBytes = 0;

  constructor(private readonly sink: RequestSink, private readonly maxHeadBytes: number) {}

  /** Between messages, before any byte of the next one. */
  get idle(): boolean { return this.state === State.Idle && this.pending === null; }
  /** The head is still arriving (bytes of it, or none yet on a fresh connection). */
  get inHead(): boolean { return this.state === State.Idle || this.state === State.Head; }
  /** A whole message has been read; the parser waits for `next()`. */
  get done(): boolean { return this.state === State.Done || this.state === State.Upgraded; }

  /** Ready for the next request on the connection. */
  next(): void { this.state = State.Idle; }

  /**
   * Feed bytes. Returns how many were taken: fewer than given when a message ended (the rest is
   * the next request's, or an upgraded protocol's). Throws RequestError.
   */
  execute(data: Buffer): number {
    let off = 0;
    while (off < data.length) {
      switch (this.state) {
        case State.Idle:
        case State.Head: {
          // Empty lines before a request line are skipped (RFC 9112 §2.2).
          if (this.state === State.Idle && this.pending === null) {
            while (off < data.length && (data[off] === 13 || data[off] === 10)) off++;
            if (off === data.length) return off;
          }
          this.state = State.Head;
          if (this.pending === null) {
            // The whole head in this read (the usual case): parsed where it lies.
            const end = data.indexOf(CRLFCRLF, off);
            if (end >= 0 && end + 4 - off <= this.maxHeadBytes) {
              this.parseHead(data.toString('latin1', off, end));
              off = end + 4;
              if ((this.state as State) === State.Done || (this.state as State) === State.Upgraded) return off;
              continue;
            }
          }
          // A head in pieces. Each read is appended once and only its own bytes (and the three
          // before them, for a CRLFCRLF across the seam) are searched: a head sent a byte at a
          // time costs what it would in one read, not its length squared.
          const had = this.pendingLen;
          const room = this.maxHeadBytes - had;
          const take = Math.min(data.length - off, room);
          this.append(data, off, take);
          const buf = this.pending!.subarray(0, this.pendingLen);
          const end = buf.indexOf(CRLFCRLF, Math.max(0, had - 3));
          if (end < 0) {
            if (take < data.length - off) throw new RequestError(431, 'HPE_HEADER_OVERFLOW', 'request head too large');
            // A head ended by bare LFs never sees its CRLFCRLF: refuse it now, not at the timeout.
            if (hasBareLf(buf, had)) throw new RequestError(400, 'HPE_LF_EXPECTED', 'bare LF in request head');
            return data.length;
          }
          const text = buf.toString('latin1', 0, end);
          this.pending = null;
          this.pendingLen = 0;
          off += end + 4 - had;
          this.parseHead(text);
          if ((this.state as State) === State.Done || (this.state as State) === State.Upgraded) return off;
          continue;
        }
        case State.Length: {
          const n = Math.min(this.remaining, data.length - off);
          const slice = data.subarray(off, off + n);
          off += n;
          this.remaining -= n;
          this.sink.onBody(slice);
          if (this.remaining === 0) { this.state = State.Done; this.sink.onEnd(); return off; }
          continue;
        }
        case State.ChunkSize:
        case State.ChunkDataEnd:
        case State.Trailers: {
          const nl = data.indexOf(10, off);
          const stop = nl < 0 ? data.length : nl + 1;
          this.line += data.toString('latin1', off, stop);
          off = stop;
          if (this.state === State.Trailers) {
            // A trailer line is a header line: bounded as the head is, and refused as an oversized head is.
            if (this.trailerBytes + this.line.length > this.maxHeadBytes) throw new RequestError(431, 'HPE_HEADER_OVERFLOW', 'trailer section too large');
          } else if (this.line.length > MAX_CHUNK_LINE) throw new RequestError(400, 'HPE_INVALID_CHUNK_SIZE', 'chunk line too long');
          if (nl < 0) continue;
          if (this.line.charCodeAt(this.line.length - 2) !== 13) throw new RequestError(400, 'HPE_LF_EXPECTED', 'bare LF in chunked framing');
          const line = this.line.slice(0, -2);
          this.line = '';
          this.chunkLine(line);
          if ((this.state as State) === State.Done) { this.sink.onEnd(); return off; }
          continue;
        }
        case State.ChunkData: {
          const n = Math.min(this.remaining, data.length - off);
          const slice = data.subarray(off, off + n);
          off += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          this.sink.onBody(slice);
          continue;
        }
        case State.Done:
        case State.Upgraded:
          return off;
      }
    }
    return off;
  }

  /** Append `n` bytes of `data` from `off` to the pending head, growing its buffer by doubling. */
  private append(data: Buffer, off: number, n: number): void {
    const need = this.pendingLen + n;
    if (this.pending === null || this.pending.length < need) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxHeadBytes, Math.max(need, 2 * (this.pending?.length ?? 0), 1024)));
      if (this.pending) this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    data.copy(this.pending, this.pendingLen, off, off + n);
    this.pendingLen = need;
  }

  private chunkLine(line: string): void {
    if (this.state === State.ChunkDataEnd) {
      if (line !== '') throw new RequestError(400, 'HPE_STRICT', 'missing CRLF after chunk data');
      this.state = State.ChunkSize;
    } else if (this.state === State.ChunkSize) {
      const semi = line.indexOf(';');
      const hex = semi < 0 ? line : line.slice(0, semi);
      // No whitespace around the size: a front end that reads `5 ` and a back end that reads `5;` differently is how bodies are smuggled.
      if (!CHUNK_SIZE.test(hex) || (semi >= 0 && !CHUNK_EXT.test(line.slice(semi)))) throw new RequestError(400, 'HPE_INVALID_CHUNK_SIZE', 'bad chunk size line');
      this.remaining = parseInt(hex, 16);
      if (this.remaining === 0) { this.state = State.Trailers; this.trailerBytes = 0; } else this.state = State.ChunkData;
    } else if (line === '') {
      // Trailers are read and dropped: the request sent upstream is framed anew, and they would be
      // fields the client could set past every check made on the head.
      this.state = State.Done;
    } else {
      this.trailerBytes += line.length + 2;
      if (this.trailerBytes > this.maxHeadBytes) throw new RequestError(431, 'HPE_HEADER_OVERFLOW', 'trailer section too large');
      const colon = line.indexOf(':');
      if (colon <= 0 || !TOKEN.test(line.slice(0, colon)) || CTL.test(line)) throw new RequestError(400, 'HPE_INVALID_HEADER_TOKEN', 'bad trailer line');
    }
  }

  private parseHead(text: string): void {
    let eol = text.indexOf('\r\n');
    if (eol < 0) eol = text.length;
    const sp1 = text.indexOf(' ');
    const sp2 = text.lastIndexOf(' ', eol);
    if (sp1 <= 0 || sp2 <= sp1 + 1 || sp1 > eol) throw new RequestError(400, 'HPE_INVALID_METHOD', 'bad request line');
    const method = text.slice(0, sp1);
    if (!TOKEN.test(method)) throw new RequestError(400, 'HPE_INVALID_METHOD', 'bad request method');
    const url = text.slice(sp1 + 1, sp2);
    if (!TARGET.test(url)) throw new RequestError(400, 'HPE_INVALID_URL', 'bad request target');
    // One of the forms of RFC 9112 §3.2: origin (`/p`), absolute (`http://h/p`), asterisk (`*`), or
    // authority for CONNECT (handed off, and refused there). Anything else (`admin`, `?q`, `a:b`)
    // names no resource: the proxy would route it as `/` and send `/` on, not what was asked.
    if (url.charCodeAt(0) !== 47 && url !== '*' && method !== 'CONNECT' && !ABSOLUTE.test(url)) throw new RequestError(400, 'HPE_INVALID_URL', 'request target in no known form');
    const version = text.slice(sp2 + 1, eol);
    if (version.length !== 8 || !version.startsWith('HTTP/') || version.charCodeAt(6) !== 46) throw new RequestError(400, 'HPE_INVALID_VERSION', 'bad HTTP version');
    const major = version.charCodeAt(5) - 48;
    let minor = version.charCodeAt(7) - 48;
    if (!(major >= 0 && major <= 9) || !(minor >= 0 && minor <= 9)) throw new RequestError(400, 'HPE_INVALID_VERSION', 'bad HTTP version');
    // Only HTTP/1 is spoken here (nor upstream): 0.9, or 2.0 on this port, get 505 (RFC 9110 §15.6.6).
    if (major !== 1) throw new RequestError(505, 'HPE_INVALID_VERSION', `HTTP/${major}.${minor} is not supported`);
    // A later 1.x is read as 1.1, the highest minor version here (RFC 9110 §2.5).
    if (minor > 1) minor = 1;
    const rawHeaders: string[] = [];
    let contentLength = -1;
    let te: string | undefined;
    let connection = '';
    let upgrade = false;
    let expect: string | undefined;
    let host = false;
    let pos = eol + 2;
    while (pos < text.length) {
      let end = text.indexOf('\r\n', pos);
      if (end < 0) end = text.length;
      const colon = text.indexOf(':', pos);
      if (colon <= pos || colon >= end) throw new RequestError(400, 'HPE_INVALID_HEADER_TOKEN', 'bad header line');
      const name = text.slice(pos, colon);
      // Whitespace before the colon, or a line that continues the last (obs-fold): refused (RFC 9112 §5.1, §5.2).
      if (!TOKEN.test(name)) throw new RequestError(400, 'HPE_INVALID_HEADER_TOKEN', 'bad header name');
      let value = text.slice(colon + 1, end);
      if (CTL.test(value)) throw new RequestError(400, 'HPE_INVALID_HEADER_TOKEN', 'bad header value');
      const c0 = value.charCodeAt(0), cl = value.charCodeAt(value.length - 1);
      if (c0 === 32 || c0 === 9 || cl === 32 || cl === 9) value = value.replace(/^[ \t]+|[ \t]+$/g, '');
      pos = end + 2;
      rawHeaders.push(name, value);
      const n = name.length;
      if (n !== 14 && n !== 17 && n !== 10 && n !== 7 && n !== 6 && n !== 4) continue;
      const lower = name.toLowerCase();
      if (lower === 'host') {
        host = true;
      } else if (lower === 'content-length') {
        // One length, digits only: `5, 5`, `+5`, ` 5 ` and a second line are each read another way somewhere.
        if (contentLength >= 0) throw new RequestError(400, 'HPE_UNEXPECTED_CONTENT_LENGTH', 'duplicate Content-Length');
        if (!/^\d{1,15}$/.test(value)) throw new RequestError(400, 'HPE_INVALID_CONTENT_LENGTH', 'bad Content-Length');
        contentLength = Number(value);
      } else if (lower === 'transfer-encoding') {
        te = te === undefined ? value : `${te}, ${value}`;
      } else if (lower === 'connection') {
        connection = connection ? `${connection},${value.toLowerCase()}` : value.toLowerCase();
      } else if (lower === 'upgrade') {
        upgrade = true;
      } else if (lower === 'expect') {
        expect = expect === undefined ? value : `${expect}, ${value}`;
      }
    }
    // HTTP/1.1 requires Host (RFC 9112 §3.2); node:http refuses a request without one too.
    if (!host && minor === 1) throw new RequestError(400, 'ERR_MISSING_HOST', 'HTTP/1.1 request without Host');
    if (te !== undefined && contentLength >= 0) throw new RequestError(400, 'HPE_UNEXPECTED_CONTENT_LENGTH', 'Content-Length with Transfer-Encoding');
    const tokens = connection ? connection.split(',').map((t) => t.trim()) : [];
    // An HTTP/1.0 request's Upgrade is ignored (RFC 9110 §7.8): it is served as the request it is.
    upgrade &&= minor === 1 && tokens.includes('upgrade');
    const keepAlive = minor === 1 ? !tokens.includes('close') : tokens.includes('keep-alive') && !tokens.includes('close');
    let chunked = false;
    if (te !== undefined) {
      // The last coding must be chunked, or the body's end cannot be known (RFC 9112 §6.3): 400 and close.
      const codings = te.split(',');
      chunked = codings[codings.length - 1].trim().toLowerCase() === 'chunked';
      if (!chunked) throw new RequestError(400, 'HPE_INVALID_TRANSFER_ENCODING', 'request Transfer-Encoding does not end in chunked');
    }
    const handOff = upgrade || method === 'CONNECT';
    const hasBody = !handOff && (chunked || contentLength > 0);
    this.sink.onHead({ method, url, minor: minor as 0 | 1, rawHeaders, keepAlive, upgrade, transferEncoding: te, contentLength, expect, handOff, hasBody });
    if (handOff) this.state = State.Upgraded;
    else if (chunked) { this.state = State.ChunkSize; this.line = ''; }
    else if (contentLength > 0) { this.remaining = contentLength; this.state = State.Length; }
    else { this.state = State.Done; this.sink.onEnd(); }
  }
}

/** A LF not after a CR in `b` from `from` on (the byte before `from` counts as the one before). */
function hasBareLf(b: Buffer, from: number): boolean {
  for (let i = b.indexOf(10, from); i >= 0; i = b.indexOf(10, i + 1)) if (i === 0 || b[i - 1] !== 13) return true;
  return false;
}
