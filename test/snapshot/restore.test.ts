import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import { NODES, buildFunction, json, restore, restored, stop, type Restored } from './helpers.js';

/**
 * Snapshots restored against a real Runtime API server: Init state, the restore flow, hooks, uniqueness, and
 * built-ins that Init loads but only the handler uses.
 */

let rapi: RuntimeApiServer;
before(() => {
  rapi = new RuntimeApiServer();
});
after(async () => {
  await rapi.close();
});

const running: Restored[] = [];
after(async () => {
  await Promise.all(running.map((r) => stop(rapi, r)));
});

async function start(blobPath: string, codeDir: string, opts: Parameters<typeof restore>[3] = {}): Promise<Restored> {
  const r = await restore(rapi, blobPath, codeDir, opts);
  running.push(r);
  await restored(r);
  return r;
}

describe('a restored environment', () => {
  test('has the state Init built, reads its environment at restore, and serves two invocations', async () => {
    const { codeDir, result } = await buildFunction(
      {
        'index.js': `'use strict';
const table = [];
for (let i = 0; i < 10000; i++) table.push(i * i);
let counter = 0;
const builtAt = Date.now();
const initVar = process.env.MY_VAR;
exports.handler = async (event, context) => ({
  counter: ++counter,
  square: table[event.n],
  builtAt,
  now: Date.now(),
  initVar,
  var: process.env.MY_VAR,
  initType: process.env.AWS_LAMBDA_INITIALIZATION_TYPE,
  functionName: context.functionName,
  requestId: context.awsRequestId,
});
`,
      },
      'index.handler',
    );
    assert.equal(result.nodeVersion.startsWith('v24.'), true);
    assert.ok(result.sizeBytes > 0);
    assert.match(result.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(result.flags, []);
    assert.equal(result.manifest.hooks.before, 0);

    const r = await start(result.blobPath, codeDir);
    assert.equal(r.port.restoreCalls, 1);
    const first = json(await r.port.invoke({ n: 12 })) as Record<string, unknown>;
    const second = json(await r.port.invoke({ n: 9999 })) as Record<string, unknown>;
    assert.equal(first.counter, 1);
    assert.equal(second.counter, 2);
    assert.equal(first.square, 144);
    assert.equal(second.square, 9999 * 9999);
    assert.equal(first.initVar, 'at-build', 'values captured during Init are the build-time ones');
    assert.equal(first.var, 'at-restore', 'process.env is the restored environment');
    assert.equal(first.initType, 'snap-start');
    assert.equal(first.functionName, 'fn-test');
    assert.equal(first.builtAt, second.builtAt);
    assert.ok((first.now as number) >= (first.builtAt as number));
    assert.equal(r.port.initErrors.length, 0);
    assert.equal(r.port.restoreErrors.length, 0);
  });

  test('hooks run in the documented order: beforeCheckpoint last-registered first, afterRestore in registration order', async () => {
    const { codeDir, result } = await buildFunction(
      {
        'index.js': `'use strict';
const log = [];
const snapstart = globalThis.thaw.snapstart;
const viaModule = require('thaw-snapstart');
snapstart.registerBeforeCheckpoint(() => { log.push('before:first:' + snapstart.phase); });
snapstart.registerBeforeCheckpoint(async () => { await new Promise((r) => setTimeout(r, 20)); log.push('before:second'); });
viaModule.registerBeforeSnapshot(() => { log.push('before:third'); });
snapstart.registerAfterRestore(() => { log.push('after:first:' + snapstart.phase); });
snapstart.registerAfterRestore(async () => { await null; log.push('after:second'); });
viaModule.registerAfterRestore(() => { log.push('after:third:' + (viaModule === snapstart)); });
log.push('init');
exports.handler = async () => log;
`,
      },
      'index.handler',
    );
    assert.deepEqual(result.manifest.hooks, { before: 3, after: 3 });
    const r = await start(result.blobPath, codeDir);
    assert.deepEqual(json(await r.port.invoke({})), [
      'init',
      'before:third',
      'before:second',
      'before:first:checkpoint',
      'after:first:restored',
      'after:second',
      'after:third:true',
    ]);
  });

  test('an afterRestore hook that throws is posted to /runtime/restore/error and the environment does not serve', async () => {
    const { codeDir, result } = await buildFunction(
      {
        'index.mjs': `import { registerAfterRestore } from 'thaw-snapstart';
registerAfterRestore(() => {});
registerAfterRestore(() => { throw new TypeError('cannot reconnect to the cache'); });
export const handler = async () => 'never';
`,
      },
      'index.handler',
    );
    const r = await start(result.blobPath, codeDir);
    const exit = await r.proc.exited;
    assert.equal(exit.code, 1);
    assert.equal(r.port.restoreErrors.length, 1);
    const report = r.port.restoreErrors[0];
    assert.equal(report?.errorType, 'TypeError');
    const body = JSON.parse(report?.body.toString('utf8') ?? '{}') as { errorType: string; errorMessage: string; trace: string[] };
    assert.equal(body.errorType, 'TypeError');
    assert.equal(body.errorMessage, 'cannot reconnect to the cache');
    assert.ok(Array.isArray(body.trace));
    assert.equal(r.port.nextCalls, 0, 'never asked for an invocation');
  });

  test('signal listeners registered during Init are carried over the checkpoint', async () => {
    const { codeDir, result } = await buildFunction(
      { 'index.js': `process.on('SIGTERM', () => console.log('bye'));\nexports.handler = async () => process.listenerCount('SIGTERM');\n` },
      'index.handler',
    );
    const r = await start(result.blobPath, codeDir);
    assert.equal(json(await r.port.invoke({})), 1);
  });

  test('a timer due soon during Init is waited for; one re-armed by the hooks works after restore', async () => {
    const { codeDir, result } = await buildFunction(
      {
        'index.js': `let ready = false;
setTimeout(() => { ready = true; }, 50);
let ticks = 0;
let interval = setInterval(() => { ticks++; }, 5);
globalThis.thaw.snapstart.registerBeforeCheckpoint(() => clearInterval(interval));
globalThis.thaw.snapstart.registerAfterRestore(() => { ticks = 0; interval = setInterval(() => { ticks++; }, 5); });
exports.handler = async () => { await new Promise((r) => setTimeout(r, 50)); return { ready, ticking: ticks > 0 }; };
`,
      },
      'index.handler',
    );
    const r = await start(result.blobPath, codeDir);
    assert.deepEqual(json(await r.port.invoke({})), { ready: true, ticking: true });
  });
});

describe('uniqueness', () => {
  const FILES = {
    'index.js': `'use strict';
const crypto = require('node:crypto');
const { randomUUID, randomBytes, randomInt } = crypto;
// Init draws from every source, so that any cache they keep is warm when the snapshot is taken.
const initRandom = Math.random();
const initUuid = randomUUID();
const initWebUuid = globalThis.crypto.randomUUID();
const initInt = randomInt(2 ** 40);
// A user-land entropy pool, filled during Init (the pattern of uuid's rng and nanoid).
const pool = crypto.randomFillSync(Buffer.alloc(64));
const webPool = globalThis.crypto.getRandomValues(new Uint8Array(32));
exports.handler = async () => ({
  random: [Math.random(), Math.random()],
  uuid: [randomUUID(), randomUUID()],
  webUuid: globalThis.crypto.randomUUID(),
  v7: typeof crypto.randomUUIDv7 === 'function' ? crypto.randomUUIDv7() : null,
  bytes: randomBytes(16).toString('hex'),
  int: randomInt(2 ** 40),
  asyncInt: await new Promise((res, rej) => randomInt(2 ** 40, (e, n) => (e ? rej(e) : res(n)))),
  pool: pool.toString('hex'),
  webPool: Buffer.from(webPool).toString('hex'),
  init: { initRandom, initUuid, initWebUuid, initInt },
});
`,
  };

  for (const node of [NODES.node24, NODES.node22]) {
    const name = node === NODES.node24 ? 'Node 24' : 'Node 22';
    test(`two environments restored from one blob never share random values (${name})`, async () => {
      const { codeDir, result } = await buildFunction(FILES, 'index.handler', { node });
      const [a, b] = await Promise.all([start(result.blobPath, codeDir, { node }), start(result.blobPath, codeDir, { node })]);
      const [x, y] = (await Promise.all([a.port.invoke({}), b.port.invoke({})])).map((o) => json(o) as Record<string, unknown>);
      assert.ok(x !== undefined && y !== undefined);
      for (const key of ['random', 'uuid', 'webUuid', 'bytes', 'int', 'asyncInt', 'pool', 'webPool']) {
        assert.notDeepEqual(x[key], y[key], `${key} is shared: ${JSON.stringify(x[key])}`);
      }
      if (x.v7 !== null) assert.notEqual(x.v7, y.v7);
      for (const u of [...(x.uuid as string[]), x.webUuid as string]) assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      // What Init computed is, by definition, the same everywhere (docs/snapstart.md).
      assert.deepEqual(x.init, y.init);
      // The UUIDs handed out after restore are not the ones Init's batch would have handed out next.
      assert.notEqual((x.uuid as string[])[0], (x.init as { initUuid: string }).initUuid);
    });
  }
});

describe('built-ins that a snapshot cannot hold', () => {
  test('http, https, http2 and fetch loaded during Init work in the handler', async () => {
    const server = http.createServer((req, res) => res.end(`pong ${req.url}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const { codeDir, result } = await buildFunction(
        {
          'index.js': `'use strict';
const http = require('http');
const https = require('node:https');
const { constants } = require('http2');
const util = require('util');
// What express and the AWS SDK do at load time:
const { METHODS, STATUS_CODES } = http;
const methods = METHODS.map((m) => m.toLowerCase());
const res = Object.create(http.ServerResponse.prototype);
res.status = function (code) { this.statusCode = code; return this; };
class KeepAliveAgent extends https.Agent {}
const agent = new KeepAliveAgent({ keepAlive: true, maxSockets: 7 });
function LegacyAgent(opts) { http.Agent.call(this, opts); }
util.inherits(LegacyAgent, http.Agent);
const legacy = new LegacyAgent({ maxSockets: 3 });
const plainAgent = new http.Agent({ keepAlive: true });
const Hdrs = typeof Headers;
const get = (url) => new Promise((resolve, reject) => http.get(url, { agent: plainAgent }, (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => resolve(b)); }).on('error', reject));
exports.handler = async (event) => ({
  methods: methods.includes('get'),
  ok: STATUS_CODES[200],
  path: constants.HTTP2_HEADER_PATH,
  agent: agent instanceof https.Agent && agent instanceof KeepAliveAgent && agent.keepAlive === true && agent.maxSockets === 7,
  legacy: legacy instanceof http.Agent && legacy.maxSockets === 3,
  resProto: typeof res.setHeader === 'function' && typeof res.status === 'function',
  headersType: Hdrs,
  viaHttp: await get(event.url + '/http'),
  viaFetch: await (await fetch(event.url + '/fetch')).text(),
  headers: new Headers({ a: '1' }).get('a'),
});
`,
        },
        'index.handler',
      );
      assert.ok(result.deferred.includes('http') && result.deferred.includes('https'), JSON.stringify(result.deferred));
      const r = await start(result.blobPath, codeDir);
      assert.deepEqual(json(await r.port.invoke({ url: `http://127.0.0.1:${port}` })), {
        methods: true,
        ok: 'OK',
        path: ':path',
        agent: true,
        legacy: true,
        resProto: true,
        headersType: 'function',
        viaHttp: 'pong /http',
        viaFetch: 'pong /fetch',
        headers: '1',
      });
    } finally {
      server.close();
    }
  });

  test('an ES module handler restores like a CommonJS one', async () => {
    const { codeDir, result } = await buildFunction(
      {
        'index.mjs': `import { request } from 'node:https';
import * as crypto from 'node:crypto';
const digest = crypto.createHash('sha1').update('thaw').digest('hex');
export const handler = async () => ({ digest, request: typeof request });
`,
      },
      'index.handler',
    );
    const r = await start(result.blobPath, codeDir);
    assert.deepEqual(json(await r.port.invoke({})), { digest: '9e018d494af58f77e3a8609978f6b57cf4dcc4e1', request: 'function' });
  });
});
