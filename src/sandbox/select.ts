import type { Logger } from '../util/log.js';
import type { SandboxDriver } from './driver.js';
import { NamespacesDriver, type NamespacesDriverOptions } from './namespaces.js';
import { ProcessDriver } from './process.js';

/**
 * Pick the sandbox driver for this host: namespaces when we are root and a real namespaces sandbox runs
 * (probed once per process: /bin/true in a sandbox, the same code path as every environment), else the
 * process driver, which isolates nothing and says so. `preferred: 'process'` skips the probe;
 * `preferred: 'namespaces'` still falls back when the probe fails, with a warning.
 */
export async function selectDriver(opts: {
  preferred?: 'namespaces' | 'process';
  logger: Logger;
  namespaces?: Omit<NamespacesDriverOptions, 'logger'>;
}): Promise<SandboxDriver> {
  const log = opts.logger;
  if (opts.preferred !== 'process') {
    const why = await probeNamespaces(opts.namespaces);
    if (why === undefined) return new NamespacesDriver({ ...opts.namespaces, logger: log });
    log.warn({ reason: why }, 'namespaces sandbox unavailable, falling back to the process driver');
  }
  return new ProcessDriver({ logger: log });
}

let probed: Promise<string | undefined> | undefined;

/** Resolve undefined when a namespaces sandbox runs here, else the reason it does not. Runs once per process. */
export function probeNamespaces(opts: Omit<NamespacesDriverOptions, 'logger'> = {}): Promise<string | undefined> {
  probed ??= (async () => {
    if (process.getuid?.() !== 0) return 'not running as root';
    try {
      const driver = new NamespacesDriver({ ...opts, cgroups: null });
      const sb = await driver.start({
        id: `probe-${process.pid}`,
        mounts: [],
        argv: ['/bin/true'],
        env: {},
        cwd: '/',
        limits: { memoryBytes: 64 * 1024 * 1024, pids: 16, cpuShares: 1024, tmpBytes: 65536 },
      });
      sb.stdout.resume();
      sb.stderr.resume();
      const exit = await sb.exited;
      await sb.destroy();
      return exit.code === 0 ? undefined : `/bin/true in a sandbox ended with ${JSON.stringify(exit)}`;
    } catch (err) {
      const fields = (err as { fields?: { stderr?: string } }).fields;
      return `${(err as Error).message}${fields?.stderr ? `: ${fields.stderr.trim()}` : ''}`;
    }
  })();
  return probed;
}
