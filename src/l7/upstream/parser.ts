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
  /** A 1xx interim response (100, 102, 103) before the final one. */
  onInterim?(status: number, headers: string[]): void;
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
const LFLF = Buffer.from('\n\n');

export class ResponseParser {
  private state = State.Done;
  private pending: Buffer | null = null;
  private remaining = 0;
  private keepAlive = false;
  private line = '';
  private bodyless = false;

  constructor(private readonly sink: ParserSink) {}

  /** Expect a new response; `bodyless` for responses to HEAD. */
  reset(bodyless: boolean): void {
    this.state = State.Head;
    this.pending = null;
    this.bodyless = bodyless;
  }

  get idle(): boolean { return this.state === State.Done; }
  /** A close-delimited body ends cleanly at EOF. */
  get endsAtClose(): boolean { return this.state === State.UntilClose; }
  /** Feed bytes. Throws ParseError. */
  execute(data: Buffer): void {
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
            // A head ended by bare LFs would never see its CRLFCRLF: refuse it now, not at the pool timeout.
            if (buf.indexOf(LFLF, start) >= 0) throw new ParseError('bare LF in upstream response head');
            this.pending = Buffer.from(buf.subarray(start));
            return;
          }
          if (end - start > MAX_HEAD) throw new ParseError('upstream response head too large');
          const rest = buf.subarray(end + 4);
          this.parseHead(buf.toString('latin1', start, end), rest.length > 0);
          if ((this.state as State) === State.Done) return;
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
          if (this.state === State.Done) { this.finish(off < data.length); return; }
          continue;
        }
        case State.UntilClose:
          this.sink.onBody(off === 0 ? data : data.subarray(off));
          return;
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
          if ((this.state as State) === State.Done) return;
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
    // Scanned by hand rather than split/regex: this runs once per proxied response.
    let eol = text.indexOf('\r\n');
    if (eol < 0) eol = text.length;
    if (eol < 12 || !text.startsWith('HTTP/1.') || text.charCodeAt(8) !== 32 || (eol > 12 && text.charCodeAt(12) !== 32)) throw new ParseError('bad upstream status line');
    const minor = text.charCodeAt(7) - 48;
    const d0 = text.charCodeAt(9) - 48, d1 = text.charCodeAt(10) - 48, d2 = text.charCodeAt(11) - 48;
    if ((minor !== 0 && minor !== 1) || !(d0 >= 1 && d0 <= 5) || !(d1 >= 0 && d1 <= 9) || !(d2 >= 0 && d2 <= 9)) throw new ParseError('bad upstream status line');
    const status = d0 * 100 + d1 * 10 + d2;
    const reason = eol > 13 ? text.slice(13, eol) : '';
    const headers: string[] = [];
    let length = -1;
    let chunked = false;
    let te = false;
    let keepAlive = minor === 1;
    let pos = eol + 2;
    while (pos < text.length) {
      let end = text.indexOf('\r\n', pos);
      if (end < 0) end = text.length;
      const colon = text.indexOf(':', pos);
      const c0 = text.charCodeAt(pos);
      if (colon <= pos || colon >= end || c0 === 32 || c0 === 9 || text.charCodeAt(colon - 1) === 32 || text.charCodeAt(colon - 1) === 9) throw new ParseError('bad upstream header line');
      const name = text.slice(pos, colon);
      let value = text.slice(colon + 1, end);
      if (value.charCodeAt(0) === 32 || value.charCodeAt(value.length - 1) === 32 || value.charCodeAt(0) === 9) value = value.trim();
      pos = end + 2;
      headers.push(name, value);
      const n = name.length;
      if (n !== 14 && n !== 17 && n !== 10) continue;
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (length >= 0 && length !== Number(value))) throw new ParseError('bad upstream Content-Length');
        // Repeats of one value are one length (RFC 9110 §8.6) and relayed once: Node's and
        // undici's clients refuse a duplicate Content-Length, and HTTP/2 cannot carry one.
        if (length >= 0) headers.length -= 2;
        length = Number(value);
      } else if (lower === 'transfer-encoding') {
        // Only `chunked`, once: the chunks come off here, and Transfer-Encoding (hop-by-hop) with
        // them, so a `gzip, chunked` body would reach the client as gzip bytes that nothing says
        // to decode. Servers do not send other transfer codings; one that does gets a 502.
        if (te || !/^\s*chunked\s*$/i.test(value)) throw new ParseError(`upstream transfer coding not supported: ${value}`);
        te = true;
        chunked = true;
      } else if (lower === 'connection') {
        const v = value.toLowerCase();
        if (v.includes('close')) keepAlive = false;
        else if (minor === 0 && v.includes('keep-alive')) keepAlive = true;
      }
    }
    if (status < 200) {
      // These connections never ask for an upgrade (tunnel.ts has its own): a 101 here cannot be
      // relayed (the client asked for no protocol switch) and leaves the connection in another protocol.
      if (status === 101) throw new ParseError('upstream switched protocols (101) without an upgrade request');
      this.state = State.Head; // 100 Continue, 103 Early Hints: wait for the final response
      this.sink.onInterim?.(status, headers);
      return;
    }
    // A response framed both ways is a smuggling risk: read it as chunked, then drop the connection.
    // Transfer-Encoding wins, so its Content-Length is not the body's and must not reach the
    // client (RFC 9112 §6.3: an intermediary removes it), whose connection would be desynced.
    if (te && length >= 0) {
      keepAlive = false;
      dropContentLength(headers);
    }
    // A 204 has no content and must not say otherwise (RFC 9110 §8.6): HTTP/2 clients reset the
    // stream of a 204 with a non-zero Content-Length.
    else if (status === 204 && length >= 0) dropContentLength(headers);
    // A 204 that declares content, or a 204 or 304 framed chunked, comes from an upstream that
    // may yet send that body, in a later read: on a reused connection it would be taken for the
    // next request's response (another client's). Such a connection is not reused.
    if ((status === 204 && (length > 0 || te)) || (status === 304 && te)) keepAlive = false;
    this.keepAlive = keepAlive;
    this.sink.onHead({ status, reason, headers, keepAlive });
    if (this.bodyless || status === 204 || status === 304) { this.state = State.Done; this.finish(more); }
    else if (chunked) { this.state = State.ChunkSize; this.line = ''; }
    else if (length >= 0) {
      this.remaining = length;
      this.state = length === 0 ? State.Done : State.Length;
      if (length === 0) this.finish(more);
    } else { this.keepAlive = false; this.state = State.UntilClose; }
  }
}

function dropContentLength(headers: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i].length === 14 && headers[i].toLowerCase() === 'content-length') headers.splice(i, 2);
}
