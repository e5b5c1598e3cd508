import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetLayerVersionCommand } from '@aws-sdk/client-lambda';
import { startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { cliEnv, runThaw, type RunResult } from './run.js';

/** `thaw layer publish` and `thaw layer ls` against a real server. */
let s: RunningServer;
const thaw = (args: string[]): Promise<RunResult> => runThaw(args, cliEnv(s.url));

before(async () => {
  s = await startServer({ args: ['--driver', 'process'] });
});
after(async () => {
  await s.stop();
});

test('layer publish from a folder and from a zip, then layer ls', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'thaw-cli-layer-'));
  mkdirSync(join(dir, 'lib', 'nodejs', 'node_modules', 'util2'), { recursive: true });
  writeFileSync(join(dir, 'lib', 'nodejs', 'node_modules', 'util2', 'index.js'), 'module.exports = 2;');
  const a = await thaw(['layer', 'publish', 'utils', join(dir, 'lib'), '--description', 'helpers', '--runtime', 'nodejs24.x']);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, 'arn:aws:lambda:us-east-1:000000000000:layer:utils:1\n');
  const v1 = await s.client.send(new GetLayerVersionCommand({ LayerName: 'utils', VersionNumber: 1 }));
  assert.equal(v1.Description, 'helpers');
  assert.deepEqual(v1.CompatibleRuntimes, ['nodejs24.x']);

  const zipPath = join(dir, 'lib.zip');
  writeFileSync(zipPath, await zipFiles({ 'python/x.py': 'X = 1\n' }));
  const b = await thaw(['layer', 'publish', 'utils', zipPath, '--json']);
  assert.equal(b.code, 0, b.stderr);
  assert.equal((JSON.parse(b.stdout) as { Version: number }).Version, 2);

  const ls = await thaw(['layer', 'ls']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /^NAME\s+VERSION\s+RUNTIMES\s+CREATED\s+DESCRIPTION\n/);
  assert.match(ls.stdout, /\nutils\s+2\s+-\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+-\n$/);
  const json = JSON.parse((await thaw(['layer', 'ls', '--json'])).stdout) as { Layers: { LayerName: string }[] };
  assert.deepEqual(json.Layers.map((l) => l.LayerName), ['utils']);

  const missing = await thaw(['layer', 'publish', 'utils', join(dir, 'nope')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^thaw: .*nope does not exist\n$/);
  const bad = await thaw(['layer', 'publish', 'bad name', join(dir, 'lib')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^thaw: ValidationException: /);
});
