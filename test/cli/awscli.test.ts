/**
 * The AWS CLI against Thaw: the compatibility users are promised. Uses Debian's awscli (/usr/bin/aws) when it
 * is there, since an `aws` earlier on PATH may be a shim of another version; skipped when there is none.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { sha256Base64 } from '../../src/control/package.js';
import { CREDS, ROLE, startServer, zipFiles, type RunningServer } from '../helpers/server.js';

function findAws(): string | undefined {
  const candidates = ['/usr/bin/aws', ...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== '').map((d) => join(d, 'aws'))];
  return candidates.find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const AWS = findAws();

interface AwsResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe('aws CLI against Thaw', { skip: AWS === undefined ? 'no aws CLI installed' : false }, () => {
  let s: RunningServer;
  let home: string;
  let aws: (...args: string[]) => Promise<AwsResult>;

  before(async () => {
    s = await startServer();
    home = mkdtempSync(join(tmpdir(), 'thaw-awscli-'));
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_PAGER: '',
    };
    aws = (...args) =>
      new Promise((resolve) => {
        execFile(AWS as string, ['--endpoint-url', s.url, '--output', 'json', ...args], { env, cwd: home }, (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
          resolve({ code, stdout, stderr });
        });
      });
  });
  after(async () => {
    await s.stop();
    rmSync(home, { recursive: true, force: true });
  });

  const okJson = (r: AwsResult): Record<string, unknown> => {
    assert.equal(r.code, 0, `aws exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  test('create-function, invoke, list-functions, delete-function', async () => {
    const zip = await zipFiles({ 'index.js': 'exports.handler = async (event) => { console.log("aws says", event.name); return { hello: event.name ?? "world" }; };' });
    const zipPath = join(home, 'hello.zip');
    writeFileSync(zipPath, zip);

    const created = okJson(await aws('lambda', 'create-function', '--function-name', 'awscli-hello', '--runtime', 'nodejs24.x',
      '--handler', 'index.handler', '--role', ROLE, '--zip-file', `fileb://${zipPath}`, '--memory-size', '256'));
    assert.equal(created.FunctionName, 'awscli-hello');
    assert.equal(created.State, 'Active');
    assert.equal(created.MemorySize, 256);
    assert.equal(created.CodeSha256, sha256Base64(zip));

    const outFile = join(home, 'out.json');
    const inv = okJson(await aws('lambda', 'invoke', '--function-name', 'awscli-hello', '--cli-binary-format', 'raw-in-base64-out',
      '--payload', '{"name":"aws"}', '--log-type', 'Tail', outFile));
    assert.equal(inv.StatusCode, 200);
    assert.equal(inv.ExecutedVersion, '$LATEST');
    assert.equal(inv.FunctionError, undefined);
    assert.deepEqual(JSON.parse(readFileSync(outFile, 'utf8')), { hello: 'aws' });
    const log = Buffer.from(inv.LogResult as string, 'base64').toString('utf8');
    assert.match(log, /^START RequestId: /m);
    assert.match(log, /INFO\taws says aws/);
    assert.match(log, /^REPORT RequestId: /m);

    const listed = okJson(await aws('lambda', 'list-functions')).Functions as { FunctionName: string; Runtime: string }[];
    assert.deepEqual(listed.map((f) => [f.FunctionName, f.Runtime]), [['awscli-hello', 'nodejs24.x']]);

    const del = await aws('lambda', 'delete-function', '--function-name', 'awscli-hello');
    assert.equal(del.code, 0, del.stderr);
    const gone = await aws('lambda', 'get-function', '--function-name', 'awscli-hello');
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /ResourceNotFoundException/);
  });
});
