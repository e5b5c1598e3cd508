import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { detectCgroups } from '../../src/sandbox/cgroups.js';
import { RUNTIME_API_SOCKET } from '../../src/sandbox/driver.js';
import { DEFAULT_UID_BASE } from '../../src/sandbox/identity.js';
import { NamespacesDriver, RUNTIME_API_TCP_ADDRESS, decodeWaitStatus } from '../../src/sandbox/namespaces.js';
import { probeNamespaces, selectDriver } from '../../src/sandbox/select.js';
import { isThawError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { runConformance } from './conformance.js';
import { LIMITS, MiB, PATH, makeDir, removeDir, run, runtimeApiServer, shellSpec, start, within } from './helpers.js';

const BWRAP = '/usr/bin/bwrap';
const missing = existsSync(BWRAP) ? undefined : `${BWRAP} is not installed`;
if (missing !== undefined) console.log(`# skipping the namespaces driver tests: ${missing}`);
const cgroups = missing === undefined ? await detectCgroups({ logger: silentLogger }) : null;
const T = { timeout: 120_000, skip: missing ?? false };

if (missing === undefined) {
  runConformance('namespaces', () => Promise.resolve(new NamespacesDriver({ logger: silentLogger })), { limits: cgroups !== null });
} else {
  test('SandboxDriver conformance: namespaces', { skip: missing }, () => undefined);
}

describe('namespaces driver isolation', () => {
  const driver = new NamespacesDriver({ logger: silentLogger });
  let code: string;
  let other: string;
  let secrets: string;
  const spec = shellSpec('ns', () => code);

  before(() => {
    code = makeDir('thaw-ns-code-', { 'index.js': 'code\n' });
    other = makeDir('thaw-ns-other-', { 'other.txt': 'another function\n' });
    // World-readable on purpose: only the mount namespace keeps the sandbox away from it.
    secrets = makeDir('thaw-ns-secret-', { 'secret.txt': 'top secret\n' });
  });
  after(() => {
    for (const d of [code, other, secrets]) removeDir(d);
  });

  test('a host data directory, the project and other mounts are not visible', T, async () => {
    const paths = [join(secrets, 'secret.txt'), join(other, 'other.txt'), join(process.cwd(), 'package.json'), '/root', '/home', '/work', '/var/lib', '/run'];
    const r = await run(driver, spec(`for p in ${paths.map((p) => `'${p}'`).join(' ')}; do if [ -e "$p" ]; then echo "VISIBLE $p"; fi; done; ls /`));
    assert.equal(r.exit.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /VISIBLE/);
    const root = r.stdout.trim().split('\n');
    const allowed = ['bin', 'dev', 'etc', 'lib', 'lib32', 'lib64', 'libx32', 'proc', 'sbin', 'tmp', 'usr', 'var'];
    for (const entry of root) assert.ok(allowed.includes(entry), `unexpected /${entry}`);
    for (const needed of ['dev', 'etc', 'proc', 'tmp', 'usr', 'var']) assert.ok(root.includes(needed), needed);
  });

  test('/etc holds only what runtimes need', T, async () => {
    const r = await run(driver, spec('ls /etc; grep -c . /etc/passwd'));
    assert.equal(r.exit.code, 0, r.stderr);
    const names = r.stdout.trim().split('\n');
    for (const bad of ['shadow', 'sudoers', 'ssh', 'environment', 'profile']) assert.ok(!names.includes(bad), bad);
    assert.ok(names.includes('passwd') && names.includes('ssl'));
    assert.equal(names.at(-1), '3', 'a synthetic passwd, not the host one');
  });

  test('nothing outside /tmp is writable', T, async () => {
    const r = await run(driver, spec('for d in /var/task / /usr /etc /var; do if touch "$d/thaw-write-test" 2>/dev/null; then echo "WROTE $d"; else echo "DENIED $d"; fi; done'));
    assert.equal(r.exit.code, 0, r.stderr);
    assert.equal(r.stdout, ['/var/task', '/', '/usr', '/etc', '/var'].map((d) => `DENIED ${d}\n`).join(''));
    assert.ok(!existsSync(join(code, 'thaw-write-test')));
  });

  test('the workload runs unprivileged and without capabilities', T, async () => {
    // Rewriting a sysctl with its own value: harmless if the sandbox were wrongly able to.
    const r = await run(
      driver,
      spec('id -u; grep -E "^Cap(Eff|Prm|Bnd|Amb)" /proc/self/status; cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness && echo SYSCTL-WRITABLE'),
    );
    const lines = r.stdout.split('\n');
    assert.ok(Number(lines[0]) >= DEFAULT_UID_BASE, `uid ${lines[0]} from the sandbox range`);
    for (const l of lines.slice(1, 5)) assert.match(l, /^Cap\w+:\s+0+$/);
    assert.doesNotMatch(r.stdout, /SYSCTL-WRITABLE/);
  });

  test('host processes are invisible', T, async () => {
    const r = await run(driver, spec('ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "'));
    assert.equal(r.exit.code, 0, r.stderr);
    const pids = r.stdout.trim().split(' ');
    // thaw-init (1), sh, ls, grep, tr: only the sandbox's own.
    assert.ok(pids.length <= 6, r.stdout);
    assert.equal(pids[0], '1');
  });

  test('a TCP server on the host loopback is unreachable', T, async () => {
    let connections = 0;
    const server = createServer((s) => {
      connections++;
      s.end('hello\n');
    }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const r = await run(driver, spec(`/usr/bin/curl -sS -m 10 http://127.0.0.1:${port}/`));
      assert.equal(r.exit.code, 7, `curl should fail to connect: ${r.stderr}`);
      assert.equal(connections, 0);
    } finally {
      server.close();
    }
  });

  test('/tmp is capped at tmpBytes', T, async () => {
    const r = await run(
      driver,
      spec('dd if=/dev/zero of=/tmp/fill bs=65536 count=64 2>&1; df -k /tmp | tail -1', { limits: { ...LIMITS, tmpBytes: 1 * MiB } }),
    );
    assert.match(r.stdout, /No space left on device/);
    assert.match(r.stdout, /\s1024\s/);
  });

  test('/tmp is private to each environment', T, async () => {
    const a = await start(driver, spec('echo mine > /tmp/marker; echo ready; sleep 300'));
    try {
      await a.out.waitFor('ready');
      const b = await run(driver, spec('cat /tmp/marker 2>&1 || echo ABSENT'));
      assert.match(b.stdout, /ABSENT/);
    } finally {
      await a.sb.destroy();
    }
  });

  test('runtimeApiTcp serves the Runtime API on 127.0.0.1:9001 inside before argv starts', T, async () => {
    const dir = makeDir('thaw-ns-rapi-');
    const api = await runtimeApiServer({ path: join(dir, 'rapi.sock') });
    try {
      const path = '/2018-06-01/runtime/invocation/next';
      // No retry in the client: the port must already be listening when argv starts.
      const r = await run(
        driver,
        spec(`/usr/bin/curl -sS "http://$AWS_LAMBDA_RUNTIME_API${path}" && /usr/bin/curl -sS --unix-socket ${RUNTIME_API_SOCKET} http://x${path}`, {
          env: { PATH, AWS_LAMBDA_RUNTIME_API: RUNTIME_API_TCP_ADDRESS },
          runtimeApiSocket: api.address,
          runtimeApiTcp: true,
        }),
      );
      assert.equal(r.exit.code, 0, r.stderr);
      const body = JSON.stringify({ hello: 'from-runtime-api', path });
      assert.equal(r.stdout, body + body);
      assert.deepEqual(api.requests, [`GET ${path}`, `GET ${path}`]);
    } finally {
      await api.close();
      removeDir(dir);
    }
  });

  test('the TCP relay carries large bodies both ways, keep-alive and slow answers', T, async () => {
    const dir = makeDir('thaw-ns-rapi-');
    const sockPath = join(dir, 'rapi.sock');
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const reply = (): void => {
          res.end(`${req.url} ${body.length} ${createHash('sha256').update(body).digest('hex')}\n` + 'y'.repeat(2 * MiB));
        };
        // A long poll: answer later, on the same connection.
        if (req.url === '/slow') setTimeout(reply, 300);
        else reply();
      });
    }).listen(sockPath);
    await once(server, 'listening');
    try {
      const payload = '/tmp/payload';
      const r = await run(
        driver,
        spec(
          `head -c 3000000 /dev/urandom > ${payload}; sha256sum ${payload} | cut -d' ' -f1; ` +
            `/usr/bin/curl -sS --data-binary @${payload} -H 'content-type: application/octet-stream' http://127.0.0.1:9001/big -o /tmp/r1 http://127.0.0.1:9001/slow -o /tmp/r2 -w '%{num_connects}'; echo; ` +
            'head -1 /tmp/r1; wc -c < /tmp/r1; head -1 /tmp/r2',
          { runtimeApiSocket: sockPath, runtimeApiTcp: true },
        ),
      );
      assert.equal(r.exit.code, 0, r.stderr);
      const [sum, connects, big, bigSize, slow] = r.stdout.trim().split('\n');
      assert.equal(big, `/big 3000000 ${sum}`);
      assert.equal(Number(bigSize), big.length + 1 + 2 * MiB);
      assert.equal(slow, `/slow 3000000 ${sum}`, 'curl sends the body with each URL');
      assert.equal(connects, '10', 'one connect: the second request reused the connection');
    } finally {
      server.closeAllConnections();
      server.close();
      removeDir(dir);
    }
  });

  test('the relay is not part of the environment seen by argv', T, async () => {
    const dir = makeDir('thaw-ns-rapi-');
    const api = await runtimeApiServer({ path: join(dir, 'rapi.sock') });
    try {
      const r = await run(driver, spec('', { argv: ['/usr/bin/env'], env: { A: '1' }, runtimeApiSocket: api.address, runtimeApiTcp: true }));
      assert.equal(r.stdout, 'A=1\n');
    } finally {
      await api.close();
      removeDir(dir);
    }
  });

  test('kill() signals the workload, not pid 1', T, async () => {
    const { sb, out } = await start(driver, spec('echo ready; exec sleep 300'));
    await out.waitFor('ready');
    sb.kill('SIGINT');
    const exit = await within(sb.exited, 30_000, 'exit after SIGINT');
    assert.deepEqual(exit, { code: null, signal: 'SIGINT', oomKilled: false });
    await sb.destroy();
  });

  test('on the host: init keeps 3 capabilities, the workload runs as the sandbox uid, no host descriptors leak', T, async () => {
    const { sb, out } = await start(driver, spec('echo ready; exec sleep 300'));
    try {
      await out.waitFor('ready');
      const init = readFileSync(`/proc/${sb.pid}/task/${sb.pid}/children`, 'utf8').trim().split(' ')[0];
      const status = readFileSync(`/proc/${init}/status`, 'utf8');
      assert.match(status, /^NSpid:\s+\d+\s+1$/m);
      assert.match(status, /^CapEff:\s+0+1c0$/m, 'CAP_SETGID, CAP_SETUID, CAP_SETPCAP only');
      assert.match(readFileSync(`/proc/${init}/cmdline`, 'utf8'), /^thaw-init/);
      // No descriptor of the host leaks in: init keeps only its status pipe (5), the workload only stdio.
      assert.deepEqual(readdirSync(`/proc/${init}/fd`).sort(), ['0', '1', '2', '5']);
      const main = readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(' ');
      assert.equal(main.length, 1);
      assert.deepEqual(readdirSync(`/proc/${main[0]}/fd`).sort(), ['0', '1', '2']);
      const mainStatus = readFileSync(`/proc/${main[0]}/status`, 'utf8');
      assert.match(mainStatus, new RegExp(`^Uid:\\s+${sb.uid}\\s+${sb.uid}\\s+${sb.uid}\\s+${sb.uid}$`, 'm'));
      assert.match(mainStatus, new RegExp(`^Gid:\\s+${sb.uid}\\s+${sb.uid}\\s+${sb.uid}\\s+${sb.uid}$`, 'm'));
      assert.ok((sb.uid ?? 0) >= DEFAULT_UID_BASE);
      for (const set of ['Inh', 'Prm', 'Eff', 'Bnd', 'Amb']) assert.match(mainStatus, new RegExp(`^Cap${set}:\\s+0+$`, 'm'));
    } finally {
      await sb.destroy();
    }
  });

  test('a deferred sandbox waits, with nothing running, until launch() gives it argv and env', T, async () => {
    const { sb, out, err } = await start(driver, spec('unused', { argv: [], env: {}, deferred: true }));
    try {
      const init = readFileSync(`/proc/${sb.pid}/task/${sb.pid}/children`, 'utf8').trim().split(' ')[0];
      assert.equal(readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim(), '', 'no workload before launch');
      await sleep(100);
      assert.equal(out.text + err.text, '');
      await sb.launch?.(['/bin/sh', '-c', 'echo "$GREETING $(id -u) $(pwd) $(cat index.js)"; env | sort'], { GREETING: 'hi there', PATH });
      const exit = await within(sb.exited, 30_000, 'deferred workload to exit');
      await within(out.ended, 10_000, 'stdout to end');
      assert.deepEqual(exit, { code: 0, signal: null, oomKilled: false }, err.text);
      const [first, ...vars] = out.text.trim().split('\n');
      assert.equal(first, `hi there ${sb.uid} /var/task code`);
      assert.deepEqual(vars.filter((v) => !v.startsWith('PWD=') && !v.startsWith('SHLVL=') && !v.startsWith('_=')), ['GREETING=hi there', `PATH=${PATH}`]);
      await assert.rejects(sb.launch?.(['/bin/true'], {}) ?? Promise.resolve(), (e) => isThawError(e) && /launched already/.test(e.message));
    } finally {
      await sb.destroy();
    }
  });

  test('a deferred sandbox can be destroyed before launch, and refuses bad argv and env at launch', T, async () => {
    await assert.rejects(driver.start(spec('x', { deferred: true })), (e) => isThawError(e) && /at launch/.test(e.message));
    const { sb } = await start(driver, spec('unused', { argv: [], env: {}, deferred: true }));
    await assert.rejects(sb.launch?.([], {}) ?? Promise.resolve(), (e) => isThawError(e) && /empty argv/.test(e.message));
    await assert.rejects(sb.launch?.(['/bin/true'], { 'A=B': 'x' }) ?? Promise.resolve(), (e) => isThawError(e) && /malformed/.test(e.message));
    await within(sb.destroy(), 30_000, 'destroy a waiting sandbox');
    const exit = await sb.exited;
    assert.notEqual(exit.code, 0);
  });

  test('start() fails with a Service error when the sandbox cannot be built', T, async () => {
    await assert.rejects(driver.start(spec('true', { mounts: [{ host: '/nonexistent/code', sandbox: '/var/task' }] })), (e) => isThawError(e) && e.code === 'Service');
    await assert.rejects(
      driver.start(spec('true', { cwd: '/nonexistent' })),
      (e) => isThawError(e) && e.code === 'Service' && /nonexistent/.test(String(e.fields.stderr)),
    );
  });

  test('resolve() returns sandbox paths unchanged', () => {
    assert.equal(driver.resolve('/var/task/x', [{ host: '/srv', sandbox: '/var/task' }]), '/var/task/x');
  });

  test('raw wait statuses decode to code or signal', () => {
    assert.deepEqual(decodeWaitStatus(0), { code: 0, signal: null });
    assert.deepEqual(decodeWaitStatus(137 << 8), { code: 137, signal: null });
    assert.deepEqual(decodeWaitStatus(9), { code: null, signal: 'SIGKILL' });
    assert.deepEqual(decodeWaitStatus(11 | 0x80), { code: null, signal: 'SIGSEGV' });
  });
});

describe('selectDriver', () => {
  test('picks namespaces here (root, bwrap works), process when asked', T, async () => {
    assert.equal(await probeNamespaces(), process.getuid?.() === 0 ? undefined : 'not running as root');
    const d = await selectDriver({ logger: silentLogger });
    assert.equal(d.name, process.getuid?.() === 0 ? 'namespaces' : 'process');
    assert.equal((await selectDriver({ preferred: 'process', logger: silentLogger })).name, 'process');
  });
});
