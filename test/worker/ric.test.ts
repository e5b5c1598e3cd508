import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateFunctionCommand, InvokeCommand } from '@aws-sdk/client-lambda';
import { zipDirectory } from '../../src/control/package.js';
import { ROLE, ROOT, decode, startServer, type RunningServer } from '../helpers/server.js';

/**
 * Runtime API conformance with AWS's own Node runtime interface client (npm aws-lambda-ric, native addon
 * built at install time), started through AWS_LAMBDA_EXEC_WRAPPER exactly as one would on Lambda.
 */
let s: RunningServer;
const ric = join(ROOT, 'node_modules', 'aws-lambda-ric');

before(async () => {
  s = await startServer();
});
after(async () => {
  await s.stop();
});

test('aws-lambda-ric serves invocations, errors and context through Thaw\'s Runtime API', async () => {
  assert.ok(existsSync(join(ric, 'rapid-client.node')), 'aws-lambda-ric must be installed with its native addon (npm ci runs its install scripts)');
  const dir = mkdtempSync(join(tmpdir(), 'thaw-ric-'));
  try {
    cpSync(ric, join(dir, 'node_modules', 'aws-lambda-ric'), { recursive: true, filter: (p) => !p.includes(`${ric}/deps`) && !p.includes(`${ric}/node_modules`) });
    cpSync(join(ROOT, 'node_modules', '@aws', 'lambda-invoke-store'), join(dir, 'node_modules', '@aws', 'lambda-invoke-store'), { recursive: true });
    writeFileSync(join(dir, 'index.mjs'), `export const handler = async (event, context) => {
      if (event.fail) throw new TypeError('ric failure');
      return { via: 'aws-lambda-ric', event, requestId: context.awsRequestId, fn: context.functionName, left: context.getRemainingTimeInMillis() > 0 };
    };`);
    writeFileSync(join(dir, 'ric.sh'), '#!/bin/sh\nexec /var/lang/bin/node /var/task/node_modules/aws-lambda-ric/index.mjs "$_HANDLER"\n');
    chmodSync(join(dir, 'ric.sh'), 0o755);
    const zip = await zipDirectory(dir);
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'ric', Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler', Code: { ZipFile: zip },
      Environment: { Variables: { AWS_LAMBDA_EXEC_WRAPPER: '/var/task/ric.sh' } },
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const r = await s.client.send(new InvokeCommand({ FunctionName: 'ric', Payload: Buffer.from('{"x":1}') }));
  const body = decode(r.Payload) as Record<string, unknown>;
  assert.equal(r.FunctionError, undefined, JSON.stringify(body));
  assert.equal(body.via, 'aws-lambda-ric');
  assert.deepEqual(body.event, { x: 1 });
  assert.equal(body.fn, 'ric');
  assert.equal(body.left, true);
  assert.match(String(body.requestId), /^[0-9a-f-]{36}$/);
  const f = await s.client.send(new InvokeCommand({ FunctionName: 'ric', Payload: Buffer.from('{"fail":true}') }));
  assert.equal(f.FunctionError, 'Unhandled');
  const err = decode(f.Payload) as { errorType: string; errorMessage: string };
  assert.equal(err.errorType, 'TypeError');
  assert.equal(err.errorMessage, 'ric failure');
  const again = await s.client.send(new InvokeCommand({ FunctionName: 'ric', Payload: Buffer.from('{"y":2}') }));
  assert.deepEqual((decode(again.Payload) as { event: unknown }).event, { y: 2 });
});
