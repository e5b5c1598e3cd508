import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import {
  FUNCTION_ARN,
  NODE_BOOTSTRAP,
  NODES,
  TestPort,
  json,
  lambdaEnv,
  spawnRuntime,
  waitFor,
  writeFiles,
  type Outcome,
  type RuntimeProcess,
} from './helpers.js';

const FIXTURES: Record<string, string> = {
  'index.js': `exports.handler = async () => 'index';\n`,
  'cjs-async.js': `let count = 0;
exports.handler = async (event) => { count += 1; return { kind: 'cjs-async', event, count }; };
`,
  'context.js': `exports.handler = async (event, context) => ({
  awsRequestId: context.awsRequestId,
  invokedFunctionArn: context.invokedFunctionArn,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  clientContext: context.clientContext,
  identity: context.identity,
  traceId: process.env._X_AMZN_TRACE_ID,
});
`,
  'callback.js': `exports.handler = (event, context, callback) => {
  const result = { timerFired: false };
  if (event.dontWait) context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => { result.timerFired = true; }, 50);
  callback(null, result);
};
`,
  'callback-error.js': `exports.handler = (event, context, callback) => callback('plain string failure');\n`,
  'sync.js': `exports.handler = (event) => ({ ignored: true });\n`,
  'context-methods.js': `exports.succeed = (event, context) => { setTimeout(() => context.succeed({ via: 'succeed' }), 5); };
exports.done = (event, context) => { context.done(null, 'via done'); context.succeed('ignored'); };
exports.fail = (event, context) => { context.fail(new Error('failed via context')); };
`,
  'esm.mjs': `export const handler = async (event) => ({ kind: 'mjs', event });\n`,
  'esm-pkg/package.json': `{ "type": "module" }\n`,
  'esm-pkg/app.js': `const where = import.meta.url;
export async function handler() { return { kind: 'type-module', esm: where.endsWith('/esm-pkg/app.js') }; }
`,
  'cjs-ext.cjs': `exports.handler = async () => ({ kind: 'cjs' });\n`,
  'lib/deep/file.js': `exports.handler = async () => ({ kind: 'dir/file' });\n`,
  'nested.js': `exports.api = { v1: { handler: async () => ({ kind: 'nested' }) } };\n`,
  'throws.js': `exports.handler = async () => { throw new TypeError('bad input'); };\n`,
  'rejects.js': `exports.handler = () => Promise.reject(new RangeError('out of range'));\n`,
  'unhandled.js': `exports.handler = async () => {
  Promise.reject(new Error('lost'));
  await new Promise((r) => setTimeout(r, 500));
  return 'late';
};
`,
  'uncaught.js': `exports.handler = async () => {
  setTimeout(() => { throw new Error('kaboom'); }, 1);
  await new Promise((r) => setTimeout(r, 500));
  return 'late';
};
`,
  'never.js': `exports.handler = async () => new Promise(() => {});\n`,
  'broken-dep.js': `require('not-installed-anywhere');\nexports.handler = async () => 'never';\n`,
  'throws-on-load.js': `throw new Error('init boom');\n`,
  'syntax.js': `exports.handler = async () => {\n`,
  'console.js': `console.log('init log', 42);
exports.handler = async () => {
  console.log('hello %s', 'world');
  console.info('info');
  console.warn('warn');
  console.error('error', { code: 7 });
  console.debug('debug');
  console.trace('trace');
  console.log('multi\\nline');
  return 'ok';
};
`,
  'big.js': `exports.handler = async (event) => (event.big ? 'x'.repeat(7 * 1024 * 1024) : 'small');\n`,
};

interface Started {
  readonly port: TestPort;
  readonly proc: RuntimeProcess;
  stop(): Promise<void>;
}

void describe('node bootstrap', () => {
  let server: RuntimeApiServer;
  let dir: string;
  let taskRoot: string;
  let n = 0;

  before(async () => {
    server = new RuntimeApiServer();
    dir = await mkdtemp(path.join(tmpdir(), 'thaw-node-rt-'));
    taskRoot = path.join(dir, 'task');
    await writeFiles(taskRoot, FIXTURES);
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(node: string, transport: 'tcp' | 'unix', handler: string, extra: Record<string, string> = {}): Promise<Started> {
    const port = new TestPort();
    const id = `node-${++n}`;
    const socketPath = path.join(dir, `${id}.sock`);
    const { address } = await server.attach(id, port, transport === 'tcp' ? { transport } : { transport, socketPath });
    const argv = transport === 'tcp' ? [node, NODE_BOOTSTRAP] : [node, NODE_BOOTSTRAP, '--runtime-api-socket', socketPath];
    const proc = spawnRuntime(argv, lambdaEnv(handler, taskRoot, transport === 'tcp' ? address : undefined, extra), taskRoot);
    return {
      port,
      proc,
      async stop() {
        await proc.stop();
        await server.detach(id);
      },
    };
  }

  /** Start, run one invocation per event, stop. */
  async function run(node: string, transport: 'tcp' | 'unix', handler: string, ...events: unknown[]): Promise<Outcome[]> {
    const rt = await start(node, transport, handler);
    try {
      const outcomes: Outcome[] = [];
      for (const e of events) outcomes.push(await rt.port.invoke(e));
      return outcomes;
    } finally {
      await rt.stop();
    }
  }

  async function one(node: string, transport: 'tcp' | 'unix', handler: string, event: unknown = {}): Promise<Outcome> {
    const [o] = await run(node, transport, handler, event);
    assert.ok(o);
    return o;
  }

  function errorOf(o: Outcome): { type: string | undefined; body: { errorType: string; errorMessage: string; trace: string[] } } {
    assert.equal(o.kind, 'error', `expected an error, got ${o.kind === 'response' ? o.payload.toString() : ''}`);
    if (o.kind !== 'error') throw new Error('unreachable');
    return { type: o.report.errorType, body: json(o) as { errorType: string; errorMessage: string; trace: string[] } };
  }

  async function initFailure(node: string, handler: string): Promise<{ errorType: string | undefined; body: { errorType: string; errorMessage: string }; code: number | null; stdout: string }> {
    const rt = await start(node, 'unix', handler);
    try {
      const { code } = await rt.proc.exited;
      const report = rt.port.initErrors[0];
      assert.ok(report, `no init error; stderr: ${rt.proc.stderr()}`);
      assert.equal(rt.port.nextCalls, 0);
      return { errorType: report.errorType, body: JSON.parse(report.body.toString()) as { errorType: string; errorMessage: string }, code, stdout: rt.proc.stdout() };
    } finally {
      await rt.stop();
    }
  }

  for (const [name, node] of Object.entries(NODES)) {
    for (const transport of ['tcp', 'unix'] as const) {
      void test(`${name} over ${transport}: CJS async handler, module state kept warm`, async () => {
        const [a, b] = await run(node, transport, 'cjs-async.handler', { n: 1 }, { n: 2 });
        assert.ok(a && b);
        assert.deepEqual(json(a), { kind: 'cjs-async', event: { n: 1 }, count: 1 });
        assert.deepEqual(json(b), { kind: 'cjs-async', event: { n: 2 }, count: 2 });
      });
    }
  }

  // The full matrix once per Node version, alternating transports.
  for (const [name, node, transport] of [
    ['node24', NODES.node24, 'unix'],
    ['node22', NODES.node22, 'tcp'],
  ] as const) {
    void describe(`${name} (${transport})`, () => {
      void test('context fields', async () => {
        const rt = await start(node, transport, 'context.handler');
        try {
          const deadlineMs = Date.now() + 60_000;
          const o = await rt.port.invoke({}, {
            requestId: 'ctx-req-1',
            deadlineMs,
            clientContext: '{"custom":{"k":"v"},"env":{"platform":"test"}}',
            cognitoIdentity: '{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}',
          });
          const ctx = json(o) as Record<string, unknown>;
          assert.equal(ctx.awsRequestId, 'ctx-req-1');
          assert.equal(ctx.invokedFunctionArn, FUNCTION_ARN);
          assert.equal(ctx.functionName, 'fn-test');
          assert.equal(ctx.functionVersion, '$LATEST');
          assert.equal(ctx.memoryLimitInMB, '128');
          assert.equal(ctx.logGroupName, '/aws/lambda/fn-test');
          assert.equal(ctx.logStreamName, '2025/01/01/[$LATEST]0123456789abcdef');
          assert.equal(typeof ctx.remaining, 'number');
          assert.ok((ctx.remaining as number) > 50_000 && (ctx.remaining as number) <= 60_000);
          assert.equal(ctx.callbackWaitsForEmptyEventLoop, true);
          assert.deepEqual(ctx.clientContext, { custom: { k: 'v' }, env: { platform: 'test' } });
          assert.deepEqual(ctx.identity, { cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' });
          assert.match(String(ctx.traceId), /^Root=1-/);
        } finally {
          await rt.stop();
        }
      });

      void test('callback handler waits for the empty event loop unless told not to', async () => {
        const [waited, immediate] = await run(node, transport, 'callback.handler', {}, { dontWait: true });
        assert.ok(waited && immediate);
        assert.deepEqual(json(waited), { timerFired: true });
        assert.deepEqual(json(immediate), { timerFired: false });
      });

      void test('callback(string) is an error of type "string"', async () => {
        const e = errorOf(await one(node, transport, 'callback-error.handler'));
        assert.equal(e.body.errorType, 'string');
        assert.equal(e.body.errorMessage, 'plain string failure');
        assert.equal(e.type, 'string');
      });

      void test('a sync handler return value is ignored, as in Lambda: the response is null', async () => {
        assert.equal(json(await one(node, transport, 'sync.handler')), null);
      });

      void test('context.succeed / done / fail', async () => {
        assert.deepEqual(json(await one(node, transport, 'context-methods.succeed')), { via: 'succeed' });
        assert.equal(json(await one(node, transport, 'context-methods.done')), 'via done');
        const e = errorOf(await one(node, transport, 'context-methods.fail'));
        assert.equal(e.body.errorMessage, 'failed via context');
      });

      void test('ESM: .mjs and .js under "type": "module"; .cjs; nested export path', async () => {
        assert.deepEqual(json(await one(node, transport, 'esm.handler', { a: 1 })), { kind: 'mjs', event: { a: 1 } });
        assert.deepEqual(json(await one(node, transport, 'esm-pkg/app.handler')), { kind: 'type-module', esm: true });
        assert.deepEqual(json(await one(node, transport, 'cjs-ext.handler')), { kind: 'cjs' });
        assert.deepEqual(json(await one(node, transport, 'nested.api.v1.handler')), { kind: 'nested' });
        assert.deepEqual(json(await one(node, transport, 'lib/deep/file.handler')), { kind: 'dir/file' });
      });

      void test('a throwing handler posts {errorType, errorMessage, trace} with the error type header', async () => {
        const rt = await start(node, transport, 'throws.handler');
        try {
          const e = errorOf(await rt.port.invoke({}));
          assert.equal(e.type, 'TypeError');
          assert.equal(e.body.errorType, 'TypeError');
          assert.equal(e.body.errorMessage, 'bad input');
          assert.ok(Array.isArray(e.body.trace));
          assert.equal(e.body.trace[0], 'TypeError: bad input');
          assert.match(e.body.trace[1] ?? '', /throws\.js/);
          // Still alive and serving.
          assert.equal(errorOf(await rt.port.invoke({})).type, 'TypeError');
          assert.match(await rt.proc.untilStdout(/Invoke Error/), /\tERROR\tInvoke Error \t\{"errorType":"TypeError","errorMessage":"bad input"/);
        } finally {
          await rt.stop();
        }
      });

      void test('a rejected promise from a plain function is an error', async () => {
        const e = errorOf(await one(node, transport, 'rejects.handler'));
        assert.equal(e.body.errorType, 'RangeError');
        assert.equal(e.body.errorMessage, 'out of range');
      });

      void test('an unhandled rejection fails the invocation and ends the process (128)', async () => {
        const rt = await start(node, transport, 'unhandled.handler');
        try {
          const e = errorOf(await rt.port.invoke({}));
          assert.equal(e.type, 'Runtime.UnhandledPromiseRejection');
          assert.equal(e.body.errorMessage, 'Error: lost');
          assert.equal((await rt.proc.exited).code, 128);
          assert.match(rt.proc.stdout(), /\tERROR\tUnhandled Promise Rejection \t\{"errorType":"Runtime.UnhandledPromiseRejection"/);
        } finally {
          await rt.stop();
        }
      });

      void test('an uncaught exception fails the invocation and ends the process (129)', async () => {
        const rt = await start(node, transport, 'uncaught.handler');
        try {
          const e = errorOf(await rt.port.invoke({}));
          assert.equal(e.type, 'Error');
          assert.equal(e.body.errorMessage, 'kaboom');
          assert.equal((await rt.proc.exited).code, 129);
        } finally {
          await rt.stop();
        }
      });

      void test('an async handler whose promise never settles fails with Runtime.NodeJsExit when the loop empties', async () => {
        const e = errorOf(await one(node, transport, 'never.handler'));
        assert.equal(e.type, 'Runtime.NodeJsExit');
      });

      void test('init errors: ImportModuleError, HandlerNotFound, MalformedHandlerName, UserCodeSyntaxError, thrown at load', async () => {
        const missing = await initFailure(node, 'missing.handler');
        assert.equal(missing.errorType, 'Runtime.ImportModuleError');
        assert.equal(missing.body.errorType, 'Runtime.ImportModuleError');
        assert.match(missing.body.errorMessage, /^Error: Cannot find module 'missing'/);
        assert.equal(missing.code, 129);
        assert.match(missing.stdout, /\tundefined\tERROR\tUncaught Exception \t\{"errorType":"Runtime.ImportModuleError"/);

        const dep = await initFailure(node, 'broken-dep.handler');
        assert.equal(dep.errorType, 'Runtime.ImportModuleError');
        assert.match(dep.body.errorMessage, /not-installed-anywhere/);

        const nope = await initFailure(node, 'index.nope');
        assert.equal(nope.errorType, 'Runtime.HandlerNotFound');
        assert.equal(nope.body.errorMessage, 'index.nope is undefined or not exported');

        const bad = await initFailure(node, 'index');
        assert.equal(bad.errorType, 'Runtime.MalformedHandlerName');
        assert.equal(bad.body.errorMessage, 'Bad handler');

        const syntax = await initFailure(node, 'syntax.handler');
        assert.equal(syntax.errorType, 'Runtime.UserCodeSyntaxError');

        const thrown = await initFailure(node, 'throws-on-load.handler');
        assert.equal(thrown.errorType, 'Error');
        assert.equal(thrown.body.errorMessage, 'init boom');
      });

      void test('console lines use Lambda\'s text format on stdout', async () => {
        const rt = await start(node, transport, 'console.handler');
        try {
          await rt.port.invoke({}, { requestId: 'log-req-1' });
          const lines = (await rt.proc.untilStdout(/multi\rline\n/)).split('\n');
          const iso = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
          const has = (re: string): void =>
            assert.ok(lines.some((l) => new RegExp(`^${iso}\\t${re}$`).test(l)), `no line matching ${re} in:\n${rt.proc.stdout()}`);
          has('undefined\\tINFO\\tinit log 42');
          has('log-req-1\\tINFO\\thello world');
          has('log-req-1\\tINFO\\tinfo');
          has('log-req-1\\tWARN\\twarn');
          has('log-req-1\\tERROR\\terror \\{ code: 7 \\}');
          has('log-req-1\\tDEBUG\\tdebug');
          has('log-req-1\\tTRACE\\ttrace');
          has('log-req-1\\tINFO\\tmulti\\rline');
        } finally {
          await rt.stop();
        }
      });

      void test('a 7 MB response fails with Function.ResponseSizeTooLarge and the runtime carries on', async () => {
        const [big, small] = await run(node, transport, 'big.handler', { big: true }, {});
        assert.ok(big && small);
        const e = errorOf(big);
        assert.equal(e.type, 'Function.ResponseSizeTooLarge');
        assert.equal(e.body.errorType, 'Function.ResponseSizeTooLarge');
        assert.equal(json(small), 'small');
      });
    });
  }

  void test('AWS_LAMBDA_LOG_FORMAT=JSON writes one JSON object per line', async () => {
    const rt = await start(NODES.node24, 'unix', 'console.handler', { AWS_LAMBDA_LOG_FORMAT: 'JSON' });
    try {
      await rt.port.invoke({}, { requestId: 'json-req' });
      const records = (await rt.proc.untilStdout(/multi\\nline/))
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { level: string; requestId?: string; message: unknown });
      assert.ok(records.some((r) => r.level === 'INFO' && r.requestId === 'json-req' && r.message === 'hello world'));
      assert.ok(records.some((r) => r.level === 'WARN' && r.message === 'warn'));
    } finally {
      await rt.stop();
    }
  });

  void test('the runtime reaches /next with nothing but the Lambda variables', async () => {
    const rt = await start(NODES.node24, 'tcp', 'index.handler');
    try {
      await waitFor(rt.port, 'next');
      assert.equal(rt.proc.stderr(), '');
    } finally {
      await rt.stop();
    }
  });
});
