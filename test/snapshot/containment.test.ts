import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateFunctionCommand, GetFunctionConfigurationCommand, InvokeCommand, LambdaClient, PublishVersionCommand, type FunctionConfiguration,
} from '@aws-sdk/client-lambda';
import { startThaw, type Thaw } from '../../src/app.js';
import { NamespacesDriver } from '../../src/sandbox/namespaces.js';
import { CREDS, ROLE, decode, zipFiles } from '../helpers/server.js';

/**
 * SnapStart build containment, through the Lambda API on a server with the namespaces driver: the function's
 * Init runs in the build sandbox and may leave anything in the only directory it can write (/var/snapshot);
 * the bundler runs there too. Nothing it leaves may make the host write, chmod, chown or read a host file, and
 * no build may reveal or freeze a host file or take the server down.
 */
const SECRET = `host-secret-${process.pid}-${Date.now()}`;
let thaw: Thaw;
let client: LambdaClient;
let dataDir: string;
let storeKey: string;
/** A host file owned by another user, 0600, that no build may touch. */
let canary: string;
/** A host file with a secret, outside every function's code. */
let secretFile: string;

interface FileState { readonly content: string; readonly mode: number; readonly uid: number; readonly gid: number }
const stateOf = (p: string): FileState => {
  const st = statSync(p);
  return { content: readFileSync(p, 'latin1'), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
};
let storeKeyBefore: FileState;
let canaryBefore: FileState;

before(async () => {
  process.env.THAW_CONTAINMENT_SECRET = SECRET;
  dataDir = mkdtempSync(join(tmpdir(), 'thaw-containment-'));
  thaw = await startThaw({ port: 0, dataDir, credentials: CREDS });
  client = new LambdaClient({ endpoint: thaw.url, region: 'us-east-1', credentials: CREDS, maxAttempts: 1 });
  storeKey = join(dataDir, 'store.key');
  const hostDir = mkdtempSync(join(tmpdir(), 'thaw-containment-host-'));
  canary = join(hostDir, 'canary.txt');
  writeFileSync(canary, 'canary: untouched\n', { mode: 0o600 });
  chownSync(canary, 4242, 4242);
  secretFile = join(hostDir, 'secret.json');
  writeFileSync(secretFile, JSON.stringify({ secret: SECRET }), { mode: 0o600 });
  storeKeyBefore = stateOf(storeKey);
  canaryBefore = stateOf(canary);
});
after(async () => {
  client.destroy();
  await thaw.close();
  delete process.env.THAW_CONTAINMENT_SECRET;
});

/**
 * Host files no build may change, and no host path or secret in what a user sees (apart from `ownText`, the
 * function's own source text, such as an import specifier it wrote).
 */
function assertHostUntouched(c: FunctionConfiguration | undefined, ownText?: string): void {
  assert.deepEqual(stateOf(storeKey), storeKeyBefore, 'store.key is unchanged (content, mode, owner)');
  assert.deepEqual(stateOf(canary), canaryBefore, 'the host canary is unchanged (content, mode, owner)');
  const reason = ownText === undefined ? (c?.StateReason ?? '') : (c?.StateReason ?? '').split(ownText).join('<own>');
  for (const leak of [SECRET, dataDir, tmpdir(), '/run/thaw', '/dev/shm', storeKeyBefore.content.slice(0, 16)]) {
    assert.ok(!reason.includes(leak), `the StateReason reveals nothing of the host (${JSON.stringify(leak)}): ${reason}`);
  }
}

async function waitForState(name: string): Promise<FunctionConfiguration> {
  for (let i = 0; i < 1500; i++) {
    const c = await client.send(new GetFunctionConfigurationCommand({ FunctionName: name, Qualifier: '1' }));
    if (c.State !== 'Pending') return c;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${name}:1 still Pending`);
}

/** Create a SnapStart function and publish version 1; resolves with the version's final configuration. */
async function publish(name: string, files: Record<string, string>, handler = 'index.handler'): Promise<FunctionConfiguration> {
  await client.send(new CreateFunctionCommand({
    FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: handler, MemorySize: 256,
    SnapStart: { ApplyOn: 'PublishedVersions' }, Code: { ZipFile: await zipFiles(files) },
  }));
  const p = await client.send(new PublishVersionCommand({ FunctionName: name }));
  assert.equal(p.Version, '1');
  return waitForState(name);
}

async function invoke(name: string): Promise<unknown> {
  const r = await client.send(new InvokeCommand({ FunctionName: name, Qualifier: '1', Payload: Buffer.from('{}') }));
  assert.equal(r.FunctionError, undefined, JSON.stringify(decode(r.Payload)));
  return decode(r.Payload);
}

/** Init code that runs only in the SnapStart build, where /var/snapshot is the writable output directory. */
const inBuild = (body: string): string => `
const fs = require('fs');
const made = [];
if (process.env.AWS_LAMBDA_INITIALIZATION_TYPE === 'snap-start' && fs.existsSync('/var/snapshot')) {
  const at = (n) => '/var/snapshot/' + n;
  const plant = (n, f) => { try { fs.rmSync(at(n), { force: true, recursive: true }); f(at(n)); made.push(n); } catch (e) { made.push(n + ':' + e.code); } };
  ${body}
}
exports.handler = async () => ({ made });
`;

// Issue 12: before the bundle ran in a process of its own, this as the first SnapStart build of a fresh server
// was an unhandled rejection that ended the process.
test('an ESM handler with top-level await as the first SnapStart publish: the version fails with a clear reason and the server keeps serving', async () => {
  const c = await publish('tla', { 'index.mjs': 'const v = await Promise.resolve(42);\nexport const handler = async () => v;\n' });
  assert.equal(c.State, 'Failed', JSON.stringify(c));
  assert.equal(c.StateReasonCode, 'FunctionError');
  assert.match(c.StateReason ?? '', /top-level await/);
  assert.match(c.StateReason ?? '', /index\.mjs/);
  assertHostUntouched(c);
  // Still serving: another build and an invoke.
  const ok = await publish('after-tla', { 'index.js': 'exports.handler = async () => "still here";' });
  assert.equal(ok.State, 'Active', JSON.stringify(ok));
  assert.equal(await invoke('after-tla'), 'still here');
});

test('symlinks Init leaves at every name the host writes or reads are never followed: store.key and a host file keep content, mode and owner', async () => {
  const links: [string, string][] = [
    ['.manifest.json.tmp', storeKey], ['manifest.json', canary], ['builtins.bin', storeKey], ['bundle.cjs.map', canary],
    ['bundle-result.json', storeKey], ['bundle.cjs', canary], ['snapshot-config.json', canary], ['other', storeKey], ['dir', canary],
  ];
  const body = links.map(([n, t]) => `plant(${JSON.stringify(n)}, (p) => fs.symlinkSync(${JSON.stringify(t)}, p));`).join('\n');
  const c = await publish('links', { 'index.js': inBuild(body) });
  assert.equal(c.State, 'Active', JSON.stringify(c));
  assert.deepEqual(await invoke('links'), { made: links.map(([n]) => n) }, 'Init planted every link');
  assertHostUntouched(c);
});

test('snapshot.blob as a symlink to store.key or to a device, or build-report.json as a symlink to store.key: the version fails, nothing is followed', async () => {
  const cases: [string, string][] = [
    ['blob-key', `plant('snapshot.blob', (p) => fs.symlinkSync(${JSON.stringify(storeKey)}, p));`],
    ['blob-dev', `plant('snapshot.blob', (p) => fs.symlinkSync('/dev/null', p));`],
    ['report-key', `plant('build-report.json', (p) => fs.symlinkSync(${JSON.stringify(storeKey)}, p));`],
  ];
  for (const [name, body] of cases) {
    const c = await publish(name, { 'index.js': inBuild(body) });
    assert.equal(c.State, 'Failed', `${name}: ${JSON.stringify(c)}`);
    assertHostUntouched(c);
  }
  // Through /dev/null the runtime's own write succeeds: only the host's refusal stops it.
  const dev = await waitForState('blob-dev');
  assert.match(dev.StateReason ?? '', /snapshot\.blob.*symbolic link/);
});

test('hard links: none into the output directory from other mounts, and a blob with a second link is refused', async () => {
  const c = await publish('hardlink', { 'index.js': inBuild(`
    let tried = 'linked';
    try { fs.linkSync('/var/task/index.js', at('from-task')); } catch (e) { tried = e.code; }
    made.push('from-task:' + tried);
    try { fs.linkSync('/etc/passwd', at('from-etc')); } catch (e) { tried = e.code; }
    made.push('from-etc:' + tried);
    plant('snapshot.blob', (p) => { fs.writeFileSync(p, ''); fs.linkSync(p, at('second-name')); });
  `) });
  assert.equal(c.State, 'Failed', JSON.stringify(c));
  assert.equal(c.StateReasonCode, 'FunctionError');
  assert.match(c.StateReason ?? '', /snapshot\.blob.*hard link/);
  assertHostUntouched(c);
  // The same cross-mount attempts in a build that otherwise succeeds, to see what they did.
  const probe = await publish('hardlink-probe', { 'index.js': inBuild(`
    for (const [n, src] of [['from-task', '/var/task/index.js'], ['from-etc', '/etc/passwd']]) {
      try { fs.linkSync(src, at(n)); made.push(n + ':linked'); } catch (e) { made.push(n + ':' + e.code); }
    }
  `) });
  assert.equal(probe.State, 'Active', JSON.stringify(probe));
  const made = (await invoke('hardlink-probe') as { made: string[] }).made;
  assert.equal(made.length, 2);
  for (const m of made) assert.doesNotMatch(m, /:linked$/, `no hard link across mounts: ${m}`);
});

test('a FIFO or a directory where the host expects a file: refused at once, never blocks the build queue', async () => {
  const fifo = await publish('fifo', { 'index.js': inBuild(`
    plant('build-report.json', (p) => {
      require('child_process').execFileSync('/usr/bin/mkfifo', [p]);
      // A reader, so that the runtime's own report write does not block.
      globalThis.keepFifo = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    });
  `) });
  assert.equal(fifo.State, 'Failed', JSON.stringify(fifo));
  assert.match(fifo.StateReason ?? '', /build-report\.json.*not a regular file/);
  assertHostUntouched(fifo);
  const dir = await publish('blob-dir', { 'index.js': inBuild(`plant('snapshot.blob', (p) => { fs.mkdirSync(p); fs.symlinkSync(${JSON.stringify(storeKey)}, p + '/x'); });`) });
  assert.equal(dir.State, 'Failed', JSON.stringify(dir));
  assertHostUntouched(dir);
  // The queue goes on.
  const ok = await publish('after-fifo', { 'index.js': 'exports.handler = async () => "ok";' });
  assert.equal(ok.State, 'Active', JSON.stringify(ok));
});

test('bundling cannot read host files: /proc/self/environ as text, a relative path out of the code, an absolute path', async () => {
  const rel = `../../../../../../../../..${secretFile}`;
  const cases: [string, string, Record<string, string>][] = [
    ['environ', '/proc/self/environ', { 'index.mjs': `import env from '/proc/self/environ' with { type: 'text' };\nexport const handler = async () => env;\n` }],
    ['relative', rel, { 'index.js': `const s = require(${JSON.stringify(rel)});\nexports.handler = async () => s;\n` }],
    ['absolute', secretFile, { 'index.js': `const s = require(${JSON.stringify(secretFile)});\nexports.handler = async () => s;\n` }],
    ['store-key', storeKey, { 'index.mjs': `import k from ${JSON.stringify(storeKey)} with { type: 'text' };\nexport const handler = async () => k;\n` }],
  ];
  for (const [name, spec, files] of cases) {
    const c = await publish(name, files);
    assert.equal(c.State, 'Failed', `${name}: ${JSON.stringify(c)}`);
    assert.equal(c.StateReasonCode, 'FunctionError');
    assert.match(c.StateReason ?? '', /outside the function's code and layers/, name);
    assertHostUntouched(c, spec);
    await assert.rejects(client.send(new InvokeCommand({ FunctionName: name, Qualifier: '1' })), (e: unknown) => (e as { name: string }).name === 'ResourceConflictException');
  }
});

test('a failed bundle does not tell whether a host path exists', async () => {
  const reasons: string[] = [];
  for (const [name, target] of [['exists', secretFile], ['missing', join(tmpdir(), `thaw-no-such-file-${process.pid}.json`)]] as const) {
    const spec = `../../../../../../../../..${target}`;
    const c = await publish(`oracle-${name}`, { 'index.js': `const s = require(${JSON.stringify(spec)});\nexports.handler = async () => s;\n` });
    assert.equal(c.State, 'Failed', JSON.stringify(c));
    reasons.push((c.StateReason ?? '').replace(spec, '<spec>'));
    assertHostUntouched(c, spec);
  }
  assert.equal(reasons[0], reasons[1]);
});

test('a function that bundles and imports its own files and text still works', async () => {
  const c = await publish('own-files', {
    'index.mjs': `import data from './data.txt' with { type: 'text' };\nimport { n } from './lib/n.mjs';\nexport const handler = async () => ({ data, n });\n`,
    'data.txt': 'hello',
    'lib/n.mjs': 'export const n = 7;\n',
  });
  assert.equal(c.State, 'Active', JSON.stringify(c));
  assert.deepEqual(await invoke('own-files'), { data: 'hello', n: 7 });
  assertHostUntouched(c);
});

/** Host processes descended from this one, with their command lines. */
function descendants(pid = process.pid): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter((s) => s !== '').map(Number);
    } catch {
      continue;
    }
    for (const k of kids) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        // Gone.
      }
      out.push({ pid: k, cmd }, ...descendants(k));
    }
  }
  return out;
}

test('the server never bundles in its own process: after a build no esbuild service runs among its processes', async () => {
  const c = await publish('no-esbuild-here', { 'index.js': 'exports.handler = async () => "bundled elsewhere";' });
  assert.equal(c.State, 'Active', JSON.stringify(c));
  assert.equal(await invoke('no-esbuild-here'), 'bundled elsewhere');
  const esbuilds = descendants().filter((p) => /esbuild/.test(p.cmd));
  assert.deepEqual(esbuilds, [], 'esbuild (whose JS API keeps its service process for the life of the process that used it) never ran here');
});

// The scratch directory lives in the runtime directory, a tmpfs (/run/thaw or /dev/shm): what a build writes
// there is charged to the build sandbox's memory cgroup, so it cannot fill the host beyond the build's limit.
test('what a build sandbox writes into its scratch directory counts against its memory limit', async () => {
  const base = mkdtempSync('/dev/shm/thaw-containment-fill-');
  try {
    const work = join(base, '.build');
    mkdirSync(work);
    chmodSync(work, 0o777);
    const sb = await new NamespacesDriver().start({
      id: `fill-${process.pid}`,
      mounts: [{ host: work, sandbox: '/var/snapshot', writable: true }],
      argv: ['/bin/sh', '-c', 'dd if=/dev/zero of=/var/snapshot/junk bs=1M count=256 2>/dev/null'],
      env: { PATH: '/usr/bin:/bin' },
      cwd: '/',
      limits: { memoryBytes: 64 * 1024 * 1024, pids: 64, cpuShares: 1024, tmpBytes: 16 * 1024 * 1024 },
    });
    const exit = await sb.exited;
    await sb.destroy();
    assert.equal(exit.oomKilled, true, JSON.stringify(exit));
    assert.ok(statSync(join(work, 'junk')).size <= 64 * 1024 * 1024);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
