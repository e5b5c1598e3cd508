import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CreateFunctionCommand, InvokeCommand } from '@aws-sdk/client-lambda';
import { ROLE, decode, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

/**
 * Finding 10 of issue 10: a runtime that posts its response and never asks for the next event kept its
 * environment busy forever (the timeout was cleared by the response), so a few such invocations took every
 * environment of the worker. The timeout now holds until the runtime's next /next.
 */

/** A custom runtime that answers, then (for "hang") never calls /next again. */
const BOOTSTRAP = `#!/bin/sh
set -eu
ENV_ID=$(cat /proc/sys/kernel/random/uuid)
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  ID=$(grep -i Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -X POST -d "{\\"env\\":\\"$ENV_ID\\"}" "$API/invocation/$ID/response" >/dev/null
  case "$EVENT" in
    *hang*) echo "answered; not asking for more"; exec sleep 100000 ;;
  esac
done
`;

describe('the function timeout holds until the runtime asks for the next event', () => {
  let s: RunningServer;

  before(async () => {
    // Three environments in all: three runtimes that hang after answering used to take the whole worker.
    s = await startServer({ args: ['--max-environments', '3', '--no-stem-cells'] });
    for (const name of ['hanger', 'victim']) {
      await s.client.send(new CreateFunctionCommand({
        FunctionName: name, Runtime: 'provided.al2023', Role: ROLE, Handler: 'x', Timeout: 2,
        Code: { ZipFile: await zipFiles({ 'bootstrap*': BOOTSTRAP }) },
      }));
    }
  });
  after(async () => {
    await s.stop();
  });

  test('answered invocations whose runtime never calls /next stop their environments at the timeout; others keep running', async () => {
    // Each caller gets the posted answer at once, long before the timeout.
    const t0 = Date.now();
    const answers = await Promise.all([1, 2, 3].map(() => s.client.send(new InvokeCommand({ FunctionName: 'hanger', Payload: Buffer.from('{"hang":true}') }))));
    assert.ok(Date.now() - t0 < 10_000);
    const envs = new Set<string>();
    for (const a of answers) {
      assert.equal(a.FunctionError, undefined);
      envs.add((decode(a.Payload) as { env: string }).env);
    }
    assert.equal(envs.size, 3, 'three environments, each held by a runtime that stopped asking');

    // The worker is full of them. Before, the victim waited for room and got TooManyRequests; now their
    // environments are stopped when their timeout (2 s) passes and the victim gets one.
    const v = await s.client.send(new InvokeCommand({ FunctionName: 'victim', Payload: Buffer.from('{}') }));
    assert.equal(v.FunctionError, undefined);
    assert.equal(v.StatusCode, 200);

    // None of the hung environments is used again.
    const again = await s.client.send(new InvokeCommand({ FunctionName: 'hanger', Payload: Buffer.from('{}') }));
    assert.ok(!envs.has((decode(again.Payload) as { env: string }).env), 'an environment past its timeout served again');
  });

  test('with LogType Tail: the answer stands, the log says the task timed out, REPORT Status: timeout', async () => {
    const t0 = Date.now();
    const r = await s.client.send(new InvokeCommand({ FunctionName: 'hanger', Payload: Buffer.from('{"hang":true}'), LogType: 'Tail' }));
    const took = Date.now() - t0;
    assert.equal(r.FunctionError, undefined, 'the runtime answered before the timeout: its answer is the result');
    assert.ok((decode(r.Payload) as { env?: string }).env !== undefined);
    const log = Buffer.from(r.LogResult ?? '', 'base64').toString();
    assert.match(log, /Task timed out after 2\.00 seconds/);
    assert.match(log, /^REPORT .*Status: timeout/m);
    // Before, this request never came back: the invocation was never complete.
    assert.ok(took >= 1_900 && took < 30_000, `answered after ${took} ms`);
  });
});
