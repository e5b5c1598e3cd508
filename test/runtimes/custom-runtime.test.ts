import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RuntimeApiServer } from '../../src/sandbox/runtime-api.js';
import { TestPort, json, lambdaEnv, spawnRuntime, writeFiles } from './helpers.js';

/** A provided.al2-style custom runtime: a shell script and curl against AWS_LAMBDA_RUNTIME_API. */
const BOOTSTRAP = `#!/bin/sh
set -eu
API="http://\${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$HEADERS" | cut -d' ' -f2 | tr -d '\\r')
  case "$EVENT" in
    *fail*)
      curl -sS -o /dev/null -X POST -H 'Lambda-Runtime-Function-Error-Type: Custom.Failure' \\
        -d '{"errorMessage":"asked to fail","errorType":"Custom.Failure"}' "$API/invocation/$ID/error" ;;
    *bogus*)
      CODE=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "$API/invocation/not-$ID/response")
      curl -sS -o /dev/null -X POST -d "{\\"bogusStatus\\":$CODE}" "$API/invocation/$ID/response" ;;
    *)
      curl -sS -o /dev/null -X POST -d "{\\"echo\\":$EVENT,\\"id\\":\\"$ID\\"}" "$API/invocation/$ID/response" ;;
  esac
done
`;

void describe('custom runtime (curl) conformance', () => {
  let server: RuntimeApiServer;
  let dir: string;

  before(async () => {
    server = new RuntimeApiServer();
    dir = await mkdtemp(path.join(tmpdir(), 'thaw-custom-rt-'));
    await writeFiles(dir, { 'task/bootstrap': BOOTSTRAP });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('next → response, next → error, and a post for another id is 400', async () => {
    const port = new TestPort();
    const { address } = await server.attach('custom-1', port, { transport: 'tcp' });
    const taskRoot = path.join(dir, 'task');
    const proc = spawnRuntime([path.join(taskRoot, 'bootstrap')], lambdaEnv('unused.handler', taskRoot, address), taskRoot);
    try {
      const ok = await port.invoke({ hello: 'curl' }, { requestId: 'curl-1' });
      assert.deepEqual(json(ok), { echo: { hello: 'curl' }, id: 'curl-1' });

      const failed = await port.invoke({ please: 'fail' }, { requestId: 'curl-2' });
      assert.equal(failed.kind, 'error');
      assert.equal(failed.kind === 'error' && failed.report.errorType, 'Custom.Failure');
      assert.deepEqual(json(failed), { errorMessage: 'asked to fail', errorType: 'Custom.Failure' });

      const bogus = await port.invoke({ try: 'bogus' }, { requestId: 'curl-3' });
      assert.deepEqual(json(bogus), { bogusStatus: 400 });
      assert.equal(proc.stderr(), '');
    } finally {
      await proc.stop();
      await server.detach('custom-1');
    }
  });
});
