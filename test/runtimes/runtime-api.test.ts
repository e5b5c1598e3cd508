import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RuntimeApiServer, validRuntimeOrFunctionErrorType } from '../../src/sandbox/runtime-api.js';
import { MAX_RUNTIME_RESPONSE_BYTES } from '../../src/sandbox/runtime-api-types.js';
import { FUNCTION_ARN, TestPort, json, rapi, waitFor } from './helpers.js';

const NEXT = '/2018-06-01/runtime/invocation/next';
const inv = (id: string, what: 'response' | 'error'): string => `/2018-06-01/runtime/invocation/${id}/${what}`;

void describe('RuntimeApiServer protocol', () => {
  let server: RuntimeApiServer;
  let dir: string;
  let n = 0;

  before(async () => {
    server = new RuntimeApiServer();
    dir = await mkdtemp(path.join(tmpdir(), 'thaw-rapi-'));
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function env(transport: 'tcp' | 'unix' = 'tcp'): Promise<{ port: TestPort; address: string; id: string }> {
    const port = new TestPort();
    const id = `env-${++n}`;
    const where = transport === 'tcp' ? { transport } : { transport, socketPath: path.join(dir, `${id}.sock`) };
    const { address } = await server.attach(id, port, where);
    return { port, address, id };
  }

  void test('next delivers the invocation with Lambda headers; response is accepted', async () => {
    const { port, address, id } = await env();
    const outcome = port.invoke({ hello: 'world' }, {
      requestId: 'req-1',
      deadlineMs: 1_700_000_000_123,
      clientContext: '{"custom":{"k":"v"}}',
      cognitoIdentity: '{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}',
    });
    const next = await rapi(address, 'GET', NEXT);
    assert.equal(next.status, 200);
    assert.equal(next.headers['content-type'], 'application/json');
    assert.equal(next.headers['lambda-runtime-aws-request-id'], 'req-1');
    assert.equal(next.headers['lambda-runtime-deadline-ms'], '1700000000123');
    assert.equal(next.headers['lambda-runtime-invoked-function-arn'], FUNCTION_ARN);
    assert.match(String(next.headers['lambda-runtime-trace-id']), /^Root=1-/);
    assert.equal(next.headers['lambda-runtime-client-context'], '{"custom":{"k":"v"}}');
    assert.equal(next.headers['lambda-runtime-cognito-identity'], '{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}');
    assert.deepEqual(JSON.parse(next.body.toString()), { hello: 'world' });

    const posted = await rapi(address, 'POST', inv('req-1', 'response'), '{"ok":true}');
    assert.equal(posted.status, 202);
    assert.deepEqual(JSON.parse(posted.body.toString()), { status: 'OK' });
    assert.deepEqual(json(await outcome), { ok: true });
    await server.detach(id);
  });

  void test('optional headers are omitted when absent', async () => {
    const { port, address, id } = await env();
    void port.invoke({}, { requestId: 'req-2', traceId: '' });
    const next = await rapi(address, 'GET', NEXT);
    assert.equal(next.headers['lambda-runtime-client-context'], undefined);
    assert.equal(next.headers['lambda-runtime-cognito-identity'], undefined);
    assert.equal(next.headers['lambda-runtime-trace-id'], undefined);
    await server.detach(id);
  });

  void test('error posts carry the error type header and body; percent-encoded ids are decoded', async () => {
    const { port, address, id } = await env();
    const outcome = port.invoke({}, { requestId: 'a b/c' });
    await rapi(address, 'GET', NEXT);
    const body = '{"errorMessage":"boom","errorType":"TypeError","trace":[]}';
    const r = await rapi(address, 'POST', inv(encodeURIComponent('a b/c'), 'error'), body, {
      'Lambda-Runtime-Function-Error-Type': 'TypeError',
    });
    assert.equal(r.status, 202);
    const o = await outcome;
    assert.equal(o.kind, 'error');
    assert.equal(o.kind === 'error' && o.report.errorType, 'TypeError');
    assert.equal(o.kind === 'error' && o.report.body.toString(), body);
    await server.detach(id);
  });

  void test('unknown request id, error before next and a second response are 400 InvalidRequestID', async () => {
    const { port, address, id } = await env();
    const early = await rapi(address, 'POST', inv('nobody', 'error'), '{}');
    assert.equal(early.status, 400);
    assert.deepEqual(JSON.parse(early.body.toString()), { errorMessage: 'Invalid request ID', errorType: 'InvalidRequestID' });

    void port.invoke({}, { requestId: 'req-3' });
    await rapi(address, 'GET', NEXT);
    const unknown = await rapi(address, 'POST', inv('req-unknown', 'response'), '{}');
    assert.equal(unknown.status, 400);
    assert.equal((JSON.parse(unknown.body.toString()) as { errorType: string }).errorType, 'InvalidRequestID');

    assert.equal((await rapi(address, 'POST', inv('req-3', 'response'), '1')).status, 202);
    const twice = await rapi(address, 'POST', inv('req-3', 'response'), '2');
    assert.equal(twice.status, 400);
    assert.equal((JSON.parse(twice.body.toString()) as { errorType: string }).errorType, 'InvalidRequestID');
    await server.detach(id);
  });

  void test('init/error after /next is 403 InvalidStateTransition, before it 202', async () => {
    const a = await env();
    const ok = await rapi(a.address, 'POST', '/2018-06-01/runtime/init/error', '{"errorType":"Runtime.X"}', {
      'Lambda-Runtime-Function-Error-Type': 'Runtime.ImportModuleError',
    });
    assert.equal(ok.status, 202);
    assert.equal(a.port.initErrors[0]?.errorType, 'Runtime.ImportModuleError');
    await server.detach(a.id);

    const b = await env();
    void b.port.invoke({}, { requestId: 'req-4' });
    await rapi(b.address, 'GET', NEXT);
    const late = await rapi(b.address, 'POST', '/2018-06-01/runtime/init/error', '{}');
    assert.equal(late.status, 403);
    assert.deepEqual(JSON.parse(late.body.toString()), {
      errorMessage: 'State transition from Ready to InitError failed for runtime. Error: State transition is not allowed',
      errorType: 'InvalidStateTransition',
    });
    await server.detach(b.id);
  });

  void test('a response body over the limit is 413 and fails the invocation with Function.ResponseSizeTooLarge', async () => {
    const { port, address, id } = await env();
    const outcome = port.invoke({}, { requestId: 'req-big' });
    await rapi(address, 'GET', NEXT);
    const big = Buffer.alloc(MAX_RUNTIME_RESPONSE_BYTES + 1, 0x61);
    const r = await rapi(address, 'POST', inv('req-big', 'response'), big);
    assert.equal(r.status, 413);
    assert.deepEqual(JSON.parse(r.body.toString()), {
      errorMessage: `Exceeded maximum allowed payload size (${MAX_RUNTIME_RESPONSE_BYTES} bytes).`,
      errorType: 'RequestEntityTooLarge',
    });
    const o = await outcome;
    assert.equal(o.kind, 'error');
    assert.equal(o.kind === 'error' && o.report.errorType, 'Function.ResponseSizeTooLarge');
    assert.deepEqual(json(o), {
      errorMessage: `Response payload size exceeded maximum allowed payload size (${MAX_RUNTIME_RESPONSE_BYTES} bytes).`,
      errorType: 'Function.ResponseSizeTooLarge',
    });
    await server.detach(id);
  });

  void test('a chunked body over the limit is refused too, and the keep-alive connection stays usable', async () => {
    const { port, address, id } = await env();
    const outcome = port.invoke({}, { requestId: 'req-chunked' });
    await rapi(address, 'GET', NEXT);
    const [host, portNo] = address.split(':');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host, port: Number(portNo), method: 'POST', path: inv('req-chunked', 'response'), agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      const chunk = Buffer.alloc(1024 * 1024, 0x62);
      for (let i = 0; i < 7; i++) req.write(chunk);
      req.end();
    });
    assert.equal(status, 413);
    assert.equal((await outcome).kind, 'error');
    // Same agent, same socket: the next request is parsed after the discarded body.
    const again = await new Promise<number>((resolve, reject) => {
      http
        .get({ host, port: Number(portNo), path: '/2018-06-01/runtime/nope', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
    assert.equal(again, 404);
    agent.destroy();
    await server.detach(id);
  });

  void test('a body of exactly the limit is accepted', async () => {
    const { port, address, id } = await env();
    const outcome = port.invoke({}, { requestId: 'req-limit' });
    await rapi(address, 'GET', NEXT);
    const r = await rapi(address, 'POST', inv('req-limit', 'response'), Buffer.alloc(MAX_RUNTIME_RESPONSE_BYTES, 0x20));
    assert.equal(r.status, 202);
    const o = await outcome;
    assert.equal(o.kind === 'response' && o.payload.length, MAX_RUNTIME_RESPONSE_BYTES);
    await server.detach(id);
  });

  void test('unknown paths are 404, wrong methods 405', async () => {
    const { address, id } = await env();
    for (const p of ['/', '/2018-06-01/runtime/invocation', '/2018-06-01/runtime/invocation/x/other', '/2019-01-01/runtime/invocation/next']) {
      const r = await rapi(address, 'GET', p);
      assert.equal(r.status, 404, p);
      assert.equal(r.headers['content-type'], 'application/json');
    }
    const r = await rapi(address, 'POST', NEXT, '{}');
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET');
    assert.equal((await rapi(address, 'GET', inv('x', 'response'))).status, 405);
    assert.equal((await rapi(address, 'POST', '/2018-06-01/runtime/invocation//response', '{}')).status, 400);
    await server.detach(id);
  });

  void test('a long poll is aborted when the runtime hangs up', async () => {
    const { port, address, id } = await env();
    const ac = new AbortController();
    const pending = rapi(address, 'GET', NEXT, undefined, {}, ac.signal).catch((e: unknown) => e);
    await waitFor(port, 'next');
    const aborted = waitFor(port, 'abort');
    ac.abort();
    await aborted;
    assert.equal(port.aborts, 1);
    assert.ok((await pending) instanceof Error);
    await server.detach(id);
  });

  void test('detach aborts pending long polls, closes connections and stops listening', async () => {
    const { port, address, id } = await env();
    const pending = rapi(address, 'GET', NEXT).catch((e: unknown) => e);
    await waitFor(port, 'next');
    await server.detach(id);
    assert.equal(port.aborts, 1);
    assert.ok((await pending) instanceof Error);
    await assert.rejects(rapi(address, 'GET', NEXT), /ECONNREFUSED/);
  });

  void test('requests are routed only to the environment whose listener accepted them', async () => {
    const a = await env();
    const b = await env('unix');
    void a.port.invoke({ for: 'a' }, { requestId: 'same-id' });
    void b.port.invoke({ for: 'b' }, { requestId: 'same-id' });
    const na = await rapi(a.address, 'GET', NEXT);
    const nb = await rapi(b.address, 'GET', NEXT);
    assert.deepEqual(JSON.parse(na.body.toString()), { for: 'a' });
    assert.deepEqual(JSON.parse(nb.body.toString()), { for: 'b' });
    assert.equal(a.port.nextCalls, 1);
    assert.equal(b.port.nextCalls, 1);
    await server.detach(a.id);
    await server.detach(b.id);
  });

  void test('unix transport removes a stale socket file and serves on it', async () => {
    const socketPath = path.join(dir, 'stale.sock');
    await writeFile(socketPath, 'stale');
    const port = new TestPort();
    const { address } = await server.attach('env-stale', port, { transport: 'unix', socketPath });
    assert.equal(address, `unix:${socketPath}`);
    assert.ok((await stat(socketPath)).isSocket());
    void port.invoke({ via: 'unix' });
    const r = await rapi(address, 'GET', NEXT);
    assert.deepEqual(JSON.parse(r.body.toString()), { via: 'unix' });
    await server.detach('env-stale');
    await assert.rejects(stat(socketPath), /ENOENT/);
  });

  void test('attaching the same environment twice is refused', async () => {
    const { id } = await env();
    await assert.rejects(server.attach(id, new TestPort(), { transport: 'tcp' }), { code: 'RAPI_ENV_ATTACHED' });
    await server.detach(id);
  });

  void test('restore/next returns 200 once restored; after /next it is 403; restore/error is forwarded', async () => {
    const { port, address, id } = await env();
    const restoring = rapi(address, 'GET', '/2018-06-01/runtime/restore/next');
    await new Promise((r) => setTimeout(r, 20));
    port.restore();
    const r = await restoring;
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
    const e = await rapi(address, 'POST', '/2018-06-01/runtime/restore/error', '{"errorType":"Runtime.AfterRestoreError"}', {
      'Lambda-Runtime-Function-Error-Type': 'Runtime.AfterRestoreError',
    });
    assert.equal(e.status, 202);
    assert.equal(port.restoreErrors[0]?.errorType, 'Runtime.AfterRestoreError');

    void port.invoke({});
    await rapi(address, 'GET', NEXT);
    const late = await rapi(address, 'GET', '/2018-06-01/runtime/restore/next');
    assert.equal(late.status, 403);
    assert.equal((JSON.parse(late.body.toString()) as { errorType: string }).errorType, 'InvalidStateTransition');
    await server.detach(id);
  });

  void test('one keep-alive connection carries next → response → next', async () => {
    const { port, address, id } = await env();
    const [host, portNo] = address.split(':');
    const sock = net.connect(Number(portNo), host);
    await new Promise((r) => sock.once('connect', r));
    let buf = '';
    sock.setEncoding('utf8').on('data', (d: string) => (buf += d));
    const until = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 200 && !re.test(buf); i++) await new Promise((r) => setTimeout(r, 10));
      assert.match(buf, re);
    };
    void port.invoke({ n: 1 }, { requestId: 'k1' });
    sock.write(`GET ${NEXT} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await until(/\{"n":1\}$/);
    buf = '';
    sock.write(`POST ${inv('k1', 'response')} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok`);
    await until(/HTTP\/1\.1 202[\s\S]*\{"status":"OK"\}$/);
    assert.doesNotMatch(buf, /Connection: close/i);
    buf = '';
    void port.invoke({ n: 2 }, { requestId: 'k2' });
    sock.write(`GET ${NEXT} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await until(/\{"n":2\}$/);
    sock.destroy();
    await server.detach(id);
  });

  void test('error types are scrubbed like the emulator does', () => {
    assert.equal(validRuntimeOrFunctionErrorType('Runtime.ImportModuleError'), 'Runtime.ImportModuleError');
    assert.equal(validRuntimeOrFunctionErrorType('Function.ResponseSizeTooLarge'), 'Function.ResponseSizeTooLarge');
    assert.equal(validRuntimeOrFunctionErrorType('Function.x y'), 'Function.Unknown');
    assert.equal(validRuntimeOrFunctionErrorType('TypeError'), 'Runtime.Unknown');
    assert.equal(validRuntimeOrFunctionErrorType(undefined), 'Runtime.Unknown');
  });
});
