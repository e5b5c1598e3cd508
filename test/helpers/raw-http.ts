import { connect, type Socket } from 'node:net';

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  /** Header lines as received (names as sent), to check duplicates and framing. */
  readonly rawHead: string;
  readonly body: Buffer;
  /** The server closed the connection after this response. */
  readonly closed: boolean;
}

/** Parse the first complete HTTP/1.1 response in `buf` (Content-Length framing, or up to close; none for HEAD). */
export function parseResponse(buf: Buffer, closed: boolean, headRequest = false): RawResponse | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const rawHead = buf.subarray(0, end).toString('latin1');
  const [statusLine, ...lines] = rawHead.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? NaN);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase();
    headers[k] = headers[k] === undefined ? l.slice(i + 1).trim() : `${headers[k]}, ${l.slice(i + 1).trim()}`;
  }
  const rest = buf.subarray(end + 4);
  const len = headers['content-length'];
  if (headRequest) return { status, headers, rawHead, body: Buffer.alloc(0), closed };
  if (len !== undefined) {
    if (rest.length < Number(len)) return undefined;
    return { status, headers, rawHead, body: rest.subarray(0, Number(len)), closed };
  }
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, headers, rawHead, body: Buffer.alloc(0), closed };
  if (!closed) return undefined;
  return { status, headers, rawHead, body: rest, closed };
}

/**
 * Send bytes as they are on a fresh connection and read one response (or the close). Resolves with
 * undefined when the server closed without answering.
 */
export function rawRequest(port: number, head: string | Buffer, body?: Buffer, timeoutMs = 30_000): Promise<RawResponse | undefined> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      const r = parseResponse(buf, closed);
      if (r === undefined && !closed) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      settled = true;
      sock.destroy();
      reject(new Error(`no response in ${timeoutMs} ms; got: ${buf.toString('latin1').slice(0, 200)}`));
    }, timeoutMs);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      finish(false);
    });
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    sock.write(head);
    if (body !== undefined) sock.write(body);
  });
}

/** Open a connection and keep it; resolves once connected. */
export function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when the socket is closed by the other side (or errors), with the bytes it received. */
export function closedBy(sock: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => { buf = Buffer.concat([buf, d]); });
    sock.once('close', () => resolve(buf));
    sock.on('error', () => undefined);
  });
}

/** Resident set size and its peak of a process, in bytes (Linux /proc). */
export async function rss(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises');
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}
