import { execFile } from 'node:child_process';
import type { Logger } from '../util/log.js';
import type { SandboxDriver } from './driver.js';
import { NamespacesDriver, type NamespacesDriverOptions } from './namespaces.js';
import { ProcessDriver } from './process.js';

/**
 * Pick the sandbox driver for this host: namespaces when we are root and a real namespaces sandbox starts
 * (probed once per process by running /bin/true in one), else the process driver, which isolates nothing
 * and says so. `preferred: 'process'` skips the probe; `preferred: 'namespaces'` still falls back, loudly.
 */
export async function selectDriver(opts: {
  preferred?: 'namespaces' | 'process';
  logger: Logger;
  namespaces?: Omit<NamespacesDriverOptions, 'logger'>;
}): Promise<SandboxDriver> {
  const log = opts.logger;
  if (opts.preferred !== 'process') {
    const why = await probeNamespaces(opts.namespaces ?? {});
    if (why === undefined) return new NamespacesDriver({ ...opts.namespaces, logger: log });
    log.warn({ reason: why }, 'namespaces sandbox unavailable, falling back to the process driver');
  }
  return new ProcessDriver({ logger: log });
}

let probed: Promise<string | undefined> | undefined;

/** Resolve undefined when a namespaces sandbox can start here, else the reason it cannot. */
export function probeNamespaces(opts: Omit<NamespacesDriverOptions, 'logger'> = {}): Promise<string | undefined> {
  probed ??= (async () => {
    if (process.getuid?.() !== 0) return 'not running as root';
    const bwrap = opts.bwrap ?? '/usr/bin/bwrap';
    // The same namespaces, capability handling and privilege drop as a real sandbox, minus mounts.
    const args = [
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-net',
      '--die-with-parent',
      '--new-session',
      '--as-pid-1',
      '--cap-drop',
      'ALL',
      '--cap-add',
      'CAP_SETUID',
      '--cap-add',
      'CAP_SETGID',
      '--cap-add',
      'CAP_SETPCAP',
      '--clearenv',
      '--ro-bind',
      '/',
      '/',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--size',
      '65536',
      '--tmpfs',
      '/tmp',
      opts.setpriv ?? '/usr/bin/setpriv',
      `--reuid=${opts.uid ?? 993}`,
      `--regid=${opts.gid ?? 990}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--ambient-caps=-all',
      '--bounding-set=-all',
      '--',
      opts.perl ?? '/usr/bin/perl',
      '-e',
      'exec "/bin/true" or exit 1',
    ];
    return new Promise<string | undefined>((resolve) => {
      execFile(bwrap, args, { env: {}, timeout: 10_000 }, (err, _stdout, stderr) => {
        resolve(err === null ? undefined : `${bwrap} probe failed: ${stderr.trim() || err.message}`);
      });
    });
  })();
  return probed;
}
