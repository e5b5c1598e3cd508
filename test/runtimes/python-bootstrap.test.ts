import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import {
  FUNCTION_ARN,
  PYTHON,
  PYTHON_BOOTSTRAP,
  TestPort,
  json,
  lambdaEnv,
  spawnRuntime,
  writeFiles,
  type Outcome,
  type RuntimeProcess,
} from './helpers.js';

const FIXTURES: Record<string, string> = {
  'ok.py': `import logging
count = 0
print("loading ok")

def handler(event, context):
    global count
    count += 1
    print("printed", event)
    logging.getLogger().warning("warned %s", 1)
    return {"kind": "py", "event": event, "count": count}
`,
  'err.py': `def handler(event, context):
    raise ValueError("bad value")
`,
  'ctx.py': `def handler(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": context.client_context.custom,
        "cognito_identity_id": context.identity.cognito_identity_id,
        "cognito_identity_pool_id": context.identity.cognito_identity_pool_id,
    }
`,
  'pkg/__init__.py': '',
  'pkg/mod.py': `def handler(event, context):
    return "pkg.mod"
`,
};

void describe('python bootstrap', () => {
  let server: RuntimeApiServer;
  let dir: string;
  let taskRoot: string;
  let n = 0;

  before(async () => {
    server = new RuntimeApiServer();
    dir = await mkdtemp(path.join(tmpdir(), 'thaw-py-rt-'));
    taskRoot = path.join(dir, 'task');
    await writeFiles(taskRoot, FIXTURES);
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(handler: string, transport: 'tcp' | 'unix'): Promise<{ port: TestPort; proc: RuntimeProcess; stop(): Promise<void> }> {
    const port = new TestPort();
    const id = `py-${++n}`;
    const socketPath = path.join(dir, `${id}.sock`);
    const { address } = await server.attach(id, port, transport === 'tcp' ? { transport } : { transport, socketPath });
    const argv = transport === 'tcp' ? [PYTHON, PYTHON_BOOTSTRAP] : [PYTHON, PYTHON_BOOTSTRAP, '--runtime-api-socket', socketPath];
    const proc = spawnRuntime(argv, lambdaEnv(handler, taskRoot, transport === 'tcp' ? address : undefined), taskRoot);
    return {
      port,
      proc,
      async stop() {
        await proc.stop();
        await server.detach(id);
      },
    };
  }

  for (const transport of ['tcp', 'unix'] as const) {
    void test(`ok handler over ${transport}: result, warm module state, print and logging on stdout`, async () => {
      const rt = await start('ok.handler', transport);
      try {
        const a = await rt.port.invoke({ n: 1 }, { requestId: 'py-req-1' });
        const b = await rt.port.invoke({ n: 2 }, { requestId: 'py-req-2' });
        assert.deepEqual(json(a), { kind: 'py', event: { n: 1 }, count: 1 });
        assert.deepEqual(json(b), { kind: 'py', event: { n: 2 }, count: 2 });
        const out = await rt.proc.untilStdout(/py-req-2\twarned 1$/m);
        assert.match(out, /^loading ok$/m);
        assert.match(out, /^printed \{'n': 1\}$/m);
        assert.match(out, /^\[WARNING\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tpy-req-1\twarned 1$/m);
      } finally {
        await rt.stop();
      }
    });
  }

  void test('an exception posts {errorMessage, errorType, requestId, stackTrace} and is logged', async () => {
    const rt = await start('err.handler', 'unix');
    try {
      const o: Outcome = await rt.port.invoke({}, { requestId: 'py-err-1' });
      assert.equal(o.kind, 'error');
      assert.equal(o.kind === 'error' && o.report.errorType, 'ValueError');
      const body = json(o) as { errorMessage: string; errorType: string; requestId: string; stackTrace: string[] };
      assert.equal(body.errorMessage, 'bad value');
      assert.equal(body.errorType, 'ValueError');
      assert.equal(body.requestId, 'py-err-1');
      assert.equal(body.stackTrace.length, 1);
      assert.match(body.stackTrace[0] ?? '', /err\.py", line 2, in handler/);
      assert.match(await rt.proc.untilStdout(/^\[ERROR\]/m), /^\[ERROR\] ValueError: bad value\rTraceback \(most recent call last\):\r/m);
      // Still serving.
      assert.equal((await rt.port.invoke({})).kind, 'error');
    } finally {
      await rt.stop();
    }
  });

  void test('context object', async () => {
    const rt = await start('ctx.handler', 'tcp');
    try {
      const o = await rt.port.invoke({}, {
        requestId: 'py-ctx-1',
        deadlineMs: Date.now() + 60_000,
        clientContext: '{"custom":{"k":"v"}}',
        cognitoIdentity: '{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}',
      });
      const ctx = json(o) as Record<string, unknown>;
      assert.equal(ctx.aws_request_id, 'py-ctx-1');
      assert.equal(ctx.function_name, 'fn-test');
      assert.equal(ctx.function_version, '$LATEST');
      assert.equal(ctx.invoked_function_arn, FUNCTION_ARN);
      assert.equal(ctx.memory_limit_in_mb, '128');
      assert.equal(ctx.log_group_name, '/aws/lambda/fn-test');
      assert.equal(ctx.log_stream_name, '2025/01/01/[$LATEST]0123456789abcdef');
      assert.ok((ctx.remaining as number) > 50_000 && (ctx.remaining as number) <= 60_000);
      assert.deepEqual(ctx.custom, { k: 'v' });
      assert.equal(ctx.cognito_identity_id, 'id-1');
      assert.equal(ctx.cognito_identity_pool_id, 'pool-1');
    } finally {
      await rt.stop();
    }
  });

  void test('dotted and slashed package handlers', async () => {
    for (const handler of ['pkg.mod.handler', 'pkg/mod.handler']) {
      const rt = await start(handler, 'unix');
      try {
        assert.equal(json(await rt.port.invoke({})), 'pkg.mod');
      } finally {
        await rt.stop();
      }
    }
  });

  void test('init errors: HandlerNotFound, ImportModuleError, MalformedHandlerName; the process exits 1', async () => {
    const cases = [
      ['ok.nope', 'Runtime.HandlerNotFound', "Handler 'nope' missing on module 'ok'"],
      ['nomod.handler', 'Runtime.ImportModuleError', "Unable to import module 'nomod': No module named 'nomod'"],
      ['nodot', 'Runtime.MalformedHandlerName', "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"],
    ] as const;
    for (const [handler, type, message] of cases) {
      const rt = await start(handler, 'unix');
      try {
        const { code } = await rt.proc.exited;
        assert.equal(code, 1);
        const report = rt.port.initErrors[0];
        assert.ok(report, rt.proc.stderr());
        assert.equal(report.errorType, type);
        assert.deepEqual(JSON.parse(report.body.toString()), { errorMessage: message, errorType: type, requestId: '', stackTrace: [] });
        assert.match(rt.proc.stdout(), new RegExp(`^\\[ERROR\\] ${type.replace('.', '\\.')}: `, 'm'));
      } finally {
        await rt.stop();
      }
    }
  });
});
