import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Base64, zipDirectory } from '../../src/control/package.js';
import { startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { cliEnv, runThaw, spawnThaw, type RunResult } from './run.js';

const handler = (tag: string): string => `
exports.handler = async (event, context) => {
  console.log('event', JSON.stringify(event));
  if (event && event.lines) console.log('first line\\nsecond line');
  if (event && event.fail) throw new Error('asked to fail');
  return { tag: '${tag}', event, version: context.functionVersion, greeting: process.env.GREETING ?? null };
};`;

/** A successful run: exit code 0, and stdout parsed as JSON. */
function okJson(r: RunResult): Record<string, unknown> {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

function ok(r: RunResult): string {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** A failed run: non-zero exit, exactly one `thaw: ...` line on stderr, no stack trace. */
function failsWith(r: RunResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0: ${r.stdout}`);
  assert.match(r.stderr, /^thaw: [^\n]+\n$/, `stderr is not one thaw: line: ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

describe('thaw CLI against a real server', () => {
  let s: RunningServer;
  let work: string;
  let fnDir: string;
  let env: Record<string, string>;
  const thaw = (args: string[], input?: string): Promise<RunResult> => runThaw(args, env, input);

  before(async () => {
    s = await startServer();
    env = cliEnv(s.url);
    work = mkdtempSync(join(tmpdir(), 'thaw-cli-test-'));
    // A folder name that is not a valid function name: deploy makes one from it.
    fnDir = join(work, 'cli hello');
    mkdirSync(fnDir);
    writeFileSync(join(fnDir, 'index.js'), handler('v1'));
  });
  after(async () => {
    await s.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('deploy a folder creates the function, named after the folder', async () => {
    const out = ok(await thaw(['deploy', fnDir]));
    assert.match(out, /^created cli-hello$/m);
    assert.match(out, /^ {2}version {2}\$LATEST$/m);
    // Packaging is deterministic, so the CodeSha256 is the one of zipping the folder here.
    assert.match(out, new RegExp(`^ {2}sha256 {3}${sha256Base64(await zipDirectory(fnDir)).replace(/[+/]/g, '\\$&')}$`, 'm'));
    assert.match(out, /^ {2}size {5}\d+ B \(\d+ bytes\)$/m);
    assert.match(out, /^ {2}state {4}Active$/m);
  });

  test('invoke with the payload as an argument, from a file and from stdin', async () => {
    const arg = okJson(await thaw(['invoke', 'cli-hello', '{"name":"arg"}']));
    assert.deepEqual(arg, { tag: 'v1', event: { name: 'arg' }, version: '$LATEST', greeting: null });

    const file = join(work, 'event.json');
    writeFileSync(file, '{"name":"file"}');
    assert.deepEqual(okJson(await thaw(['invoke', 'cli-hello', '--file', file])).event, { name: 'file' });
    assert.deepEqual(okJson(await thaw(['invoke', 'cli-hello', '-'], '{"name":"stdin"}')).event, { name: 'stdin' });
    assert.deepEqual(okJson(await thaw(['invoke', 'cli-hello', '--file', '-'], '{"name":"stdin2"}')).event, { name: 'stdin2' });
  });

  test('invoke --tail prints the log tail on stderr, the payload on stdout', async () => {
    const r = await thaw(['invoke', 'cli-hello', '{"name":"tail"}', '--tail']);
    assert.deepEqual(okJson(r).event, { name: 'tail' });
    assert.match(r.stderr, /^START RequestId: \S+ Version: \$LATEST$/m);
    assert.match(r.stderr, /INFO\tevent \{"name":"tail"\}/);
    assert.match(r.stderr, /^REPORT RequestId: \S+\tDuration: /m);
  });

  test('invoke --json gives one document with status, version and the parsed payload', async () => {
    const j = okJson(await thaw(['invoke', 'cli-hello', '{"name":"json"}', '--json']));
    assert.equal(j.StatusCode, 200);
    assert.equal(j.ExecutedVersion, '$LATEST');
    assert.equal(typeof j.RequestId, 'string');
    assert.deepEqual((j.Payload as { event: unknown }).event, { name: 'json' });
  });

  test('a function error prints its payload and exits 1', async () => {
    const r = await thaw(['invoke', 'cli-hello', '{"fail":true}']);
    assert.equal(r.code, 1);
    const payload = JSON.parse(r.stdout) as { errorType: string; errorMessage: string };
    assert.equal(payload.errorMessage, 'asked to fail');
    assert.equal(r.stderr, 'thaw: the function returned an error (Unhandled)\n');
  });

  test('deploy again updates the code, and the configuration when flags are given', async () => {
    writeFileSync(join(fnDir, 'index.js'), handler('v2'));
    const c = okJson(await thaw(['deploy', fnDir, '--memory', '256', '--env', 'GREETING=hi', '--description', 'second', '--json']));
    assert.equal(c.FunctionName, 'cli-hello');
    assert.equal(c.Version, '$LATEST');
    assert.equal(c.MemorySize, 256);
    assert.equal(c.Description, 'second');
    assert.equal(c.CodeSha256, sha256Base64(await zipDirectory(fnDir)));
    const out = okJson(await thaw(['invoke', 'cli-hello', '{}']));
    assert.equal(out.tag, 'v2');
    assert.equal(out.greeting, 'hi');
  });

  test('publish prints the new version; alias create, update with weights, list', async () => {
    assert.equal(ok(await thaw(['publish', 'cli-hello', '--description', 'first release'])), '1\n');
    assert.match(ok(await thaw(['alias', 'cli-hello', 'live', '1'])), /^cli-hello:live -> 1$/m);

    writeFileSync(join(fnDir, 'index.js'), handler('v3'));
    const v2 = okJson(await thaw(['deploy', fnDir, '--publish', '--json']));
    assert.equal(v2.Version, '2');

    assert.match(ok(await thaw(['alias', 'cli-hello', 'live', '1', '--weight', '2=0.5'])), /^cli-hello:live -> 1 \(50%\), 2 \(50%\)$/m);
    const listed = okJson(await thaw(['alias', 'cli-hello', '--list', '--json'])).Aliases as { Name: string; FunctionVersion: string; RoutingConfig?: unknown }[];
    assert.equal(listed.length, 1);
    assert.deepEqual(listed[0]?.RoutingConfig, { AdditionalVersionWeights: { '2': 0.5 } });

    // Pointing it again without --weight leaves no routing behind.
    ok(await thaw(['alias', 'cli-hello', 'live', '2']));
    const table = ok(await thaw(['alias', 'cli-hello', '--list']));
    assert.match(table, /^ALIAS\s+VERSION\s+ROUTING\s+DESCRIPTION$/m);
    assert.match(table, /^live\s+2\s+2\s+-$/m);
  });

  test('invoke NAME:alias runs the version the alias points to', async () => {
    const j = okJson(await thaw(['invoke', 'cli-hello:live', '{"via":"alias"}', '--json']));
    assert.equal(j.ExecutedVersion, '2');
    assert.deepEqual(j.Payload, { tag: 'v3', event: { via: 'alias' }, version: '2', greeting: 'hi' });
    assert.equal(okJson(await thaw(['invoke', 'cli-hello', '--qualifier', '1', '{}'])).tag, 'v2');
  });

  test('logs: human lines and --json lines', async () => {
    ok(await thaw(['invoke', 'cli-hello', '{"lines":true}']));
    const human = ok(await thaw(['logs', 'cli-hello', '--limit', '50']));
    assert.match(human, /\tINFO\tfirst line\n {4}second line\n/);
    const lines = human.trimEnd().split('\n');
    const starts = lines.filter((l) => !l.startsWith(' ')).length;
    assert.ok(starts > 0 && starts <= 50, `${starts} log lines`);
    // Each line starts with its time and request id; a message's own line breaks become indented lines.
    for (const l of lines) assert.match(l, /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ | {4})/);
    assert.ok(lines.some((l) => /^\S+ [0-9a-f-]{36} REPORT RequestId: /.test(l)), lines.join('\n'));

    const json = ok(await thaw(['logs', 'cli-hello', '--json', '--since', '1d'])).trimEnd().split('\n');
    assert.ok(json.length > 0);
    for (const l of json) {
      const e = JSON.parse(l) as { timestamp: unknown; requestId: unknown; message: unknown; seq: unknown; version: unknown };
      assert.equal(typeof e.timestamp, 'string');
      assert.equal(new Date(e.timestamp as string).toISOString(), e.timestamp);
      assert.ok(e.requestId === null || typeof e.requestId === 'string');
      assert.equal(typeof e.message, 'string');
      assert.equal(typeof e.seq, 'number');
      assert.equal(typeof e.version, 'string');
    }
    assert.ok(json.some((l) => l.includes('{\\"name\\":\\"arg\\"}')), 'the first invocation is in the log');
    assert.ok(json.some((l) => (JSON.parse(l) as { message: string }).message.endsWith('\tINFO\tfirst line\rsecond line')), 'messages are as stored');
  });

  test('logs --follow prints lines of a new invocation until interrupted', async () => {
    const child = spawnThaw(['logs', 'cli-hello', '--follow', '--json', '--limit', '5'], env);
    let out = '';
    let err = '';
    let waiting: (() => void) | undefined;
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      waiting?.();
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const waitFor = (re: RegExp): Promise<void> =>
      new Promise((resolve, reject) => {
        waiting = () => {
          if (re.test(out)) {
            waiting = undefined;
            resolve();
          }
        };
        void exited.then((code) => reject(new Error(`logs --follow exited with ${code}: ${err}`)));
        waiting();
      });
    // The first page arrives once the follower is up; only then is the invocation "new".
    await waitFor(/\n/);
    const marker = `follow-${Date.now()}`;
    ok(await thaw(['invoke', 'cli-hello', JSON.stringify({ marker })]));
    await waitFor(new RegExp(`${marker}[\\s\\S]*REPORT RequestId`));
    child.kill('SIGINT');
    assert.equal(await exited, 0, err);
    const events = out.trimEnd().split('\n').map((l) => JSON.parse(l) as { message: string; seq: number });
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'lines come in order');
    assert.equal(new Set(seqs).size, seqs.length, 'no line twice');
  });

  test('drain stops idle environments, so the next invoke is cold', async () => {
    const out = ok(await thaw(['drain', 'cli-hello']));
    const m = /^stopped (\d+) environments? of cli-hello$/m.exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) >= 1, out);
    const r = await thaw(['invoke', 'cli-hello', '{}', '--tail']);
    ok(r);
    assert.match(r.stderr, /Init Duration: /);

    const j = okJson(await thaw(['drain', 'cli-hello:live', '--json']));
    assert.equal(j.FunctionName, 'cli-hello');
    assert.equal(j.Version, '2');
    assert.equal(typeof j.Stopped, 'number');
  });

  test('ls shows a table, ls --json the configurations', async () => {
    const out = ok(await thaw(['ls']));
    assert.match(out, /^NAME\s+RUNTIME\s+MEMORY\s+TIMEOUT\s+LAST MODIFIED\s+STATE$/m);
    assert.match(out, /^cli-hello\s+nodejs24\.x\s+256 MB\s+3 s\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+Active$/m);
    const fns = okJson(await thaw(['ls', '--json'])).Functions as { FunctionName: string; Runtime: string; MemorySize: number }[];
    const f = fns.find((x) => x.FunctionName === 'cli-hello');
    assert.equal(f?.Runtime, 'nodejs24.x');
    assert.equal(f?.MemorySize, 256);
  });

  test('deploy a .zip file', async () => {
    const zip = join(work, 'from.zip.fn.zip');
    writeFileSync(zip, await zipFiles({ 'main.js': handler('zip') }));
    const c = okJson(await thaw(['deploy', zip, '--handler', 'main.handler', '--timeout', '10', '--json']));
    assert.equal(c.FunctionName, 'from-zip-fn');
    assert.equal(c.Handler, 'main.handler');
    assert.equal(c.Timeout, 10);
    assert.equal(okJson(await thaw(['invoke', 'from-zip-fn'])).tag, 'zip');
    assert.match(ok(await thaw(['rm', 'from-zip-fn'])), /^deleted from-zip-fn$/m);
  });

  test('errors are one line with the AWS error name, and a non-zero exit', async () => {
    failsWith(await thaw(['invoke', 'no-such-function', '{}']), /^thaw: ResourceNotFoundException: Function not found: .*no-such-function/);
    failsWith(await thaw(['logs', 'no-such-function']), /^thaw: ResourceNotFoundException: /);
    failsWith(await thaw(['drain', 'no-such-function']), /^thaw: ResourceNotFoundException: /);
    failsWith(await thaw(['deploy', join(work, 'missing-folder')]), /no such file or folder/);
    failsWith(await thaw(['alias', 'cli-hello', 'live']), /usage: thaw alias/);
    failsWith(await thaw(['logs', 'cli-hello', '--since', 'yesterday']), /--since/);
    failsWith(await thaw(['ls', '--bogus']), /unknown option '--bogus'/);
    failsWith(await runThaw(['ls'], { PATH: env.PATH ?? '' }), /^thaw: no credentials: set THAW_ACCESS_KEY_ID/);
    failsWith(await runThaw(['ls'], cliEnv(s.url, { THAW_SECRET_ACCESS_KEY: 'wrong-secret' })), /^thaw: InvalidSignatureException: /);
    // The AWS_ pair is the fallback.
    const { THAW_ACCESS_KEY_ID: id, THAW_SECRET_ACCESS_KEY: secret } = env;
    ok(await runThaw(['ls'], { PATH: env.PATH ?? '', THAW_ENDPOINT: s.url, AWS_ACCESS_KEY_ID: id ?? '', AWS_SECRET_ACCESS_KEY: secret ?? '' }));
  });

  test('an endpoint with nothing behind it is named in the error', async () => {
    // Port 1 on loopback: nothing listens there, and the connection is refused at once.
    failsWith(await thaw(['ls', '--endpoint', 'http://127.0.0.1:1']), /^thaw: cannot reach Thaw at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/);
  });

  test('rm deletes the function', async () => {
    assert.match(ok(await thaw(['rm', 'cli-hello'])), /^deleted cli-hello$/m);
    failsWith(await thaw(['invoke', 'cli-hello']), /^thaw: ResourceNotFoundException: /);
    assert.doesNotMatch(ok(await thaw(['ls'])), /cli-hello/);
  });
});
