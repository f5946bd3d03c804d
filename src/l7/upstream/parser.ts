/**
 * An incremental HTTP/1.1 response parser for upstream connections. Node's own client goes
 * through ClientRequest/IncomingMessage, which costs more than the proxying around it; this
 * one parses the head once and hands body bytes through as slices of the socket's buffers.
 * Upstreams are less hostile than clients, but the framing is checked all the same: a
 * response we cannot frame exactly is an error, and its connection is never reused.
 */

export interface ResponseHead {
  status: number;
  reason: string;
  /** Flat [name, value, name, value, ...] as received, every header. */
  headers: string[];
  /** The connection can carry another request once this response ends. */
  keepAlive: boolean;
}

export interface ParserSink {
  onHead(head: ResponseHead): void;
  onBody(chunk: Buffer): void;
  onEnd(keepAlive: boolean): void;
}

export class ParseError extends Error {
  readonly code = 'EUPSTREAMPARSE';
}

const enum State { Head, Length, ChunkSize, ChunkData, ChunkDataEnd, Trailers, UntilClose, Done }

const MAX_HEAD = 64 * 1024;
const MAX_CHUNK_LINE = 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

export class ResponseParser {
  private state = State.Done;
  private pending: Buffer | null = null;
  private remaining = 0;
  private keepAlive = false;
  private line = '';
  private bodyless = false;
  private head101 = false;

  constructor(private readonly sink: ParserSink) {}

  /** Expect a new response; `bodyless` for responses to HEAD. */
  reset(bodyless: boolean): void {
    this.state = State.Head;
    this.pending = null;
    this.bodyless = bodyless;
    this.head101 = false;
  }

  get idle(): boolean { return this.state === State.Done; }
  /** A close-delimited body ends cleanly at EOF. */
  get endsAtClose(): boolean { return this.state === State.UntilClose; }
  /** After a 101 the rest of the bytes belong to the tunnel. */
  get switched(): boolean { return this.head101; }

  /** Feed bytes; returns bytes left over after a 101 (the start of the tunnel), else undefined. Throws ParseError. */
  execute(data: Buffer): Buffer | undefined {
    let off = 0;
    while (off < data.length) {
      switch (this.state) {
        case State.Head: {
          let buf = data;
          let start = off;
          if (this.pending) { buf = Buffer.concat([this.pending, data.subarray(off)]); start = 0; this.pending = null; off = data.length; }
          const end = buf.indexOf(CRLFCRLF, start);
          if (end < 0) {
            if (buf.length - start > MAX_HEAD) throw new ParseError('upstream response head too large');
            this.pending = Buffer.from(buf.subarray(start));
            return undefined;
          }
          if (end - start > MAX_HEAD) throw new ParseError('upstream response head too large');
          const rest = buf.subarray(end + 4);
          this.parseHead(buf.toString('latin1', start, end), rest.length > 0);
          if (this.head101) return rest;
          if ((this.state as State) === State.Done) return undefined;
          // Continue on what follows the head (a body, or the next head after a 1xx).
          data = rest;
          off = 0;
          continue;
        }
        case State.Length: {
          const n = Math.min(this.remaining, data.length - off);
          const slice = data.subarray(off, off + n);
          off += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.Done;
          this.sink.onBody(slice);
          if (this.state === State.Done) { this.finish(off < data.length); return undefined; }
          continue;
        }
        case State.UntilClose:
          this.sink.onBody(off === 0 ? data : data.subarray(off));
          return undefined;
        case State.ChunkSize:
        case State.ChunkDataEnd:
        case State.Trailers: {
          const nl = data.indexOf(10, off);
          const piece = data.toString('latin1', off, nl < 0 ? data.length : nl + 1);
          off = nl < 0 ? data.length : nl + 1;
          this.line += piece;
          if (this.line.length > MAX_CHUNK_LINE) throw new ParseError('upstream chunk line too long');
          if (nl < 0) continue;
          const line = this.line.endsWith('\r\n') ? this.line.slice(0, -2) : null;
          this.line = '';
          if (line === null) throw new ParseError('bare LF in chunked framing');
          this.chunkLine(line, off < data.length);
          if ((this.state as State) === State.Done) return undefined;
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
          throw new ParseError('upstream sent bytes after the response');
      }
    }
    return undefined;
  }

  /** EOF from upstream: completes a close-delimited body; anything else mid-response is an error. */
  eof(): boolean {
    if (this.state === State.UntilClose) { this.state = State.Done; this.sink.onEnd(false); return true; }
    return this.state === State.Done;
  }

  private chunkLine(line: string, more: boolean): void {
    if (this.state === State.ChunkDataEnd) {
      if (line !== '') throw new ParseError('missing CRLF after chunk data');
      this.state = State.ChunkSize;
    } else if (this.state === State.ChunkSize) {
      const semi = line.indexOf(';');
      const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) throw new ParseError('bad chunk size');
      this.remaining = parseInt(hex, 16);
      this.state = this.remaining === 0 ? State.Trailers : State.ChunkData;
    } else if (line === '') {
      // Trailers are dropped: the downstream response has already been framed without them.
      this.state = State.Done;
      this.finish(more);
    }
  }

  /** Bytes past the end of a response mean the upstream is confused: never reuse that connection. */
  private finish(extra = false): void {
    this.sink.onEnd(this.keepAlive && !extra);
  }

  private parseHead(text: string, more: boolean): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new ParseError('bad upstream status line');
    const status = Number(m[2]);
    const headers: string[] = [];
    let length = -1;
    let chunked = false;
    let te = false;
    let keepAlive = m[1] === '1';
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i];
      const colon = l.indexOf(':');
      if (colon <= 0 || l.charCodeAt(0) === 32 || l.charCodeAt(0) === 9 || l.charCodeAt(colon - 1) === 32) throw new ParseError('bad upstream header line');
      const name = l.slice(0, colon);
      const value = l.slice(colon + 1).trim();
      headers.push(name, value);
      const lower = name.length === 14 || name.length === 17 || name.length === 10 ? name.toLowerCase() : '';
      if (lower === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (length >= 0 && length !== Number(value))) throw new ParseError('bad upstream Content-Length');
        length = Number(value);
      } else if (lower === 'transfer-encoding') {
        te = true;
        chunked = /(^|,)\s*chunked\s*$/i.test(value);
      } else if (lower === 'connection') {
        const v = value.toLowerCase();
        if (v.includes('close')) keepAlive = false;
        else if (m[1] === '0' && v.includes('keep-alive')) keepAlive = true;
      }
    }
    if (status < 200) {
      if (status === 101) { this.head101 = true; this.state = State.Done; this.sink.onHead({ status, reason: m[3] ?? '', headers, keepAlive: false }); return; }
      this.state = State.Head; // 100 Continue, 103 Early Hints: wait for the final response
      return;
    }
    // A response framed both ways is a smuggling risk: read it as chunked, then drop the connection.
    if (te && length >= 0) keepAlive = false;
    this.keepAlive = keepAlive;
    this.sink.onHead({ status, reason: m[3] ?? '', headers, keepAlive });
    if (this.bodyless || status === 204 || status === 304) { this.state = State.Done; this.finish(more); }
    else if (te && chunked) { this.state = State.ChunkSize; this.line = ''; }
    else if (te) { this.keepAlive = false; this.state = State.UntilClose; }
    else if (length >= 0) {
      this.remaining = length;
      this.state = length === 0 ? State.Done : State.Length;
      if (length === 0) this.finish(more);
    } else { this.keepAlive = false; this.state = State.UntilClose; }
  }
}
