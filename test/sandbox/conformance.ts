import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RUNTIME_API_SOCKET, type SandboxDriver, type SandboxSpec } from '../../src/sandbox/driver.js';
import { isThawError } from '../../src/util/errors.js';
import { LIMITS, MiB, PATH, makeDir, newId, removeDir, run, runtimeApiServer, start, within } from './helpers.js';
import { nodeRuntimeDir } from '../../src/worker/runtimes.js';

/**
 * The SandboxDriver conformance suite: every driver passes it. Real processes, real binaries of the host
 * (/bin/sh, python3, curl, node), no timing assertions.
 */
export interface ConformanceOptions {
  /** Whether the driver is expected to enforce limits and detect OOM kills (cgroups available). Default true. */
  readonly limits?: boolean;
}

const PYTHON = '/usr/bin/python3';
const CURL = '/usr/bin/curl';
/** The Node that Thaw's nodejs runtimes use, mounted at /var/lang like the real runtime does. */
const NODE_DIR = nodeRuntimeDir(24);

export function runConformance(
  name: string,
  makeDriver: () => Promise<SandboxDriver>,
  opts: ConformanceOptions = {},
): void {
  const limits = opts.limits ?? true;
  const noLimits = limits ? false : 'driver runs without cgroups: limits are not enforced';
  const T = { timeout: 120_000 };

  describe(`SandboxDriver conformance: ${name}`, () => {
    let driver: SandboxDriver;
    let code: string;
    const spec = (over: Partial<SandboxSpec> & Pick<SandboxSpec, 'argv'>): SandboxSpec => ({
      id: newId('conf'),
      mounts: [{ host: code, sandbox: '/var/task' }],
      env: { PATH },
      cwd: '/var/task',
      limits: LIMITS,
      ...over,
    });
    const sh = (script: string, over: Partial<SandboxSpec> = {}): SandboxSpec =>
      spec({ argv: ['/bin/sh', '-c', script], ...over });

    before(async () => {
      driver = await makeDriver();
      code = makeDir('thaw-conf-code-', { 'hello.txt': 'hello from the code mount\n' });
    });
    after(() => removeDir(code));

    test('an exit code passes through', T, async () => {
      const r = await run(driver, sh('exit 42'));
      assert.deepEqual(r.exit, { code: 42, signal: null, oomKilled: false });
    });

    test('an exit code above 128 stays an exit code', T, async () => {
      const r = await run(driver, sh('exit 137'));
      assert.deepEqual(r.exit, { code: 137, signal: null, oomKilled: false });
    });

    test('death by a signal is reported as that signal', T, async () => {
      for (const sig of ['KILL', 'USR1'] as const) {
        const r = await run(driver, sh(`kill -${sig} $$`));
        assert.deepEqual(r.exit, { code: null, signal: `SIG${sig}`, oomKilled: false });
      }
    });

    test('a missing executable exits 127 with a message', T, async () => {
      const r = await run(driver, spec({ argv: ['/nonexistent/bootstrap'] }));
      assert.equal(r.exit.code, 127);
      assert.match(r.stderr, /nonexistent\/bootstrap/);
    });

    test('a malformed spec is refused before anything runs', T, async () => {
      const refused = (e: unknown): boolean => isThawError(e) && e.code === 'Service';
      // NUL-separated protocols underneath: a NUL must never turn into an extra argument.
      await assert.rejects(driver.start(sh('true', { mounts: [{ host: `${code}\0--bind\0/\0/host`, sandbox: '/var/task' }] })), refused);
      await assert.rejects(driver.start(spec({ argv: ['/bin/true', 'a\0b'] })), refused);
      await assert.rejects(driver.start(sh('true', { env: { 'A=B': '1' } })), refused);
      await assert.rejects(driver.start(sh('true', { env: { A: 'x\0y' } })), refused);
      await assert.rejects(driver.start(sh('true', { id: 'Bad_Id' })), refused);
      await assert.rejects(driver.start(sh('true', { cwd: 'relative' })), refused);
      await assert.rejects(driver.start(sh('true', { limits: { ...LIMITS, memoryBytes: 0 } })), refused);
    });

    test('stdout and stderr are captured separately', T, async () => {
      const r = await run(driver, sh('echo to-stdout; echo to-stderr >&2'));
      assert.equal(r.stdout, 'to-stdout\n');
      assert.equal(r.stderr, 'to-stderr\n');
    });

    test('the environment is exactly spec.env', T, async () => {
      process.env.THAW_CONFORMANCE_HOST_SECRET = 'must-not-leak';
      try {
        const env = { A: '1', WITH_SPACES: 'a b  c', WITH_EQUALS: 'x=y', EMPTY: '', UNICODE: 'é✓' };
        const r = await run(driver, spec({ argv: ['/usr/bin/env', '-0'], env }));
        assert.equal(r.exit.code, 0, r.stderr);
        const got = Object.fromEntries(
          r.stdout
            .split('\0')
            .filter((s) => s !== '')
            .map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]),
        );
        assert.deepEqual(got, env);
        for (const k of ['NODE_EXTRA_CA_CERTS', 'PATH', 'HOME', 'THAW_CONFORMANCE_HOST_SECRET']) assert.ok(!(k in got), k);
      } finally {
        delete process.env.THAW_CONFORMANCE_HOST_SECRET;
      }
    });

    test('the code mount is readable at its path, and read-only when the driver isolates', T, async () => {
      const script = 'cat "$1"; if echo x > "$2"; then echo WROTE; else echo DENIED; fi; cat ./hello.txt';
      // Sandbox paths in argv: the process driver maps them to the mount's host directory itself.
      const r = await run(driver, spec({ argv: ['/bin/sh', '-c', script, 'sh', '/var/task/hello.txt', '/var/task/new.txt'] }));
      assert.equal(r.exit.code, 0, r.stderr);
      const [first, verdict, third] = r.stdout.split('\n');
      assert.equal(first, 'hello from the code mount');
      assert.equal(third, 'hello from the code mount', 'cwd is the code mount');
      if (driver.isolates) {
        assert.equal(verdict, 'DENIED');
        assert.ok(!existsSync(join(code, 'new.txt')));
      } else {
        assert.equal(verdict, 'WROTE', 'the process driver does not protect mounts');
        removeDir(join(code, 'new.txt'));
      }
      assert.equal(driver.resolve('/var/task/hello.txt', [{ host: code, sandbox: '/var/task' }]).endsWith('hello.txt'), true);
    });

    test('/tmp is writable', T, async () => {
      const r = await run(driver, sh('f=/tmp/thaw-conformance-$$; echo tmp-ok > $f && cat $f && rm $f'));
      assert.equal(r.exit.code, 0, r.stderr);
      assert.equal(r.stdout, 'tmp-ok\n');
    });

    test('exceeding the memory limit ends the environment with oomKilled', { ...T, skip: noLimits }, async () => {
      const r = await run(
        driver,
        spec({
          argv: [PYTHON, '-c', "b = b'x' * (300 << 20); print('survived')"],
          limits: { ...LIMITS, memoryBytes: 64 * MiB },
        }),
      );
      assert.equal(r.exit.oomKilled, true, JSON.stringify(r));
      assert.equal(r.exit.signal, 'SIGKILL');
      assert.ok(!r.stdout.includes('survived'));
    });

    test('the pids limit stops a fork loop', { ...T, skip: noLimits }, async () => {
      const script = [
        'import os, time',
        'n = 0',
        'try:',
        '    while n < 500:',
        '        if os.fork() == 0:',
        '            time.sleep(300)',
        '            os._exit(0)',
        '        n += 1',
        "    print('unlimited', n)",
        'except OSError as e:',
        "    print('fork-failed', n, e.errno)",
      ].join('\n');
      const r = await run(driver, spec({ argv: [PYTHON, '-c', script], limits: { ...LIMITS, pids: 24 } }));
      const m = /^fork-failed (\d+) 11$/m.exec(r.stdout); // EAGAIN
      assert.ok(m !== null, JSON.stringify(r));
      assert.ok(Number(m[1]) < 24);
    });

    test('maxMemoryBytes tracks a known allocation', T, async () => {
      const script = "import time\nb = b'x' * (100 << 20)\nprint('ready', flush=True)\ntime.sleep(300)";
      const { sb, out } = await start(driver, spec({ argv: [PYTHON, '-c', script], limits: { ...LIMITS, memoryBytes: 512 * MiB } }));
      try {
        await out.waitFor('ready');
        const peak = sb.maxMemoryBytes();
        assert.ok(peak >= 100 * MiB, `peak ${peak}`);
        assert.ok(peak < 300 * MiB, `peak ${peak}`);
      } finally {
        await sb.destroy();
      }
      assert.ok(sb.maxMemoryBytes() >= 100 * MiB, 'the peak is still known after destroy');
    });

    test('updateLimits() raises the memory limit of a running environment', { ...T, skip: noLimits }, async (t) => {
      // SIGUSR1 stays blocked until sigwait takes it: no window where it could be missed or interrupt a print.
      const script = [
        'import signal',
        'signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})',
        "print('ready', flush=True)",
        'signal.sigwait({signal.SIGUSR1})',
        "b = b'x' * (150 << 20)",
        "print('allocated', flush=True)",
      ].join('\n');
      const { sb, out, err } = await start(driver, spec({ argv: [PYTHON, '-c', script], limits: { ...LIMITS, memoryBytes: 64 * MiB } }));
      try {
        if (sb.updateLimits === undefined) return t.skip('driver has no updateLimits');
        await out.waitFor('ready');
        await sb.updateLimits({ ...LIMITS, memoryBytes: 320 * MiB });
        sb.kill('SIGUSR1');
        const exit = await within(sb.exited, 60_000, 'exit after growing');
        assert.deepEqual(exit, { code: 0, signal: null, oomKilled: false }, err.text);
        assert.match(out.text, /allocated/);
      } finally {
        await sb.destroy();
      }
    });

    test('kill(SIGTERM) reaches the process inside', T, async () => {
      const { sb, out } = await start(driver, sh('trap "echo got-term; exit 3" TERM; echo ready; sleep 300 & wait'));
      try {
        await out.waitFor('ready');
        sb.kill('SIGTERM');
        const exit = await within(sb.exited, 30_000, 'exit after SIGTERM');
        assert.deepEqual(exit, { code: 3, signal: null, oomKilled: false });
        assert.match(out.text, /got-term/);
      } finally {
        await sb.destroy();
      }
    });

    test('destroy() kills grandchildren and is idempotent', T, async () => {
      // Each grandchild keeps stdout open: stdout ends only once all of them are dead. With cgroups even
      // one that left the process group (setsid) goes.
      const escape = limits ? '(setsid sleep 300 &);' : '';
      const { sb, out } = await start(driver, sh(`(sleep 300 &); ${escape} echo ready; sleep 300`));
      await out.waitFor('ready');
      await Promise.all([sb.destroy(), sb.destroy()]);
      await within(out.ended, 20_000, 'stdout to end: every process holding it is dead');
      const exit = await sb.exited;
      assert.equal(exit.signal, 'SIGKILL');
      await sb.destroy();
      sb.kill('SIGTERM'); // after the end: a no-op
    });

    test('the Runtime API is reachable with curl', T, async () => {
      const dir = makeDir('thaw-conf-rapi-');
      const api = await runtimeApiServer(driver.runtimeApiTransport === 'unix' ? { path: join(dir, 'rapi.sock') } : { tcp: true });
      try {
        const path = '/2018-06-01/runtime/invocation/next';
        const r =
          driver.runtimeApiTransport === 'unix'
            ? await run(driver, spec({ argv: [CURL, '-sS', '--unix-socket', RUNTIME_API_SOCKET, `http://localhost${path}`], runtimeApiSocket: api.address }))
            : await run(driver, sh(`${CURL} -sS "http://$AWS_LAMBDA_RUNTIME_API${path}"`, { env: { PATH, AWS_LAMBDA_RUNTIME_API: api.address } }));
        assert.equal(r.exit.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout), { hello: 'from-runtime-api', path });
        assert.deepEqual(api.requests, [`GET ${path}`]);
      } finally {
        await api.close();
        removeDir(dir);
      }
    });

    test('node, mounted like a runtime, reaches the Runtime API', { ...T, skip: !existsSync(join(NODE_DIR, 'bin', 'node')) && 'node24 not installed' }, async () => {
      const dir = makeDir('thaw-conf-rapi-');
      const unix = driver.runtimeApiTransport === 'unix';
      const api = await runtimeApiServer(unix ? { path: join(dir, 'rapi.sock') } : { tcp: true });
      try {
        const js = [
          "const http = require('node:http');",
          'const [host, port] = (process.env.AWS_LAMBDA_RUNTIME_API || "").split(":");',
          "const where = process.env.SOCK ? { socketPath: process.env.SOCK } : { host, port: Number(port) };",
          "http.get({ ...where, path: '/2018-06-01/runtime/invocation/next' }, (res) => {",
          "  let body = ''; res.on('data', (c) => (body += c));",
          "  res.on('end', () => console.log(res.headers['lambda-runtime-aws-request-id'], JSON.parse(body).hello, process.version));",
          '});',
        ].join('\n');
        const env: Record<string, string> = unix ? { SOCK: RUNTIME_API_SOCKET } : { AWS_LAMBDA_RUNTIME_API: api.address };
        const r = await run(
          driver,
          spec({
            argv: ['/var/lang/bin/node', '-e', js],
            mounts: [
              { host: code, sandbox: '/var/task' },
              { host: NODE_DIR, sandbox: '/var/lang' },
            ],
            env,
            ...(unix ? { runtimeApiSocket: api.address } : {}),
          }),
        );
        assert.equal(r.exit.code, 0, r.stderr);
        const version = (JSON.parse(readFileSync(join(NODE_DIR, 'package.json'), 'utf8')) as { version: string }).version;
        assert.equal(r.stdout, `req-1 from-runtime-api v${version}\n`);
      } finally {
        await api.close();
        removeDir(dir);
      }
    });
  });
}
