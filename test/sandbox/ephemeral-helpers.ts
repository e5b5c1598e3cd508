import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMountPoints } from '../../src/sandbox/ephemeral.js';

/** Loop devices whose backing file lies in `dir` (an unlinked one reads "PATH (deleted)"). */
export function loopsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const dev of readdirSync('/sys/block').filter((d) => d.startsWith('loop'))) {
    try {
      const backing = readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim();
      if (backing.startsWith(dir + '/')) out.push(`${dev}: ${backing}`);
    } catch {
      // Not attached.
    }
  }
  return out;
}

export const mountsUnder = (dir: string): string[] =>
  parseMountPoints(readFileSync('/proc/self/mountinfo', 'utf8')).filter((p) => p.startsWith(dir + '/'));

/** Poll until `probe` is empty; fail with what is left after `ms`. */
export async function gone(what: string, probe: () => string[], ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  let left = probe();
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = probe();
  }
  assert.deepEqual(left, [], `${what} still there after ${ms} ms`);
}
