/**
 * Unauthenticated denial of service against the HTTP front door (issue 10, finding 4), each attack as an
 * attacker would send it: raw sockets for what no client library sends, real signatures for the rest.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { GetFunctionConfigurationCommand, ListFunctionsCommand } from '@aws-sdk/client-lambda';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '../../src/cli/sha256.js';
import { CREDS, ROLE, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { closedBy, openSocket, parseResponse, rawRequest, rss, type RawResponse } from '../helpers/raw-http.js';

const MB = 1024 * 1024;
const CODE_BODY = 66 * MB;

interface SignSpec {
  method?: string;
  path: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  secret?: string;
  /** Declare the payload hash in x-amz-content-sha256 (as the JS SDK does); false: leave it out (as botocore does). */
  declareHash?: boolean;
}

async function sign(port: number, s: SignSpec): Promise<Record<string, string>> {
  const signer = new SignatureV4({
    service: 'lambda', region: 'us-east-1', sha256: Sha256, applyChecksum: s.declareHash ?? true,
    credentials: { accessKeyId: CREDS.accessKeyId, secretAccessKey: s.secret ?? CREDS.secretAccessKey },
  });
  const signed = await signer.sign({
    method: s.method ?? 'GET', protocol: 'http:', hostname: '127.0.0.1', port, path: s.path, query: {},
    headers: { host: `127.0.0.1:${port}`, ...s.headers }, body: s.body,
  });
  return signed.headers;
}

function head(method: string, path: string, headers: Record<string, string>): string {
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/**
 * Send a request head, then `total` body bytes in 1 MiB writes (waiting for the socket to drain), stopping
 * when the server answers or closes. Resolves with the response (undefined: closed without one) and bytes sent.
 */
async function flood(port: number, requestHead: string, total: number, chunked = false): Promise<{ res: RawResponse | undefined; sent: number }> {
  const sock = await openSocket(port);
  const data = Buffer.alloc(MB, 0x61);
  const chunk = chunked ? Buffer.concat([Buffer.from(`${MB.toString(16)}\r\n`), data, Buffer.from('\r\n')]) : data;
  let buf = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d: Buffer) => { buf = Buffer.concat([buf, d]); });
  const done = new Promise<void>((r) => sock.once('close', () => { closed = true; r(); }));
  sock.on('error', () => undefined);
  // events.once would reject on the socket's error (EPIPE, ECONNRESET): the server closing on us is the point.
  const next = (event: string): Promise<unknown> => Promise.race([new Promise((r) => sock.once(event, r)), done]);
  sock.write(requestHead);
  let sent = 0;
  while (sent < total && !closed && parseResponse(buf, false) === undefined) {
    const ok = sock.write(chunk);
    sent += chunk.length;
    if (!ok) await next('drain');
  }
  const t = setTimeout(() => sock.destroy(), 30_000);
  while (!closed && parseResponse(buf, false) === undefined) await next('data');
  clearTimeout(t);
  sock.destroy();
  return { res: parseResponse(buf, true), sent };
}

describe('HTTP front door: unauthenticated denial of service', () => {
  let s: RunningServer;
  let pid: number;

  before(async () => {
    s = await startServer();
    pid = s.proc.pid as number;
  });
  after(async () => {
    await s.stop();
  });

  test('30 unsigned 66 MB CreateFunction bodies are refused before they are read', async (t) => {
    const before = await rss(pid);
    const h = head('POST', '/2015-03-31/functions', { host: `127.0.0.1:${s.port}`, 'content-type': 'application/json', 'content-length': String(CODE_BODY) });
    const results = await Promise.all(Array.from({ length: 30 }, () => flood(s.port, h, CODE_BODY)));
    for (const r of results) {
      assert.equal(r.res?.status, 403);
      assert.equal(r.res?.headers['x-amzn-errortype'], 'MissingAuthenticationTokenException');
      assert.equal(r.res?.closed, true, 'the connection is closed instead of reading the body');
    }
    const after = await rss(pid);
    t.diagnostic(`server peak RSS ${Math.round(before.peak / MB)} MB -> ${Math.round(after.peak / MB)} MB, RSS now ${Math.round(after.rss / MB)} MB`);
    // Before: every body was buffered (RSS 2 GB). Now at most what sat in socket buffers is ever read.
    assert.ok(after.peak - before.peak < 200 * MB, `peak RSS grew by ${Math.round((after.peak - before.peak) / MB)} MB`);
    await s.client.send(new ListFunctionsCommand({}));
  });

  test('forged signatures from a known key without a declared hash share one bounded budget', async (t) => {
    const before = await rss(pid);
    // Signed with the wrong secret over an empty body: only the full body could show it is forged.
    const auth = await sign(s.port, { method: 'POST', path: '/2015-03-31/functions', secret: 'not-the-secret', declareHash: false, body: '' });
    const h = head('POST', '/2015-03-31/functions', { ...auth, 'content-type': 'application/json', 'content-length': String(CODE_BODY) });
    const results = await Promise.all(Array.from({ length: 30 }, () => flood(s.port, h, CODE_BODY)));
    const statuses = results.map((r) => r.res?.status);
    const throttled = results.filter((r) => r.res?.status === 429);
    const read = results.filter((r) => r.res?.status === 403);
    assert.equal(throttled.length + read.length, 30, `statuses: ${statuses.join(',')}`);
    for (const r of throttled) assert.equal(r.res?.headers['x-amzn-errortype'], 'TooManyRequestsException');
    for (const r of read) assert.equal(r.res?.headers['x-amzn-errortype'], 'InvalidSignatureException');
    // The unverified budget (128 MiB) holds one 66 MB body at a time; the others are refused before reading.
    assert.ok(throttled.length >= 25, `only ${throttled.length} of 30 were refused up front (statuses: ${statuses.join(',')})`);
    const after = await rss(pid);
    t.diagnostic(`${throttled.length} refused up front, ${read.length} read; server peak RSS ${Math.round(before.peak / MB)} MB -> ${Math.round(after.peak / MB)} MB`);
    assert.ok(after.peak - before.peak < 400 * MB, `peak RSS grew by ${Math.round((after.peak - before.peak) / MB)} MB`);
    await s.client.send(new ListFunctionsCommand({}));
  });

  test('a declared payload hash is checked before the body: a forged one is refused without reading it', async () => {
    const body = JSON.stringify({ FunctionName: 'forged', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: 'UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==' } });
    const auth = await sign(s.port, { method: 'POST', path: '/2015-03-31/functions', secret: 'not-the-secret', body });
    assert.match(auth['x-amz-content-sha256'] ?? '', /^[0-9a-f]{64}$/);
    // Declares 66 MB and sends none of it: the answer comes from the headers alone.
    const r = await rawRequest(s.port, head('POST', '/2015-03-31/functions', { ...auth, 'content-length': String(CODE_BODY) }), undefined, 10_000);
    assert.equal(r?.status, 403);
    assert.equal(r?.headers['x-amzn-errortype'], 'InvalidSignatureException');
  });

  test('UNSIGNED-PAYLOAD is refused, so no body can be swapped under a valid signature', async () => {
    const good = JSON.stringify({ FunctionName: 'swapped', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: (await zipFiles({ 'index.js': 'exports.handler = async () => "good";' })).toString('base64') } });
    const evil = good.replace('"good"', '"EVIL"').replace('swapped', 'swapped');
    const auth = await sign(s.port, { method: 'POST', path: '/2015-03-31/functions', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, body: good });
    assert.equal(auth['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
    const res = await fetch(`${s.url}/2015-03-31/functions`, { method: 'POST', headers: auth, body: evil });
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('x-amzn-errortype'), 'InvalidSignatureException');
    assert.match(((await res.json()) as { Message: string }).Message, /UNSIGNED-PAYLOAD is not accepted/);

    // A declared hash with another body under it: refused once the body is read, nothing created.
    const signedGood = await sign(s.port, { method: 'POST', path: '/2015-03-31/functions', body: good });
    const swapped = await fetch(`${s.url}/2015-03-31/functions`, { method: 'POST', headers: signedGood, body: Buffer.from(evil.replace('swapped', 'swappee')) });
    assert.equal(swapped.status, 403);
    assert.match(((await swapped.json()) as { Message: string }).Message, /x-amz-content-sha256' header does not match/);
    await assert.rejects(s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'swapped' })), { name: 'ResourceNotFoundException' });
    await assert.rejects(s.client.send(new GetFunctionConfigurationCommand({ FunctionName: 'swappee' })), { name: 'ResourceNotFoundException' });
  });

  test('over-large bodies are refused from their declared length: 6 MB invoke, 256 KB event', async () => {
    const path = '/2015-03-31/functions/any/invocations';
    const sync = await sign(s.port, { method: 'POST', path, body: '{}' });
    const r1 = await rawRequest(s.port, head('POST', path, { ...sync, 'content-length': String(6 * MB + 1) }), undefined, 10_000);
    assert.equal(r1?.status, 413);
    assert.equal(r1?.headers['x-amzn-errortype'], 'RequestTooLargeException');
    const ev = await sign(s.port, { method: 'POST', path, body: '{}', headers: { 'x-amz-invocation-type': 'Event' } });
    const r2 = await rawRequest(s.port, head('POST', path, { ...ev, 'content-length': String(256 * 1024 + 1) }), undefined, 10_000);
    assert.equal(r2?.status, 413);
    // Chunked (no declared length): cut off once it passes the cap.
    const r3 = await flood(s.port, head('POST', path, { ...sync, 'transfer-encoding': 'chunked' }), 8 * MB, true);
    assert.equal(r3.res?.status, 413);
  });

  test('malformed % escapes and bad Host headers answer 400, not 500', async () => {
    const paths = ['/2015-03-31/functions/%zz/configuration', '/2015-03-31/functions/%E0%A4%A/configuration', '/2015-03-31/functions/%FF/configuration', '/%', '/lambda-url/%/x', '//evil/2015-03-31/functions', '*'];
    for (const p of paths) {
      const r = await rawRequest(s.port, head('GET', p, { host: `127.0.0.1:${s.port}` }));
      assert.equal(r?.status, 400, `${p}: ${r?.status}`);
      assert.equal(r?.headers['x-amzn-errortype'], 'ValidationException', p);
    }
    const hosts = ['a b', '[::1', 'foo@bar', '%zz', '127.0.0.1:99999', 'a/b', '', 'x\u00e9y'];
    for (const h of hosts) {
      const r = await rawRequest(s.port, Buffer.from(head('GET', '/2015-03-31/functions', { host: h }), 'latin1'));
      assert.ok(r !== undefined, `host ${JSON.stringify(h)}: closed without an answer`);
      assert.equal(r.status, 400, `host ${JSON.stringify(h)}: ${r.status}`);
    }
    assert.doesNotMatch(s.output(), /unexpected error/);
  });

  test('JSON nested 100,000 levels deep answers 400 on every route that reads JSON', async () => {
    const deep = `{"FunctionName":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const zip = (await zipFiles({ 'index.js': 'exports.handler = async (e) => e;' })).toString('base64');
    const created = await fetch(`${s.url}/2015-03-31/functions`, {
      method: 'POST', body: JSON.stringify({ FunctionName: 'deep', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip } }),
      headers: await sign(s.port, { method: 'POST', path: '/2015-03-31/functions', body: JSON.stringify({ FunctionName: 'deep', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip } }) }),
    });
    assert.equal(created.status, 201);
    const targets: Array<[string, string]> = [
      ['POST', '/2015-03-31/functions'],
      ['PUT', '/2015-03-31/functions/deep/configuration'],
      ['POST', '/2015-03-31/functions/deep/invocations'],
      ['PUT', '/2019-09-25/functions/deep/event-invoke-config'],
      ['POST', '/2021-10-31/functions/deep/url'],
      ['POST', '/2015-03-31/functions/deep/aliases'],
    ];
    for (const [method, path] of targets) {
      const res = await fetch(`${s.url}${path}`, { method, body: deep, headers: await sign(s.port, { method, path, body: deep }) });
      assert.equal(res.status, 400, `${method} ${path}: ${res.status}`);
      assert.equal(res.headers.get('x-amzn-errortype'), 'InvalidRequestContentException', `${method} ${path}`);
    }
    assert.doesNotMatch(s.output(), /unexpected error/);
  });

  test('past the cap on anonymous connections the oldest are closed, and signed clients still get in', async () => {
    const socks: Socket[] = [];
    const closed: Array<Promise<Buffer>> = [];
    for (let i = 0; i < 600; i++) {
      const sock = await openSocket(s.port);
      socks.push(sock);
      closed.push(closedBy(sock));
    }
    let n = 0;
    for (const c of closed) void c.then(() => { n++; });
    const deadline = Date.now() + 10_000;
    while (n < 600 - 512 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(n >= 600 - 512, `${n} of 600 idle anonymous connections were closed`);
    await s.client.send(new ListFunctionsCommand({}));
    for (const sock of socks) sock.destroy();
  });
});

describe('HTTP front door: slow clients', () => {
  let s: RunningServer;

  before(async () => {
    s = await startServer({ args: ['--request-timeout', '3'] });
  });
  after(async () => {
    await s.stop();
  });

  test('a body trickled at 1 byte/s is cut off by the request timeout', async () => {
    // Without a declared payload hash the server has to wait for the body to check the signature.
    const path = '/2015-03-31/functions/x/invocations';
    const auth = await sign(s.port, { method: 'POST', path, declareHash: false, body: '' });
    const attempts: Array<{ headers: Record<string, string>; answer: RegExp }> = [
      { headers: { ...auth, 'content-length': '1000' }, answer: /^HTTP\/1\.1 408 / },
      // Unsigned: refused at once (403), and the trickled remainder is cut off all the same.
      { headers: { host: `127.0.0.1:${s.port}`, 'content-length': '1000' }, answer: /^HTTP\/1\.1 403 [^]*HTTP\/1\.1 408 / },
    ];
    for (const { headers, answer } of attempts) {
      const sock = await openSocket(s.port);
      const got = closedBy(sock);
      const started = Date.now();
      sock.write(head('POST', path, headers));
      const timer = setInterval(() => { if (!sock.destroyed) sock.write('a'); }, 1000);
      const bytes = await got;
      clearInterval(timer);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 30_000, `closed after ${elapsed} ms`);
      const text = bytes.toString('latin1');
      assert.match(text, answer, text.slice(0, 300));
    }
  });

  test('headers trickled one line a second are cut off by the headers timeout', async () => {
    const sock = await openSocket(s.port);
    const got = closedBy(sock);
    const started = Date.now();
    sock.write(`GET /2015-03-31/functions HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\n`);
    let i = 0;
    const timer = setInterval(() => { if (!sock.destroyed) sock.write(`x-slow-${i++}: y\r\n`); }, 1000);
    await got;
    clearInterval(timer);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 30_000, `closed after ${elapsed} ms`);
    await s.client.send(new ListFunctionsCommand({}));
  });
});
