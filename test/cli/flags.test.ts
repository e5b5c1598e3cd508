import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from 'commander';
import { connection } from '../../src/cli/client.js';
import { ApiError, CliError, describeError, networkCode } from '../../src/cli/errors.js';
import { durationOption, functionNameFrom, keyValue, sinceOption, versionWeight } from '../../src/cli/flags.js';
import { formatBytes, table } from '../../src/cli/output.js';

void test('--since takes durations back from now and ISO times', () => {
  const since = sinceOption(() => 1_000_000_000);
  assert.equal(since('30s'), 1_000_000_000 - 30_000);
  assert.equal(since('10m'), 1_000_000_000 - 600_000);
  assert.equal(since('2h'), 1_000_000_000 - 7_200_000);
  assert.equal(since('1d'), 1_000_000_000 - 86_400_000);
  assert.equal(since('2025-01-31T12:00:00Z'), Date.UTC(2025, 0, 31, 12));
  for (const bad of ['', '10', '10y', 'yesterday', '-5m']) assert.throws(() => since(bad), InvalidArgumentError, bad);
});

void test('--env and --weight collect repeated values', () => {
  assert.deepEqual(keyValue('B=x=y', keyValue('A=1', undefined)), { A: '1', B: 'x=y' });
  assert.deepEqual(keyValue('A=', undefined), { A: '' });
  assert.throws(() => keyValue('=1', undefined), InvalidArgumentError);
  assert.throws(() => keyValue('A', undefined), InvalidArgumentError);
  assert.deepEqual(versionWeight('3=0.25', versionWeight('2=.1', undefined)), { '2': 0.1, '3': 0.25 });
  for (const bad of ['2', '2=', 'x=0.1', '2=1.5', '2=-0.1']) assert.throws(() => versionWeight(bad, undefined), InvalidArgumentError, bad);
});

void test('function names from folder and zip names', () => {
  assert.equal(functionNameFrom('hello'), 'hello');
  assert.equal(functionNameFrom('my hello.fn'), 'my-hello-fn');
  assert.equal(functionNameFrom('api_v2.zip'), 'api_v2');
  assert.equal(functionNameFrom('.hidden'), 'hidden');
  assert.equal(functionNameFrom('...'), '');
  assert.equal(functionNameFrom('x'.repeat(80)).length, 64);
});

void test('endpoint and credentials: flag, then THAW_, then AWS_', () => {
  const both = { THAW_ACCESS_KEY_ID: 'T', THAW_SECRET_ACCESS_KEY: 'TS', AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'AS' };
  assert.deepEqual(connection({}, both), { endpoint: 'http://127.0.0.1:9000', credentials: { accessKeyId: 'T', secretAccessKey: 'TS' } });
  assert.equal(connection({}, { ...both, THAW_ENDPOINT: 'http://h:1/' }).endpoint, 'http://h:1');
  assert.equal(connection({ endpoint: 'https://x.example' }, { ...both, THAW_ENDPOINT: 'http://h:1' }).endpoint, 'https://x.example');
  assert.deepEqual(connection({}, { AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'AS' }).credentials, { accessKeyId: 'A', secretAccessKey: 'AS' });
  assert.throws(() => connection({}, {}), (e: unknown) => e instanceof CliError && /^no credentials/.test(e.message));
  assert.throws(() => connection({}, { THAW_ACCESS_KEY_ID: 'T' }), /THAW_SECRET_ACCESS_KEY is not set/);
  assert.throws(() => connection({ endpoint: 'localhost:9000' }, both), /must be an http/);
  assert.throws(() => connection({ endpoint: 'not a url' }, both), /is not a URL/);
});

void test('errors become one line', () => {
  assert.equal(describeError(new ApiError('ResourceNotFoundException', 'Function not found: x', 404)), 'ResourceNotFoundException: Function not found: x');
  const sdk = Object.assign(new Error('Function not found: y'), { name: 'ResourceNotFoundException', $fault: 'client', $metadata: {} });
  assert.equal(describeError(sdk), 'ResourceNotFoundException: Function not found: y');
  assert.equal(describeError(new Error('first\n  second\n')), 'first second');
  assert.equal(describeError('text'), 'text');
  const refused = new TypeError('fetch failed', { cause: new AggregateError([Object.assign(new Error('connect'), { code: 'ECONNREFUSED' })]) });
  assert.equal(networkCode(refused), 'ECONNREFUSED');
  assert.equal(networkCode(new Error('x')), undefined);
});

void test('tables and sizes', () => {
  assert.equal(table(['A', 'BB'], [['xxx', 'y'], ['z', '']]), 'A    BB\nxxx  y\nz\n');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(20 * 1024 * 1024), '20.0 MiB');
});

void test('--keep-alive takes seconds or a duration', () => {
  const d = durationOption(1, 86400);
  assert.equal(d('300'), 300);
  assert.equal(d('90s'), 90);
  assert.equal(d('10m'), 600);
  assert.equal(d('2h'), 7200);
  assert.equal(d('1d'), 86400);
  for (const bad of ['', '0', '2d', '1.5m', '-5', 'five', '10y']) assert.throws(() => d(bad), InvalidArgumentError, bad);
});
