import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NODES, NODE_BOOTSTRAP, lambdaEnv, spawnRuntime, writeFiles } from './helpers.js';

/**
 * The Node runtime's own HTTP/1.1 client against a Runtime API written with raw sockets, so that the replies
 * can come the way any HTTP server may send them: a large body in many small writes, chunked transfer encoding
 * with trailers, header names in any case, a reply split inside its head.
 */

interface Request { line: string; body: string }

/** A Runtime API that answers each GET /next with the next of `replies` (raw bytes, written in pieces). */
async function rawApi(socketPath: string, replies: ((s: Socket) => Promise<void>)[]): Promise<{ server: Server; requests: Request[]; posted: Promise<Request[]> }> {
  const requests: Request[] = [];
  let donePosting: (r: Request[]) => void = () => undefined;
  const posted = new Promise<Request[]>((r) => (donePosting = r));
  const server = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.toString('latin1', 0, end);
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const req = { line: head.split('\r\n')[0] ?? '', body: buf.toString('utf8', end + 4, end + 4 + length) };
        buf = buf.subarray(end + 4 + length);
        requests.push(req);
        if (req.line.startsWith('GET /2018-06-01/runtime/invocation/next')) {
          const reply = replies.shift();
          if (reply === undefined) donePosting(requests.filter((r) => r.line.startsWith('POST')));
          else void reply(s);
        } else if (req.line.startsWith('POST')) {
          s.write('HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n');
        } else {
          // Anything else (Thaw's code-cache extension) does not exist here, as on Lambda.
          s.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        }
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(socketPath, () => r()));
  return { server, requests, posted };
}

const invocationHead = (id: string, extra: string): string =>
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nLambda-Runtime-Aws-Request-Id: ${id}\r\n` +
  `lambda-runtime-deadline-ms: ${Date.now() + 60_000}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:f\r\n${extra}\r\n`;

test('replies in many small writes, chunked with trailers, and split inside the head all reach the handler intact', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'thaw-rapi-client-'));
  try {
    await writeFiles(dir, {
      'index.js': 'exports.handler = async (e) => ({ n: e.s.length, tail: e.s.slice(-8), id: e.id });',
    });
    const big = JSON.stringify({ s: 'x'.repeat(3 * 1024 * 1024 - 8) + 'THE-END!', id: 'big' });
    const chunkedBody = JSON.stringify({ s: 'chunked-body', id: 'chunked' });
    const api = await rawApi(path.join(dir, 'rapi.sock'), [
      async (s) => {
        // 3 MB in 64 KiB pieces, a little apart.
        const all = Buffer.from(invocationHead('req-big', `Content-Length: ${Buffer.byteLength(big)}\r\n`) + big);
        for (let o = 0; o < all.length; o += 65536) {
          s.write(all.subarray(o, o + 65536));
          if ((o / 65536) % 8 === 0) await sleep(1);
        }
      },
      async (s) => {
        const a = chunkedBody.slice(0, 10);
        const b = chunkedBody.slice(10);
        s.write(invocationHead('req-chunked', 'Transfer-Encoding: chunked\r\n'));
        await sleep(5);
        s.write(`${a.length.toString(16)}\r\n${a}\r\n`);
        await sleep(5);
        s.write(`${b.length.toString(16)}\r\n${b}\r\n0\r\nX-Trailer: yes\r\n\r\n`);
      },
      async (s) => {
        const body = JSON.stringify({ s: 'split', id: 'split' });
        const all = invocationHead('req-split', `Content-Length: ${Buffer.byteLength(body)}\r\n`) + body;
        s.write(all.slice(0, 20));
        await sleep(5);
        s.write(all.slice(20, 90));
        await sleep(5);
        s.write(all.slice(90));
      },
    ]);
    const rt = spawnRuntime([NODES.node24, NODE_BOOTSTRAP, '--runtime-api-socket', path.join(dir, 'rapi.sock')], lambdaEnv('index.handler', dir), dir);
    try {
      const posts = await Promise.race([api.posted, sleep(30_000, undefined, { ref: false }).then(() => { throw new Error(`timed out; requests: ${JSON.stringify(api.requests.map((r) => r.line))}; stderr: ${rt.stderr()}`); })]);
      assert.deepEqual(posts.map((p) => p.line), [
        'POST /2018-06-01/runtime/invocation/req-big/response HTTP/1.1',
        'POST /2018-06-01/runtime/invocation/req-chunked/response HTTP/1.1',
        'POST /2018-06-01/runtime/invocation/req-split/response HTTP/1.1',
      ], rt.stderr());
      assert.deepEqual(posts.map((p) => JSON.parse(p.body) as unknown), [
        { n: 3 * 1024 * 1024, tail: 'THE-END!', id: 'big' },
        { n: 'chunked-body'.length, tail: 'ked-body', id: 'chunked' },
        { n: 5, tail: 'split', id: 'split' },
      ]);
      assert.equal(rt.stderr(), '');
    } finally {
      await rt.stop();
      api.server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
