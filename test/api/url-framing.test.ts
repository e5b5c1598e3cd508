/**
 * Function URL responses are the function's to choose only in status, headers and body: the server owns the
 * framing (issue 10, findings 11 and 12). Raw sockets read exactly what goes on the wire.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CreateFunctionCommand, CreateFunctionUrlConfigCommand } from '@aws-sdk/client-lambda';
import { urlReply } from '../../src/api/url-response.js';
import { ROLE, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { openSocket, parseResponse, rawRequest, type RawResponse } from '../helpers/raw-http.js';

const HANDLER = `
const CASES = {
  '/hop': { statusCode: 200, headers: { 'transfer-encoding': 'chunked', connection: 'close', upgrade: 'h2c', 'keep-alive': 'timeout=1',
    te: 'trailers', trailer: 'x-t', 'proxy-authenticate': 'Basic', 'content-length': '999', 'x-ok': '1' }, body: 'hello' },
  '/101': { statusCode: 101, headers: { upgrade: 'websocket', connection: 'upgrade' } },
  '/100': { statusCode: 100, body: 'x' },
  '/103': { statusCode: 103, headers: { link: '</a>; rel=preload' } },
  '/204': { statusCode: 204, headers: { 'content-length': '5' }, body: 'hello' },
  '/304': { statusCode: 304, body: 'hello' },
  '/crlf': { statusCode: 200, headers: { 'x-a': 'b\\r\\nset-cookie: evil=1' }, body: 'x' },
  '/lf': { statusCode: 200, headers: { 'x-a': 'b\\nx-injected: 1' }, body: 'x' },
  '/nul': { statusCode: 200, headers: { 'x-a': 'b\\u0000c' }, body: 'x' },
  '/badname': { statusCode: 200, headers: { 'bad name': 'x' }, body: 'x' },
  '/objheader': { statusCode: 200, headers: { 'x-a': { nested: true } }, body: 'x' },
  '/cookie': { statusCode: 200, cookies: ['a=1\\r\\nx-injected: 1'], body: 'x' },
  '/status': { statusCode: '2000' },
  '/ok': { statusCode: 200, headers: { vary: 'Accept' }, body: 'fine' },
};
exports.handler = async (event) => CASES[event.rawPath] ?? { statusCode: 404, body: 'no case' };`;

describe('function URL responses: framing belongs to the server', () => {
  let s: RunningServer;
  let base: string;
  let withCreds: string;
  let named: string;

  before(async () => {
    s = await startServer();
    const code = await zipFiles({ 'index.js': HANDLER });
    for (const name of ['framing', 'cors-open', 'cors-named']) {
      await s.client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: code } }));
    }
    const path = (u: string | undefined): string => new URL(u ?? '').pathname.replace(/\/$/, '');
    base = path((await s.client.send(new CreateFunctionUrlConfigCommand({ FunctionName: 'framing', AuthType: 'NONE' }))).FunctionUrl);
    withCreds = path((await s.client.send(new CreateFunctionUrlConfigCommand({
      FunctionName: 'cors-open', AuthType: 'NONE', Cors: { AllowOrigins: ['*'], AllowCredentials: true, AllowMethods: ['GET'] },
    }))).FunctionUrl);
    named = path((await s.client.send(new CreateFunctionUrlConfigCommand({
      FunctionName: 'cors-named', AuthType: 'NONE', Cors: { AllowOrigins: ['https://app.example'], AllowCredentials: true, AllowMethods: ['GET'] },
    }))).FunctionUrl);
  });
  after(async () => {
    await s.stop();
  });

  const get = (path: string, headers: Record<string, string> = {}): Promise<RawResponse | undefined> =>
    rawRequest(s.port, `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, undefined, 60_000);

  /** Two requests on one connection: the second is only answered if the first was framed correctly. */
  async function twoOnOneConnection(first: string, second: string): Promise<[RawResponse, RawResponse]> {
    const sock = await openSocket(s.port);
    let buf = Buffer.alloc(0);
    const responses: RawResponse[] = [];
    const got = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no second response; got ${buf.toString('latin1').slice(0, 300)}`)), 60_000);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const r = parseResponse(buf, false);
        if (r === undefined) return;
        responses.push(r);
        const used = buf.indexOf('\r\n\r\n') + 4 + r.body.length;
        buf = buf.subarray(used);
        if (responses.length === 1) sock.write(`GET ${second} HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\n\r\n`);
        else {
          clearTimeout(t);
          resolve();
        }
      });
    });
    sock.write(`GET ${first} HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\n\r\n`);
    await got;
    sock.destroy();
    return [responses[0] as RawResponse, responses[1] as RawResponse];
  }

  test('hop-by-hop and framing headers from the function are dropped; the connection stays usable', async () => {
    const [r, next] = await twoOnOneConnection(`${base}/hop`, `${base}/ok`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello');
    assert.equal(r.headers['content-length'], '5');
    assert.equal(r.headers['x-ok'], '1');
    for (const h of ['transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authenticate']) assert.equal(r.headers[h], undefined, h);
    assert.notEqual(r.headers.connection, 'close');
    assert.equal((r.rawHead.match(/^content-length:/gim) ?? []).length, 1);
    assert.equal(next.status, 200);
    assert.equal(next.body.toString(), 'fine');
  });

  test('1xx and 101 statuses answer 502 instead of switching protocols or hanging the client', async () => {
    for (const p of ['/101', '/100', '/103', '/status']) {
      const r = await get(`${base}${p}`);
      assert.equal(r?.status, 502, p);
      assert.equal(r?.headers.upgrade, undefined, p);
      assert.deepEqual(JSON.parse(r?.body.toString() ?? ''), { Message: 'Internal Server Error' });
    }
  });

  test('204 and 304 carry no body and no Content-Length', async () => {
    for (const p of ['/204', '/304']) {
      const [r, next] = await twoOnOneConnection(`${base}${p}`, `${base}/ok`);
      assert.equal(r.status, Number(p.slice(1)));
      assert.equal(r.headers['content-length'], undefined, p);
      assert.equal(r.body.length, 0);
      // Had the body been sent, it would have been read as the start of the next response.
      assert.equal(next.status, 200, p);
      assert.equal(next.body.toString(), 'fine');
    }
  });

  test('a header with CR, LF or NUL, a bad name or a non-text value answers 502, as Lambda does, with nothing injected', async () => {
    for (const p of ['/crlf', '/lf', '/nul', '/badname', '/objheader', '/cookie']) {
      const r = await get(`${base}${p}`);
      assert.equal(r?.status, 502, p);
      assert.equal(r?.headers['set-cookie'], undefined, p);
      assert.equal(r?.headers['x-injected'], undefined, p);
    }
    assert.doesNotMatch(s.output(), /unexpected error|ERR_INVALID_CHAR/);
  });

  test('a body that cannot be serialised answers 502', () => {
    const deep = `{"statusCode":200,"body":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const r = urlReply({ requestId: 'r', payload: Buffer.from(deep), executedVersion: '$LATEST', tail: Buffer.alloc(0), cold: false });
    assert.equal(r.status, 502);
  });

  test('CORS: a wildcard origin is never paired with credentials', async () => {
    const r = await get(`${withCreds}/ok`, { origin: 'https://evil.example' });
    assert.equal(r?.status, 200);
    assert.equal(r?.headers['access-control-allow-origin'], '*');
    assert.equal(r?.headers['access-control-allow-credentials'], undefined);
    const pre = await rawRequest(s.port, `OPTIONS ${withCreds}/ok HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\norigin: https://evil.example\r\naccess-control-request-method: GET\r\n\r\n`);
    assert.equal(pre?.headers['access-control-allow-origin'], '*');
    assert.equal(pre?.headers['access-control-allow-credentials'], undefined);
  });

  test('CORS: an origin allowed by name is reflected with Vary: Origin; others get no grant', async () => {
    const r = await get(`${named}/ok`, { origin: 'https://app.example' });
    assert.equal(r?.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(r?.headers['access-control-allow-credentials'], 'true');
    assert.match(r?.headers.vary ?? '', /\bOrigin\b/);
    assert.match(r?.headers.vary ?? '', /\bAccept\b/, 'the function\'s own Vary is kept');
    const other = await get(`${named}/ok`, { origin: 'https://evil.example' });
    assert.equal(other?.headers['access-control-allow-origin'], undefined);
    assert.equal(other?.headers['access-control-allow-credentials'], undefined);
    assert.match(other?.headers.vary ?? '', /\bOrigin\b/);
  });
});
