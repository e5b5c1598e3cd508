import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Mount } from '../sandbox/driver.js';
import { RUNTIME_API_SOCKET } from '../sandbox/driver.js';

/**
 * The runtime table: for each Lambda runtime identifier, what to mount, what to run and which variables to
 * set. Runtimes that Thaw ships (Node, Python) use Thaw's own bootstraps from src/runtimes, which reach the
 * Runtime API over the environment's Unix socket when the sandbox has one; custom runtimes (provided*) run the
 * package's own `bootstrap` and speak TCP to AWS_LAMBDA_RUNTIME_API as on Lambda.
 */
export interface RuntimeDef {
  readonly id: string;
  readonly family: 'nodejs' | 'python' | 'provided';
  /** Directories the runtime needs besides /var/task. */
  readonly mounts: readonly Mount[];
  /** argv given the Runtime API socket path inside the sandbox (undefined when the transport is TCP). */
  argv(socket: string | undefined): string[];
  readonly env: Readonly<Record<string, string>>;
  /** True when the runtime needs the Runtime API on TCP inside the sandbox. */
  readonly tcpRuntimeApi: boolean;
  /** Identity of the runtime binary, for cache invalidation: its path and version. */
  readonly binary: { readonly path: string; readonly version: string };
}

const here = dirname(fileURLToPath(import.meta.url));
/** The package root, from dist/src/worker or src/worker. */
export const PACKAGE_ROOT = [join(here, '..', '..', '..'), join(here, '..', '..')].find((p) => existsSync(join(p, 'package.json'))) ?? process.cwd();
const RUNTIMES_SRC = join(PACKAGE_ROOT, 'src', 'runtimes');

const LAMBDA_PATH = '/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin';

/** Where the pinned Node binary of a runtime lives (vendor/node-runtimes, installed by `npm install`). */
export const nodeRuntimeDir = (major: 22 | 24): string => join(PACKAGE_ROOT, 'vendor', 'node-runtimes', 'node_modules', `node${major}`);

function nodeRuntime(id: string, major: 22 | 24): RuntimeDef | undefined {
  const dir = nodeRuntimeDir(major);
  const bin = join(dir, 'bin', 'node');
  if (!existsSync(bin)) return undefined;
  const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  return {
    id,
    family: 'nodejs',
    mounts: [{ host: dir, sandbox: '/var/lang' }, { host: join(RUNTIMES_SRC, 'node'), sandbox: '/var/runtime' }],
    argv: (socket) => ['/var/lang/bin/node', '/var/runtime/bootstrap.cjs', ...(socket === undefined ? [] : ['--runtime-api-socket', socket])],
    env: {
      PATH: LAMBDA_PATH,
      LD_LIBRARY_PATH: '/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib',
      // Lambda's: the layer paths (/opt) of this Node major first.
      NODE_PATH: `/opt/nodejs/node${major}/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task`,
      AWS_EXECUTION_ENV: `AWS_Lambda_${id}`,
    },
    tcpRuntimeApi: false,
    binary: { path: bin, version },
  };
}

function pythonRuntime(): RuntimeDef | undefined {
  const bin = '/usr/bin/python3';
  if (!existsSync(bin)) return undefined;
  let version: string;
  try {
    version = execFileSync(bin, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], { env: {}, encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
  const [major, minor] = version.split('.');
  const id = `python${major}.${minor}`;
  return {
    id,
    family: 'python',
    mounts: [{ host: join(RUNTIMES_SRC, 'python'), sandbox: '/var/runtime' }],
    argv: (socket) => [bin, '-u', '/var/runtime/bootstrap.py', ...(socket === undefined ? [] : ['--runtime-api-socket', socket])],
    env: {
      PATH: LAMBDA_PATH,
      LD_LIBRARY_PATH: '/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib',
      // Layers first, as on Lambda: sys.path is /var/task (set by the bootstrap), then these.
      PYTHONPATH: `/opt/python/lib/python${major}.${minor}/site-packages:/opt/python:/var/runtime`,
      AWS_EXECUTION_ENV: `AWS_Lambda_${id}`,
      LANG: 'en_US.UTF-8',
    },
    tcpRuntimeApi: false,
    binary: { path: bin, version },
  };
}

function providedRuntime(id: string): RuntimeDef {
  return {
    id,
    family: 'provided',
    mounts: [],
    argv: () => ['/var/task/bootstrap'],
    env: {
      PATH: '/usr/local/bin:/usr/bin/:/bin:/opt/bin',
      LD_LIBRARY_PATH: '/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib',
    },
    tcpRuntimeApi: true,
    binary: { path: '/var/task/bootstrap', version: '1' },
  };
}

let table: ReadonlyMap<string, RuntimeDef> | undefined;

export function runtimeTable(): ReadonlyMap<string, RuntimeDef> {
  if (table !== undefined) return table;
  const defs = [
    nodeRuntime('nodejs24.x', 24),
    nodeRuntime('nodejs22.x', 22),
    pythonRuntime(),
    providedRuntime('provided.al2023'),
    providedRuntime('provided.al2'),
    providedRuntime('provided'),
  ].filter((d): d is RuntimeDef => d !== undefined);
  table = new Map(defs.map((d) => [d.id, d]));
  return table;
}

export const runtimeSocketInSandbox = RUNTIME_API_SOCKET;
