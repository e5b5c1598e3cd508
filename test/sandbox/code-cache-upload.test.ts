import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { receiveCodeCache } from '../../src/sandbox/code-cache-upload.js';

/** The Runtime API's code-cache upload intake, on a real HTTP server and raw client sockets. */
let server: http.Server;
let port = 0;
let limit = 0;
const received: Buffer[] = [];

before(async () => {
  server = http.createServer((req, res) => receiveCodeCache(req, res, limit, (body) => {
    received.push(body);
    res.writeHead(202, ['Content-Length', '0']);
    res.end();
  }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as net.AddressInfo).port;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

/** Send a raw request (head, then `body` without ending); resolve with the reply and whether the server closed. */
function raw(head: string, body: Buffer): Promise<{ status: number; text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    s.on('error', () => undefined);
    s.once('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? 0);
      resolve({ status, text: got, closed: true });
    });
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no close; got ${JSON.stringify(got)}`)); }, 10_000);
    s.once('close', () => clearTimeout(t));
    s.write(head);
    s.write(body);
  });
}

test('an environment that was not asked is refused at once: 403, connection closed, body never read', async () => {
  limit = 0;
  const before = process.memoryUsage().arrayBuffers;
  const r = await raw('POST /2018-06-01/runtime/thaw/code-cache HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n', Buffer.alloc(4096, 1));
  assert.equal(r.status, 403);
  assert.match(r.text, /CodeCacheRefused/);
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
  assert.equal(received.length, 0);
});

test('an upload declared larger than the limit is answered 413 at once, without allocating the declared size', async () => {
  limit = 1024 * 1024;
  const before = process.memoryUsage().arrayBuffers;
  const r = await raw('POST /2018-06-01/runtime/thaw/code-cache HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n', Buffer.alloc(4096, 1));
  assert.equal(r.status, 413);
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
  assert.equal(received.length, 0);
});

test('a chunked upload that passes the limit is cut off with 413 as soon as it does', async () => {
  limit = 64 * 1024;
  const chunk = Buffer.alloc(48 * 1024, 2);
  const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
  // Two chunks pass the limit; the request is never finished, so only the cut-off can answer it.
  const r = await raw('POST /2018-06-01/runtime/thaw/code-cache HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', Buffer.concat([frame, frame]));
  assert.equal(r.status, 413);
  assert.equal(received.length, 0);
});

test('an upload within the limit is taken whole', async () => {
  limit = 64 * 1024;
  const body = Buffer.alloc(60 * 1024, 3);
  const res = await fetch(`http://127.0.0.1:${port}/2018-06-01/runtime/thaw/code-cache`, { method: 'POST', body });
  assert.equal(res.status, 202);
  assert.equal(received.length, 1);
  assert.deepEqual(received[0], body);
});
