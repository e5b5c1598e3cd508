import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { detectCgroups } from '../../src/sandbox/cgroups.js';
import { ProcessDriver, resolveMountPath } from '../../src/sandbox/process.js';
import { silentLogger } from '../../src/util/log.js';
import { runConformance } from './conformance.js';
import { LIMITS, PATH, makeDir, newId, removeDir, run } from './helpers.js';

const cgroups = await detectCgroups({ logger: silentLogger });
if (cgroups === null) console.log('# cgroups not writable here: the process driver runs without limits');

runConformance('process (cgroups when writable)', () => Promise.resolve(new ProcessDriver({ logger: silentLogger })), {
  limits: cgroups !== null,
});
runConformance('process without cgroups', () => Promise.resolve(new ProcessDriver({ logger: silentLogger, cgroups: null })), {
  limits: false,
});

describe('process driver', () => {
  const mounts = [
    { host: '/srv/code', sandbox: '/var/task' },
    { host: '/srv/layer/', sandbox: '/opt/' },
    { host: '/srv/ext', sandbox: '/opt/extensions' },
  ];

  test('resolve() maps paths under a mount, longest prefix first, on path boundaries', () => {
    assert.equal(resolveMountPath('/var/task', mounts), '/srv/code');
    assert.equal(resolveMountPath('/var/task/index.js', mounts), '/srv/code/index.js');
    assert.equal(resolveMountPath('/var/taskforce/x', mounts), '/var/taskforce/x');
    assert.equal(resolveMountPath('/opt/lib/x.so', mounts), '/srv/layer/lib/x.so');
    assert.equal(resolveMountPath('/opt/extensions/a', mounts), '/srv/ext/a');
    assert.equal(resolveMountPath('/usr/bin/python3', mounts), '/usr/bin/python3');
    assert.equal(resolveMountPath('relative/var/task', mounts), 'relative/var/task');
    assert.equal(new ProcessDriver().resolve('/var/task/a', mounts), '/srv/code/a');
  });

  test('start() maps sandbox paths in argv, cwd and each element of env values', async () => {
    const code = makeDir('thaw-proc-code-', { 'x.txt': 'x\n' });
    try {
      const r = await run(
        new ProcessDriver({ cgroups: null }),
        {
          id: newId('proc'),
          mounts: [{ host: code, sandbox: '/var/task' }],
          argv: ['/bin/sh', '-c', 'echo "$1"; pwd; echo "$LIST"; echo "$URL"', 'sh', '/var/task/x.txt'],
          env: { PATH, LIST: '/var/task/lib:/usr/lib:/var/task', URL: 'http://127.0.0.1:9001/var/task' },
          cwd: '/var/task',
          limits: LIMITS,
        },
      );
      assert.equal(r.exit.code, 0, r.stderr);
      assert.equal(
        r.stdout,
        `${code}/x.txt\n${code}\n${code}/lib:/usr/lib:${code}\nhttp://127.0.0.1:9001/var/task\n`,
      );
    } finally {
      removeDir(code);
    }
  });

  test('the workload is in its cgroup from its first instruction', { skip: cgroups === null && 'no writable cgroups' }, async () => {
    const id = newId('proc');
    // cat is the workload itself (sh execs it), so what it reads is where the workload started.
    const r = await run(new ProcessDriver(), {
      id,
      mounts: [],
      argv: ['/bin/cat', '/proc/self/cgroup'],
      env: {},
      cwd: '/',
      limits: LIMITS,
    });
    assert.equal(r.exit.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => /(^|[:,])memory:|^0::/.test(l));
    assert.ok(lines.some((l) => l.endsWith(`/thaw/${id}`)), r.stdout);
  });

  test('the constructor warns that nothing is isolated', () => {
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (_o: unknown, msg: string) => warnings.push(msg) } as unknown as typeof silentLogger;
    new ProcessDriver({ logger, cgroups: null });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /ISOLATES NOTHING/);
  });
});
